"""One run of the golden suite on one commit, in the sandbox, with a timeout.

    run_on(repo, commit, test_command, scratch, timeout_s=, mode=) -> Verdict

The commit is exported (`git archive`, read-only on golden: no worktree, no index, no
lock) into a fresh directory under `scratch`, which is the sandbox's workspace: the run
may write there (caches, reports) and nothing reaches golden. A pytest command gets
`-p no:cacheprovider` and a JUnit report, from which the failing tests and their first
error lines are read; any other command is judged by its exit status and its last line.
A timeout is red. The directory is removed afterwards, whatever happened.

Raises SuiteUnavailable when the run could not happen (git failed, the sandbox is
missing): that is no verdict, never green nor red.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from procs import sandbox

GIT_TIMEOUT_S = 60.0
MAX_OUTPUT_CHARS = 16 * 1024
MAX_ERROR_CHARS = 2000
REPORT = ".heartbeat-junit.xml"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_DURATION = re.compile(r"\b\d+(\.\d+)?s\b")


class SuiteUnavailable(Exception):
    """The suite could not be run at all; the message says why."""


@dataclass(frozen=True)
class Verdict:
    """`green`, or red with the first failing `file` and an `error` a person reads, and a
    `signature` (the failing tests and their normalised first error lines) that says
    whether two red runs failed the same way."""

    hash: str
    green: bool
    file: str
    error: str
    signature: str
    timed_out: bool
    exit_code: int
    duration_ms: float
    output: str


def suite_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


def export(repo: Path, commit: str, dest: Path) -> None:
    """Write `commit`'s tree into `dest` (which exists), streamed from `git archive` (the
    tree is never held in memory whole); git is killed past GIT_TIMEOUT_S. Raises
    SuiteUnavailable."""
    argv = ["git", "-C", str(repo), "archive", "--format=tar", commit]
    try:
        git = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise SuiteUnavailable(f"git archive {commit} in {repo}: {exc}") from None
    watchdog = threading.Timer(GIT_TIMEOUT_S, git.kill)
    watchdog.start()
    try:
        assert git.stdout is not None and git.stderr is not None
        try:
            with tarfile.open(fileobj=git.stdout, mode="r|") as tar:
                tar.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as exc:
            git.kill()
            problem = f"{exc}"
        else:
            problem = ""
        error = git.stderr.read().decode(errors="replace").strip()[:300]
        code = git.wait()
    finally:
        watchdog.cancel()
        for pipe in (git.stdout, git.stderr):
            if pipe is not None:
                pipe.close()
    if code != 0 or problem:
        why = error or problem or f"exit {code} (killed after {GIT_TIMEOUT_S:g} s?)"
        raise SuiteUnavailable(f"git archive {commit} in {repo}: {why}")


def is_pytest(argv: Sequence[str]) -> bool:
    return any(Path(a).name in ("pytest", "py.test") or a == "pytest" for a in argv)


def run_on(repo: Path, commit: str, test_command: Sequence[str], scratch: Path, *,
           timeout_s: float, mode: str) -> Verdict:  # fmt: skip
    """The suite on `commit` (see the module docstring). Blocks at most about `timeout_s`
    plus the export. Raises SuiteUnavailable."""
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f"run-{commit[:12]}-", dir=scratch))
    try:
        export(repo, commit, work)
        argv = list(test_command)
        if is_pytest(argv):
            argv += ["-p", "no:cacheprovider", f"--junitxml={work / REPORT}"]
        try:
            policy = sandbox.SandboxPolicy(workspace=work, timeout_s=timeout_s, mode=mode)
            result = sandbox.run(argv, policy, env=suite_env())
        except (sandbox.SandboxUnavailable, ValueError, OSError) as exc:
            raise SuiteUnavailable(f"the sandbox cannot run the suite: {exc}") from None
        output = (result.stdout + result.stderr).decode(errors="replace")[-MAX_OUTPUT_CHARS:]
        failures = read_failures(work / REPORT, work) if is_pytest(argv) else []
        return judge(commit, exit_code=result.returncode, timed_out=result.timed_out,
                     duration_ms=result.duration_ms, output=output, failures=failures,
                     timeout_s=timeout_s)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_failures(report: Path, root: Path) -> list[tuple[str, str, str]]:
    """(test id, file, first error line) of each failed or erroring test in a JUnit report
    (none when there is no readable report)."""
    try:
        tree = ET.parse(report)  # our own run's report (its text only names failures)
    except (OSError, ET.ParseError):
        return []
    out = []
    for case in tree.iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            continue
        classname, name = case.get("classname", ""), case.get("name", "")
        file = case.get("file") or _file_of(classname, root)
        message = (bad.get("message") or bad.text or "").strip().splitlines()
        out.append((f"{classname}::{name}", file, message[0] if message else bad.tag))
    return out


def _file_of(classname: str, root: Path) -> str:
    """tests.test_calc.TestX -> tests/test_calc.py, the longest prefix that is a file."""
    parts = classname.split(".")
    for n in range(len(parts), 0, -1):
        candidate = "/".join(parts[:n]) + ".py"
        if (root / candidate).is_file():
            return candidate
    return ""


def judge(commit: str, *, exit_code: int, timed_out: bool, duration_ms: float, output: str,
          failures: list[tuple[str, str, str]], timeout_s: float) -> Verdict:  # fmt: skip
    """The verdict of a finished run. Pure."""
    green = exit_code == 0 and not timed_out
    if green:
        return Verdict(commit, True, "", "", "", False, exit_code, duration_ms, output)
    if timed_out:
        file, error = "", f"the suite timed out after {timeout_s:g} s"
        signature = "timeout"
    elif failures:
        file = next((f for _, f, _ in failures if f), "")
        first_id, _, first_line = failures[0]
        error = f"{len(failures)} failed; first {first_id}: {first_line}"
        signature = "\n".join(sorted(f"{tid}: {_normal(line)}" for tid, _, line in failures))
    else:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else ""
        file, error = "", f"exit {exit_code}: {last}" if last else f"exit {exit_code}"
        signature = f"exit {exit_code}: {_normal(last)}"
    return Verdict(commit, False, file, error[:MAX_ERROR_CHARS], signature, timed_out,
                   exit_code, duration_ms, output)  # fmt: skip


def _normal(line: str) -> str:
    """An error line without what changes from run to run (addresses, durations)."""
    return _DURATION.sub("Ns", _ADDRESS.sub("0x?", line)).strip()


def remove_leftovers(scratch: Path) -> None:
    """Runs a killed heartbeat left behind."""
    for path in scratch.glob("run-*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(path)
