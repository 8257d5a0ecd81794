"""The golden repository on the RAM disk (--ramdisk): a btrfs subvolume, so every
workspace of golden is a snapshot (constant time) instead of a copy or a worktree.

The workspace manager owns the RAM disk (it mounts it, and its workspaces live there);
the golden master owns the golden subvolume in it. At start, before READY=1, the golden
master asks the manager over its control socket to provision the RAM disk (idempotent:
a restart finds it mounted) and to seed the golden from the configured repository (the
seed) when the RAM disk has no golden yet; from then on the golden master works on the
RAM disk's copy alone, the only writer of its branch. The seed is not written: commits
that land live in RAM until pushed (--upstream with --push keeps them).

    ramdisk_golden(runtime, seed, timeout_s=...) -> RamDiskGolden(path, fstype, status)

Blocks up to `timeout_s` (the seed's copy into RAM). Raises RamDiskUnavailable with the
manager's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipc import control, paths

MANAGER = "workspace_manager"


class RamDiskUnavailable(Exception):
    """The RAM disk golden could not be had; the message says why and what to do."""


@dataclass(frozen=True)
class RamDiskGolden:
    """The golden's path on the RAM disk, its filesystem, and the manager's status."""

    path: Path
    fstype: str
    status: dict[str, Any]

    @property
    def snapshots(self) -> bool:
        """Whether workspaces of it are btrfs snapshots (XFS gives reflinks)."""
        return self.fstype == "btrfs"


def ramdisk_golden(runtime: Path, seed: Path, *, timeout_s: float) -> RamDiskGolden:
    """Provision the manager's RAM disk and its golden (seeded from `seed` if absent)."""
    socket = paths.control_socket(runtime, MANAGER)
    if not socket.exists():
        raise RamDiskUnavailable(
            f"--ramdisk needs the workspace manager ({socket} is missing): start "
            "procs.workspaces.service (with --ramdisk) before the golden master"
        )
    try:
        manager = control.call(socket, "status", {}, timeout=min(timeout_s, 30.0))
    except control.ControlError as exc:
        raise RamDiskUnavailable(f"the workspace manager's status: {exc}") from None
    if not isinstance(manager, dict) or not manager.get("ramdisk"):
        raise RamDiskUnavailable(
            "--ramdisk needs the workspace manager started with --ramdisk: its workspaces "
            f"are at {manager.get('root') if isinstance(manager, dict) else '?'}, off the RAM "
            "disk, where they cannot be snapshots of golden"
        )
    try:
        reply = control.call(socket, "ramdisk.create", {"golden": str(seed)}, timeout=timeout_s)
    except control.ControlError as exc:
        raise RamDiskUnavailable(f"the workspace manager's ramdisk.create: {exc}") from None
    golden = reply.get("golden") if isinstance(reply, dict) else None
    if not isinstance(golden, str) or not reply.get("mounted"):
        raise RamDiskUnavailable(f"the RAM disk has no golden after ramdisk.create: {reply!r:.300}")
    return RamDiskGolden(Path(golden), str(reply.get("fstype") or ""), reply)
