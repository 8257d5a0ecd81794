"""Overlay lower layers that never change: one read-only export per commit, shared.

overlayfs leaves it undefined what a mount shows when its lower layer changes, and a
golden master's work tree changes whenever it advances. So an overlay workspace's lower
layer is an export of the commit its source was at when the workspace was made:

    <scratch>/.lower/<commit>/          a checkout of <commit> (`git clone --shared`:
                                        objects borrowed from the source, which only grows)
    <scratch>/<workspace>/lower         "<commit>": this workspace holds that export

Workspaces on one commit share its export; the hold files are the reference counts, so
the count survives a manager restart. An export no workspace holds is removed, except
the one of the commit the source is at now, kept for the next workspace: an export is
made once per commit (its cost grows with the file count), and every later overlay on
that commit is one mount(2). Exports are written beside their final name and renamed into
place, so a crash mid-export leaves no half export to be mounted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from procs.workspaces._commands import run_command

EXPORTS = ".lower"
HOLD = "lower"


def exports_dir(workspace_scratch: Path) -> Path:
    """Where the exports of the workspaces under `workspace_scratch`'s parent live."""
    return workspace_scratch.parent / EXPORTS


def head_commit(source: Path, *, timeout_s: float) -> str:
    """The commit `source`'s HEAD is at now. Raises CommandFailed."""
    out = run_command(["git", "-C", str(source), "rev-parse", "--verify", "HEAD^{commit}"],
                      timeout_s=timeout_s, what="git rev-parse HEAD")  # fmt: skip
    return out.strip()


def hold(workspace_scratch: Path, commit: str) -> None:
    """Record that the workspace with this scratch dir uses the export of `commit`."""
    (workspace_scratch / HOLD).write_text(commit + "\n")


def held(workspace_scratch: Path) -> str | None:
    """The commit whose export the workspace holds (None: none, or an older overlay)."""
    try:
        return (workspace_scratch / HOLD).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def holders(exports: Path, commit: str) -> int:
    """How many workspaces still hold the export of `commit`."""
    count = 0
    for entry in exports.parent.iterdir():
        if entry.name != EXPORTS and held(entry) == commit:
            count += 1
    return count


def export(source: Path, commit: str, exports: Path, *, timeout_s: float) -> Path:
    """The export of `commit` of git repo `source`, made if it is not there yet.

    Blocks up to `timeout_s` per git command. Raises CommandFailed or OSError; a failed
    export leaves nothing behind.
    """
    final = exports / commit
    if final.is_dir():
        return final
    exports.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = exports / f".{commit}.partial-{secrets.token_hex(4)}"
    try:
        run_command(["git", "clone", "-q", "--shared", "--no-checkout", str(source), str(partial)],
                    timeout_s=timeout_s, what="git clone --shared")  # fmt: skip
        run_command(["git", "-C", str(partial), "checkout", "-q", "--detach", commit],
                    timeout_s=timeout_s, what="git checkout")  # fmt: skip
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():  # not "made meanwhile by another registry"
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def release(exports: Path, keep: str | None) -> list[str]:
    """Remove every export no workspace holds, but `keep` (the source's commit now, for
    the next workspace). Returns the commits removed. Call after a hold is dropped."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(exports.iterdir()):
            commit = entry.name
            if commit.startswith(".") or commit == keep or holders(exports, commit) > 0:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(commit)
    with contextlib.suppress(OSError):
        exports.rmdir()  # the last export gone
    return removed
