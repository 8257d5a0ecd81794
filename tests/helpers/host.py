"""Facts about this machine, read without calling the code under test.

Skips and expectations are decided from these (privileges from /proc/self/status, the
kernel's filesystems from /proc/filesystems, filesystem types from coreutils' `stat`,
reflink support from one FICLONE ioctl, tools from PATH), so a bug in our code can
neither turn a test into a skip nor change what the test expects of it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CAP_SYS_ADMIN = 21
FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
MKFS = {"btrfs": "mkfs.btrfs", "xfs": "mkfs.xfs"}


def cap_sys_admin() -> bool:
    """Whether this process holds CAP_SYS_ADMIN (CapEff in /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return False


def kernel_lists_fs(name: str) -> bool:
    """Whether /proc/filesystems lists `name` (overlay, btrfs, xfs, ...)."""
    with open("/proc/filesystems", encoding="ascii") as f:
        return any(line.split()[-1] == name for line in f if line.strip())


def fs_type(path: Path) -> str:
    """The type of the filesystem holding `path`, as `stat -f -c %T` names it
    ("ext2/ext3" for ext4, "tmpfs", "btrfs", "xfs", "overlayfs", ...)."""
    done = subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()


def can_reflink_in(directory: Path) -> bool:
    """Whether one FICLONE between two fresh files in `directory` succeeds."""
    with (
        tempfile.NamedTemporaryFile(dir=directory, prefix=".reflink-fact-") as src,
        tempfile.NamedTemporaryFile(dir=directory, prefix=".reflink-fact-") as dst,
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


def may_mount_overlay() -> bool:
    """Root may mount overlayfs here: CAP_SYS_ADMIN, and the kernel has overlay."""
    return cap_sys_admin() and kernel_lists_fs("overlay")


def expected_auto_strategy(source: Path) -> str:
    """What "auto" must pick for `source`, a plain git repo (no btrfs subvolume, no .jj)
    whose workspace root sits beside it on the same filesystem.

    auto's order is snapshot, overlay, reflink, jj, worktree, copy: a plain directory
    is no snapshot source and no jj repo, so overlay where root may mount it, else
    reflink where the filesystem clones, else a git worktree.
    """
    if may_mount_overlay():
        return "overlay"
    if fs_type(source) != "tmpfs" and can_reflink_in(source.parent):
        return "reflink"
    return "worktree"


def loop_mount_missing(fstype: str) -> str | None:
    """What this machine lacks to loop-mount a `fstype` RAM disk (a privilege or a
    tool), or None. Decided from facts only: never by trying our own mount code, whose
    failure must fail the tests, not skip them."""
    if os.geteuid() != 0:
        return f"loop mounts need root (running as uid {os.geteuid()})"
    if not cap_sys_admin():
        return "loop mounts need CAP_SYS_ADMIN (this root lacks it)"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control: this machine has no loop devices"
    for tool in (MKFS[fstype], "losetup"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    free = subprocess.run(
        ["losetup", "-f"], capture_output=True, text=True, timeout=10, check=False
    )
    if free.returncode != 0:
        return f"no free loop device (`losetup -f`: {free.stderr.strip()})"
    return None
