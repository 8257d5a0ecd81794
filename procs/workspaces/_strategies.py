"""The six ways to make a workspace, each with the reason it cannot work where it cannot.

A strategy answers three questions: `unavailable(source, root, scratch)` (None, or why not
and what would work instead), `create(placement)` and `destroy(placement)`. `destroy` is
idempotent: it also cleans up what a create that crashed half-way left behind.

Costs measured on this machine (bench/workspace.py has the figures): snapshot and overlay
are constant time (one ioctl, one mount(2)); reflink, worktree and copy grow with the
number of files.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from procs.workspaces import _btrfs, _fsinfo, _lower
from procs.workspaces._commands import CommandFailed, run_command
from procs.workspaces._model import (
    StrategyChoice,
    StrategyFailed,
    StrategyUnavailable,
    overlay_safe,
)

RAMDISK_HINT = "python3 -m procs.workspaces.ramdisk create --golden REPO"


@dataclass(frozen=True)
class Placement:
    """Where one workspace goes: `path` inside the root, `scratch` for overlay layers."""

    source: Path
    path: Path
    scratch: Path

    @property
    def name(self) -> str:
        return self.path.name


class Strategy(Protocol):
    name: str
    why: str

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None: ...
    def create(self, p: Placement, *, timeout_s: float) -> None: ...
    def destroy(self, p: Placement, *, timeout_s: float) -> None: ...


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


class Snapshot:
    name = "snapshot"
    why = "the source is a btrfs subvolume on the root's filesystem: one ioctl, constant time"

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None:
        fs = _fsinfo.fs_name(source)
        if fs != "btrfs":
            return (
                f"source {source} is on {fs}, not btrfs; put the golden master in a btrfs "
                f"RAM disk ({RAMDISK_HINT}) or use overlay"
            )
        if not _btrfs.is_subvolume(source):
            return (
                f"source {source} is a plain directory on btrfs, not a subvolume; import it "
                f"as one ({RAMDISK_HINT}) or use overlay or reflink"
            )
        if not _fsinfo.same_filesystem(source, root):
            return (
                f"workspace root {root} is not on the source's btrfs filesystem; snapshots "
                "stay within one filesystem (use overlay)"
            )
        if not _fsinfo.has_sys_admin():
            return "deleting a snapshot needs CAP_SYS_ADMIN (root); use worktree or copy"
        return None

    def create(self, p: Placement, *, timeout_s: float) -> None:
        try:
            _btrfs.snapshot(p.source, p.path)
        except OSError as exc:
            raise StrategyFailed(str(exc)) from exc

    def destroy(self, p: Placement, *, timeout_s: float) -> None:
        if _btrfs.is_subvolume(p.path):
            try:
                _btrfs.delete_subvolume(p.path)
            except OSError as exc:
                raise StrategyFailed(str(exc)) from exc
        else:
            _remove_tree(p.path)


class Overlay:
    name = "overlay"
    why = (
        "overlayfs over a read-only export of the source's HEAD commit (shared by the "
        "workspaces on that commit), the upper layer on tmpfs: one mount(2) once exported"
    )

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None:
        if not _fsinfo.has_sys_admin():
            return "mounting overlayfs needs CAP_SYS_ADMIN (root); use worktree or copy"
        if not _fsinfo.kernel_has_fs("overlay"):
            return "this kernel has no overlayfs (modprobe overlay); use snapshot or reflink"
        for what, path in (("source", source), ("root", root), ("scratch dir", scratch)):
            if not overlay_safe(path):
                return f"{what} {path} contains ',', ':' or '\\', which overlayfs options reject"
        if not (source / ".git").exists():
            return f"source {source} has no .git to export its HEAD commit from; use jj or copy"
        return None

    def create(self, p: Placement, *, timeout_s: float) -> None:
        # The lower layer must never change under a live mount (overlayfs leaves that
        # undefined), and the source is a golden master that moves: so the lower layer is
        # an export of the commit the source is at now, never the source's work tree.
        try:
            commit = _lower.head_commit(p.source, timeout_s=timeout_s)
            upper, work = p.scratch / "upper", p.scratch / "work"
            upper.mkdir(parents=True)
            work.mkdir()
            _lower.hold(p.scratch, commit)  # before the export: destroy() releases it
            lower = _lower.export(p.source, commit, _lower.exports_dir(p.scratch),
                                  timeout_s=timeout_s)  # fmt: skip
            p.path.mkdir()
            _fsinfo.mount("overlay", p.path, "overlay",
                          f"lowerdir={lower},upperdir={upper},workdir={work}")  # fmt: skip
        except (OSError, CommandFailed) as exc:
            raise StrategyFailed(str(exc)) from exc

    def destroy(self, p: Placement, *, timeout_s: float) -> None:
        try:
            _fsinfo.unmount(p.path)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
                raise StrategyFailed(str(exc)) from exc
        with contextlib.suppress(FileNotFoundError):
            p.path.rmdir()
        held = _lower.held(p.scratch)
        _remove_tree(p.scratch)
        if held is not None:
            try:  # the source's commit now stays exported for the next workspace
                keep: str | None = _lower.head_commit(p.source, timeout_s=timeout_s)
            except CommandFailed:
                keep = None  # the source is gone or broken: keep nothing
            _lower.release(_lower.exports_dir(p.scratch), keep)


class Reflink:
    name = "reflink"
    why = "the source's filesystem clones files (FICLONE): no data copied, time grows with files"

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None:
        fs = _fsinfo.fs_name(source)
        if fs == "tmpfs":
            return "tmpfs cannot reflink; use overlay or a btrfs/XFS RAM disk"
        if not _fsinfo.same_filesystem(source, root):
            return (
                f"reflink clones only within one filesystem: source {source} and workspace "
                f"root {root} differ; use overlay, or a root on the source's filesystem"
            )
        if not _fsinfo.can_clone_in(root):
            return (
                f"{fs} at {source} cannot reflink; use overlay or a btrfs/XFS (reflink=1) RAM disk"
            )
        return None

    def create(self, p: Placement, *, timeout_s: float) -> None:
        argv = ["cp", "-a", "--reflink=always", "-T", str(p.source), str(p.path)]
        try:
            run_command(argv, timeout_s=timeout_s, what="cp --reflink")
        except CommandFailed as exc:
            raise StrategyFailed(str(exc)) from exc

    def destroy(self, p: Placement, *, timeout_s: float) -> None:
        _remove_tree(p.path)


class Copy:
    name = "copy"
    why = "a plain copy works anywhere, in time and space proportional to the repo"

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None:
        return None if shutil.which("cp") else "cp is not on PATH"

    def create(self, p: Placement, *, timeout_s: float) -> None:
        try:
            run_command(["cp", "-a", "-T", str(p.source), str(p.path)], timeout_s=timeout_s)
        except CommandFailed as exc:
            raise StrategyFailed(str(exc)) from exc

    def destroy(self, p: Placement, *, timeout_s: float) -> None:
        _remove_tree(p.path)


class Worktree:
    name = "worktree"
    why = "git worktree add: shares the object store, checks out every file"

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None:
        if not shutil.which("git"):
            return "git is not on PATH"
        if not (source / ".git").exists():
            return f"source {source} has no .git; use jj or copy"
        return None

    def create(self, p: Placement, *, timeout_s: float) -> None:
        argv = ["git", "-C", str(p.source), "worktree", "add", "--detach", str(p.path), "HEAD"]
        try:
            run_command(argv, timeout_s=timeout_s, what="git worktree add")
        except CommandFailed as exc:
            raise StrategyFailed(str(exc)) from exc

    def destroy(self, p: Placement, *, timeout_s: float) -> None:
        if p.source.is_dir():
            remove = ["git", "-C", str(p.source), "worktree", "remove", "--force", str(p.path)]
            with contextlib.suppress(CommandFailed):  # not registered (any more): prune below
                run_command(remove, timeout_s=timeout_s, what="git worktree remove")
        _remove_tree(p.path)
        if p.source.is_dir():
            prune = ["git", "-C", str(p.source), "worktree", "prune"]
            try:
                run_command(prune, timeout_s=timeout_s, what="git worktree prune")
            except CommandFailed as exc:
                raise StrategyFailed(str(exc)) from exc


class Jujutsu:
    name = "jj"
    why = "jj workspace add: a jj working copy sharing the repo's store"

    def unavailable(self, source: Path, root: Path, scratch: Path) -> str | None:
        if not shutil.which("jj"):
            return "jj (Jujutsu) is not on PATH; install it or use worktree"
        if not (source / ".jj").is_dir():
            return f"source {source} is not a jj repository (no .jj); use worktree"
        return None

    def create(self, p: Placement, *, timeout_s: float) -> None:
        script = 'cd "$1" && jj workspace add --name "$2" "$3"'
        argv = ["sh", "-c", script, "sh", str(p.source), p.name, str(p.path)]
        try:
            run_command(argv, timeout_s=timeout_s, what="jj workspace add")
        except CommandFailed as exc:
            raise StrategyFailed(str(exc)) from exc

    def destroy(self, p: Placement, *, timeout_s: float) -> None:
        if p.source.is_dir() and shutil.which("jj"):
            argv = ["sh", "-c", 'cd "$1" && jj workspace forget "$2"', "sh", str(p.source), p.name]
            with contextlib.suppress(CommandFailed):  # forgotten already
                run_command(argv, timeout_s=timeout_s, what="jj workspace forget")
        _remove_tree(p.path)


STRATEGY_IMPLS: dict[str, Strategy] = {
    s.name: s for s in (Snapshot(), Overlay(), Reflink(), Jujutsu(), Worktree(), Copy())
}
# auto's order: constant-time first. A snapshot goes before overlay (0.1 ms against ~1 ms)
# and shares nothing with the golden master, while an overlay's lower layer is an export
# of the golden's commit that the first workspace on each commit pays for (_lower).
AUTO_ORDER = ("snapshot", "overlay", "reflink", "jj", "worktree", "copy")


def choose(
    asked: str, source: Path, root: Path, scratch: Path, order: tuple[str, ...] = AUTO_ORDER
) -> StrategyChoice:
    """Resolve `asked` (a strategy name or "auto") to a usable strategy, with the reason.

    Raises StrategyUnavailable naming why the asked strategy cannot work and what would.
    """
    if asked != "auto":
        reason = STRATEGY_IMPLS[asked].unavailable(source, root, scratch)
        if reason is not None:
            raise StrategyUnavailable(f"{asked} cannot work here: {reason}")
        return StrategyChoice(asked, "asked for by name")
    skipped: list[tuple[str, str]] = []
    for name in order:
        impl = STRATEGY_IMPLS[name]
        reason = impl.unavailable(source, root, scratch)
        if reason is None:
            return StrategyChoice(name, impl.why, tuple(skipped))
        skipped.append((name, reason))
    raise StrategyUnavailable(
        "no strategy works here: " + "; ".join(f"{n}: {r}" for n, r in skipped)
    )


def unmount_inside(path: Path) -> None:
    """Unmount whatever is mounted below `path` (deepest first), before anything deletes
    the tree: rmtree and `git worktree remove` descend into mount points, so a directory
    bind-mounted into a workspace would lose its contents. `path` itself is the
    strategy's own business (overlay unmounts it). Raises MountError if one will not go."""
    for mount in _fsinfo.mounts_under(path):
        if mount.target != path:
            _fsinfo.unmount(mount.target)


def remove_leftovers(path: Path) -> None:
    """Remove a directory a failed create left, whatever it turned out to be."""
    with contextlib.suppress(OSError):
        _fsinfo.unmount(path)
    if _btrfs.is_subvolume(path):
        with contextlib.suppress(OSError):
            _btrfs.delete_subvolume(path)
    with contextlib.suppress(FileNotFoundError):
        _remove_tree(path)
