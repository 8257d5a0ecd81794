"""Shared fixtures for the workspace tests: small git repos and real loop-mounted RAM disks.

No tests here. Every RAM disk fixture tears down in a finalizer that runs even when the
test failed: it unmounts everything under the mount point, detaches any loop device still
holding the image, and deletes the image, then checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.workspaces import _fsinfo
from procs.workspaces import ramdisk as ramdisks

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Factory Test",
    "GIT_AUTHOR_EMAIL": "test@factory.invalid",
    "GIT_COMMITTER_NAME": "Factory Test",
    "GIT_COMMITTER_EMAIL": "test@factory.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}
_names = itertools.count()


def _overlay_mounts() -> bool:
    """Whether an overlay can really be mounted here (root in a container may not)."""
    if not (_fsinfo.has_sys_admin() and _fsinfo.kernel_has_fs("overlay")):
        return False
    base = Path(tempfile.mkdtemp(prefix="factory-overlay-probe-", dir="/dev/shm"))
    try:
        for d in ("lower", "upper", "work", "mnt"):
            (base / d).mkdir()
        options = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
        try:
            _fsinfo.mount("overlay", base / "mnt", "overlay", options)
        except OSError:
            return False
        _fsinfo.unmount(base / "mnt")
        return True
    finally:
        shutil.rmtree(base, ignore_errors=True)


# Where overlay cannot be mounted, auto falls back to a git worktree.
CAN_MOUNT = _overlay_mounts()
AUTO_ON_EXT4 = "overlay" if CAN_MOUNT else "worktree"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (10 s timeout) and return stdout; raises on failure."""
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def make_repo(path: Path, files: int = 12) -> Path:
    """A small committed git repo: `files` files in two directories."""
    (path / "pkg").mkdir(parents=True)
    for i in range(files):
        where = path / "pkg" if i % 2 else path
        (where / f"mod{i}.py").write_text(f"VALUE = {i}\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    return path


@functools.cache
def mount_skip_reason(fstype: str) -> str | None:
    """Why loop-mounting `fstype` cannot be tested here, or None (probed once by trying)."""
    if not _fsinfo.has_sys_admin():
        return "loop mounts need CAP_SYS_ADMIN (run the tests as root)"
    if shutil.which(ramdisks.MKFS[fstype][0]) is None:
        return f"{ramdisks.MKFS[fstype][0]} is not installed"
    runtime = Path(tempfile.mkdtemp(prefix="factory-mount-probe-"))
    spec = new_spec(runtime, fstype)
    try:
        ramdisks.create(spec, timeout_s=60)
    except ramdisks.RamDiskError as exc:
        return f"cannot loop-mount {fstype} here: {exc}"
    finally:
        teardown_ramdisk(spec)
        shutil.rmtree(runtime, ignore_errors=True)
    return None


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


def new_spec(runtime: Path, fstype: str) -> ramdisks.RamDiskSpec:
    return ramdisks.RamDiskSpec(
        name=f"t{os.getpid()}x{next(_names)}",
        size_mb=ramdisks.MIN_SIZE_MB[fstype],
        fstype=fstype,
        runtime_dir=runtime,
    )


def provisioned(
    tmp_factory: pytest.TempPathFactory, fstype: str, golden_files: int = 12
) -> Iterator[ramdisks.RamDiskSpec]:
    """A mounted RAM disk of `fstype` with a small golden master; torn down afterwards."""
    if reason := mount_skip_reason(fstype):
        pytest.skip(reason)
    base = tmp_factory.mktemp(f"ramdisk-{fstype}")
    source = make_repo(base / "source", golden_files)
    spec = new_spec(base / "run", fstype)
    try:
        ramdisks.create(spec, source, timeout_s=60)
        yield spec
    finally:
        teardown_ramdisk(spec)


@pytest.fixture(scope="module")
def btrfs_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ramdisks.RamDiskSpec]:
    yield from provisioned(tmp_path_factory, "btrfs")


@pytest.fixture(scope="module")
def xfs_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ramdisks.RamDiskSpec]:
    yield from provisioned(tmp_path_factory, "xfs")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh overlay scratch dir on tmpfs (/dev/shm), removed afterwards."""
    path = Path("/dev/shm") / f"factory-test-scratch-{os.getpid()}-{next(_names)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)
