"""The SysV ledger with real processes: SIGKILLed holders, waiters, readers, restarts."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ipc import ledger
from ipc.ledger import RESOURCES, LedgerOwner, Limits, TicketLedger
from ipc.ledger import _semtimedop as sem
from ipc.ledger._types import SEM_BASE
from tests.helpers.processes import ROOT
from tests.waiting import wait_gone, wait_until

HOLDER = """
import sys
from ipc.ledger import TicketLedger
led = TicketLedger.open(sys.argv[1])
ticket = led.acquire({%s}, label=sys.argv[2], timeout=30.0)
print("held", flush=True)
sys.stdin.read()  # hold until killed (or stdin closes)
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        for stream in (p.stdin, p.stdout):
            if stream:
                stream.close()


def spawn_holder(
    procs: list[subprocess.Popen[str]], runtime: Path, request: str, label: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER % request), str(runtime), label],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    procs.append(proc)
    return proc


def read_line(proc: subprocess.Popen[str]) -> str:
    """One line from a child; the child has a bounded acquire, and pytest-timeout backs it."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_acquire_release_and_double_release_is_a_no_op(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=1, max_loops=2))
    ticket = led.acquire({"gpu": 1, "loop": 1}, label="loop-1", timeout=1.0)
    snap = ledger.snapshot(runtime)
    assert snap["resources"]["gpu"]["in_use"] == 1
    assert snap["resources"]["loop"] == {**snap["resources"]["loop"], "in_use": 1, "limit": 2}
    assert [(h["pid"], h["label"], h["alive"]) for h in snap["holders"]] == [
        (os.getpid(), "loop-1", True)
    ]
    assert led.release(ticket) is True
    assert led.release(ticket) is False
    snap = ledger.snapshot(runtime)
    assert snap["resources"]["gpu"]["in_use"] == 0
    assert snap["resources"]["loop"]["in_use"] == 0
    assert snap["holders"] == []


def test_nowait_raises_would_block_naming_the_resource(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=1, max_mutators=3))
    held = led.acquire_nowait({"gpu": 1})
    with pytest.raises(ledger.WouldBlock) as info:
        led.acquire_nowait({"gpu": 1, "mutator": 1})
    assert (info.value.resource, info.value.current, info.value.limit) == ("gpu", 1, 1)
    # atomic: the mutator unit of the refused request was not taken
    assert ledger.snapshot(runtime)["resources"]["mutator"]["in_use"] == 0
    with pytest.raises(ledger.AcquireTimeout):
        led.acquire({"gpu": 1}, timeout=0.05)
    led.release(held)
    led.release(led.acquire({"gpu": 1}, timeout=0.05))


def test_requests_are_checked(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=1, ram_budget_mb=1024))
    with pytest.raises(ValueError, match="unknown resource"):
        led.acquire_nowait({"tpu": 1})
    with pytest.raises(ValueError, match="non-negative int"):
        led.acquire_nowait({"gpu": -1})
    with pytest.raises(ValueError, match="at least one unit"):
        led.acquire_nowait({})
    with pytest.raises(TypeError, match="exactly one of timeout= or deadline="):
        led.acquire({"gpu": 1})
    with pytest.raises(ledger.ResourceError, match="asked 2, limit is 1"):
        led.acquire({"gpu": 2}, timeout=10.0)
    with pytest.raises(ValueError, match="max_loops must be a non-negative int"):
        Limits(max_loops=-1)
    ram = led.acquire_nowait({"ram": 100})  # rounds up to two 64 MB units
    assert ledger.snapshot(runtime)["resources"]["ram"]["in_use"] == 128
    led.release(ram)


def test_missing_ledger_is_named(tmp_path: Path) -> None:
    with pytest.raises(ledger.LedgerMissing, match="no ledger"):
        TicketLedger.open(tmp_path)
    with pytest.raises(ledger.LedgerMissing):
        ledger.snapshot(tmp_path)


def test_a_removed_ledger_is_named_on_every_take(runtime: Path) -> None:
    owner = LedgerOwner.create(runtime, Limits(gpu_tickets=1, max_mutators=1))
    client = TicketLedger.open(runtime)
    held = client.request_mutator_slot(label="m")
    owner.destroy()  # as a governor that goes away, or `ipcrm`
    with pytest.raises(ledger.LedgerRemoved, match="removed"):
        client.acquire_nowait({"gpu": 1})
    with pytest.raises(ledger.LedgerRemoved, match="removed"):
        client.acquire({"gpu": 1}, timeout=0.5)
    with pytest.raises(ledger.LedgerRemoved, match="removed"):
        client.request_mutator_slot(label="m2")
    assert client.release(held) is False  # nothing left to give back to


def test_only_the_holder_may_release(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    ticket = led.acquire_nowait({"gpu": 1})
    with pytest.raises(ledger.NotHolder):
        led.release(ticket._replace(pid=ticket.pid + 1))
    assert led.release(ticket)


@pytest.mark.integration
def test_ticket_of_a_sigkilled_holder_comes_back(runtime: Path, children: list) -> None:
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    holder = spawn_holder(children, runtime, '"gpu": 1', "doomed")
    assert read_line(holder) == "held"
    with pytest.raises(ledger.WouldBlock):
        led.acquire_nowait({"gpu": 1})
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    # the kernel undid the dead holder's semaphore ops at exit: the ticket is free now
    snap = ledger.snapshot(runtime)
    assert snap["resources"]["gpu"]["in_use"] == 0
    assert [(h["label"], h["alive"]) for h in snap["holders"]] == [("doomed", False)]
    assert snap["stale"] == 1  # its table entry is stale until its lane is reclaimed
    assert led.sweep_stale() == 1
    assert ledger.snapshot(runtime)["holders"] == []
    ticket = led.acquire_nowait({"gpu": 1}, label="next")
    assert [h["label"] for h in ledger.snapshot(runtime)["holders"]] == ["next"]
    led.release(ticket)


@pytest.mark.integration
def test_waiter_gets_the_ticket_when_the_holder_dies(runtime: Path, children: list) -> None:
    LedgerOwner.create(runtime, Limits(gpu_tickets=1))
    holder = spawn_holder(children, runtime, '"gpu": 1', "first")
    assert read_line(holder) == "held"
    waiter = spawn_holder(children, runtime, '"gpu": 1', "second")
    wait_until(
        lambda: ledger.snapshot(runtime)["resources"]["gpu"]["waiting"] == 1,
        what="the waiter to block on the gpu semaphore",
    )
    os.killpg(holder.pid, signal.SIGKILL)
    assert read_line(waiter) == "held"
    wait_gone(holder.pid)  # the kernel frees the semaphores before the pid turns zombie
    labels = {h["label"]: h["alive"] for h in ledger.snapshot(runtime)["holders"]}
    # the dead holder's entry is stale, or already reclaimed by the waiter's lane claim
    assert labels in ({"first": False, "second": True}, {"second": True})


@pytest.mark.integration
def test_status_reader_in_another_process_does_not_destroy_the_table(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(max_loops=2))
    ticket = led.acquire_nowait({"loop": 1}, label="kept")
    code = (
        "import sys, json; from ipc import ledger; print(json.dumps(ledger.snapshot(sys.argv[1])))"
    )
    for _ in range(2):  # a reader that exits must leave the table in place
        out = subprocess.run(
            [sys.executable, "-c", code, str(runtime)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert '"label": "kept"' in out
    assert Path(ledger.snapshot(runtime)["path"]).exists()
    assert led.release(ticket)


def test_a_restarted_governor_keeps_held_tickets(runtime: Path) -> None:
    first = LedgerOwner.create(runtime, Limits(gpu_tickets=2, max_loops=1))
    ticket = first.acquire_nowait({"gpu": 2})
    again = LedgerOwner.create(runtime, Limits(gpu_tickets=3, max_loops=1))
    assert again.semid == first.semid
    gpu = ledger.snapshot(runtime)["resources"]["gpu"]
    assert (gpu["limit"], gpu["in_use"], gpu["available"]) == (3, 2, 1)
    # a decrease below what is held waits; the limit stays until it can apply
    assert again.adjust_limits(Limits(gpu_tickets=1, max_loops=1)) == ["gpu"]
    assert first.release(ticket)
    assert again.adjust_limits(Limits(gpu_tickets=1, max_loops=1)) == []
    assert ledger.snapshot(runtime)["resources"]["gpu"]["limit"] == 1


def test_refusals_are_recorded_and_wake_the_governor(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(max_mutators=1))
    assert led.wait_exhaustion(timeout=0) is False
    held = led.request_mutator_slot(label="m1")
    with pytest.raises(ledger.ResourceError) as info:
        led.request_mutator_slot(label="m2")
    assert info.value.resource == "mutator"
    assert led.wait_exhaustion(timeout=5.0) is True
    record = led.records()["mutator"]
    assert (record.exhausted, record.last_current, record.limit) == (1, 1, 1)
    led.release_slot(held)


def test_low_free_ram_refuses_spawns(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(max_loops=4, min_free_ram_mb=10**9))
    with pytest.raises(ledger.ResourceError) as info:
        led.request_loop_slot()
    assert info.value.resource == "free_ram"
    assert info.value.limit == 10**9
    assert led.records()["free_ram"].exhausted == 1


def test_free_ram_is_memavailable_as_psutil_reports_it() -> None:
    ours = ledger.check_free_ram()
    theirs = psutil.virtual_memory()
    assert 0 < ours <= theirs.total // 2**20
    # read moments apart on a shared box: within 5% of total RAM
    assert abs(ours - theirs.available // 2**20) <= theirs.total // 2**20 // 20


@pytest.mark.integration
def test_a_forked_child_owns_nothing_of_its_parent(runtime: Path) -> None:
    led = LedgerOwner.create(runtime, Limits(gpu_tickets=2))
    parent_ticket = led.acquire_nowait({"gpu": 1}, label="parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without pytest's teardown, whatever happens
        code = 1
        try:
            try:
                led.release(parent_ticket)
                verdict = b"released"
            except ledger.NotHolder:
                mine = led.acquire_nowait({"gpu": 1}, label="child")
                verdict = b"own-" + str(mine.slot != parent_ticket.slot).encode()
            os.write(write, verdict)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    verdict = os.read(read, 100)
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    assert verdict == b"own-True"  # NotHolder, and the child got a slot in its own lane
    # the child exited: the kernel undid its ticket; the parent's is still held
    assert ledger.snapshot(runtime)["resources"]["gpu"]["in_use"] == 1
    assert led.release(parent_ticket)


def test_memavailable_is_not_trusted_past_memtotal_or_when_missing() -> None:
    from ipc.ledger._types import available_mb

    meminfo = b"MemTotal:       16384000 kB\nMemFree:  100 kB\nMemAvailable:    8192000 kB\n"
    assert available_mb(meminfo) == 8000
    assert available_mb(meminfo.replace(b"8192000", b"99999999")) is None  # some containers
    assert available_mb(b"MemTotal: 16384000 kB\nMemFree: 100 kB\n") is None  # old kernels
    assert available_mb(b"MemAvailable: lots\nMemTotal: 1 kB\n") is None


# -- timeouts, counts and requests a handle is given ----------------------------------


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
