"""Shared fixtures and the suite's rules.

Fixtures: a real factoryd (`factoryd`, `journal`), child processes killed as groups
(`procs`), a runtime dir whose ledger goes at teardown (`runtime`), a golden git repo
(`golden`), an overlay scratch dir (`scratch`), an owner process (`owner`), and real
loop-mounted RAM disks (`btrfs_disk`, `xfs_disk`).

Markers (registered in pyproject.toml, --strict-markers):
- `integration`: starts real processes, daemons, sockets or mounts. Set on a module or
  a test, and added here to every test using a fixture that starts one (see
  INTEGRATION_FIXTURES). `python3 -m pytest -q -m "not integration"` runs the rest.
- `needs_root`: needs root (mounts, cgroups); skipped, naming why, for anyone else.

Skips: with FACTORY_ALLOWED_SKIPS set (.ci/run sets it), a skip for a reason not on
that list fails the session (tests/helpers/skip_policy.py).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import ledger
from procs.workspaces import ramdisk as ramdisks
from tests.harness import Factoryd, Journal
from tests.helpers import skip_policy
from tests.helpers.processes import Processes
from tests.helpers.ramdisks import provisioned
from tests.helpers.repos import make_repo

# Fixtures that start processes (or mount): a test using one is an integration test.
INTEGRATION_FIXTURES = {"factoryd", "procs", "owner", "golden", "btrfs_disk", "xfs_disk"}
NEEDS_ROOT_FIXTURES = {"btrfs_disk", "xfs_disk"}


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal")


@pytest.fixture
def factoryd(tmp_path: Path) -> Iterator[type[Factoryd]]:
    started: list[Factoryd] = []

    class Tracked(Factoryd):
        def start(self, *, wait_ready: bool = True) -> Factoryd:
            started.append(self)
            return super().start(wait_ready=wait_ready)

    def make(config: str, **kw: object) -> Factoryd:
        return Tracked(tmp_path, config, **kw)  # type: ignore[arg-type]

    yield make  # type: ignore[misc]
    for d in started:
        d.stop()


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    yield p
    p.cleanup()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Path]:
    """tmp_path/run, made; any ledger made in it is removed afterwards."""
    path = tmp_path / "run"
    path.mkdir()
    yield path
    ledger.destroy(path)


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """A small committed git repo at tmp_path/golden."""
    return make_repo(tmp_path / "golden")


_scratch_names = itertools.count()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh overlay scratch dir on tmpfs (/dev/shm), removed afterwards."""
    path = Path("/dev/shm") / f"factory-test-scratch-{os.getpid()}-{next(_scratch_names)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def owner() -> Iterator[subprocess.Popen[bytes]]:
    """A real owner process that waits on its stdin until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdin is not None:
        proc.stdin.close()


@pytest.fixture(scope="module")
def btrfs_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ramdisks.RamDiskSpec]:
    yield from provisioned(tmp_path_factory, "btrfs")


@pytest.fixture(scope="module")
def xfs_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ramdisks.RamDiskSpec]:
    yield from provisioned(tmp_path_factory, "xfs")


# -- markers ---------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    not_root = os.geteuid() != 0
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if used & NEEDS_ROOT_FIXTURES:
            item.add_marker(pytest.mark.needs_root)
        if not_root and item.get_closest_marker("needs_root"):
            item.add_marker(pytest.mark.skip(reason=f"needs root (running as uid {os.geteuid()})"))


# -- skips: only the allowed ones ------------------------------------------------------

_skipped: list[tuple[str, str]] = []
_unexpected: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append((report.nodeid, skip_policy.skip_reason(report.longrepr)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    allowed = skip_policy.allowed_reasons()
    if allowed is None:
        return
    _unexpected[:] = skip_policy.unexpected(_skipped, allowed)
    if _unexpected and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _unexpected:
        return
    allowed = "; ".join(skip_policy.allowed_reasons() or []) or "none"
    terminalreporter.section("skips not allowed here", sep="=", red=True, bold=True)
    terminalreporter.line(f"{skip_policy.ENV} allows: {allowed}")
    for nodeid, why in _unexpected:
        terminalreporter.line(f"SKIPPED {nodeid}: {why}", red=True)
