"""Review of the ledger client (ipc/_ledger_client.py): each test is a bug found in
review, shown on a real SysV semaphore set and table."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import ledger
from ipc.ledger import LedgerOwner, Limits


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    ledger.destroy(tmp_path)


@pytest.mark.parametrize("bad", [1.0, True])
def test_a_count_is_checked_whether_or_not_an_equal_request_came_before(
    runtime: Path, bad: object
) -> None:
    """Requests are cached by `tuple(request.items())`, and 1.0 and True are equal (and
    hash equal) to 1: once {"gpu": 1} had been asked, {"gpu": 1.0} or {"gpu": True}
    found its plan and was granted, where a fresh handle refused it."""
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=2))
    with pytest.raises(ValueError, match=f"count for gpu must be a non-negative int, got {bad}"):
        led.acquire_nowait({"gpu": bad})  # type: ignore[dict-item]
    led.release(led.acquire_nowait({"gpu": 1}))
    with pytest.raises(ValueError, match=f"count for gpu must be a non-negative int, got {bad}"):
        led.acquire_nowait({"gpu": bad})  # type: ignore[dict-item]
    assert ledger.snapshot(runtime)["resources"]["gpu"]["in_use"] == 0


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"gpu": [1]}, r"count for gpu must be a non-negative int, got \[1\]"),
        ([("gpu", 1)], r"a request maps resource names to counts, got \[\('gpu', 1\)\]"),
    ],
)
def test_a_request_that_cannot_be_a_cache_key_is_refused_by_name(
    runtime: Path, request_: object, message: str
) -> None:
    """An unhashable count or a request that is no mapping raised TypeError
    ("unhashable type: 'list'") or AttributeError ("'list' object has no attribute
    'items'") from the cache lookup, naming neither the resource nor the value."""
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=2))
    with pytest.raises((ValueError, TypeError), match=message):
        led.acquire(request_, timeout=0)  # type: ignore[arg-type]


def test_a_handle_asked_many_different_amounts_stays_small(runtime: Path) -> None:
    """Every distinct request (a RAM amount in MB, say) added about 1 KB of cached
    plan to the handle for good: 20 MB after 20,000 amounts, growing as long as a
    long-lived process asks for new amounts. The cache is now bounded."""
    led = LedgerOwner.create(runtime, Limits(ram_budget_mb=64 * 30_000))
    led.release(led.acquire_nowait({"ram": 1}))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for mb in range(2, 20_002):
            led.release(led.acquire_nowait({"ram": mb}))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4_000_000, f"{grown / 1e6:.1f} MB kept for 20,000 different requests"
    assert ledger.snapshot(runtime)["resources"]["ram"]["in_use"] == 0
