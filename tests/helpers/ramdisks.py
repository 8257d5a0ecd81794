"""Real loop-mounted RAM disks for tests, always torn down.

Every RAM disk made here is torn down in a finalizer that runs even when the test
failed: it unmounts everything under the mount point, detaches any loop device still
holding the image, and deletes the image, then checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.workspaces import _fsinfo
from procs.workspaces import ramdisk as ramdisks
from tests.helpers.host import loop_mount_missing
from tests.helpers.repos import make_repo

_names = itertools.count()


def skip_unless_loop_mounts(fstype: str) -> None:
    """Skip naming what this machine lacks to loop-mount `fstype` (never our code's
    failure: see host.loop_mount_missing)."""
    if reason := loop_mount_missing(fstype):
        pytest.skip(reason)


def new_spec(runtime: Path, fstype: str) -> ramdisks.RamDiskSpec:
    return ramdisks.RamDiskSpec(
        name=f"t{os.getpid()}x{next(_names)}",
        size_mb=ramdisks.MIN_SIZE_MB[fstype],
        fstype=fstype,
        runtime_dir=runtime,
    )


def teardown_ramdisk(spec: ramdisks.RamDiskSpec) -> None:
    """Leave no mount, loop device or image behind, whatever state the test left."""
    with contextlib.suppress(ramdisks.RamDiskError, OSError):
        ramdisks.destroy(spec, force=True, timeout_s=10)
    for entry in _fsinfo.mounts_under(spec.mountpoint):
        with contextlib.suppress(OSError):
            _fsinfo.unmount(entry.target)
    for device in ramdisks.loop_devices_for(spec.image):
        subprocess.run(["losetup", "-d", device], timeout=10, check=False)
    with contextlib.suppress(FileNotFoundError):
        spec.image.unlink()
    assert not _fsinfo.mounts_under(spec.mountpoint)
    assert not ramdisks.loop_devices_for(spec.image)


def losetup_j(image: Path) -> str:
    """`losetup -j IMAGE`: the loop devices the kernel still has for the image."""
    return subprocess.run(
        ["losetup", "-j", str(image)], capture_output=True, text=True, timeout=10, check=True
    ).stdout


def in_proc_mounts(path: Path) -> bool:
    with open("/proc/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == str(path) for line in f)


def provisioned(
    tmp_factory: pytest.TempPathFactory, fstype: str, golden_files: int = 12
) -> Iterator[ramdisks.RamDiskSpec]:
    """A mounted RAM disk of `fstype` with a small golden master; torn down afterwards."""
    skip_unless_loop_mounts(fstype)
    base = tmp_factory.mktemp(f"ramdisk-{fstype}")
    source = make_repo(base / "source", golden_files)
    spec = new_spec(base / "run", fstype)
    try:
        ramdisks.create(spec, source, timeout_s=60)
        yield spec
    finally:
        teardown_ramdisk(spec)
