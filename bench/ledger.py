"""Ledger ticket operations and reclaim time after a holder is SIGKILLed.

Method:
- ticket ops: one process takes and returns a ticket in a loop through the public API
  (`acquire_nowait` / `acquire(timeout=)` + `release`), timed in batches of 1000 pairs
  with perf_counter; µs per op = batch time / 2000. 200 batches per variant, the
  variants taking turns: median and p95 of the batch figures. A raw ctypes semtimedop
  call (SEM_UNDO, no-wait) is the floor.
- reclaim: a holder process takes the only GPU ticket; a waiter process blocks in
  acquire(timeout=10); once the kernel reports the waiter asleep (GETNCNT = 1) the bench
  notes CLOCK_MONOTONIC and SIGKILLs the holder; the waiter stamps the moment it got the
  ticket. Reclaim = stamp - kill time. --rounds rounds: median and p95.

    python3 bench/ledger.py [--batches 200] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipc import ledger  # noqa: E402
from ipc.ledger import LedgerOwner, Limits, TicketLedger  # noqa: E402
from ipc.ledger import _semtimedop as sem  # noqa: E402 - after the path fix

HOLDER = """
import sys
from ipc.ledger import TicketLedger
TicketLedger.open(sys.argv[1]).acquire({"gpu": 1}, timeout=10)
print("held", flush=True)
sys.stdin.readline()
"""

WAITER = """
import sys, time
from ipc.ledger import TicketLedger
led = TicketLedger.open(sys.argv[1])
for line in sys.stdin:
    ticket = led.acquire({"gpu": 1}, timeout=10)
    print(repr(time.monotonic()), flush=True)
    led.release(ticket)
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_op_us(
    pairs: dict[str, Callable[[], None]], batches: int, size: int = 1000
) -> dict[str, list[float]]:
    """µs per op of each variant; variants take turns batch by batch, so drift in the
    machine's speed (frequency, neighbours) hits them all alike. One warm-up round."""
    out: dict[str, list[float]] = {name: [] for name in pairs}
    for b in range(batches + 1):
        for name, pair in pairs.items():
            t0 = time.perf_counter()
            for _ in range(size):
                pair()
            if b:
                out[name].append((time.perf_counter() - t0) / (2 * size) * 1e6)
    return out


def report(name: str, values: list[float]) -> None:
    print(f"{name:<44} median {statistics.median(values):6.2f} µs  p95 {pct(values, 0.95):6.2f} µs")


def ticket_ops(led: TicketLedger, batches: int) -> None:
    def nowait() -> None:
        led.release(led.acquire_nowait({"gpu": 1}))

    def timed() -> None:
        led.release(led.acquire({"gpu": 1}, timeout=1.0))

    def multi() -> None:
        led.release(led.acquire_nowait({"gpu": 1, "loop": 1, "ram": 128}))

    semid = sem.semget(sem.IPC_PRIVATE, 1, sem.IPC_CREAT | 0o600)
    sem.setall(semid, [1])
    down = sem.make_ops([(0, -1, sem.SEM_UNDO | sem.IPC_NOWAIT)])
    up = sem.make_ops([(0, 1, sem.SEM_UNDO | sem.IPC_NOWAIT)])

    def raw() -> None:
        sem.semop_nowait(semid, down)
        sem.semop_nowait(semid, up)

    try:
        results = per_op_us(
            {
                "raw ctypes semtimedop (floor)": raw,
                "acquire_nowait + release, 1 resource": nowait,
                "acquire(timeout=1) + release, 1 resource": timed,
                "acquire_nowait + release, gpu+loop+ram": multi,
            },
            batches,
        )
    finally:
        sem.remove(semid)
    for name, values in results.items():
        report(name, values)


def reclaim(runtime: Path, rounds: int) -> list[float]:
    def start(code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(runtime)],
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )

    waiter = start(WAITER)
    out = []
    try:
        for _ in range(rounds):
            holder = start(HOLDER)
            assert holder.stdout and holder.stdout.readline().strip() == "held"
            assert waiter.stdin and waiter.stdout
            waiter.stdin.write("go\n")
            waiter.stdin.flush()
            deadline = time.monotonic() + 10
            while ledger.snapshot(runtime)["resources"]["gpu"]["waiting"] != 1:
                if time.monotonic() > deadline:
                    raise TimeoutError("the waiter never blocked")
                time.sleep(0.001)  # bench-only poll of a kernel counter
            killed_at = time.monotonic()
            os.killpg(holder.pid, signal.SIGKILL)
            got_at = float(waiter.stdout.readline())
            out.append(got_at - killed_at)
            holder.wait(timeout=10)
            holder.stdout.close()
            holder.stdin.close()  # type: ignore[union-attr]
    finally:
        os.killpg(waiter.pid, signal.SIGKILL)
        waiter.wait(timeout=10)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load {load:.2f}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        runtime = Path(tmp)
        led = LedgerOwner.create(runtime, Limits(gpu_tickets=1, max_loops=4, ram_budget_mb=4096))
        try:
            ticket_ops(led, args.batches)
            times = reclaim(runtime, args.rounds)
            median, p95 = statistics.median(times) * 1e3, pct(times, 0.95) * 1e3
            print(
                f"reclaim after SIGKILL of the holder, {len(times)} rounds: "
                f"median {median:.3f} ms  p95 {p95:.3f} ms"
            )
        finally:
            led.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
