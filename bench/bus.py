"""Signal bus throughput, round trip and burst loss, through a real broker process.

Method: one broker (procs.bus.service, ipc:// in a temp runtime dir, HWM 100k) and
subscriber processes started with subprocess (each with its own zmq context). The
bench process is the publisher. Before each measurement the publisher sends probe
signals until every subscriber has reported one (handshake, no sleep). Signals are
real typed signals: the publisher envelopes and orjson-encodes each one, subscribers
decode and validate each one (ipc.signals), so the figures include our codec.

- 1->1 and 1->32 burst: N signals (LoopFailed, ~115 bytes) sent as fast as possible,
  once with `publish` (one message a signal) and once with `publish_many` (--batch
  signals a call, one batch message each; ipc.signal_batch); the publisher builds every
  signal inside the timed loop. Each subscriber receives them one at a time with
  `Subscriber.recv`, counts what arrives and stamps the last arrival (CLOCK_MONOTONIC,
  system-wide). signals/s = N / (last arrival - first send); loss = N - received.
  Repeated --runs times; median, worst and best printed.
- round trip: one echo process answers each ping (LoopSpawned) with a pong (LoopFailed)
  through the broker; one ping in flight; p50/p95/p99 over --pings after 200 warm-up.
- codec: ipc.signals envelop/encode/decode alone, in this process, CPU time per call
  (time.process_time, so time spent preempted on a busy box is not counted): after a
  warm-up round, 21 rounds of 5000 calls each for LoopFailed (no hash) and
  GoldenMasterUpdated (two hashes), the ops taking turns; median and p95 over rounds.

    python3 bench/bus.py [--burst 10000] [--runs 5] [--fanout 32] [--pings 2000] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipc import bus, signals  # noqa: E402 - after the path fix, so it runs from a checkout

PROBE_PHASE = "probe"


def child(runtime: str, mode: str, expected: int) -> int:
    """Subscriber process: 'count' reports arrivals of each burst; 'echo' answers pings."""
    types = ["LoopSpawned", "LoopFailed"]
    sub = bus.Subscriber(runtime, types=types)
    pub = bus.Publisher(runtime, source=f"bench-{mode}-{os.getpid()}")
    sub.wait_connected(timeout=30)
    pub.wait_connected(timeout=30)
    synced = False
    count, first, last = 0, 0.0, 0.0
    while True:
        env = sub.recv(timeout=30)
        if env is None:
            return 1
        sig = env.signal
        if isinstance(sig, signals.LoopSpawned) and sig.phase == PROBE_PHASE:
            if not synced:
                synced = True
                print("synced", flush=True)
            continue
        if mode == "raw":  # transport only: count frames, decode nothing
            sock = sub.socket
            count, first = 1, time.monotonic()  # this message was the first of the burst
            while count < expected:
                sock.recv_multipart()
                count += 1
            print(f"{count} {first!r} {time.monotonic()!r}", flush=True)
            synced = False
            continue
        if mode == "echo" and isinstance(sig, signals.LoopSpawned):
            pub.publish(signals.LoopFailed(loop_id=sig.loop_id, reason="pong"))
        elif mode == "count" and isinstance(sig, signals.LoopFailed):
            now = time.monotonic()
            if sig.reason == "end":  # the burst is over: report, get ready for the next
                print(f"{count} {first!r} {last!r}", flush=True)
                count, synced = 0, False
                continue
            count += 1
            first = first or now
            last = now


class Bench:
    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.procs: list[subprocess.Popen[str]] = []
        self.broker = self._start(
            [sys.executable, "-m", "procs.bus.service", "--runtime-dir", str(runtime)]
        )
        self.pub = bus.Publisher(runtime, source="bench")
        self.pub.wait_connected(timeout=30)

    def _start(self, argv: list[str]) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            argv,
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def children(self, mode: str, n: int, burst: int = 0) -> list[subprocess.Popen[str]]:
        argv = [sys.executable, __file__, "--child", mode, str(self.runtime)]
        argv += ["--burst", str(burst)]
        return [self._start(argv) for _ in range(n)]

    def sync(self, kids: list[subprocess.Popen[str]], timeout: float = 60.0) -> None:
        """Probe until every child printed 'synced'."""
        sel = selectors.DefaultSelector()
        for k in kids:
            sel.register(k.stdout, selectors.EVENT_READ, k)  # type: ignore[arg-type]
        waiting = set(kids)
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} children never synced")
            self.pub.publish(signals.LoopSpawned(loop_id="-", task_id="-", phase=PROBE_PHASE))
            for key, _ in sel.select(timeout=0.01):
                line = key.data.stdout.readline()
                if line.strip() == "synced":
                    waiting.discard(key.data)
                    sel.unregister(key.fileobj)
        sel.close()

    def burst(
        self, kids: list[subprocess.Popen[str]], n: int, *, raw: bool = False, batch: int = 0
    ) -> tuple[float, int]:
        """(signals/s, total loss) of one burst of n signals to all kids."""
        self.sync(kids)
        start = time.monotonic()
        if raw:  # one pre-encoded signal sent n times: the transport alone
            frames = signals.encode(
                signals.envelop(signals.LoopFailed(loop_id="0", reason="burst"), source="b")
            )
            for _ in range(n):
                self.pub.send_frames(frames, timeout=30)
        elif batch:  # publish_many, `batch` signals a call
            for lo in range(0, n, batch):
                chunk = range(lo, min(n, lo + batch))
                self.pub.publish_many(
                    [signals.LoopFailed(loop_id=str(i), reason="burst") for i in chunk], timeout=30
                )
            self.pub.publish(signals.LoopFailed(loop_id="end", reason="end"), timeout=30)
        else:
            for i in range(n):
                self.pub.publish(signals.LoopFailed(loop_id=str(i), reason="burst"), timeout=30)
            self.pub.publish(signals.LoopFailed(loop_id="end", reason="end"), timeout=30)
        loss, last = 0, start
        for k in kids:
            count, _first, end = k.stdout.readline().split()  # type: ignore[union-attr]
            loss += n - int(count)
            last = max(last, float(end))
        return n / (last - start), loss

    def round_trips(self, n: int) -> list[float]:
        echo = self.children("echo", 1)
        self.sync(echo)
        sub = bus.Subscriber(self.runtime, types=["LoopFailed"])
        sub.wait_connected(timeout=30)
        bus.deliver(self.pub, sub, signals.LoopFailed(loop_id="-", reason="sync"), timeout=30)
        out = []
        for i in range(n + 200):
            t0 = time.perf_counter()
            self.pub.publish(signals.LoopSpawned(loop_id=str(i), task_id="rt", phase="ping"))
            sub.wait_for("LoopFailed", lambda e, i=i: e.signal.loop_id == str(i), timeout=5)
            if i >= 200:
                out.append(time.perf_counter() - t0)
        sub.close()
        return out

    def close(self) -> None:
        self.pub.close()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()


def codec_costs(rounds: int = 21, calls: int = 5000) -> list[str]:
    """Lines of µs per envelop/encode/decode call, median / p95 over `rounds`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    lines = []
    for sig in (
        signals.LoopFailed(loop_id="7", reason="burst"),
        signals.GoldenMasterUpdated(hash=commit, previous_hash=commit),
    ):
        envelope = signals.envelop(sig, source="bench")
        frames = signals.encode(envelope)
        ops = {
            "envelop": lambda s=sig: signals.envelop(s, source="bench"),
            "encode": lambda e=envelope: signals.encode(e),
            "decode": lambda f=frames: signals.decode(f),
        }
        timers = {name: timeit.Timer(op, timer=time.process_time) for name, op in ops.items()}
        times: dict[str, list[float]] = {name: [] for name in ops}
        for round_ in range(rounds + 1):  # ops take turns, so a busy spell hits them alike
            for name, timer in timers.items():
                per_call_us = timer.timeit(number=calls) / calls * 1e6
                if round_:  # round 0 warms up
                    times[name].append(per_call_us)
        cells = [f"{n} {statistics.median(t):.2f} / {pct(t, 0.95):.2f}" for n, t in times.items()]
        lines.append(f"codec {type(sig).__name__:<19} ({len(frames[1])} B): " + "  ".join(cells))
    return lines


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fanout", type=int, default=32)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256, help="signals per publish_many call")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "RUNTIME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[1], args.child[0], args.burst)
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    for line in codec_costs():
        print(f"{line}  (CPU µs per call, median / p95)")
    with tempfile.TemporaryDirectory(prefix="bus-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            for fanout in (1, args.fanout):
                kids = bench.children("count", fanout)
                for batch in (0, args.batch):
                    rates, losses = [], []
                    for _ in range(args.runs):
                        rate, loss = bench.burst(kids, args.burst, batch=batch)
                        rates.append(rate)
                        losses.append(loss)
                    median = statistics.median(rates)
                    how = f"publish_many({batch})" if batch else "publish"
                    print(
                        f"1->{fanout:<3} {how:<17} burst {args.burst} x {args.runs} runs: "
                        f"median {median:,.0f} signals/s "
                        f"(worst {min(rates):,.0f}, best {max(rates):,.0f}; "
                        f"{median * fanout:,.0f} deliveries/s); "
                        f"lost {sum(losses)} of {args.burst * fanout * args.runs}"
                    )
                for k in kids:
                    os.killpg(k.pid, signal.SIGKILL)
            raw = bench.children("raw", 1, args.burst)
            rates = [bench.burst(raw, args.burst, raw=True)[0] for _ in range(args.runs)]
            print(
                f"1->1   transport only (pre-encoded, no decode): "
                f"median {statistics.median(rates):,.0f} signals/s"
            )
            os.killpg(raw[0].pid, signal.SIGKILL)
            rtt = bench.round_trips(args.pings)
            print(
                f"round trip (pub -> broker -> echo -> broker -> sub), {len(rtt)} pings: "
                f"p50 {pct(rtt, 0.5) * 1e3:.3f} ms  p95 {pct(rtt, 0.95) * 1e3:.3f} ms  "
                f"p99 {pct(rtt, 0.99) * 1e3:.3f} ms  max {max(rtt) * 1e3:.3f} ms"
            )
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
