"""Adversarial review of the ledger: extreme timeouts, handles sharing a process."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import ledger
from ipc.ledger import RESOURCES, LedgerOwner, Limits, TicketLedger
from ipc.ledger import _semtimedop as sem
from ipc.ledger._types import SEM_BASE
from tests.waiting import wait_until


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    ledger.destroy(tmp_path)


@pytest.mark.parametrize("timeout", [1e19, sys.float_info.max])
def test_a_huge_finite_timeout_waits_like_forever(runtime: Path, timeout: float) -> None:
    owner = LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    held = owner.acquire_nowait({"gpu": 1})
    waiter = TicketLedger.open(runtime)
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(waiter.acquire({"gpu": 1}, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - hand any outcome back to the test
            outcome.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    gpu = SEM_BASE + RESOURCES.index("gpu")
    wait_until(
        lambda: sem.getncnt(owner.semid, gpu) == 1 or not thread.is_alive(),
        what="the waiter to block on the gpu semaphore",
    )
    owner.release(held)  # wakes the waiter if it waits; no effect if it failed already
    thread.join(timeout=10.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ledger.Ticket), outcome
    waiter.release(outcome[0])


def test_a_nan_timeout_is_refused_by_name(runtime: Path) -> None:
    owner = LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    held = owner.acquire_nowait({"gpu": 1})
    with pytest.raises(ValueError, match="timeout"):
        owner.acquire({"gpu": 1}, timeout=math.nan)
    owner.release(held)


def test_another_handle_of_the_holding_process_may_release(runtime: Path) -> None:
    owner = LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    other = TicketLedger.open(runtime)
    ticket = owner.acquire_nowait({"gpu": 1})
    assert other.release(ticket) is True
    assert ledger.snapshot(runtime)["resources"]["gpu"]["in_use"] == 0
    assert owner.release(ticket) is False  # and a second release stays a no-op
    again = owner.acquire_nowait({"gpu": 1})
    owner.release(again)


@pytest.mark.parametrize("count", [40_000, 65_537])
def test_a_count_beyond_a_semaphore_is_refused_not_wrapped(runtime: Path, count: int) -> None:
    owner = LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    with pytest.raises(ledger.ResourceError, match=f"asked {count}, limit is 1"):
        owner.acquire_nowait({"gpu": count})
    with pytest.raises(ledger.ResourceError, match=f"asked {count}, limit is 1"):
        owner.acquire({"gpu": count}, timeout=1.0)
    gpu = ledger.snapshot(runtime)["resources"]["gpu"]
    assert (gpu["in_use"], gpu["available"]) == (0, 1)


class _EmptiedByAnotherThread(list):  # type: ignore[type-arg]
    """A free list that another thread empties between the `if` and the pop()."""

    def __bool__(self) -> bool:
        return True


def test_a_free_list_emptied_by_another_thread_falls_back_to_a_new_lane(runtime: Path) -> None:
    # llm_router shares one TicketLedger between its worker threads.
    owner = LedgerOwner.create(runtime, Limits(gpu_tickets=2))
    led = TicketLedger.open(runtime)
    led.release(led.acquire_nowait({"gpu": 1}))  # the handle now has a lane of its own
    led._free = _EmptiedByAnotherThread()
    ticket = led.acquire_nowait({"gpu": 1})
    assert ledger.snapshot(runtime)["resources"]["gpu"]["in_use"] == 1
    assert led.release(ticket) is True
    owner.close()
