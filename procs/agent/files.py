"""fs/read_text_file and fs/write_text_file, confined to the workspace and the role.

Writes go to a temporary file in the (resolved) target directory and are renamed over the
target, so a crash leaves the old file or the new one, never half of it, and a symlink
planted at the target is replaced rather than followed. Both ways open the file through
directory fds walked down from the workspace with O_NOFOLLOW, so a symlink planted after
the check (the agent's shell racing us) is refused, not followed; reads refuse anything
but a regular file (a FIFO would block the client), and a file with more than one hard
link (its fstat's st_nlink, on the fd we read): a hard link inside the workspace can name
a file outside it, which no path check sees. A write never follows one: it renames a new
file over the link. Sizes are capped both ways, line
windows included: an over-long line is skipped in pieces, never held whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from procs.agent.roles import (
    PathRefused,
    RolePolicy,
    WorkspacePath,
    check_write,
    resolve_in_workspace,
)

MAX_WRITE_BYTES = 1024 * 1024
MAX_READ_BYTES = 1024 * 1024
_SKIP_CHARS = 64 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileTooLarge(ValueError):
    """Content over the size cap, in or out."""


def read_text_file(
    workspace: Path,
    raw_path: object,
    *,
    line: int | None = None,
    limit: int | None = None,
    max_bytes: int = MAX_READ_BYTES,
) -> str:
    """Return the file's text (from 1-based `line`, at most `limit` lines).

    Raises PathRefused, FileNotFoundError, IsADirectoryError, FileTooLarge (the file is
    bigger than `max_bytes` and no line window was asked), UnicodeDecodeError.
    """
    target = resolve_in_workspace(workspace, raw_path)
    if line is not None and line < 1:
        raise ValueError(f"line must be >= 1, got {line}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    fd = _open_file(target)
    with open(fd, encoding="utf-8", newline="") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes and line is None and limit is None:
            raise FileTooLarge(
                f"{target.relative} is {size} bytes, over the {max_bytes}-byte read cap; "
                "ask for a window with line/limit"
            )
        lines: list[str] = []
        taken = 0
        for number, text in enumerate(_lines(handle, max_bytes), start=1):
            if line is not None and number < line:
                continue
            if limit is not None and len(lines) >= limit:
                break
            taken += max_bytes + 1 if text is None else len(text.encode())
            if taken > max_bytes:
                raise FileTooLarge(f"window of {target.relative} exceeds {max_bytes} bytes")
            assert text is not None
            lines.append(text)
    return "".join(lines)


def write_text_file(
    policy: RolePolicy,
    workspace: Path,
    raw_path: object,
    content: object,
    *,
    max_bytes: int = MAX_WRITE_BYTES,
) -> Path:
    """Write `content` atomically where the role may; return the path written.

    Raises PathRefused (outside the workspace or the role's paths), FileTooLarge, TypeError.
    """
    if not isinstance(content, str):
        raise TypeError(f"content must be a string, got {type(content).__name__}")
    data = content.encode()
    if len(data) > max_bytes:
        raise FileTooLarge(f"content is {len(data)} bytes, over the {max_bytes}-byte write cap")
    target = check_write(policy, workspace, raw_path)
    name = target.relative.name
    dir_fd = _open_dir(target, create=True)
    tmp = f".factory-write-{secrets.token_hex(8)}"
    try:
        try:
            existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise IsADirectoryError(f"{target.relative} is a directory")
        mode = existing.st_mode & 0o777 if existing and stat.S_ISREG(existing.st_mode) else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(tmp, flags, 0o600, dir_fd=dir_fd), "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
    return target.real


def _open_dir(target: WorkspacePath, *, create: bool = False) -> int:
    """An fd on the directory holding `target`, walked down from the workspace one name at
    a time without following symlinks: `target` was checked with every symlink resolved, so
    a symlink met now was planted after the check (by the agent's own tools) and is refused
    rather than followed out of the workspace. `create` makes missing directories."""
    fd = os.open(target.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in target.relative.parts[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(part, fd):
                    raise PathRefused(
                        f"{target.relative}: {part!r} changed into a symlink after the check"
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(target: WorkspacePath) -> int:
    """A read fd on `target`, which must still be a regular file reached without symlinks,
    with one hard link.

    O_NONBLOCK: opening a FIFO (or a device) must not hang the client; they are refused.
    """
    dir_fd = _open_dir(target)
    name = target.relative.name
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP and _is_symlink(name, dir_fd):
            raise PathRefused(f"{target.relative} changed into a symlink after the check") from None
        raise
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"{target.relative} is a directory")
        raise PathRefused(f"{target.relative} is not a regular file")
    if info.st_nlink > 1:
        os.close(fd)
        raise PathRefused(
            f"{target.relative} has {info.st_nlink} hard links; another may be outside the "
            "workspace, so it is not read"
        )
    return fd


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _lines(handle: TextIO, cap: int) -> Iterator[str | None]:
    """The lines of `handle` (universal newlines, endings kept), never holding more than
    `cap` + 1 characters of one: a longer line is read in pieces and yielded as None."""
    cr_cut = False  # the last piece ended in a '\r' at the size limit: maybe half a '\r\n'
    while True:
        piece = handle.readline(cap + 1)
        if cr_cut and piece.startswith("\n"):
            piece = piece[1:]
            if not piece:
                cr_cut = False
                continue
        cr_cut = False
        if not piece:
            return
        if len(piece) <= cap:
            yield piece
            continue
        while not piece.endswith("\n"):  # skip the rest of the over-long line
            if piece.endswith("\r"):  # a '\n' right after it can only be its other half
                cr_cut = True
                break
            piece = handle.readline(_SKIP_CHARS)
            if not piece:
                break
        yield None
