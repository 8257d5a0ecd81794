"""Adversarial review of workspace destroy: it must never delete outside the workspace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.workspaces import WorkspaceRegistry, _fsinfo
from tests import test_workspace_fixtures as fx
from tests.test_workspace_fixtures import make_repo

scratch = fx.scratch
MS_BIND = 4096


@pytest.fixture
def registry(tmp_path: Path, scratch: Path) -> Iterator[WorkspaceRegistry]:
    reg = WorkspaceRegistry(tmp_path / "workspaces", tmp_path / "ws.sqlite3", scratch=scratch)
    yield reg
    for mount in _fsinfo.mounts_under(reg.root):
        with contextlib.suppress(OSError):
            _fsinfo.unmount(mount.target)
    reg.close()


@pytest.mark.parametrize("strategy", ["copy", "worktree"])
def test_destroy_does_not_delete_through_a_mount_inside_the_workspace(
    registry: WorkspaceRegistry, tmp_path: Path, strategy: str
) -> None:
    if not _fsinfo.has_sys_admin():
        pytest.skip("bind mounts need CAP_SYS_ADMIN")
    golden = make_repo(tmp_path / "golden")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me\n")
    ws = registry.create_workspace("mounted", golden, strategy)
    inner = ws.path / "mnt"
    inner.mkdir()
    try:
        _fsinfo.mount(str(precious), inner, "", "", MS_BIND)
    except OSError as exc:
        pytest.skip(f"bind mount not permitted here: {exc}")
    registry.destroy_workspace(ws.id)
    assert (precious / "data.txt").read_text() == "keep me\n"
    assert not ws.path.exists()
    assert _fsinfo.mounts_under(registry.root) == []
    assert registry.list_workspaces() == []
