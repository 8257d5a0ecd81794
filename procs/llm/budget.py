"""Token and cost accounting per role and endpoint, per UTC day, in SQLite (WAL).

The table lives in the state directory (llm_usage.sqlite) so the spend survives a router
restart; every router process writes to it (busy timeout 5 s). The budget check happens
before a call: a call is admitted while the day's spend is below the budget, so calls
running at the same time may overshoot it by their own cost, never more.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ipc import paths
from procs.llm.errors import BudgetExceeded
from procs.llm.types import Usage

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_usage (
    day TEXT NOT NULL,
    role TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, role, endpoint)
)
"""


def utc_today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens; local endpoints cost 0 but their tokens still count."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_mtok + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


@dataclass(frozen=True)
class DailyBudget:
    """`total_usd` caps all roles together, `per_role_usd` single roles; None = no cap."""

    total_usd: float | None = None
    per_role_usd: dict[str, float] = field(default_factory=dict)


class BudgetStore:
    """Spend ledger over one SQLite file; `today` is injectable so tests can change day."""

    def __init__(
        self, path: Path, budget: DailyBudget, *, today: Callable[[], str] = utc_today
    ) -> None:
        self.path = path
        self.budget = budget
        self._today = today
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        paths.private_sqlite(path)  # 0600 whatever the umask
        # One connection shared by the router's handler threads, serialised by a lock.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def check(self, role: str) -> None:
        """Raise BudgetExceeded when today's spend has reached the role's or the total cap."""
        day = self._today()
        cap = self.budget.per_role_usd.get(role)
        if cap is not None:
            spent = self.spent_usd(day=day, role=role)
            if spent >= cap:
                raise BudgetExceeded(
                    f"role {role!r} spent ${spent:.4f} of its ${cap:.4f} daily budget on {day}"
                )
        if self.budget.total_usd is not None:
            spent = self.spent_usd(day=day)
            if spent >= self.budget.total_usd:
                raise BudgetExceeded(
                    f"all roles spent ${spent:.4f} of the ${self.budget.total_usd:.4f} "
                    f"daily budget on {day}"
                )

    def record(self, role: str, endpoint: str, usage: Usage, cost_usd: float) -> None:
        """Add one call's tokens and cost to today's row (one UPSERT, atomic)."""
        with self._lock:
            self._execute_record(role, endpoint, usage, cost_usd)

    def _execute_record(self, role: str, endpoint: str, usage: Usage, cost_usd: float) -> None:
        self._db.execute(
            """
            INSERT INTO llm_usage (day, role, endpoint, calls, input_tokens, output_tokens,
                                   cost_usd)
            VALUES (?, ?, ?, 1, ?, ?, ?)
            ON CONFLICT (day, role, endpoint) DO UPDATE SET
                calls = calls + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cost_usd = cost_usd + excluded.cost_usd
            """,
            (self._today(), role, endpoint, usage.input_tokens, usage.output_tokens, cost_usd),
        )

    def spent_usd(self, *, day: str | None = None, role: str | None = None) -> float:
        query = "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_usage WHERE day = ?"
        params: list[str] = [day or self._today()]
        if role is not None:
            query += " AND role = ?"
            params.append(role)
        with self._lock:
            return float(self._db.execute(query, params).fetchone()[0])

    def usage_by_role(self, *, day: str | None = None) -> dict[str, dict[str, float]]:
        with self._lock:
            rows = self._select_by_role(day)
        return {
            role: {"calls": calls, "input_tokens": tin, "output_tokens": tout, "cost_usd": cost}
            for role, calls, tin, tout, cost in rows
        }

    def _select_by_role(self, day: str | None) -> list[tuple[str, int, int, int, float]]:
        return self._db.execute(
            """
            SELECT role, SUM(calls), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd)
            FROM llm_usage WHERE day = ? GROUP BY role ORDER BY role
            """,
            (day or self._today(),),
        ).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
