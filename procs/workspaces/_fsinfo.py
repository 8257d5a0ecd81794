"""What a path's filesystem can do: its type, clone support, mounts, and mount(2) itself.

Everything here is a system call away (statfs, ioctl, mount, umount2, /proc reads);
nothing spawns a process, so a check costs microseconds and never blocks on a child.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

BTRFS_MAGIC = 0x9123683E
XFS_MAGIC = 0x58465342
TMPFS_MAGIC = 0x01021994
EXT4_MAGIC = 0xEF53
OVERLAYFS_MAGIC = 0x794C7630
FS_NAMES = {
    BTRFS_MAGIC: "btrfs",
    XFS_MAGIC: "xfs",
    TMPFS_MAGIC: "tmpfs",
    EXT4_MAGIC: "ext4",
    OVERLAYFS_MAGIC: "overlay",
}
FICLONE = 0x40049409  # _IOW(0x94, 9, int)
BTRFS_IOC_FS_INFO = 0x8400941F  # _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args), 1024 bytes
MNT_DETACH = 2
_CAP_SYS_ADMIN = 21

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_libc.syncfs.argtypes = [ctypes.c_int]


class MountError(OSError):
    """mount(2) or umount2(2) failed; the message names the target and the reason."""


def fs_magic(path: str | os.PathLike[str]) -> int:
    """statfs(2) f_type of `path` (the first field of struct statfs, a long)."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statfs {path}: {os.strerror(err)}")
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def syncfs(path: str | os.PathLike[str]) -> None:
    """Write out the dirty data of the filesystem holding `path` (syncfs(2)).

    Blocks until written (RAM-backed here: milliseconds to a few seconds for a fresh
    import). A btrfs snapshot flushes its source's dirty data first, so syncing after an
    import keeps that cost out of the first workspace's creation.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def fs_name(path: str | os.PathLike[str]) -> str:
    magic = fs_magic(path)
    return FS_NAMES.get(magic, f"0x{magic:x}")


def can_clone_in(directory: Path) -> bool:
    """Whether files in `directory` can be reflinked (FICLONE) within its filesystem.

    Probes with two empty temporary files that are removed again; tmpfs and ext4 say no.
    """
    with (
        tempfile.NamedTemporaryFile(dir=directory, prefix=".clone-probe-") as src,
        tempfile.NamedTemporaryFile(dir=directory, prefix=".clone-probe-") as dst,
    ):
        src.write(b"x")
        src.flush()
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.EXDEV, errno.ENOTTY):
                return False
            raise
    return True


@functools.cache
def has_sys_admin() -> bool:
    """Whether this process holds CAP_SYS_ADMIN (needed for mount and subvolume delete).

    Read once per process: capabilities do not change while a service runs."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    return False


@functools.cache
def kernel_has_fs(name: str) -> bool:
    """Whether /proc/filesystems lists `name` (overlay, btrfs, xfs)."""
    with open("/proc/filesystems", encoding="ascii") as f:
        return any(line.split()[-1] == name for line in f if line.strip())


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    target: Path
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[MountEntry]:
    """The mounts this process sees, in mount order."""
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) < 5 or len(rfields) < 2:
                continue
            target = Path(_unescape(fields[4]))
            entries.append(MountEntry(target, rfields[0], _unescape(rfields[1])))
    return entries


def is_mountpoint(path: Path) -> bool:
    return any(entry.target == path for entry in mounts())


def mounts_under(path: Path) -> list[MountEntry]:
    """Mounts at or below `path`, deepest first (the order to unmount them in)."""
    found = [m for m in mounts() if m.target == path or path in m.target.parents]
    return sorted(found, key=lambda m: len(m.target.parts), reverse=True)


def mount(source: str, target: Path, fstype: str, options: str, flags: int = 0) -> None:
    """mount(2) directly: about 0.1 ms, against ~4 ms for forking mount(8)."""
    rc = _libc.mount(
        os.fsencode(source), os.fsencode(target), fstype.encode(), flags, options.encode()
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def unmount(target: Path, *, detach_if_busy: bool = True) -> bool:
    """umount2(2) `target`; returns whether it had to detach lazily because it was busy.

    A lazy detach removes the mount from every namespace view at once; the kernel frees
    it when the last open file inside closes. Raises MountError for any other failure.
    """
    rc = _libc.umount2(os.fsencode(target), 0)
    if rc == 0:
        return False
    err = ctypes.get_errno()
    if err == errno.EBUSY and detach_if_busy:
        if _libc.umount2(os.fsencode(target), MNT_DETACH) == 0:
            return True
        err = ctypes.get_errno()
    raise MountError(err, f"unmount {target}: {os.strerror(err)}")


def same_filesystem(a: Path, b: Path) -> bool:
    """Whether `a` and `b` live on one filesystem (btrfs subvolumes count as one)."""
    magic = fs_magic(a)
    if magic != fs_magic(b):
        return False
    if magic == BTRFS_MAGIC:
        with contextlib.suppress(OSError):
            return btrfs_fsid(a) == btrfs_fsid(b)
        return False
    return os.stat(a).st_dev == os.stat(b).st_dev


def btrfs_fsid(path: Path) -> bytes:
    """The btrfs filesystem uuid of `path` (the same for every subvolume of one filesystem)."""
    buf = bytearray(1024)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, BTRFS_IOC_FS_INFO, buf)
    finally:
        os.close(fd)
    return bytes(buf[16:32])  # after __u64 max_id, __u64 num_devices
