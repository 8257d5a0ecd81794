"""The dynamic check: REV's tests, exactly as they were, against the patched code.

A scratch copy of the workspace (without .git) gets every protected path (test files,
conftest.py, harness config: procs.testfiles.is_protected) removed, then REV's protected files
written back, so nothing the change added to the test machinery is loaded and nothing it
deleted or weakened is missing. The unit command (pytest) runs there in the sandbox with
the config's timeout and a junit report (a unit command that is not pytest is judged by
its exit status alone); it must exit 0 with every test passed. Deleting,
skipping, weakening or configuring tests away cannot hide a failure from this run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from procs.gauntlet._change import Change, ChangeError, git
from procs.gauntlet._config import GauntletConfig
from procs.gauntlet._sandboxed import run_readonly
from procs.testfiles import is_protected, is_test_module

GIT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ProtectedRun:
    """How REV's tests fared: `failed` test ids (path::name as far as the report tells),
    and why the run as a whole is not green ('' when it is)."""

    failed: list[tuple[str, str]] = field(default_factory=list)  # (module path, test name)
    problem: str = ""

    @property
    def green(self) -> bool:
        return not self.failed and not self.problem


def _protected_at(workspace: Path, rev: str) -> list[str]:
    names = git(workspace, "ls-tree", "-r", "-z", "--name-only", rev).split("\0")
    return [n for n in names if n and is_protected(PurePosixPath(n))]


def build_tree(change: Change, scratch: Path) -> list[str]:
    """Lay the patched tree with REV's protected files into `scratch`; return them."""
    shutil.copytree(change.workspace, scratch, symlinks=True,
                    ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True)  # fmt: skip
    for root, dirs, files in os.walk(scratch):
        here = Path(root)
        for name in files:
            relative = PurePosixPath((here / name).relative_to(scratch).as_posix())
            if is_protected(relative):
                (here / name).unlink()
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    protected = _protected_at(change.workspace, change.base)
    if protected:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", change.base, "--", *protected],
            cwd=change.workspace, capture_output=True, timeout=GIT_TIMEOUT_S, check=False,
        )  # fmt: skip
        if archive.returncode != 0:
            raise ChangeError(f"git archive of REV's tests failed: {archive.stderr[:300]!r}")
        unpack = subprocess.run(
            ["tar", "-x", "-C", str(scratch)], input=archive.stdout, capture_output=True,
            timeout=GIT_TIMEOUT_S, check=False,
        )  # fmt: skip
        if unpack.returncode != 0:
            raise ChangeError(f"unpacking REV's tests failed: {unpack.stderr[:300]!r}")
    return protected


def run_protected(change: Change, config: GauntletConfig) -> ProtectedRun:
    """Run REV's tests against the patched code (see the module docstring). Raises
    SandboxUnavailable (nothing ran) and ChangeError (the tree could not be laid)."""
    with tempfile.TemporaryDirectory(prefix="gauntlet-rev-tests-") as scratch_dir:
        scratch = Path(scratch_dir) / "tree"
        protected = build_tree(change, scratch)
        if not any(is_test_module(PurePosixPath(p)) for p in protected):
            return ProtectedRun()  # REV has no tests to protect
        # Everything read-only (the code under test cannot rewrite REV's tests at import)
        # but the report's own directory.
        out = scratch / f".gauntlet-report-{secrets.token_hex(8)}"
        out.mkdir()
        report = out / "junit.xml"
        pytest_like = any("pytest" in part for part in config.unit_command)
        argv = [*config.unit_command]
        if pytest_like:
            argv += ["-p", "no:cacheprovider", f"--junitxml={report}"]
        done = run_readonly(argv, scratch, config, writable=out)
        # Another runner: its exit status alone says whether REV's tests pass.
        cases, problem = _read_report(report) if pytest_like else ({}, "")
    if done.timed_out:
        return ProtectedRun(problem=done.why("REV's tests", config.timeout_s))
    failed = [case for case, ok in cases.items() if not ok]
    if problem:
        return ProtectedRun(failed, f"REV's tests left no usable report ({problem}); "
                                    + done.why("the run", config.timeout_s))  # fmt: skip
    if done.returncode != 0 and not failed:
        return ProtectedRun(failed, done.why("REV's tests", config.timeout_s))
    return ProtectedRun(failed)


def _read_report(report: Path) -> tuple[dict[tuple[str, str], bool], str]:
    """(module path, test name) -> passed or skipped, or why the report is unusable."""
    try:
        root = ET.fromstring(report.read_bytes())
    except FileNotFoundError:
        return {}, "pytest wrote no junit report"
    except (OSError, ET.ParseError) as exc:
        return {}, f"unreadable junit report: {exc}"
    cases: dict[tuple[str, str], bool] = {}
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        parts = classname.split(".")
        # pytest: "tests.test_mod" or "tests.test_mod.TestClass"
        if len(parts) > 1 and parts[-1][:1].isupper():
            module, name = "/".join(parts[:-1]) + ".py", f"{parts[-1]}::{case.get('name', '')}"
        else:
            module, name = "/".join(parts) + ".py", case.get("name", "")
        tags = {child.tag for child in case}
        # A skip is REV's own (the change's test machinery is not loaded; code under test
        # calling pytest.skip is test_detection's to find).
        ok = not tags & {"failure", "error"}
        cases[(module, name)] = ok and cases.get((module, name), True)
    return cases, ""
