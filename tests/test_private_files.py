"""Everything factoryd and its services create is owner-only whatever the umask they
were started with: databases, sockets, bus endpoints, the RAM disk's image, and the
runtime and state dirs themselves (a pre-existing 0755 one is tightened, one that is
not ours is refused)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc.bus import BusEndpoints
from ipc.bus.broker import BrokerProxy
from ipc.journal import JournalWriter
from procs.llm.budget import BudgetStore, DailyBudget
from procs.workspaces import ramdisk as ramdisks
from tests.harness import ROOT
from tests.helpers.example_factory import runnable_example
from tests.helpers.ramdisks import skip_unless_loop_mounts
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # real processes and sockets


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The umask a hand-started process usually has: files 0644, dirs 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def readable_by_others(*roots: Path) -> list[str]:
    """Every entry under `roots` (the roots too) that group or others may use: its own
    mode lets them, and no directory below the root closes the way to it (a 0644 file in
    a 0700 run directory is private; the roots themselves close nothing here, so every
    socket and database in them must be private by its own mode)."""
    found = []
    for root in roots:
        entries = [root, *root.rglob("*")]
        found += [f"{p} {mode(p):04o}" for p in entries
                  if p.exists() and mode(p) & 0o077 and _reachable(root, p)]  # fmt: skip
    return found


def _reachable(root: Path, path: Path) -> bool:
    """Group or others may pass every directory strictly below `root` on the way."""
    parent = path.parent
    while parent != root and root in parent.parents:
        if not mode(parent) & 0o011:
            return False
        parent = parent.parent
    return True


def test_factoryd_under_umask_022_creates_nothing_others_can_read(
    factoryd, tmp_path: Path, umask_022: None
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # left by an older install: everyone could read the databases
    os.chmod(state, 0o755)
    d = factoryd(runnable_example(tmp_path).text).start()
    expected = [
        d.runtime_dir / "factoryd.sock",
        d.runtime_dir / "notify.sock",
        d.runtime_dir / "bus-in.ipc",
        d.runtime_dir / "bus-out.ipc",
        state / "signals.sqlite3",
        state / "workspaces.sqlite3",
        state / "llm_usage.sqlite",
    ]
    wait_until(
        lambda: all(p.exists() for p in expected),
        timeout=30,
        what=f"the services' files: {[str(p) for p in expected if not p.exists()]}",
    )
    assert readable_by_others(d.runtime_dir, state) == []
    assert f'"event":"dir_tightened","detail":"{state}: group/others could use it; mode 0755' in (
        d.log()
    )


def test_factoryd_refuses_a_state_dir_that_is_not_its_own(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to give a directory away (running as uid {os.geteuid()})")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    cfg = tmp_path / "f.toml"
    cfg.write_text('[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["true"]\n')
    argv = [sys.executable, "-m", "supervisor.daemon", "--config", str(cfg),
            "--runtime-dir", str(tmp_path / "run"), "--state-dir", str(theirs)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert f"factoryd: refusing {theirs}: {theirs} belongs to uid 65534" in done.stderr


def test_databases_are_0600_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    journal = tmp_path / "journal" / "signals.sqlite3"
    JournalWriter(journal).close()
    budget = tmp_path / "llm" / "llm_usage.sqlite"
    BudgetStore(budget, DailyBudget()).close()
    stale = tmp_path / "stale.sqlite3"  # a database and WAL an older version left 0644
    stale.touch(mode=0o644)
    Path(f"{stale}-wal").touch(mode=0o644)
    JournalWriter(stale).close()
    assert {p.name: mode(p) for p in (journal, budget, stale)} == dict.fromkeys(
        ("signals.sqlite3", "llm_usage.sqlite", "stale.sqlite3"), 0o600
    )
    assert mode(journal.parent) == mode(budget.parent) == 0o700
    if Path(f"{stale}-wal").exists():  # SQLite removes it on a clean close
        assert mode(Path(f"{stale}-wal")) == 0o600


def test_the_bus_endpoints_are_0600(tmp_path: Path, umask_022: None) -> None:
    proxy = BrokerProxy(BusEndpoints.in_runtime_dir(tmp_path))
    proxy.start()
    try:
        assert mode(tmp_path / "bus-in.ipc") == 0o600
        assert mode(tmp_path / "bus-out.ipc") == 0o600
    finally:
        proxy.close()


@pytest.mark.needs_root
def test_the_ram_disk_image_is_0600_when_made_by_hand_under_umask_022(
    tmp_path: Path, umask_022: None
) -> None:
    skip_unless_loop_mounts("btrfs")
    spec = ramdisks.RamDiskSpec(
        name=f"private{os.getpid()}",
        size_mb=ramdisks.MIN_SIZE_MB["btrfs"],
        runtime_dir=tmp_path / "run",
        image_dir=tmp_path / "shm",
    )
    try:
        ramdisks.create(spec, timeout_s=60)
        assert mode(spec.image) == 0o600
        ramdisks.destroy(spec, timeout_s=30)
        spec.image_dir.mkdir(exist_ok=True)
        spec.image.touch(mode=0o644)  # an image an older run left readable: mkfs'd afresh
        os.chmod(spec.image, 0o644)
        ramdisks.create(spec, fresh=True, timeout_s=60)
        assert mode(spec.image) == 0o600
    finally:
        ramdisks.destroy(spec, force=True, timeout_s=30)
