"""Records, bad input, and orphan cleanup after an owner is SIGKILLed (real processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.workspaces import (
    BadRequest,
    WorkspaceNotFound,
    WorkspaceRegistry,
    _fsinfo,
)
from procs.workspaces._records import WorkspaceRecord, process_start_ticks
from tests.helpers.host import can_reflink_in, cap_sys_admin
from tests.helpers.repos import git, make_repo
from tests.waiting import wait_gone

pytestmark = pytest.mark.integration  # git repos, owner processes, mounts

MS_BIND = 4096


@pytest.fixture
def registry(tmp_path: Path, scratch: Path) -> Iterator[WorkspaceRegistry]:
    reg = WorkspaceRegistry(tmp_path / "workspaces", tmp_path / "ws.sqlite3", scratch=scratch)
    yield reg
    for mount in _fsinfo.mounts_under(reg.root):  # a test's own mounts first, deepest first
        if mount.target.parent != reg.root:
            with contextlib.suppress(OSError):
                _fsinfo.unmount(mount.target)
    for ws in reg.list_workspaces():
        reg.destroy_workspace(ws.id)
    reg.close()


def kill_owner(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_gone(proc.pid)


@pytest.mark.parametrize("slug", ["", "../up", "a/b", "-dash", "_under", "x" * 65, "sp ace", 7])
def test_bad_slug_is_refused(registry: WorkspaceRegistry, golden: Path, slug: object) -> None:
    with pytest.raises(BadRequest, match="bad slug"):
        registry.create_workspace(slug, golden, "copy")  # type: ignore[arg-type]
    assert list(registry.root.iterdir()) == []


def test_bad_strategy_name_lists_the_choices(registry: WorkspaceRegistry, golden: Path) -> None:
    with pytest.raises(BadRequest, match=r"unknown strategy 'cow': choose one of auto, snapshot"):
        registry.create_workspace("x", golden, "cow")


def test_source_must_be_an_absolute_git_repo(registry: WorkspaceRegistry, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BadRequest, match="is not a git repository"):
        registry.create_workspace("x", plain, "copy")
    with pytest.raises(BadRequest, match="is not a directory"):
        registry.create_workspace("x", tmp_path / "missing", "copy")
    with pytest.raises(BadRequest, match="must be an absolute path"):
        registry.create_workspace("x", "relative/repo", "copy")
    assert registry.list_workspaces() == []


def test_source_inside_the_root_is_refused(registry: WorkspaceRegistry, golden: Path) -> None:
    ws = registry.create_workspace("first", golden, "copy")
    with pytest.raises(BadRequest, match="inside the workspace root"):
        registry.create_workspace("second", ws.path, "copy")


def test_bad_and_unknown_ids(registry: WorkspaceRegistry) -> None:
    with pytest.raises(BadRequest, match="expected 12 hex digits"):
        registry.destroy_workspace("../../etc")
    with pytest.raises(WorkspaceNotFound, match="no workspace with id 0123456789ab"):
        registry.destroy_workspace("0123456789ab")


def test_owner_must_run(registry: WorkspaceRegistry, golden: Path, owner) -> None:
    kill_owner(owner)
    with pytest.raises(BadRequest, match=f"owner pid {owner.pid} does not run"):
        registry.create_workspace("x", golden, "copy", owner_pid=owner.pid)
    with pytest.raises(BadRequest, match="owner_pid must be a positive integer"):
        registry.create_workspace("x", golden, "copy", owner_pid=-1)


def test_a_record_pointing_outside_the_root_is_never_deleted(
    registry: WorkspaceRegistry, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    registry.records.insert(
        WorkspaceRecord(
            "aaaaaaaaaaaa",
            "x",
            victim,
            registry.scratch / "x",
            "copy",
            tmp_path,
            1,
            None,
            0.0,
            "ready",
        )
    )
    with pytest.raises(BadRequest, match="not directly inside root"):
        registry.destroy_workspace("aaaaaaaaaaaa")
    assert victim.is_dir()
    registry.records.delete("aaaaaaaaaaaa")


def test_records_survive_a_new_registry(
    registry: WorkspaceRegistry, golden: Path, tmp_path: Path, scratch: Path
) -> None:
    ws = registry.create_workspace("keep", golden, "worktree")
    again = WorkspaceRegistry(registry.root, tmp_path / "ws.sqlite3", scratch=scratch)
    assert again.list_workspaces() == [ws]
    assert again.get_workspace(ws.id).path == ws.path
    assert again.reap_orphans() == []  # this process owns it and runs
    again.close()


def test_orphan_removed_after_owner_sigkill_on_restart(
    registry: WorkspaceRegistry, golden: Path, owner, tmp_path: Path, scratch: Path
) -> None:
    mine = registry.create_workspace("mine", golden)
    theirs = registry.create_workspace("theirs", golden, owner_pid=owner.pid)
    (theirs.path / "work.txt").write_text("unsaved\n")
    registry.close()
    kill_owner(owner)
    restarted = WorkspaceRegistry(registry.root, tmp_path / "ws.sqlite3", scratch=scratch)
    reports = restarted.reap_orphans()
    assert [(r.workspace.id, r.action) for r in reports] == [(theirs.id, "removed")]
    assert f"owner pid {owner.pid} died" in reports[0].reason
    assert not theirs.path.exists() and not _fsinfo.is_mountpoint(theirs.path)
    assert [w.id for w in restarted.list_workspaces()] == [mine.id]
    assert git(golden, "status", "--porcelain") == ""
    registry.records = restarted.records  # let the fixture clean up through a live store


def test_orphan_kept_per_policy_is_reported_once(
    golden: Path, owner, tmp_path: Path, scratch: Path
) -> None:
    db = tmp_path / "ws.sqlite3"
    reg = WorkspaceRegistry(tmp_path / "ws", db, scratch=scratch, orphans="keep")
    ws = reg.create_workspace("kept", golden, "copy", owner_pid=owner.pid)
    kill_owner(owner)
    reports = reg.reap_orphans()
    assert [(r.workspace.id, r.action) for r in reports] == [(ws.id, "kept")]
    assert ws.path.is_dir()
    assert reg.get_workspace(ws.id).state == "orphaned"
    assert reg.reap_orphans() == []
    reg.destroy_workspace(ws.id)
    assert not ws.path.exists()
    reg.close()


def test_a_recycled_pid_is_not_the_owner(registry: WorkspaceRegistry, golden: Path) -> None:
    ws = registry.create_workspace("recycled", golden, "copy")
    registry.records.delete(ws.id)
    start = process_start_ticks(os.getpid())
    assert start is not None
    registry.records.insert(
        WorkspaceRecord(
            ws.id,
            ws.slug,
            ws.path,
            registry.scratch / ws.path.name,
            "copy",
            golden,
            os.getpid(),
            start + 1,
            ws.created_at,
            "ready",
        )
    )
    reports = registry.reap_orphans()
    assert [(r.workspace.id, r.action) for r in reports] == [(ws.id, "removed")]
    assert not ws.path.exists()


def test_interrupted_create_is_cleaned_and_vanished_one_dropped(
    registry: WorkspaceRegistry, golden: Path, owner
) -> None:
    half = registry.root / "half-bbbbbbbbbbbb"
    half.mkdir()
    (half / "partial.py").write_text("x\n")
    registry.records.insert(
        WorkspaceRecord(
            "bbbbbbbbbbbb",
            "half",
            half,
            registry.scratch / half.name,
            "copy",
            golden,
            os.getpid(),
            process_start_ticks(os.getpid()),
            0.0,
            "creating",
        )
    )
    gone = registry.create_workspace("gone", golden, "copy", owner_pid=owner.pid)
    fx_rm = subprocess.run(["rm", "-rf", str(gone.path)], timeout=10, check=True)
    assert fx_rm.returncode == 0
    kill_owner(owner)
    actions = {r.workspace.id: r.action for r in registry.reap_orphans()}
    assert actions == {"bbbbbbbbbbbb": "cleaned", gone.id: "dropped"}
    assert not half.exists()
    assert registry.list_workspaces() == []


def test_auto_order_is_configurable_and_checked(
    golden: Path, tmp_path: Path, scratch: Path
) -> None:
    with pytest.raises(BadRequest, match="must list strategies from snapshot"):
        WorkspaceRegistry(tmp_path / "ws", tmp_path / "db", scratch=scratch, auto_order=("cow",))
    reg = WorkspaceRegistry(
        tmp_path / "ws", tmp_path / "db", scratch=scratch, auto_order=("reflink", "copy")
    )
    choice = reg.choose_strategy(golden)
    if can_reflink_in(tmp_path):  # the golden master and the root share tmp_path's fs
        assert (choice.strategy, choice.skipped) == ("reflink", ())
    else:
        assert choice.strategy == "copy"
        assert choice.skipped[0][0] == "reflink" and "cannot reflink" in choice.skipped[0][1]
    reg.close()


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    from procs.workspaces._commands import CommandFailed, run_command

    # The child's pid is written before the shell waits: once the file is there, the
    # kill has a child to take. A run whose timeout came first is tried again, longer.
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; wait"
    for timeout_s in (0.3, 1.0, 3.0, 10.0, 30.0):
        with pytest.raises(CommandFailed, match=rf"no result after {timeout_s:g} s, killed"):
            run_command(["sh", "-c", script], timeout_s=timeout_s, what="slow")
        if pid_file.exists():
            break
    wait_gone(int(pid_file.read_text()), timeout=30)
    with pytest.raises(CommandFailed, match="exit 3: oops"):
        run_command(["sh", "-c", "echo oops >&2; exit 3"], timeout_s=10)


@pytest.mark.needs_root
@pytest.mark.parametrize("strategy", ["copy", "worktree"])
def test_destroy_does_not_delete_through_a_mount_inside_the_workspace(
    registry: WorkspaceRegistry, tmp_path: Path, strategy: str
) -> None:
    if not cap_sys_admin():
        pytest.skip("bind mounts need CAP_SYS_ADMIN")
    golden = make_repo(tmp_path / "golden")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me\n")
    ws = registry.create_workspace("mounted", golden, strategy)
    inner = ws.path / "mnt"
    inner.mkdir()
    _fsinfo.mount(str(precious), inner, "", "", MS_BIND)
    registry.destroy_workspace(ws.id)
    assert (precious / "data.txt").read_text() == "keep me\n"
    assert not ws.path.exists()
    assert _fsinfo.mounts_under(registry.root) == []
    assert registry.list_workspaces() == []
