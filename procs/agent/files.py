"""fs/read_text_file and fs/write_text_file, confined to the workspace and the role.

Writes go to a temporary file in the (resolved) target directory and are renamed over the
target, so a crash leaves the old file or the new one, never half of it, and a symlink
planted at the target is replaced rather than followed. Sizes are capped both ways.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from procs.agent.roles import PathRefused, RolePolicy, check_write, resolve_in_workspace

MAX_WRITE_BYTES = 1024 * 1024
MAX_READ_BYTES = 1024 * 1024


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
    size = target.real.stat().st_size
    if size > max_bytes and line is None and limit is None:
        raise FileTooLarge(
            f"{target.relative} is {size} bytes, over the {max_bytes}-byte read cap; "
            "ask for a window with line/limit"
        )
    lines: list[str] = []
    taken = 0
    with open(target.real, encoding="utf-8", newline="") as handle:
        for number, text in enumerate(handle, start=1):
            if line is not None and number < line:
                continue
            if limit is not None and len(lines) >= limit:
                break
            taken += len(text.encode())
            if taken > max_bytes:
                raise FileTooLarge(f"window of {target.relative} exceeds {max_bytes} bytes")
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
    if target.real.is_dir():
        raise IsADirectoryError(f"{target.relative} is a directory")
    target.real.parent.mkdir(parents=True, exist_ok=True)
    # The parent may have been swapped for a symlink since the check: re-check it.
    if target.real.parent.resolve() != target.real.parent:
        raise PathRefused(f"{target.relative.parent} changed into a symlink during the write")
    fd, tmp = tempfile.mkstemp(dir=target.real.parent, prefix=".factory-write-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        mode = target.real.stat().st_mode & 0o777 if target.real.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, target.real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target.real
