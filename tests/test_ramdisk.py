"""RAM disk provisioning by hand (`python3 -m procs.workspaces.ramdisk`) on real loop mounts:
teardown leaves no mount (/proc/mounts), no loop device (`losetup -j`) and no image, also
when the runtime dir is reached through a symlink."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from procs.workspaces import BadRequest, WorkspaceRegistry, _btrfs, _fsinfo
from procs.workspaces import ramdisk as ramdisks
from tests.helpers.ramdisks import (
    in_proc_mounts,
    losetup_j,
    new_spec,
    skip_unless_loop_mounts,
    teardown_ramdisk,
)
from tests.helpers.repos import git, make_repo
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def run_cli(spec: ramdisks.RamDiskSpec, *argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "procs.workspaces.ramdisk", *argv, "--name", spec.name,
        "--fs", spec.fstype, "--size-mb", str(spec.size_mb),
        "--runtime-dir", str(spec.runtime_dir),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(params=["btrfs", "xfs"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ramdisks.RamDiskSpec]:
    skip_unless_loop_mounts(request.param)
    spec = new_spec(tmp_path / "run", request.param)
    yield spec
    teardown_ramdisk(spec)


def assert_gone(spec: ramdisks.RamDiskSpec) -> None:
    assert not in_proc_mounts(spec.mountpoint)
    assert losetup_j(spec.image) == ""
    assert not spec.image.exists()
    assert not spec.mountpoint.exists()


@pytest.mark.needs_root
def test_create_status_destroy_by_hand(spec: ramdisks.RamDiskSpec, tmp_path: Path) -> None:
    golden = make_repo(tmp_path / "golden")
    made = run_cli(spec, "create", "--golden", str(golden))
    assert made.returncode == 0, made.stderr
    status = orjson.loads(made.stdout)
    assert status["mounted"] and in_proc_mounts(spec.mountpoint)
    assert status["image"] == str(spec.image) and spec.image.parent == Path("/dev/shm")
    [device] = status["loop_devices"]
    assert device in losetup_j(spec.image)
    assert _fsinfo.fs_name(spec.mountpoint) == spec.fstype
    assert _btrfs.is_subvolume(spec.golden) == (spec.fstype == "btrfs")
    assert git(spec.golden, "log", "--format=%s") == "initial\n"
    assert status["ram_bytes"] < status["size_bytes"]  # sparse: RAM only for what is written

    again = run_cli(spec, "create")  # idempotent: mounted already
    assert again.returncode == 0 and orjson.loads(again.stdout)["loop_devices"] == [device]
    assert orjson.loads(run_cli(spec, "status").stdout)["golden"] == str(spec.golden)

    gone = run_cli(spec, "destroy")
    assert gone.returncode == 0, gone.stderr
    assert orjson.loads(gone.stdout)["mounted"] is False
    assert_gone(spec)


@pytest.mark.needs_root
def test_destroy_unmounts_overlay_workspaces_inside(
    spec: ramdisks.RamDiskSpec, tmp_path: Path, scratch: Path
) -> None:
    ramdisks.create(spec, make_repo(tmp_path / "golden"))
    reg = WorkspaceRegistry(spec.workspaces, tmp_path / "ws.sqlite3", scratch=scratch)
    ws = reg.create_workspace("inside", spec.golden, "overlay")
    assert in_proc_mounts(ws.path)
    ramdisks.destroy(spec)
    assert not in_proc_mounts(ws.path)
    assert_gone(spec)
    assert [r.action for r in reg.reap_orphans()] == []  # owner (this process) alive
    reg.close()


@pytest.mark.needs_root
def test_busy_ramdisk_is_refused_unless_forced(spec: ramdisks.RamDiskSpec) -> None:
    ramdisks.create(spec)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        cwd=spec.mountpoint,
        stdin=subprocess.PIPE,
    )
    try:
        with pytest.raises(ramdisks.RamDiskError, match="files open inside"):
            ramdisks.destroy(spec)
        assert in_proc_mounts(spec.mountpoint)
    finally:
        holder.communicate(timeout=10)  # closes stdin: the holder exits
    ramdisks.destroy(spec)
    assert_gone(spec)


@pytest.mark.needs_root
def test_an_image_left_by_a_crash_is_mounted_again_with_its_data(
    spec: ramdisks.RamDiskSpec,
) -> None:
    ramdisks.create(spec)
    (spec.workspaces / "unsaved.txt").write_text("work in progress\n")
    _fsinfo.unmount(spec.mountpoint)  # what a reboot-free crash of everything leaves
    wait_until(lambda: not ramdisks.loop_devices_for(spec.image), what="loop autoclear")
    assert spec.image.exists()
    ramdisks.create(spec)
    assert (spec.workspaces / "unsaved.txt").read_text() == "work in progress\n"
    ramdisks.destroy(spec)
    assert_gone(spec)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="btrfs RAM disk needs at least 128 MB"):
        ramdisks.RamDiskSpec(size_mb=16, runtime_dir=tmp_path)
    with pytest.raises(BadRequest, match="must be btrfs or xfs"):
        ramdisks.RamDiskSpec(fstype="ext4", runtime_dir=tmp_path)
    with pytest.raises(BadRequest, match="bad slug"):
        ramdisks.RamDiskSpec(name="../etc", runtime_dir=tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BadRequest, match="is not a git repository"):
        ramdisks.create(ramdisks.RamDiskSpec(runtime_dir=tmp_path), plain)
    bad = subprocess.run(
        [sys.executable, "-m", "procs.workspaces.ramdisk", "create", "--size-mb", "1",
         "--runtime-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "ramdisk create: btrfs RAM disk needs at least 128 MB" in bad.stderr
    assert os.listdir(tmp_path) == ["plain"]


@pytest.mark.needs_root
def test_a_symlinked_runtime_dir_is_mounted_once_and_torn_down(tmp_path: Path) -> None:
    skip_unless_loop_mounts("btrfs")
    real = tmp_path / "real-run"
    real.mkdir()
    link = tmp_path / "run"
    link.symlink_to(real, target_is_directory=True)  # as /var/run -> /run
    spec = new_spec(link, "btrfs")
    real_mountpoint = real / "ramdisk" / spec.name
    try:
        ramdisks.create(spec, timeout_s=60)
        ramdisks.create(spec, timeout_s=60)  # idempotent: must not mount a second time
        assert len(_fsinfo.mounts_under(real_mountpoint)) == 1
        assert len(ramdisks.loop_devices_for(spec.image)) == 1
        assert ramdisks.status(spec)["mounted"] is True
        after = ramdisks.destroy(spec, timeout_s=10)
        assert after["mounted"] is False
        assert _fsinfo.mounts_under(real_mountpoint) == []
        assert ramdisks.loop_devices_for(spec.image) == []
        assert not spec.image.exists()
    finally:
        for entry in _fsinfo.mounts_under(real_mountpoint):
            with contextlib.suppress(OSError):
                _fsinfo.unmount(entry.target)
        for device in ramdisks.loop_devices_for(spec.image):
            subprocess.run(["losetup", "-d", device], timeout=10, check=False)
        with contextlib.suppress(FileNotFoundError):
            spec.image.unlink()
