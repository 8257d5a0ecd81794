"""The gateway's tokens, bead budgets and usage per (bead, role), in SQLite (WAL).

A loop asks for a token naming its bead; the agent carries it as its API key. The loop
declares the role of each turn on the token (one agent process serves several roles one
turn at a time), so every call is counted against (bead, role). Only a SHA-256 digest of a
token is stored: the database (0600, in the state dir) never holds a usable key. Rows
survive a gateway restart, so a SIGKILL costs no count; a call cut short by the crash is
the only one not counted. Budgets are in tokens (input + output + cached) per bead; the
check happens before a call, so calls running at the same time may overshoot by their own
size, never more.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipc import paths

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gateway_beads (
        bead TEXT PRIMARY KEY, budget_tokens INTEGER)""",
    """CREATE TABLE IF NOT EXISTS gateway_tokens (
        digest TEXT PRIMARY KEY, bead TEXT NOT NULL, loop TEXT NOT NULL,
        role TEXT NOT NULL, issued_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS gateway_usage (
        bead TEXT NOT NULL, role TEXT NOT NULL, calls INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0, aborted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (bead, role))""",
)
NO_ROLE = "unassigned"
TOKEN_PREFIX = "fgw-"


class UnknownToken(LookupError):
    """The token was never issued here, or was revoked; the message says which."""


@dataclass(frozen=True)
class Grant:
    """What a valid token stands for: the bead, the loop that asked, the current role."""

    bead: str
    loop: str
    role: str


@dataclass(frozen=True)
class CallUsage:
    """Tokens of one upstream call as the upstream reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cached_tokens


def over_budget_message(bead: str, budget: int, used: int) -> str:
    return f"bead {bead} is over its budget of {budget} tokens (used {used})"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class GatewayStore:
    """Thread-safe (one connection under a lock); every call is one short transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths.private_sqlite(path)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self._db.execute(statement)

    def issue(
        self, bead: str, loop: str, *, role: str = NO_ROLE, budget_tokens: int | None = None
    ) -> str:
        """A new token for `bead`, asked by `loop`. A loop holds one live token: an
        earlier one of the same loop is revoked (the loop was restarted, SIGKILLed before
        it could revoke it; its agents died with it), so no key outlives its holder. A
        `budget_tokens` given replaces the bead's budget; None keeps the one it has (or
        none: no cap)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO gateway_beads (bead, budget_tokens) VALUES (?, ?) "
                "ON CONFLICT (bead) DO UPDATE SET budget_tokens = "
                "COALESCE(excluded.budget_tokens, budget_tokens)",
                (bead, budget_tokens),
            )
            self._db.execute(
                "UPDATE gateway_tokens SET revoked = 1 WHERE loop = ? AND revoked = 0", (loop,)
            )
            self._db.execute(
                "INSERT INTO gateway_tokens (digest, bead, loop, role, issued_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (_digest(token), bead, loop, role, time.time()),
            )
        return token

    def grant(self, token: str) -> Grant:
        """What `token` stands for now; raises UnknownToken."""
        with self._lock:
            row = self._db.execute(
                "SELECT bead, loop, role, revoked FROM gateway_tokens WHERE digest = ?",
                (_digest(token),),
            ).fetchone()
        if row is None:
            raise UnknownToken("the token was not issued by this gateway")
        if row[3]:
            raise UnknownToken(f"the token of bead {row[0]} was revoked")
        return Grant(bead=row[0], loop=row[1], role=row[2])

    def set_role(self, token: str, role: str) -> Grant:
        """Attribute the token's next calls to `role`; raises UnknownToken."""
        grant = self.grant(token)
        with self._lock:
            self._db.execute(
                "UPDATE gateway_tokens SET role = ? WHERE digest = ?", (role, _digest(token))
            )
        return Grant(bead=grant.bead, loop=grant.loop, role=role)

    def revoke(self, token: str) -> bool:
        """Refuse the token from now on; False when it was unknown or revoked already."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE gateway_tokens SET revoked = 1 WHERE digest = ? AND revoked = 0",
                (_digest(token),),
            )
        return cursor.rowcount == 1

    def record(self, grant: Grant, usage: CallUsage, *, aborted: bool = False) -> None:
        """Add one call to (bead, role): one UPSERT, atomic."""
        with self._lock:
            self._db.execute(
                """INSERT INTO gateway_usage (bead, role, calls, input_tokens, output_tokens,
                                              cached_tokens, aborted)
                VALUES (?, ?, 1, ?, ?, ?, ?)
                ON CONFLICT (bead, role) DO UPDATE SET calls = calls + 1,
                    input_tokens = input_tokens + excluded.input_tokens,
                    output_tokens = output_tokens + excluded.output_tokens,
                    cached_tokens = cached_tokens + excluded.cached_tokens,
                    aborted = aborted + excluded.aborted""",
                (
                    grant.bead,
                    grant.role,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_tokens,
                    int(aborted),
                ),
            )

    def over_budget(self, bead: str) -> str | None:
        """The refusal message when `bead` has used its budget or more, else None."""
        with self._lock:
            budget, used = self._budget_and_used(bead)
        if budget is not None and used >= budget:
            return over_budget_message(bead, budget, used)
        return None

    def _budget_and_used(self, bead: str) -> tuple[int | None, int]:
        row = self._db.execute(
            "SELECT budget_tokens FROM gateway_beads WHERE bead = ?", (bead,)
        ).fetchone()
        used = self._db.execute(
            "SELECT COALESCE(SUM(input_tokens + output_tokens + cached_tokens), 0) "
            "FROM gateway_usage WHERE bead = ?",
            (bead,),
        ).fetchone()[0]
        return (row[0] if row else None), int(used)

    def usage(self, bead: str) -> dict[str, Any]:
        """Counts per role, the budget, and `reason` (the refusal text) when over it."""
        with self._lock:
            budget, used = self._budget_and_used(bead)
            rows = self._db.execute(
                "SELECT role, calls, input_tokens, output_tokens, cached_tokens, aborted "
                "FROM gateway_usage WHERE bead = ? ORDER BY role",
                (bead,),
            ).fetchall()
        over = budget is not None and used >= budget
        reason = over_budget_message(bead, budget, used) if over and budget is not None else None
        return {
            "bead": bead,
            "budget_tokens": budget,
            "used_tokens": used,
            "over_budget": over,
            "reason": reason,
            "roles": {
                role: {
                    "calls": calls,
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "cached_tokens": cached,
                    "aborted": aborted,
                }
                for role, calls, tin, tout, cached, aborted in rows
            },
        }

    def statistics(self) -> dict[str, int]:
        with self._lock:
            tokens, beads = self._db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT bead) FROM gateway_tokens WHERE revoked = 0"
            ).fetchone()
        return {"live_tokens": tokens, "beads": beads}

    def close(self) -> None:
        with self._lock:
            self._db.close()
