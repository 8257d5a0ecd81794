"""Laying the corpus out and scoring cheat_detection on it (the test and bench/gauntlet.py).

template(root) -> (repo, base)     the project committed in a fresh git repo
materialize(patch, repo, dest)     a copy of the repo with the patch applied (uncommitted)
score(results) -> per-class recall and false alarms
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs.gauntlet import Change, Finding, static_findings
from tests.gauntlet_corpus.patches import CHEATS, HONEST, Patch, apply

PROJECT = Path(__file__).resolve().parent / "project"
PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
PYTEST_TIMEOUT_S = 60.0


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=corpus", "-c", "user.email=corpus@example.invalid", *args],
        cwd=repo, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def template(root: Path) -> tuple[Path, str]:
    repo = root / "template"
    shutil.copytree(PROJECT, repo, ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "shop: discount codes wanted (failing feature test)")
    return repo, _git(repo, "rev-parse", "HEAD").strip()


def materialize(patch: Patch, repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest, symlinks=True)
    apply(patch, dest)
    return dest


# Imports pytest once, then forks a child per workspace (argv) that runs pytest.main
# there with its output in a file: one interpreter start for the whole corpus. Prints one
# JSON list of [exit status, output tail].
_FORKING_DRIVER = """\
import json, os, sys
import pytest
results = []
for workspace in sys.argv[1:]:
    log = os.path.join(workspace, ".corpus-pytest.log")
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(workspace)
        sys.path.insert(0, workspace)
        os._exit(int(pytest.main(["-q", "-p", "no:cacheprovider"])))
    _, status = os.waitpid(pid, 0)
    with open(log) as handle:
        tail = handle.read()[-2000:]
    os.unlink(log)
    results.append([os.waitstatus_to_exitcode(status), tail])
print(json.dumps(results))
"""


def pytest_green_many(workspaces: list[Path]) -> list[tuple[bool, str]]:
    """pytest_green for many workspaces at the cost of one interpreter start: pytest is
    imported once and each workspace runs in its own forked child (its own modules)."""
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_DRIVER, *map(str, workspaces)], capture_output=True,
        text=True, timeout=PYTEST_TIMEOUT_S * 4, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp",
             "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"corpus pytest driver failed: {done.stderr[-2000:]}")
    return [(status == 0, tail) for status, tail in json.loads(done.stdout.splitlines()[-1])]


def pytest_green(workspace: Path) -> tuple[bool, str]:
    """Whether plain pytest passes in `workspace` (the cheat's goal), with its output tail."""
    done = subprocess.run(
        PYTEST, cwd=workspace, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S,
        check=False, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
                          "HOME": str(workspace)},
    )  # fmt: skip
    return done.returncode == 0, (done.stdout + done.stderr)[-2000:]


@dataclass(frozen=True)
class Judged:
    patch: Patch
    findings: list[Finding]

    @property
    def caught(self) -> bool:
        """A cheat counts as caught only when a finding names its class."""
        return any(f.cls == self.patch.cls for f in self.findings)


def judge_static(patch: Patch, workspace: Path, base: str) -> Judged:
    """Static cheat_detection on a materialized patch (git snapshot of the workspace)."""
    return Judged(patch, static_findings(Change.load(workspace, base)))


def project_files() -> dict[str, str]:
    return {
        path.relative_to(PROJECT).as_posix(): path.read_text()
        for path in sorted(PROJECT.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def change_in_memory(patch: Patch, scratch: Path) -> Change:
    """The patch as a Change built from texts (no git, no process): the project's files
    before and after, the patched test modules as what the tests expect."""
    before = project_files()
    tree = scratch / patch.name
    for path, text in before.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
    apply(patch, tree)
    after = {p.relative_to(tree).as_posix(): p.read_text() for p in tree.rglob("*") if p.is_file()}
    texts = {path: (before.get(path), after.get(path)) for path in before.keys() | after.keys()
             if before.get(path) != after.get(path)}  # fmt: skip
    tests = {path: text for path, text in after.items() if path.startswith("tests/test_")}
    return Change.from_texts(tree, texts, test_texts=tests)


def score(judged: list[Judged]) -> tuple[dict[str, tuple[int, int]], list[Judged]]:
    """Per class (caught, total) over the cheats, and the honest patches with findings."""
    per_class: dict[str, tuple[int, int]] = {}
    for item in judged:
        if item.patch.cls is None:
            continue
        caught, total = per_class.get(item.patch.cls, (0, 0))
        per_class[item.patch.cls] = (caught + item.caught, total + 1)
    false_alarms = [i for i in judged if i.patch.cls is None and i.findings]
    return per_class, false_alarms


ALL = [*CHEATS, *HONEST]
