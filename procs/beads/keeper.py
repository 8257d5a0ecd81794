"""Claims, closes and failures: the store's compare-and-swap and the SQLite record, kept
in step (never two live loops on one bead).

    claim(bead, loop)   ledger.begin (refused if another loop holds it) -> the store's CAS,
                        read back -> ledger.confirm; on any refusal or error, ledger.abort
                        and the error goes to the caller (the store was not changed), unless
                        reading the bead shows our actor on it after all (then confirm)
    close(...)          only the live generation's loop; the store first, then the ledger
    fail(...)           the same; attempt n of max_attempts: open again, or blocked
    release(...)        a claim whose loop never ran: open again, no attempt counted
    settle()            at start: every `claiming` row a crash left is confirmed if the
                        store shows our actor on it, else aborted

The actor of loop L is `factory/L`: unique per loop, as beads' claims want.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from procs.beads.claims import Claim, ClaimLedger, StaleClaim
from procs.beads.edits import Refused
from procs.beads.jsonl import StoreError
from procs.beads.store import Backend, View

_LOOP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


class BadLoopId(ValueError):
    pass


def actor_of(loop_id: str) -> str:
    """`factory/LOOP`; raises BadLoopId for an id that would not be one token."""
    if not isinstance(loop_id, str) or not _LOOP_ID.fullmatch(loop_id):
        raise BadLoopId(f"loop_id must match {_LOOP_ID.pattern}, got {loop_id!r:.80}")
    return f"factory/{loop_id}"


class BeadKeeper:
    def __init__(self, backend: Backend, ledger: ClaimLedger, *, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.backend = backend
        self.ledger = ledger
        self.max_attempts = max_attempts
        self.counts = {"claimed": 0, "refused": 0, "closed": 0, "failed": 0, "released": 0}

    def read(self, *, listing: bool = True) -> View:
        return self.backend.read(listing=listing)

    def claim(self, bead_id: str, loop_id: str) -> Claim:
        """Claim `bead_id` for `loop_id`. Raises AlreadyClaimed, Refused, StoreError
        (ReadBackFailed, BdError), ClaimError."""
        actor = actor_of(loop_id)
        claim = self.ledger.begin(bead_id, loop_id, actor)
        if claim.state == "claimed":
            return claim  # this loop's claim already, asked again
        try:
            self.backend.claim(bead_id, actor)
        except (Refused, StoreError) as exc:
            if isinstance(exc, StoreError) and self._holds(bead_id, actor):
                # the write went through before the tool failed (a bd killed at its
                # timeout after committing): the store says it is ours, so it is
                self.counts["claimed"] += 1
                return self.ledger.confirm(bead_id, claim.generation)
            self.counts["refused"] += 1
            self.ledger.abort(bead_id, claim.generation, str(exc))
            raise
        self.counts["claimed"] += 1
        return self.ledger.confirm(bead_id, claim.generation)

    def _holds(self, bead_id: str, actor: str) -> bool:
        try:
            return self.backend.holder(bead_id) == ("in_progress", actor)
        except StoreError:
            return False

    def _live(self, bead_id: str, loop_id: str, generation: int | None) -> Claim:
        claim = self.ledger.live(bead_id)
        if claim is None or claim.loop_id != loop_id or claim.state != "claimed":
            who = "nobody" if claim is None else f"loop {claim.loop_id} ({claim.state})"
            raise StaleClaim(f"{bead_id} is not claimed by loop {loop_id}: held by {who}")
        if generation is not None and generation != claim.generation:
            raise StaleClaim(
                f"{bead_id}: generation {generation} is not the live one ({claim.generation})"
            )
        return claim

    def close(
        self,
        bead_id: str,
        loop_id: str,
        *,
        generation: int | None = None,
        reason: str = "done",
        stats: Mapping[str, Any] | None = None,
    ) -> Claim:
        claim = self._live(bead_id, loop_id, generation)
        self.backend.close(bead_id, claim.actor, reason, dict(stats or {}))
        self.counts["closed"] += 1
        return self.ledger.finish(bead_id, claim.generation, "closed", reason, stats)

    def fail(
        self, bead_id: str, loop_id: str, *, reason: str, generation: int | None = None
    ) -> tuple[Claim, str]:
        """Returns (the ended claim, the bead's new status: open or blocked)."""
        claim = self._live(bead_id, loop_id, generation)
        attempt = self.ledger.failures(bead_id) + 1
        self.backend.fail(bead_id, claim.actor, reason, attempt, self.max_attempts)
        self.counts["failed"] += 1
        status = "blocked" if attempt >= self.max_attempts else "open"
        return self.ledger.finish(bead_id, claim.generation, "failed", reason), status

    def release(
        self, bead_id: str, loop_id: str, *, reason: str = "", generation: int | None = None
    ) -> Claim:
        claim = self._live(bead_id, loop_id, generation)
        self.backend.release(bead_id, claim.actor)
        self.counts["released"] += 1
        return self.ledger.finish(bead_id, claim.generation, "released", reason)

    def settle(self) -> list[dict[str, Any]]:
        """Settle the `claiming` rows a crash left (see the module docstring). A store
        that cannot be read leaves them as they are (and says so): never a guess."""
        out = []
        for claim in self.ledger.pending():
            try:
                status, holder = self.backend.holder(claim.bead_id)
            except StoreError as exc:
                out.append({"bead_id": claim.bead_id, "action": "unsettled", "reason": str(exc)})
                continue
            if status == "in_progress" and holder == claim.actor:
                self.ledger.confirm(claim.bead_id, claim.generation)
                out.append({"bead_id": claim.bead_id, "action": "confirmed"})
            else:
                why = f"the store shows {status}/{holder or 'unassigned'}"
                self.ledger.abort(claim.bead_id, claim.generation, f"settled at start: {why}")
                out.append({"bead_id": claim.bead_id, "action": "aborted", "reason": why})
        return out

    def listing(self) -> dict[str, Any]:
        """Ready beads, live claims (with titles), blocked beads with reasons. A store
        that cannot be read gives `error` (and the claims, which SQLite still knows)."""
        claims = self.ledger.all_live()
        try:
            view: View | None = self.read()
            error = None
        except StoreError as exc:
            view, error = None, str(exc)
        records = view.records if view else {}
        blocked = []
        for v in [*view.held, *view.stuck] if view else ():
            deferred = any("deferred until" in r for r in v.reasons)
            if v.blocked or v.bead.status == "blocked" or deferred:
                blocked.append({**v.bead.summary(), "reasons": list(v.reasons)})
        return {
            "source": view.source if view else None,
            "error": error,
            "ready": [b.summary() for b in view.ready] if view else [],
            "claimed": [
                {**c.to_dict(), "title": str(records.get(c.bead_id, {}).get("title") or "")}
                for c in claims
            ],
            "blocked": blocked,
            "malformed_lines": view.malformed_lines if view else None,
            "malformed": view.malformed if view else [],
            "notes": view.notes if view else [],
        }

    def statistics(self) -> dict[str, Any]:
        return {**self.counts, "claims": self.ledger.statistics()}
