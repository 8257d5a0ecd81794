"""An overlay workspace's lower layer never changes: the golden master advances under a
live overlay workspace (real mounts, real git), the workspace still shows its base
commit exactly, workspaces on one commit share one export, and destroying them leaves
no mount, and no export but the one of golden's current commit (kept for the next)."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.workspaces import StrategyFailed, WorkspaceRegistry, _fsinfo
from tests.helpers.host import may_mount_overlay
from tests.helpers.repos import git, make_repo

pytestmark = pytest.mark.integration


def advance(golden: Path) -> str:
    """Move golden the way the golden master does: a new commit, its work tree following."""
    (golden / "mod0.py").write_text("VALUE = 'advanced'\n")
    (golden / "added.py").write_text(f"ADDED = {len(git(golden, 'log', '--oneline'))}\n")
    (golden / "pkg" / "mod1.py").unlink(missing_ok=True)
    git(golden, "add", "-A")
    git(golden, "commit", "-q", "-m", "golden advances")
    git(golden, "reset", "-q", "--hard", "HEAD")
    return git(golden, "rev-parse", "HEAD").strip()


def exports(reg: WorkspaceRegistry) -> list[str]:
    lower = reg.scratch / ".lower"
    return sorted(p.name for p in lower.iterdir()) if lower.is_dir() else []


def test_golden_advances_under_a_live_overlay_workspace(tmp_path: Path, scratch: Path) -> None:
    if not may_mount_overlay():
        pytest.skip("overlayfs needs root and a kernel with overlay")
    golden = make_repo(tmp_path / "golden")
    base = git(golden, "rev-parse", "HEAD").strip()
    reg = WorkspaceRegistry(tmp_path / "ws", tmp_path / "ws.sqlite3", scratch=scratch)
    try:
        first = reg.create_workspace("first", golden, "overlay")
        same = reg.create_workspace("same", golden, "overlay")
        assert exports(reg) == [base]  # one export for the commit, shared

        new = advance(golden)

        for ws in (first, same):
            assert git(ws.path, "rev-parse", "HEAD").strip() == base
            assert git(ws.path, "status", "--porcelain") == ""
            assert (ws.path / "mod0.py").read_text() == "VALUE = 0\n"
            assert (ws.path / "pkg" / "mod1.py").read_text() == "VALUE = 1\n"
            assert not (ws.path / "added.py").exists()
        # The workspace is still a working git copy of its own.
        (first.path / "mine.py").write_text("MINE = 1\n")
        git(first.path, "add", "-A")
        git(first.path, "commit", "-q", "-m", "work")
        assert git(first.path, "rev-parse", "HEAD~1").strip() == base
        assert not (golden / "mine.py").exists()

        later = reg.create_workspace("later", golden, "overlay")
        assert git(later.path, "rev-parse", "HEAD").strip() == new
        assert (later.path / "added.py").is_file()
        assert exports(reg) == sorted([base, new])

        reg.destroy_workspace(first.id)
        assert exports(reg) == sorted([base, new])  # `same` still holds base
        assert (same.path / "mod0.py").read_text() == "VALUE = 0\n"
        reg.destroy_workspace(same.id)
        assert exports(reg) == [new]  # base: no holder, not golden's commit any more
        reg.destroy_workspace(later.id)
        assert exports(reg) == [new]  # golden's commit now: kept for the next workspace
        again = reg.create_workspace("again", golden, "overlay")
        assert git(again.path, "rev-parse", "HEAD").strip() == new
        newer = advance(golden)
        reg.destroy_workspace(again.id)
        assert exports(reg) == []  # new is held by nobody and golden is at newer
        assert newer != new
        assert not _fsinfo.mounts_under(reg.root)
        assert not _fsinfo.mounts_under(reg.scratch)
        assert sorted(p.name for p in reg.scratch.iterdir()) == []
        assert sorted(p.name for p in reg.root.iterdir()) == []
    finally:
        for ws in reg.list_workspaces():
            reg.destroy_workspace(ws.id)
        reg.close()


def test_an_export_that_fails_leaves_nothing(tmp_path: Path, scratch: Path) -> None:
    if not may_mount_overlay():
        pytest.skip("overlayfs needs root and a kernel with overlay")
    source = tmp_path / "empty"
    source.mkdir()
    git(source, "init", "-q")  # no commit: nothing to export
    reg = WorkspaceRegistry(tmp_path / "ws", tmp_path / "ws.sqlite3", scratch=scratch)
    try:
        with pytest.raises(StrategyFailed, match="git rev-parse HEAD"):
            reg.create_workspace("x", source, "overlay")
        assert reg.list_workspaces() == []
        assert list(reg.root.iterdir()) == []
        assert exports(reg) == []
        assert not _fsinfo.mounts_under(reg.root)
    finally:
        reg.close()
