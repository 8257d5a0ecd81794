"""Snapshots of a golden master taken ahead of time, so that creating a workspace is one
rename(2) instead of a btrfs transaction commit.

Each pooled snapshot is tagged with the golden master's change transid (ctransid) at the
time it was taken; it is handed out only while the golden's ctransid is still the same,
that is while the golden has not changed since. A snapshot taken while the golden was
changing (ctransid moved during it) is dropped. Layout: <root>/.pool/<source key>/<ctransid>-<n>.

`refill` is synchronous and bounded (at most `size` snapshots, ~1-2 ms each): the
service calls it between requests, tests and the bench call it directly.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path

from procs.workspaces import _btrfs


class SnapshotPool:
    """Up to `size` ready snapshots per golden master, under `root`/.pool."""

    def __init__(self, root: Path, size: int) -> None:
        self.dir = root / ".pool"
        self.size = size
        self.sources: set[Path] = set()
        self.hits = 0
        self.misses = 0

    def _dir_for(self, source: Path) -> Path:
        return self.dir / hashlib.sha256(os.fsencode(source)).hexdigest()[:16]

    def take(self, source: Path, dest: Path) -> bool:
        """Move a pooled, current snapshot of `source` to `dest`; False when none is."""
        self.sources.add(source)
        if self.size <= 0:
            return False
        pool = self._dir_for(source)
        try:
            tag = f"{_btrfs.change_transid(source)}-"
            entries = sorted(e for e in os.listdir(pool) if e.startswith(tag))
        except (FileNotFoundError, _btrfs.BtrfsError):
            entries = []
        for name in entries:
            try:
                os.rename(pool / name, dest)
            except FileNotFoundError:
                continue  # taken by another registry on the same root
            self.hits += 1
            return True
        self.misses += 1
        return False

    def refill(self) -> int:
        """Drop stale snapshots and top each known golden's pool up; returns how many made."""
        made = 0
        for source in sorted(self.sources):
            if not source.is_dir():
                self.sources.discard(source)
                self.drain(source)
                continue
            made += self._refill_one(source)
        return made

    def _refill_one(self, source: Path) -> int:
        pool = self._dir_for(source)
        pool.mkdir(parents=True, exist_ok=True)
        current = _btrfs.change_transid(source)
        fresh = 0
        for name in os.listdir(pool):
            if name.startswith(f"{current}-"):
                fresh += 1
            else:
                _delete(pool / name)
        made = 0
        while fresh + made < self.size:
            path = pool / f"{current}-{secrets.token_hex(4)}"
            _btrfs.snapshot(source, path)
            if _btrfs.change_transid(source) != current:  # changed while we took it
                _delete(path)
                break
            made += 1
        return made

    def drain(self, source: Path | None = None) -> None:
        """Delete the pooled snapshots of `source` (or of every golden)."""
        pools = [self._dir_for(source)] if source else list(self.dir.glob("*"))
        for pool in pools:
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(pool):
                    _delete(pool / name)
                pool.rmdir()

    def statistics(self) -> dict[str, int]:
        return {"pool_hits": self.hits, "pool_misses": self.misses, "pool_size": self.size}


def _delete(path: Path) -> None:
    try:
        _btrfs.delete_subvolume(path)
    except _btrfs.BtrfsError as exc:
        if exc.errno != errno.ENOENT:
            raise
