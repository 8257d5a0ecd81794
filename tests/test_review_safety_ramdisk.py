"""Adversarial review of RAM disk teardown: a runtime dir reached through a symlink."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from procs.workspaces import _fsinfo
from procs.workspaces import ramdisk as ramdisks
from tests import test_workspace_fixtures as fx


def test_a_symlinked_runtime_dir_is_mounted_once_and_torn_down(tmp_path: Path) -> None:
    if reason := fx.mount_skip_reason("btrfs"):
        pytest.skip(reason)
    real = tmp_path / "real-run"
    real.mkdir()
    link = tmp_path / "run"
    link.symlink_to(real, target_is_directory=True)  # as /var/run -> /run
    spec = fx.new_spec(link, "btrfs")
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
