"""A RAM disk that can clone: a btrfs (or XFS reflink=1) image in /dev/shm, loop-mounted.

tmpfs cannot reflink or snapshot, so the golden master lives on a filesystem that can,
whose image sits in RAM. Layout of a RAM disk named NAME:

    /dev/shm/factory-NAME.img            the image (sparse: RAM is used as data is written)
    <runtime_dir>/ramdisk/NAME/          its mount point (mount -o loop: autoclear loop)
        golden/                          the golden master (a subvolume on btrfs)
        workspaces/                      the workspace root

By hand, without a running daemon:

    python3 -m procs.workspaces.ramdisk create --golden /path/to/repo [--fs xfs] [--size-mb N]
    python3 -m procs.workspaces.ramdisk status
    python3 -m procs.workspaces.ramdisk destroy [--force]

Destroying unmounts everything below the mount point, then the RAM disk, checks that no
loop device still holds the image (detaching any that does), and deletes the image.
Every command run here (mkfs, mount, cp, losetup) has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ipc import paths
from procs.workspaces import _btrfs, _fsinfo
from procs.workspaces._commands import CommandFailed, run_command
from procs.workspaces._model import BadRequest, WorkspaceError, check_slug

MIN_SIZE_MB = {"btrfs": 128, "xfs": 320}  # below these mkfs refuses
MKFS = {
    "btrfs": ["mkfs.btrfs", "-q", "-f", "-m", "single"],  # DUP metadata buys nothing in RAM
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
}


class RamDiskError(WorkspaceError):
    """Provisioning or teardown failed; the message says which step and why."""


@dataclass(frozen=True)
class RamDiskSpec:
    """Where a RAM disk lives and what it is; building one has no side effects."""

    name: str = "factory"
    size_mb: int = 2048
    fstype: str = "btrfs"
    runtime_dir: Path = Path("/run/factory")
    image_dir: Path = Path("/dev/shm")

    def __post_init__(self) -> None:
        check_slug(self.name)
        if self.fstype not in MKFS:
            raise BadRequest(f"RAM disk filesystem must be btrfs or xfs, got {self.fstype!r}")
        minimum = MIN_SIZE_MB[self.fstype]
        if not isinstance(self.size_mb, int) or self.size_mb < minimum:
            raise BadRequest(f"{self.fstype} RAM disk needs at least {minimum} MB")

    # Both resolved: the kernel reports mount points (/proc/self/mountinfo) and loop backing
    # files by their real paths, and a runtime dir such as /var/run is a symlink; compared
    # unresolved, a mounted disk looked unmounted (mounted again, never torn down).
    @property
    def image(self) -> Path:
        return self.image_dir.resolve() / f"factory-{self.name}.img"

    @property
    def mountpoint(self) -> Path:
        return self.runtime_dir.resolve() / "ramdisk" / self.name

    @property
    def golden(self) -> Path:
        return self.mountpoint / "golden"

    @property
    def workspaces(self) -> Path:
        return self.mountpoint / "workspaces"


def loop_devices_for(image: Path) -> list[str]:
    """Loop devices whose backing file is `image` (from /sys, no subprocess)."""
    found = []
    target = str(image)
    for backing in glob.glob("/sys/block/loop*/loop/backing_file"):
        with contextlib.suppress(OSError), open(backing, encoding="utf-8") as f:
            name = f.read().strip().removesuffix(" (deleted)")
        if name == target:
            found.append("/dev/" + backing.split("/")[3])
    return sorted(found)


def status(spec: RamDiskSpec) -> dict[str, Any]:
    """What exists of the RAM disk now: image, loop devices, mount, golden, usage."""
    mounted = _fsinfo.is_mountpoint(spec.mountpoint)
    out: dict[str, Any] = {
        "name": spec.name,
        "fstype": _fsinfo.fs_name(spec.mountpoint) if mounted else spec.fstype,
        "image": str(spec.image),
        "image_exists": spec.image.exists(),
        "mountpoint": str(spec.mountpoint),
        "mounted": mounted,
        "loop_devices": loop_devices_for(spec.image),
        "golden": str(spec.golden) if mounted and spec.golden.is_dir() else None,
        "workspace_root": str(spec.workspaces) if mounted else None,
    }
    if spec.image.exists():
        st = spec.image.stat()
        out["size_bytes"] = st.st_size
        out["ram_bytes"] = st.st_blocks * 512
    if mounted:
        vfs = os.statvfs(spec.mountpoint)
        out["fs_free_bytes"] = vfs.f_bavail * vfs.f_frsize
        out["fs_total_bytes"] = vfs.f_blocks * vfs.f_frsize
    return out


def create(
    spec: RamDiskSpec,
    golden_source: Path | None = None,
    *,
    fresh: bool = False,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Provision the RAM disk (idempotent) and import `golden_source` if it has no golden.

    An image left by a crash is mounted again as it is (its workspaces survive) unless
    `fresh`. Blocks up to `timeout_s` per command. Raises RamDiskError or BadRequest.
    """
    if golden_source is not None and not (Path(golden_source) / ".git").exists():
        raise BadRequest(f"golden source {golden_source} is not a git repository")
    if not _fsinfo.has_sys_admin():
        raise RamDiskError("a RAM disk needs CAP_SYS_ADMIN (root) to loop-mount its image")
    if not _fsinfo.is_mountpoint(spec.mountpoint):
        _provision(spec, fresh=fresh, timeout_s=timeout_s)
    spec.workspaces.mkdir(exist_ok=True)
    if golden_source is not None and not spec.golden.exists():
        import_golden(spec, Path(golden_source), timeout_s=timeout_s)
    return status(spec)


def size_limit_mb(image_dir: Path) -> int:
    """The largest RAM disk that may be made in `image_dir`: at most the machine's
    memory and the free space of the filesystem holding the image (a tmpfs)."""
    vfs = os.statvfs(image_dir)
    free_mb = vfs.f_bavail * vfs.f_frsize // (1024 * 1024)
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return min(free_mb, memory_mb)


def check_size(spec: RamDiskSpec) -> None:
    """Refuse a size the machine cannot hold (a 2^40 MB request made a 1 EiB sparse
    image that would have filled memory as it was written)."""
    limit = size_limit_mb(spec.image_dir)
    if spec.size_mb > limit:
        raise BadRequest(
            f"RAM disk of {spec.size_mb} MB is larger than this machine can hold: at most "
            f"{limit} MB (memory, and free space in {spec.image_dir})"
        )


def _provision(spec: RamDiskSpec, *, fresh: bool, timeout_s: float) -> None:
    if shutil.which(MKFS[spec.fstype][0]) is None:
        raise RamDiskError(
            f"{MKFS[spec.fstype][0]} is not installed (apt-get install "
            f"{'btrfs-progs' if spec.fstype == 'btrfs' else 'xfsprogs'})"
        )
    spec.image_dir.mkdir(parents=True, exist_ok=True)
    made_image = fresh or not spec.image.exists()
    if made_image:
        check_size(spec)  # 0600 whatever the umask: the image holds every workspace's files
        fd = os.open(spec.image, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an image left by an older run may be wider
            os.ftruncate(fd, spec.size_mb * 1024 * 1024)
        finally:
            os.close(fd)
        try:
            run_command([*MKFS[spec.fstype], str(spec.image)], timeout_s=timeout_s)
        except CommandFailed as exc:
            spec.image.unlink()
            raise RamDiskError(f"mkfs {spec.fstype} on {spec.image} failed: {exc}") from exc
    else:  # an image a crash left, mounted again as it is: no wider than 0600 either
        paths.private_file(spec.image, create=False)
    spec.mountpoint.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = ["mount", "-t", spec.fstype, "-o", "loop,noatime", str(spec.image), str(spec.mountpoint)]
    try:
        run_command(argv, timeout_s=timeout_s, what="mount -o loop")
    except CommandFailed as exc:
        if made_image:
            spec.image.unlink()
        raise RamDiskError(f"loop-mounting {spec.image} failed: {exc}") from exc


def import_golden(spec: RamDiskSpec, source: Path, *, timeout_s: float = 600.0) -> Path:
    """Copy git repo `source` into the RAM disk as its golden master (a btrfs subvolume)."""
    if spec.golden.exists():
        raise RamDiskError(f"{spec.golden} exists already; destroy the RAM disk to replace it")
    if spec.fstype == "btrfs":
        _btrfs.create_subvolume(spec.golden)
    else:
        spec.golden.mkdir()
    try:
        run_command(["cp", "-a", "-T", str(source), str(spec.golden)], timeout_s=timeout_s)
    except CommandFailed as exc:
        if spec.fstype == "btrfs":
            _btrfs.delete_subvolume(spec.golden)
        else:
            shutil.rmtree(spec.golden)
        raise RamDiskError(f"importing golden master {source} failed: {exc}") from exc
    # The copy has new inodes and ctimes: refresh the index once here, or every workspace's
    # first `git status` re-reads every file. Then write it all out (see syncfs).
    refresh = ["git", "-C", str(spec.golden), "update-index", "-q", "--really-refresh"]
    try:
        run_command(refresh, timeout_s=timeout_s, what="git update-index --refresh")
    except CommandFailed as exc:
        raise RamDiskError(f"refreshing the golden master's index failed: {exc}") from exc
    _fsinfo.syncfs(spec.golden)
    return spec.golden


def destroy(spec: RamDiskSpec, *, force: bool = False, timeout_s: float = 30.0) -> dict[str, Any]:
    """Unmount everything in the RAM disk and the disk itself, free its loop device and RAM.

    A busy mount (a process has its cwd or a file inside) is refused unless `force`, which
    detaches it lazily: the kernel then frees it when the last user goes. Blocks at most
    `timeout_s` waiting for the loop device to go. Returns the status after teardown.
    """
    for entry in _fsinfo.mounts_under(spec.mountpoint):
        try:
            _fsinfo.unmount(entry.target, detach_if_busy=force)
        except OSError as exc:
            raise RamDiskError(
                f"cannot unmount {entry.target}: {exc.strerror} (files open inside? "
                "stop their processes or pass --force)"
            ) from exc
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while loop_devices_for(spec.image) and time.monotonic() < deadline:
        time.sleep(pause)  # autoclear frees the loop device as the last user lets go
        pause = min(pause * 2, 0.05)
    for device in loop_devices_for(spec.image):
        try:
            run_command(["losetup", "-d", device], timeout_s=timeout_s)
        except CommandFailed as exc:
            raise RamDiskError(f"loop device {device} still holds {spec.image}: {exc}") from exc
    with contextlib.suppress(FileNotFoundError):
        spec.image.unlink()
    with contextlib.suppress(FileNotFoundError, OSError):
        spec.mountpoint.rmdir()
    return status(spec)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m procs.workspaces.ramdisk", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=("create", "status", "destroy"))
    parser.add_argument("--name", default="factory")
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--fs", choices=tuple(MKFS), default="btrfs")
    parser.add_argument("--runtime-dir", help="default: $FACTORY_RUNTIME_DIR or /run/factory")
    parser.add_argument("--golden", type=Path, help="git repo to import as the golden master")
    parser.add_argument("--fresh", action="store_true", help="mkfs even if an image exists")
    parser.add_argument("--force", action="store_true", help="detach busy mounts lazily")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per command")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        spec = RamDiskSpec(
            name=args.name,
            size_mb=args.size_mb,
            fstype=args.fs,
            runtime_dir=paths.runtime_dir(args.runtime_dir),
        )
        if args.action == "create":
            result = create(spec, args.golden, fresh=args.fresh, timeout_s=args.timeout)
        elif args.action == "destroy":
            result = destroy(spec, force=args.force, timeout_s=args.timeout)
        else:
            result = status(spec)
    except (WorkspaceError, OSError) as exc:
        print(f"ramdisk {args.action}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
