"""Each strategy on real loop-mounted btrfs and XFS RAM disks and real overlay mounts:
isolation from the golden master, git inside the workspace, and nothing left on destroy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.workspaces import (
    StrategyFailed,
    StrategyUnavailable,
    Workspace,
    WorkspaceRegistry,
    _btrfs,
    _fsinfo,
)
from procs.workspaces import ramdisk as ramdisks
from tests.helpers.host import expected_auto_strategy, may_mount_overlay
from tests.helpers.repos import git, make_repo

pytestmark = pytest.mark.integration  # git, cp, mounts


def registry_on(spec: ramdisks.RamDiskSpec, tmp_path: Path, scratch: Path) -> WorkspaceRegistry:
    return WorkspaceRegistry(spec.workspaces, tmp_path / "ws.sqlite3", scratch=scratch)


@pytest.fixture
def on_btrfs(
    btrfs_disk: ramdisks.RamDiskSpec, tmp_path: Path, scratch: Path
) -> Iterator[WorkspaceRegistry]:
    reg = registry_on(btrfs_disk, tmp_path, scratch)
    yield reg
    for ws in reg.list_workspaces():
        reg.destroy_workspace(ws.id)
    reg.close()


@pytest.fixture
def on_xfs(
    xfs_disk: ramdisks.RamDiskSpec, tmp_path: Path, scratch: Path
) -> Iterator[WorkspaceRegistry]:
    reg = registry_on(xfs_disk, tmp_path, scratch)
    yield reg
    for ws in reg.list_workspaces():
        reg.destroy_workspace(ws.id)
    reg.close()


def assert_isolated_git_copy(ws: Workspace, golden: Path) -> None:
    """Writes, commits and resets in `ws` work and never show in `golden`."""
    head = git(golden, "rev-parse", "HEAD")
    assert git(ws.path, "status", "--porcelain") == ""
    (ws.path / "mod0.py").write_text("VALUE = 'changed'\n")
    (ws.path / "new.py").write_text("NEW = 1\n")
    assert git(ws.path, "status", "--porcelain").splitlines() == [" M mod0.py", "?? new.py"]
    git(ws.path, "add", "-A")
    git(ws.path, "commit", "-q", "-m", "work in the workspace")
    assert git(ws.path, "rev-parse", "HEAD") != head
    git(ws.path, "reset", "-q", "--hard", head.strip())
    assert (ws.path / "mod0.py").read_text() == "VALUE = 0\n"
    (ws.path / "pkg" / "mod1.py").unlink()
    # The golden master saw none of it.
    assert (golden / "mod0.py").read_text() == "VALUE = 0\n"
    assert (golden / "pkg" / "mod1.py").exists()
    assert not (golden / "new.py").exists()
    assert git(golden, "rev-parse", "HEAD") == head
    assert git(golden, "status", "--porcelain") == ""


def assert_nothing_left(reg: WorkspaceRegistry, ws: Workspace) -> None:
    assert not ws.path.exists()
    assert not (reg.scratch / ws.path.name).exists()
    assert not _fsinfo.mounts_under(ws.path)
    assert ws.id not in {w.id for w in reg.list_workspaces()}


@pytest.mark.parametrize("strategy", ["snapshot", "overlay", "reflink", "worktree", "copy"])
def test_strategy_on_btrfs(on_btrfs: WorkspaceRegistry, btrfs_disk, strategy: str) -> None:
    ws = on_btrfs.create_workspace("task-1", btrfs_disk.golden, strategy)
    assert ws.strategy == strategy
    assert ws.path.parent == on_btrfs.root
    assert ws.path.name.startswith("task-1-")
    if strategy == "snapshot":
        assert _btrfs.is_subvolume(ws.path)
    if strategy == "overlay":
        assert _fsinfo.is_mountpoint(ws.path)
        assert _fsinfo.fs_name(ws.path) == "overlay"
    assert_isolated_git_copy(ws, btrfs_disk.golden)
    on_btrfs.destroy_workspace(ws.id)
    assert_nothing_left(on_btrfs, ws)


@pytest.mark.parametrize("strategy", ["overlay", "reflink"])
def test_strategy_on_xfs(on_xfs: WorkspaceRegistry, xfs_disk, strategy: str) -> None:
    ws = on_xfs.create_workspace("task-2", xfs_disk.golden, strategy)
    assert_isolated_git_copy(ws, xfs_disk.golden)
    on_xfs.destroy_workspace(ws.id)
    assert_nothing_left(on_xfs, ws)


def test_workspaces_are_isolated_from_each_other(on_btrfs: WorkspaceRegistry, btrfs_disk) -> None:
    a = on_btrfs.create_workspace("a", btrfs_disk.golden, "snapshot")
    b = on_btrfs.create_workspace("b", btrfs_disk.golden, "overlay")
    (a.path / "mod0.py").write_text("A\n")
    (b.path / "mod0.py").write_text("B\n")
    assert (a.path / "mod0.py").read_text() == "A\n"
    assert (b.path / "mod0.py").read_text() == "B\n"
    assert a.path != b.path and a.id != b.id


def test_auto_prefers_snapshot_on_a_btrfs_subvolume(on_btrfs: WorkspaceRegistry, btrfs_disk):
    ws, choice = on_btrfs.create_workspace_explained("auto", btrfs_disk.golden, "auto")
    assert (ws.strategy, choice.strategy) == ("snapshot", "snapshot")
    assert "btrfs subvolume" in choice.reason
    assert choice.skipped == ()


def test_auto_on_xfs_skips_snapshot_and_says_why(on_xfs: WorkspaceRegistry, xfs_disk) -> None:
    choice = on_xfs.choose_strategy(xfs_disk.golden)
    assert choice.strategy == expected_auto_strategy(xfs_disk.golden)  # overlay, as root
    assert choice.skipped[0][0] == "snapshot"
    assert "is on xfs, not btrfs" in choice.skipped[0][1]


def test_auto_without_overlay_on_xfs_picks_reflink(on_xfs: WorkspaceRegistry, xfs_disk) -> None:
    on_xfs.auto_order = ("snapshot", "reflink", "worktree", "copy")
    ws = on_xfs.create_workspace("auto", xfs_disk.golden)
    assert ws.strategy == "reflink"


def test_snapshot_of_a_plain_directory_says_it_is_not_a_subvolume(
    on_btrfs: WorkspaceRegistry, btrfs_disk
) -> None:
    plain = make_repo(btrfs_disk.mountpoint / "plain-repo")
    try:
        with pytest.raises(StrategyUnavailable, match="not a subvolume"):
            on_btrfs.create_workspace("x", plain, "snapshot")
        assert on_btrfs.choose_strategy(plain).strategy == expected_auto_strategy(plain)
    finally:
        shutil.rmtree(plain)


def test_snapshot_into_a_root_on_another_filesystem_is_refused(
    btrfs_disk, tmp_path: Path, scratch: Path
) -> None:
    reg = WorkspaceRegistry(tmp_path / "root", tmp_path / "ws.sqlite3", scratch=scratch)
    with pytest.raises(StrategyUnavailable, match="not on the source's btrfs filesystem"):
        reg.create_workspace("x", btrfs_disk.golden, "snapshot")
    with pytest.raises(StrategyUnavailable, match="only within one filesystem"):
        reg.create_workspace("x", btrfs_disk.golden, "reflink")
    assert list((tmp_path / "root").iterdir()) == []
    assert reg.list_workspaces() == []


def test_reflink_on_tmpfs_explains_what_would_work(scratch: Path) -> None:
    base = scratch / "tmpfs-repo"
    source = make_repo(base / "golden")
    reg = WorkspaceRegistry(base / "workspaces", base / "ws.sqlite3", scratch=scratch / "s")
    with pytest.raises(StrategyUnavailable) as caught:
        reg.create_workspace("x", source, "reflink")
    assert "tmpfs cannot reflink; use overlay or a btrfs/XFS RAM disk" in str(caught.value)
    with pytest.raises(StrategyUnavailable, match="is on tmpfs, not btrfs"):
        reg.create_workspace("x", source, "snapshot")
    assert reg.choose_strategy(source).strategy == expected_auto_strategy(source)
    reg.close()


def test_overlay_and_worktree_on_plain_ext4(tmp_path: Path, scratch: Path) -> None:
    source = make_repo(tmp_path / "golden")
    reg = WorkspaceRegistry(tmp_path / "workspaces", tmp_path / "ws.sqlite3", scratch=scratch)
    strategies = ("overlay", "worktree", "copy") if may_mount_overlay() else ("worktree", "copy")
    for strategy in strategies:
        ws = reg.create_workspace("plain", source, strategy)
        assert_isolated_git_copy(ws, source)
        reg.destroy_workspace(ws.id)
        assert_nothing_left(reg, ws)
    assert "worktrees" not in git(source, "worktree", "list")
    assert len(git(source, "worktree", "list").splitlines()) == 1


def test_a_failed_create_leaves_nothing(tmp_path: Path, scratch: Path) -> None:
    source = tmp_path / "empty"
    source.mkdir()
    git(source, "init", "-q")  # no commit: `git worktree add ... HEAD` must fail
    reg = WorkspaceRegistry(tmp_path / "workspaces", tmp_path / "ws.sqlite3", scratch=scratch)
    with pytest.raises(StrategyFailed, match="git worktree add"):
        reg.create_workspace("x", source, "worktree")
    assert list(reg.root.iterdir()) == []
    assert reg.list_workspaces() == []
    assert reg.statistics()["failed"] == 1


@pytest.mark.skipif(shutil.which("jj") is None, reason="jj (Jujutsu) is not installed here")
def test_jj_workspace(tmp_path: Path, scratch: Path) -> None:
    import subprocess

    source = make_repo(tmp_path / "golden")
    subprocess.run(["jj", "git", "init", "--colocate"], cwd=source, timeout=30, check=True)
    reg = WorkspaceRegistry(tmp_path / "workspaces", tmp_path / "ws.sqlite3", scratch=scratch)
    ws = reg.create_workspace("jj", source, "jj")
    assert (ws.path / "mod0.py").read_text() == "VALUE = 0\n"
    (ws.path / "mod0.py").write_text("changed\n")
    assert (source / "mod0.py").read_text() == "VALUE = 0\n"
    reg.destroy_workspace(ws.id)
    assert not ws.path.exists()


def test_jj_absent_is_a_clear_refusal(tmp_path: Path, scratch: Path) -> None:
    source = make_repo(tmp_path / "golden")
    reg = WorkspaceRegistry(tmp_path / "workspaces", tmp_path / "ws.sqlite3", scratch=scratch)
    with pytest.raises(
        StrategyUnavailable,
        match=r"jj cannot work here: (jj \(Jujutsu\) is not"
        r" on PATH|source .* is not a jj repository)",
    ):
        reg.create_workspace("x", source, "jj")


def test_snapshot_pool_hands_out_only_current_snapshots(
    btrfs_disk: ramdisks.RamDiskSpec, tmp_path: Path, scratch: Path
) -> None:
    golden = btrfs_disk.mountpoint / "pool-golden"
    _btrfs.create_subvolume(golden)
    reg = WorkspaceRegistry(
        btrfs_disk.workspaces, tmp_path / "ws.sqlite3", scratch=scratch, snapshot_pool=2
    )
    try:
        make_repo(golden)  # into the (existing) subvolume
        first = reg.create_workspace("cold", golden, "snapshot")  # nothing pooled yet
        assert reg.statistics()["pool_misses"] == 1
        assert reg.refill_pools() == 2
        warm = reg.create_workspace("warm", golden, "snapshot")
        assert reg.statistics()["pool_hits"] == 1
        assert _btrfs.is_subvolume(warm.path)
        assert_isolated_git_copy(warm, golden)

        (golden / "moved.py").write_text("AHEAD = 1\n")  # the golden master moves on
        git(golden, "add", "moved.py")
        git(golden, "commit", "-q", "-m", "golden moved")
        fresh = reg.create_workspace("fresh", golden, "snapshot")  # pooled ones are stale
        assert reg.statistics()["pool_hits"] == 1
        assert (fresh.path / "moved.py").read_text() == "AHEAD = 1\n"
        assert reg.refill_pools() == 2  # stale ones dropped, two current ones made
        again = reg.create_workspace("again", golden, "snapshot")
        assert reg.statistics()["pool_hits"] == 2
        assert (again.path / "moved.py").read_text() == "AHEAD = 1\n"
        assert git(again.path, "log", "-1", "--format=%s") == "golden moved\n"
        for ws in (first, warm, fresh, again):
            reg.destroy_workspace(ws.id)
            assert not ws.path.exists()
    finally:
        reg.pool.drain()
        assert not reg.pool.dir.exists() or not list(reg.pool.dir.iterdir())
        reg.close()
        _btrfs.delete_subvolume(golden)
