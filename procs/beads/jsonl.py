"""A beads JSONL export (`.beads/issues.jsonl`): read it, and change beads in it safely.

Reading keeps every line as its bytes. A line that is not JSON, not an object, or an
object without a string id is malformed: skipped, counted, reported with its line number,
and written back verbatim by every rewrite. Blank lines and records of another `_type`
stay too. When an id appears twice, the last line is the bead (and the first is named in
`duplicates`).

Writing (`JsonlFile.update`) changes one bead's line and no other byte of the file:
1. take an exclusive flock on the sibling lock file `<name>.lock` (writers that use it
   are serialised; the data file itself is replaced by rename, so it cannot carry the
   lock), waiting at most `lock_timeout_s`;
2. read the file afresh under the lock and compute the patch from that bead as it is now
   (compare-and-swap conditions are checked there);
3. write the new content to a temp file in the same directory, fsync it;
4. read the file once more: if someone changed it meanwhile without our lock (an editor,
   a script), start again from 2 on their content, so neither edit is lost (field-wise:
   their fields stay, ours are set), at most MAX_RETRIES times;
5. rename over the file (atomic), fsync the directory.
A crash leaves the old file or the new one, never a mix; at worst a `.<name>.*.tmp` file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from procs.beads._splice import DELETE, NotAnObjectLine, splice
from procs.beads.ready import Bead, NotABead, bead_from_record

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_RETRIES = 5

Patch = Mapping[str, Any]
"""key -> new value, or DELETE: the fields of one bead a write changes."""

__all__ = ["DELETE", "JsonlFile", "Line", "Patch", "Snapshot", "StoreError", "read_snapshot"]


class StoreError(Exception):
    """The store cannot be read or written; the message names the file and the reason.
    Never "no work": a caller reports it and changes nothing."""


class BeadMissing(StoreError):
    """No bead with that id in the store."""


class WriteConflict(StoreError):
    """The file kept changing under us (MAX_RETRIES times) or the lock stayed taken."""


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based
    raw: bytes  # without the newline, as read (a '\r' of CRLF included)
    record: dict[str, Any] | None  # None: blank or malformed
    error: str | None = None  # why it is malformed


@dataclass(frozen=True)
class Snapshot:
    """One reading of the file: its bytes, its lines, its beads."""

    path: Path
    data: bytes
    lines: tuple[Line, ...]
    beads: dict[str, Bead]
    records: dict[str, dict[str, Any]]  # id -> the raw record (the bead's last line)
    line_of: dict[str, int]  # id -> index into lines
    duplicates: tuple[str, ...] = ()
    malformed: tuple[Line, ...] = field(default=())

    @property
    def malformed_lines(self) -> int:
        return len(self.malformed)

    def malformed_report(self, limit: int = 20) -> list[dict[str, Any]]:
        """The first `limit` malformed lines: number, error, and the start of the text."""
        return [
            {"line": ln.number, "error": ln.error, "text": ln.raw[:80].decode("utf-8", "replace")}
            for ln in self.malformed[:limit]
        ]


def parse(path: Path, data: bytes) -> Snapshot:
    lines: list[Line] = []
    beads: dict[str, Bead] = {}
    records: dict[str, dict[str, Any]] = {}
    line_of: dict[str, int] = {}
    duplicates: list[str] = []
    malformed: list[Line] = []
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()  # the final newline ends the last line; it opens none
    for index, raw in enumerate(parts):
        if not raw.strip():
            lines.append(Line(index + 1, raw, None))
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            line = Line(index + 1, raw, None, f"not JSON: {exc}")
        else:
            try:
                bead = bead_from_record(record)
            except NotABead as exc:
                other_type = isinstance(record, dict) and record.get("_type", "issue") != "issue"
                line = Line(index + 1, raw, None, None if other_type else str(exc))
            else:
                line = Line(index + 1, raw, record)
                if bead.id in beads:
                    duplicates.append(bead.id)
                beads[bead.id] = bead
                records[bead.id] = record
                line_of[bead.id] = index
        lines.append(line)
        if line.error is not None:
            malformed.append(line)
    return Snapshot(
        path, data, tuple(lines), beads, records, line_of, tuple(duplicates), tuple(malformed)
    )


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise StoreError(f"{path}: {size} bytes, more than MAX_FILE_BYTES {MAX_FILE_BYTES}")
        return path.read_bytes()
    except IsADirectoryError:
        raise StoreError(f"{path}: is a directory, not a beads JSONL file") from None
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read and parse the file. Raises StoreError (missing, unreadable, too large)."""
    p = Path(path)
    return parse(p, _read_bytes(p))


def render(snapshot: Snapshot, index: int, new_raw: bytes) -> bytes:
    """The file's bytes with line `index` replaced by `new_raw`, every other byte kept."""
    start = sum(len(ln.raw) + 1 for ln in snapshot.lines[:index])
    end = start + len(snapshot.lines[index].raw)
    return snapshot.data[:start] + new_raw + snapshot.data[end:]


class JsonlFile:
    """The one writer of a beads JSONL file (see the module docstring for how)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout_s: float = 10.0,
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(os.path.realpath(path))  # a symlinked export: write its target
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout_s = lock_timeout_s
        self._before_rename = before_rename  # tests: an edit lands mid-write
        self.retries = 0  # rewrites started again because the file changed meanwhile
        self.writes = 0

    def snapshot(self) -> Snapshot:
        return read_snapshot(self.path)

    def update(
        self,
        bead_id: str,
        make_patch: Callable[[dict[str, Any]], Patch],
        *,
        check: Callable[[Snapshot], None] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Change bead `bead_id`: `make_patch(record)` gets its current record (read
        under the lock) and returns the fields to set; it may raise to refuse (the
        file is then untouched), and so may `check(snapshot)`, called first with the
        whole file as read under the lock. Returns (the record before, the record written).
        Blocks at most `lock_timeout_s` for the lock plus the write. Raises
        BeadMissing, WriteConflict, StoreError, or what `make_patch` raised."""
        with self._locked():
            for _attempt in range(MAX_RETRIES):
                snap = self.snapshot()
                index = snap.line_of.get(bead_id)
                if index is None:
                    raise BeadMissing(f"{self.path}: no bead {bead_id!r}")
                before = snap.records[bead_id]
                if check is not None:
                    check(snap)
                patch = make_patch(dict(before))
                try:
                    new_raw = splice(snap.lines[index].raw, patch)
                except NotAnObjectLine as exc:  # parsed by orjson, refused by json: odd
                    raise StoreError(f"{self.path}:{index + 1}: cannot rewrite: {exc}") from None
                if new_raw == snap.lines[index].raw:
                    return before, before
                if self._replace(snap, render(snap, index, new_raw)):
                    self.writes += 1
                    return before, orjson.loads(new_raw)
                self.retries += 1
        raise WriteConflict(
            f"{self.path}: changed under us {MAX_RETRIES} times while writing; nothing written"
        )

    def _replace(self, snap: Snapshot, new_data: bytes) -> bool:
        """Write `new_data` in place of the file if it still holds `snap.data`; False
        (nothing changed) if someone wrote it meanwhile."""
        directory = self.path.parent
        try:
            mode = self.path.stat().st_mode & 0o7777
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write beside it: {exc}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(new_data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            if self._before_rename is not None:
                self._before_rename()
            if _read_bytes(self.path) != snap.data:
                os.unlink(tmp)
                return False
            os.rename(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"{self.path}: write failed: {exc}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Any:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{self.lock_path}: cannot open the lock file: {exc}") from None
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            pause = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise StoreError(f"{self.lock_path}: flock: {exc}") from None
                if time.monotonic() >= deadline:
                    raise WriteConflict(
                        f"{self.lock_path}: still locked by another writer after "
                        f"{self.lock_timeout_s}s; nothing written"
                    )
                time.sleep(pause)  # flock has no timed wait; back off to 50 ms
                pause = min(pause * 2, 0.05)
            yield
        finally:
            os.close(fd)  # releases the lock
