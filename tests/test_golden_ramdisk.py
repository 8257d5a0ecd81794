"""The golden master on the RAM disk (--ramdisk), for real: a loop-mounted btrfs image,
the workspace manager and the golden master as processes. Before READY=1 the golden is
a btrfs subvolume seeded from the configured repository; loops' workspaces of it are
snapshots; the golden master alone moves its branch there (the seed is never written);
a restart finds the RAM disk's golden as it was left; without a manager it says why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.loop import workspace as loop_workspace
from procs.workspaces import _btrfs
from procs.workspaces import ramdisk as ramdisks
from tests.helpers.golden_queue import ServiceProcess, commit, git, start_golden, tiny_project
from tests.helpers.processes import Processes
from tests.helpers.ramdisks import new_spec, skip_unless_loop_mounts, teardown_ramdisk
from tests.helpers.workspace_service import Service, start_service

pytestmark = pytest.mark.integration


@pytest.fixture
def spec(tmp_path: Path) -> Iterator[ramdisks.RamDiskSpec]:
    skip_unless_loop_mounts("btrfs")
    spec = new_spec(tmp_path / "run", "btrfs")
    yield spec
    teardown_ramdisk(spec)


def stop(service: ServiceProcess | Service) -> None:
    if isinstance(service, Service):
        assert service.stop() == 0
        return
    service.proc.terminate()
    assert service.proc.wait(timeout=30) == 0


@pytest.mark.needs_root
def test_golden_lives_on_the_ramdisk_and_workspaces_are_snapshots(
    tmp_path: Path, procs: Processes, spec: ramdisks.RamDiskSpec, scratch: Path
) -> None:
    seed = tmp_path / "golden"
    c0 = tiny_project(seed)
    manager = start_service(
        tmp_path,
        "--ramdisk",
        "--ramdisk-name",
        spec.name,
        "--ramdisk-size-mb",
        str(spec.size_mb),
        "--scratch",
        str(scratch),
    )
    gm = start_golden(procs, tmp_path, seed, "--ramdisk")
    try:
        assert gm.ready, gm.log.read_text()
        [ready] = gm.events("ready")
        assert ready["repo"] == str(spec.golden) and ready["state"] == "green"
        assert _btrfs.is_subvolume(spec.golden)
        reply = gm.call("get_hash")
        assert (reply["hash"], reply["repo"]) == (c0, str(spec.golden))
        assert reply["workspace_source"] == str(spec.golden)
        assert gm.call("status")["ramdisk"] == {
            "path": str(spec.golden),
            "fstype": "btrfs",
            "seed": str(seed),
        }

        # A loop asks for its workspace naming the seed (its --repo): it gets a snapshot
        # of the RAM disk's golden, from the golden master's workspace_source.
        via = loop_workspace.WorkspaceSource(
            manager_socket=manager.socket, clone_root=tmp_path / "clones", owner_pid=os.getpid()
        )
        ws = loop_workspace.find_or_make(seed, "main", "bead.1", via)
        [listed] = manager.call("workspaces.list")["workspaces"]
        assert (listed["strategy"], listed["source"]) == ("snapshot", str(spec.golden))
        assert _btrfs.is_subvolume(ws.path) and ws.path.parent == spec.workspaces
        assert git(ws.path, "rev-parse", "HEAD") == c0

        # The loop's commit lands by the golden master's compare-and-swap, on the RAM disk.
        c1 = commit(ws.path, {"VERSION": "2\n"}, "two")
        moved = gm.call("advance", to=c1, expected_head=c0, source=str(ws.path), green=True)
        assert moved == {"hash": c1, "previous": c0}
        assert git(spec.golden, "rev-parse", "main") == c1
        assert (spec.golden / "VERSION").read_text() == "2\n"
        assert git(seed, "rev-parse", "main") == c0  # the seed is never written
        assert git(spec.golden, "status", "--porcelain") == ""

        # A restart finds the RAM disk's golden as it was: not seeded again.
        stop(gm)
        gm = start_golden(procs, tmp_path, seed, "--ramdisk")
        assert gm.ready, gm.log.read_text()
        assert gm.call("get_hash")["hash"] == c1
        manager.call("workspaces.destroy", {"id": ws.manager_id})
    finally:
        stop(gm)
        stop(manager)


def test_ramdisk_without_a_workspace_manager_is_a_clear_start_failure(
    tmp_path: Path, procs: Processes
) -> None:
    seed = tmp_path / "golden"
    tiny_project(seed)
    gm = start_golden(procs, tmp_path, seed, "--ramdisk")
    assert gm.proc.wait(timeout=30) == 1
    [failed] = gm.events("start_failed")
    assert "--ramdisk needs the workspace manager" in failed["reason"]
    assert "workspace_manager.sock is missing" in failed["reason"]
    assert gm.events("ready") == []


@pytest.mark.needs_root
def test_a_ramdisk_golden_catches_up_with_upstream_and_pushes_what_lands(
    tmp_path: Path, procs: Processes, spec: ramdisks.RamDiskSpec, scratch: Path
) -> None:
    origin, seed, other = tmp_path / "origin.git", tmp_path / "golden", tmp_path / "other"
    c0 = tiny_project(tmp_path / "first")
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "first"), str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(seed))
    git(tmp_path, "clone", "-q", str(origin), str(other))
    c1 = commit(other, {"VERSION": "2\n"}, "landed before a reboot, pushed upstream")
    git(other, "push", "-q", "origin", "main")
    manager = start_service(
        tmp_path,
        "--ramdisk",
        "--ramdisk-name",
        spec.name,
        "--ramdisk-size-mb",
        str(spec.size_mb),
        "--scratch",
        str(scratch),
    )
    gm = start_golden(procs, tmp_path, seed, "--ramdisk", "--upstream", "origin", "--push")
    try:
        assert gm.ready, gm.log.read_text()
        [ready] = gm.events("ready")
        assert (ready["hash"], ready["repo"]) == (c1, str(spec.golden))  # tested at c1
        assert [m["reason"] for m in gm.events("moved")] == ["refreshed from origin"]
        assert git(seed, "rev-parse", "main") == c0

        c2 = commit(other, {"a.py": "A = 1\n"}, "lands on the RAM disk")
        gm.call("advance", to=c2, expected_head=c1, source=str(other), green=True)
        assert gm.call("refresh")["pushed"] is True  # kept beyond the RAM disk
        assert git(origin, "rev-parse", "main") == c2
    finally:
        stop(gm)
        stop(manager)


def test_ramdisk_with_a_manager_without_one_is_refused_before_anything_is_made(
    tmp_path: Path, procs: Processes, scratch: Path
) -> None:
    seed = tmp_path / "golden"
    tiny_project(seed)
    manager = start_service(tmp_path, "--root", str(tmp_path / "ws"), "--scratch", str(scratch))
    try:
        gm = start_golden(procs, tmp_path, seed, "--ramdisk")
        assert gm.proc.wait(timeout=30) == 1
        [failed] = gm.events("start_failed")
        assert "workspace manager started with --ramdisk" in failed["reason"]
        assert str(tmp_path / "ws") in failed["reason"]
        assert manager.call("ramdisk.status")["mounted"] is False  # no RAM disk was made
        assert not (tmp_path / "run" / "ramdisk").exists()
    finally:
        stop(manager)
