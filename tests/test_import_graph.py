"""Imports flow one way: procs -> ipc and supervisor -> ipc; ipc imports neither. A
process kind (a folder under procs/) never imports another kind, and nobody outside a
package reaches into its private (`_name`) modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "ipc": {"supervisor", "procs"},
    "procs": {"supervisor"},
    "supervisor": {"procs"},
}
# Libraries under procs/ that every process kind may use: not process kinds themselves.
SHARED_PROCS = {
    "testfiles",
    "sandbox",
    "gauntlet",  # a library the loop and the merge queue call (and a CLI), no service
    "suite_config",  # the project's test command from loop.toml, for golden and the queue
}
PROCESS_KINDS = {
    "bus", "journal", "governor", "workspaces", "llm", "agent", "loop", "beads", "golden",
    "merge_queue", "dispatcher", "heartbeat", "demo", "synapse", "metrics",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Every absolute module name `path` imports (for `from a import b`: a and a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imports(path)}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_no_upward_imports() -> None:
    offenders = []
    for package, forbidden in FORBIDDEN.items():
        for path in _sources(package):
            bad = _imported_packages(path) & forbidden
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


def test_every_process_kind_is_a_folder_with_a_service() -> None:
    kinds = {p.parent.name for p in (ROOT / "procs").glob("*/service.py")}
    assert kinds >= PROCESS_KINDS
    loose = [p.name for p in (ROOT / "procs").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "an entry point outside its kind's folder"


def test_process_kinds_do_not_import_each_other() -> None:
    offenders = []
    for path in _sources("procs"):
        parts = path.relative_to(ROOT / "procs").parts
        own = parts[0] if len(parts) > 1 else None
        for name in _imports(path):
            bits = name.split(".")
            if bits[0] != "procs" or len(bits) < 2 or bits[1] in (own, *SHARED_PROCS):
                continue
            offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_nobody_reaches_into_another_package_private_modules() -> None:
    offenders = []
    for package in ("ipc", "procs", "supervisor"):
        for path in _sources(package):
            here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for name in _imports(path):
                bits = name.split(".")
                for i, bit in enumerate(bits):
                    if bit.startswith("_") and not bit.startswith("__"):
                        owner = ".".join(bits[:i])  # the package the private module is in
                        if not here.startswith(owner + "."):
                            offenders.append(f"{here} imports {name}")
                        break
    assert offenders == []


def test_walker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import procs.x\nfrom supervisor import tree\nfrom . import y\n")
    assert _imported_packages(sample) == {"procs", "supervisor"}
    assert "supervisor.tree" in _imports(sample)
