"""btrfs subvolumes through ioctls on directory fds: no subprocess, about 1 ms a snapshot.

Numbers and layouts follow linux/include/uapi/linux/btrfs.h (x86_64 and arm64 alike).
Every call here blocks for one kernel transaction at most; none of them takes a timeout
because none of them waits on anything but the filesystem itself.
"""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

from procs.workspaces._fsinfo import BTRFS_MAGIC, fs_magic

_VOL_ARGS_SIZE = 4096  # struct btrfs_ioctl_vol_args / _v2
_NAME_MAX = 255
_FIRST_FREE_OBJECTID = 256  # inode number of every subvolume's root directory

IOC_SUBVOL_CREATE = 0x5000940E  # _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
IOC_SNAP_DESTROY = 0x5000940F  # _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
IOC_SNAP_CREATE_V2 = 0x50009417  # _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
IOC_GET_SUBVOL_INFO = 0x81F8943C  # _IOR(0x94, 60, struct btrfs_ioctl_get_subvol_info_args)
_SUBVOL_INFO_SIZE = 504
_CTRANSID_OFFSET = 8 + 256 + 4 * 8 + 3 * 16  # after treeid, name, 4 u64, 3 uuids
SUBVOL_RDONLY = 1 << 1


class BtrfsError(OSError):
    """A btrfs ioctl failed; the message names the operation and the path."""


def _vol_args(name: str) -> bytearray:
    encoded = os.fsencode(name)
    if not encoded or len(encoded) > _NAME_MAX or b"/" in encoded or encoded in (b".", b".."):
        raise ValueError(f"bad subvolume name {name!r}")
    buf = bytearray(_VOL_ARGS_SIZE)
    buf[8 : 8 + len(encoded)] = encoded  # after __s64 fd
    return buf


def _ioctl(dir_path: Path, request: int, buf: bytearray, what: str) -> None:
    fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, request, buf)
    except OSError as exc:
        raise BtrfsError(exc.errno, f"{what}: {os.strerror(exc.errno or 0)}") from exc
    finally:
        os.close(fd)


def is_subvolume(path: Path) -> bool:
    """True when `path` is the root directory of a btrfs subvolume (or snapshot)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return st.st_ino == _FIRST_FREE_OBJECTID and fs_magic(path) == BTRFS_MAGIC


def change_transid(path: Path) -> int:
    """The transaction id of the last change inside subvolume `path` (its ctransid).

    Moves as soon as anything in the subvolume changes, before the change is committed;
    taking a snapshot of it does not move it. Raises BtrfsError (ENOTTY before Linux 4.18).
    """
    buf = bytearray(_SUBVOL_INFO_SIZE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, IOC_GET_SUBVOL_INFO, buf)
    except OSError as exc:
        raise BtrfsError(exc.errno, f"subvolume info of {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return int(struct.unpack_from("<Q", buf, _CTRANSID_OFFSET)[0])


def create_subvolume(path: Path) -> None:
    """Create an empty subvolume at `path` (its parent must exist on btrfs)."""
    _ioctl(path.parent, IOC_SUBVOL_CREATE, _vol_args(path.name), f"create subvolume {path}")


def snapshot(source: Path, dest: Path, *, readonly: bool = False) -> None:
    """Snapshot subvolume `source` as `dest` (same filesystem; `dest` must not exist)."""
    buf = bytearray(_VOL_ARGS_SIZE)
    encoded = os.fsencode(dest.name)
    if not encoded or len(encoded) > _NAME_MAX:
        raise ValueError(f"bad snapshot name {dest.name!r}")
    src_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # struct btrfs_ioctl_vol_args_v2: fd, transid, flags, union[32 bytes], name[4040]
        struct.pack_into("qQQ", buf, 0, src_fd, 0, SUBVOL_RDONLY if readonly else 0)
        buf[56 : 56 + len(encoded)] = encoded
        _ioctl(dest.parent, IOC_SNAP_CREATE_V2, buf, f"snapshot {source} -> {dest}")
    finally:
        os.close(src_fd)


def delete_subvolume(path: Path) -> None:
    """Delete subvolume `path`; the kernel frees its extents in the background.

    Raises BtrfsError (ENOENT when it is gone already, ENOTEMPTY when it holds nested
    subvolumes, EPERM without CAP_SYS_ADMIN or the user_subvol_rm_allowed mount option).
    """
    _ioctl(path.parent, IOC_SNAP_DESTROY, _vol_args(path.name), f"delete subvolume {path}")
