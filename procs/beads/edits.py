"""What a claim, a close and a failure change in one bead record, as beads does it. Pure.

Each function takes the bead's record as it is now (read under the store's lock) and
returns a patch (field -> value, or DELETE), or raises Refused: the compare-and-swap
condition does not hold, and nothing is written.

- claim (beads' ClaimIssue): only while `status` is open and the bead is unassigned or
  already ours; sets status in_progress, assignee = actor, updated_at, and started_at if
  it had none. Claiming again what we hold in_progress is a no-op success. (The JSONL
  store also checks, under the same lock, that the bead is still ready.)
- close: only while we hold it (in_progress, assignee = actor); sets status closed,
  closed_at, close_reason (the completion stats in words) and metadata.factory (the stats).
- fail: only while we hold it; back to open and unassigned, or `blocked` once the bead
  has failed `max_attempts` times, with the reason as a comment either way.
- release: only while we hold it; back to open and unassigned, nothing else said (a
  claim whose loop never started).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from procs.beads._splice import DELETE

Patch = dict[str, Any]


class Refused(Exception):
    """The bead is not in the state the change needs; the message says what it is in."""

    def __init__(self, message: str, kind: str = "conflict") -> None:
        super().__init__(message)
        self.kind = kind


def stamp(now: datetime) -> str:
    """An RFC 3339 UTC time as beads writes it ('Z', up to microseconds)."""
    return now.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _holder(record: Mapping[str, Any]) -> str:
    return str(record.get("assignee") or "")


def claim(record: Mapping[str, Any], actor: str, now: datetime) -> Patch:
    status, holder = record.get("status") or "open", _holder(record)
    if status == "in_progress" and holder == actor:
        return {}
    if status != "open":
        raise Refused(f"{record.get('id')} is {status}, not open")
    if holder and holder != actor:
        raise Refused(f"{record.get('id')} is assigned to {holder}")
    patch: Patch = {"status": "in_progress", "assignee": actor, "updated_at": stamp(now)}
    if not record.get("started_at"):
        patch["started_at"] = stamp(now)
    return patch


def _check_held(record: Mapping[str, Any], actor: str) -> None:
    status, holder = record.get("status"), _holder(record)
    if status != "in_progress" or holder != actor:
        raise Refused(
            f"{record.get('id')} is {status} and assigned to {holder or 'nobody'}, "
            f"not held by {actor}"
        )


def describe_stats(stats: Mapping[str, Any]) -> str:
    """The completion stats in words, in the order given: 'commits 3, reverts 1'."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items())


def close(
    record: Mapping[str, Any], actor: str, reason: str, stats: Mapping[str, Any], now: datetime
) -> Patch:
    _check_held(record, actor)
    text = reason if not stats else f"{reason} ({describe_stats(stats)})"
    meta = _metadata(record.get("metadata"))
    meta["factory"] = {"closed_by": actor, **stats}
    return {
        "status": "closed",
        "closed_at": stamp(now),
        "close_reason": text,
        "updated_at": stamp(now),
        "metadata": _metadata_like(record.get("metadata"), meta),
    }


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"previous": value}
        return dict(parsed) if isinstance(parsed, Mapping) else {"previous": parsed}
    return {}


def _metadata_like(original: Any, meta: dict[str, Any]) -> Any:
    """Metadata back in the form it came in (beads exports issue metadata as an object;
    a string stays a string)."""
    return orjson.dumps(meta).decode() if isinstance(original, str) else meta


def comment(record: Mapping[str, Any], actor: str, text: str, now: datetime) -> Patch:
    """A comment appended to the bead's `comments` (and `comment_count` kept true)."""
    comments = list(record.get("comments") or [])
    bead_id = str(record.get("id"))
    comments.append(
        {
            "id": f"factory-{len(comments) + 1}-{int(now.timestamp() * 1000)}",
            "issue_id": bead_id,
            "author": actor,
            "text": text,
            "created_at": stamp(now),
        }
    )
    patch: Patch = {"comments": comments}
    if isinstance(record.get("comment_count"), int):
        patch["comment_count"] = record["comment_count"] + 1
    return patch


def fail(
    record: Mapping[str, Any],
    actor: str,
    reason: str,
    now: datetime,
    *,
    attempt: int,
    max_attempts: int,
) -> Patch:
    """Attempt `attempt` (1-based) failed: open again, or blocked at `max_attempts`."""
    _check_held(record, actor)
    block = attempt >= max_attempts
    text = f"factory: attempt {attempt} of {max_attempts} failed: {reason}" + (
        "; blocked after the last attempt" if block else ""
    )
    return {
        "status": "blocked" if block else "open",
        "assignee": DELETE,
        "updated_at": stamp(now),
        **comment(record, actor, text, now),
    }


def release(record: Mapping[str, Any], actor: str, now: datetime) -> Patch:
    _check_held(record, actor)
    return {"status": "open", "assignee": DELETE, "updated_at": stamp(now)}
