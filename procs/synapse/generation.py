"""A generation: one swarm of mutators against one red golden commit.

The synapse writes it once, as JSON, to <state>/synapse/generations/<id>.json before it
starts the generation's mutators; each mutator reads it (`--generation PATH`). Its
`group` is the merge queue's group for the generation's fixes: the first to land wins
and the queue rejects the others `stale`.

`swarm_size` (pure) decides how many mutators a generation gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from procs.synapse.prompt import Failure


@dataclass(frozen=True)
class Generation:
    id: str  # "<context hash[:12]>-<n>": unique per synapse state dir
    failure: Failure
    repo: str  # the golden repository (workspaces are made of it)
    test_command: tuple[str, ...]
    suite_timeout_s: float
    sandbox: str
    size: int  # mutators in the generation (their variants are 0..size-1)
    role: str = "mutator"  # the router's role for the fix requests

    @property
    def group(self) -> str:
        return f"synapse-{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "failure": self.failure.to_dict(), "repo": self.repo,
                "test_command": list(self.test_command), "suite_timeout_s": self.suite_timeout_s,
                "sandbox": self.sandbox, "size": self.size, "role": self.role}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Generation:
        return cls(str(raw["id"]), Failure.from_dict(raw["failure"]), str(raw["repo"]),
                   tuple(str(a) for a in raw["test_command"]), float(raw["suite_timeout_s"]),
                   str(raw["sandbox"]), int(raw["size"]),
                   str(raw.get("role", "mutator")))  # fmt: skip

    def write(self, directory: Path) -> Path:
        """Write atomically (temp file, fsync, rename); returns the path."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"{self.id}.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(self.to_dict()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: Path) -> Generation:
        """Raises OSError, ValueError (orjson.JSONDecodeError is one), KeyError."""
        return cls.from_dict(orjson.loads(path.read_bytes()))


def swarm_size(wanted: int, free_slots: int | None, free_ram_mb: int | None,
               ram_per_mutator_mb: int) -> int:  # fmt: skip
    """Mutators to start: `wanted`, no more than the ledger's free mutator slots and the
    RAM that is free for them (None: no limit known). Never negative."""
    n = wanted
    if free_slots is not None:
        n = min(n, free_slots)
    if free_ram_mb is not None and ram_per_mutator_mb > 0:
        n = min(n, free_ram_mb // ram_per_mutator_mb)
    return max(0, n)
