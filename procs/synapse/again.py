"""Does a red golden need a new generation now? Pure.

    why = new_generation(golden_status, records, now, retry_red_s=..., max_generations=...)

The synapse asks this every --reconcile-s with golden's `status`, so a red is acted on
by its state, not only by its signal (level-triggered): a TestFailure lost while the bus
or the synapse restarted, a generation that failed (a peer down mid-bisection), one that
got no mutator (no free slot), or a swarm whose fixes were all lost (the merge queue
restarting, every mutator killed) all end in the same place, a red golden HEAD with no
live generation, and get another. Never a storm: `max_generations` in a row per red
commit, then one more each `retry_red_s` after the last started (a model or a machine
may be back). Never for a red that is not golden's verdict on HEAD itself (HEAD moved
and its suite has not said yet: the heartbeat will).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from procs.synapse.records import GenerationRecord


def new_generation(
    golden: Mapping[str, Any],
    records: Iterable[GenerationRecord],
    now: float,
    *,
    retry_red_s: float,
    max_generations: int,
) -> str | None:
    """Why a new generation for golden's HEAD starts now, or None. `golden` is golden's
    `status` ({hash, state, last_failure: {hash, ...}}); `now` is epoch seconds, as the
    records' `started_at`."""
    head = golden.get("hash")
    failure = golden.get("last_failure")
    if golden.get("state") != "red" or not isinstance(head, str):
        return None
    if not isinstance(failure, Mapping) or failure.get("hash") != head:
        return None  # not a verdict on HEAD
    tries = [r for r in records if r.context_hash == head]
    if any(r.live for r in tries):
        return None
    if not tries:
        return "golden is red and no generation was started for it"
    if len(tries) < max_generations:
        return f"golden is still red after {len(tries)} generation(s) ended without a fix"
    last = max(r.started_at for r in tries)
    if now - last >= retry_red_s:
        return (f"golden is still red {now - last:.0f} s after the last of "
                f"{len(tries)} generations: one more after the cool-down")  # fmt: skip
    return None
