"""The signal bus with a real broker process: handshakes, bursts, bad frames, restarts,
subscriptions changed under a poll, and waits for ever (math.inf)."""

from __future__ import annotations

import math
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from ipc import bus, control, paths, signals
from ipc.bus import BusEndpoints, Publisher, Subscriber
from ipc.signals import batch as signal_batch
from tests.helpers.bus import connected
from tests.helpers.processes import ROOT, Processes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # a broker process, zmq sockets


def test_deliver_and_wait_for(procs: Processes, runtime: Path) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopSpawned", "LoopFailed"])
    with pub, sub:
        got = bus.deliver(pub, sub, signals.LoopSpawned("1", "fs-1", "auditing"), timeout=10)
        assert got.signal == signals.LoopSpawned("1", "fs-1", "auditing")
        assert got.source == "test"
        for i in range(3):
            pub.publish(signals.LoopFailed(loop_id=str(i), reason="r"))
        pub.publish(signals.TestPassing(hash="a" * 40))  # not subscribed: never arrives
        found = sub.wait_for("LoopFailed", lambda e: e.signal.loop_id == "2", timeout=10)
        assert found.signal.loop_id == "2"
        with pytest.raises(bus.BusTimeout, match="no TestPassing"):
            sub.wait_for("TestPassing", timeout=0.2)


def test_unsubscribe_and_subscribe_again(procs: Processes, runtime: Path) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopFailed", "PatchRejected"])
    with pub, sub:
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        sub.unsubscribe("LoopFailed")
        pub.publish(signals.LoopFailed(loop_id="1", reason="unwanted"))
        pub.publish(signals.PatchRejected(reason="barrier"))  # same publisher: in order
        seen = []
        while not seen or seen[-1] != "PatchRejected":
            envelope = sub.recv(timeout=10)
            assert envelope is not None, "the barrier never arrived"
            seen.append(envelope.type)
        assert seen == ["PatchRejected"]
        sub.subscribe("LoopFailed")
        got = bus.deliver(pub, sub, signals.LoopFailed(loop_id="2", reason="wanted"), timeout=10)
        assert got.signal.loop_id == "2"
        with pytest.raises(ValueError, match="unknown signal type"):
            sub.subscribe("Nope")
    with Subscriber(runtime) as everything, pytest.raises(ValueError, match="takes all types"):
        everything.unsubscribe("LoopFailed")


def test_a_signal_read_ahead_by_a_poll_is_not_delivered_after_its_unsubscribe(
    procs: Processes, runtime: Path
) -> None:
    """A service polls `subscriber.socket` (as documented); ZeroMQ then reads the next
    message ahead and hands it out later without filtering it again, so a signal of a
    type unsubscribed in between still came out of recv."""
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["PatchRejected", "LoopFailed"])
    with pub, sub:
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        pub.publish(signals.PatchRejected(reason="before the unsubscribe"))
        pub.publish_many([signals.PatchRejected(reason=str(i)) for i in range(3)])
        assert sub.socket.poll(10_000)  # a service's Poller: the message is read ahead
        sub.unsubscribe("PatchRejected")
        sent = pub.publish(signals.LoopFailed(loop_id="1", reason="after"))
        got = []  # in order, up to the sentinel: what was published before it came first
        while not got or got[-1].id != sent.id:
            envelope = sub.recv(timeout=10)
            assert envelope is not None, "the sentinel never came"
            got.append(envelope)
        assert {e.type for e in got} == {"LoopFailed"}, [e.signal for e in got]


BURST = """
import select, sys
from ipc import bus, signals
pub = bus.Publisher(sys.argv[1], source="burster")
pub.wait_connected(timeout=10)
# handshake: a probe every 20 ms until the test says go
while not select.select([sys.stdin], [], [], 0.02)[0]:
    pub.publish(signals.LoopSpawned(loop_id="probe", task_id="t", phase="probe"))
sys.stdin.readline()
for i in range(int(sys.argv[2])):
    pub.publish(signals.LoopFailed(loop_id=str(i), reason="burst"), timeout=10.0)
print("sent", flush=True)
sys.stdin.readline()
"""


def test_a_burst_of_10000_from_another_process_arrives_whole(
    procs: Processes, runtime: Path
) -> None:
    n = 10_000
    procs.broker(runtime)
    sub = Subscriber(runtime, types=["LoopSpawned", "LoopFailed"])
    with sub:
        sub.wait_connected(timeout=10)
        burster = procs.start(
            [sys.executable, "-c", textwrap.dedent(BURST), str(runtime), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        sub.wait_for("LoopSpawned", timeout=20)
        assert burster.stdin is not None
        burster.stdin.write("go\n")
        burster.stdin.flush()
        seen: set[str] = set()
        while len(seen) < n:
            envelope = sub.recv(timeout=20)
            assert envelope is not None, f"only {len(seen)} of {n} arrived"
            if envelope.type == "LoopFailed":
                seen.add(envelope.signal.loop_id)
        assert seen == {str(i) for i in range(n)}
        assert sub.statistics()["malformed"] == 0


def test_malformed_and_unknown_frames_are_counted_and_dropped(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime)  # all types
    with pub, sub:
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        good = {"type": "LoopFailed", "id": "x", "ts": 1.0, "source": "s"}
        bad = [
            [b"junk"],
            [b"LoopFailed", b"not json"],
            [b"LoopFailed", orjson.dumps(good)],  # fields missing
            [b"LoopFailed", b"{}", b"extra frame"],
            [b"LoopFailed", orjson.dumps({**good, "loop_id": 1, "reason": "r"})],
        ]
        for frames in bad:
            pub.send_frames(frames)
        pub.send_frames([b"Bogus", orjson.dumps({**good, "type": "Bogus"})])
        got = bus.deliver(pub, sub, signals.LoopFailed(loop_id="1", reason="after"), timeout=10)
        assert got.signal.reason == "after"  # the subscriber kept working
        stats = sub.statistics()
        assert (stats["malformed"], stats["unknown"]) == (len(bad), 1)


def test_subscribers_receive_again_after_the_broker_is_sigkilled_and_restarted(
    procs: Processes, runtime: Path
) -> None:
    broker = procs.broker(runtime)
    pub, sub = connected(runtime, types=["PatchRejected"])
    with pub, sub:
        bus.deliver(pub, sub, signals.PatchRejected(reason="before"), timeout=10)
        assert procs.kill(broker) == -signal.SIGKILL
        broker = procs.broker(runtime)
        # the same sockets: ZeroMQ reconnects them and replays the subscriptions
        got = bus.deliver(pub, sub, signals.PatchRejected(reason="after"), timeout=20)
        assert got.signal.reason == "after"
        assert sub.statistics()["welcomes"] == 2  # welcomed by both brokers
        assert pub.statistics()["subscriptions"] >= 2
        assert procs.kill(broker, signal.SIGTERM) == 0  # a clean stop on SIGTERM


def test_broker_answers_status_on_its_control_socket(procs: Processes, runtime: Path) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime)
    with pub, sub:
        bus.deliver(pub, sub, signals.PatchRejected(reason="x"), timeout=10)
        status = control.call(paths.control_socket(runtime, "bus"), "status", timeout=10)
        assert status["proxy"]["in_frames"] >= 2
        assert status["endpoints"]["subscribe"] == BusEndpoints.in_runtime_dir(runtime).subscribe


def test_waits_without_a_broker_are_bounded(runtime: Path) -> None:
    with Publisher(runtime, source="t") as pub, Subscriber(runtime) as sub:
        with pytest.raises(bus.BusTimeout, match="no broker"):
            pub.wait_connected(timeout=0.1)
        with pytest.raises(bus.BusTimeout, match="no broker"):
            sub.wait_connected(timeout=0.1)
        assert sub.recv(timeout=0.05) is None
        pub.publish(signals.PatchRejected(reason="lost"))  # nobody listens: dropped, no error


LATE_PUBLISHER = """
import sys
from ipc import bus, signals
with bus.Publisher(sys.argv[1], source="late") as pub:
    pub.wait_connected(timeout=30)
    for i in range(int(sys.argv[2])):
        pub.publish(signals.PatchRejected(reason=f"late {i}"), timeout=30)
    sys.stdin.read()  # until the test is done: its sends must not be cut by the exit
"""


def test_bus_waits_take_math_inf_for_ever(procs: Processes, runtime: Path) -> None:
    """Waiting for ever is spelled math.inf (STYLE 5); every bus wait turned it into
    int(inf * 1000) for zmq's poll and raised OverflowError at once."""
    procs.broker(runtime)  # it takes a Python start to come up: both sides wait for it
    with bus.Publisher(runtime, source="test") as pub, bus.Subscriber(runtime) as sub:
        sub.wait_connected(timeout=math.inf)
        pub.wait_connected(timeout=math.inf)
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        while sub.recv(timeout=0) is not None:
            pass
        # a publisher that only starts now: the receives below wait in poll for it
        procs.start(
            [sys.executable, "-c", LATE_PUBLISHER, str(runtime), "2"], stdin=subprocess.PIPE
        )
        first = sub.recv(timeout=math.inf)
        assert first is not None and first.signal.reason == "late 0"
        assert [e.signal.reason for e in sub.recv_many(1, timeout=math.inf)] == ["late 1"]


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(bus.BusError, match="exceeds 107 bytes"):
        BusEndpoints.in_runtime_dir(tmp_path / ("x" * 120))
    with pytest.raises(ValueError, match="unknown signal type 'Nope'"):
        Subscriber(tmp_path, types=["Nope"])
    code = subprocess.run(
        [sys.executable, "-m", "procs.bus.service", "--runtime-dir", str(tmp_path), "--hwm", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert code.returncode == 2 and "--hwm must be at least 1" in code.stderr


def test_publish_many_delivers_a_mixed_burst_whole_and_in_order(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    pub, everything = connected(runtime)
    some = Subscriber(runtime, types=["PatchRejected"])
    with pub, everything, some:
        some.wait_connected(timeout=10)
        bus.deliver(pub, some, signals.PatchRejected(reason="sync"), timeout=10)
        # and everything sent before is behind `everything` too:
        bus.deliver(pub, everything, signals.LoopFailed(loop_id="-", reason="sync"), timeout=10)
        burst: list[signals.Signal] = []
        for i in range(10_000):  # runs of 1 to 6 signals of one type, then the other
            if i % 7 == 6:
                burst.append(signals.PatchRejected(reason=str(i)))
            else:
                burst.append(signals.LoopFailed(loop_id=str(i), reason="burst"))
        burst += [signals.LoopFailed(loop_id=str(i), reason="long run") for i in range(3000)]
        before = pub.statistics()
        sent = pub.publish_many(burst, timeout=10)
        after = pub.statistics()
        assert after["published"] - before["published"] == len(burst)
        # 1428 x (6 LoopFailed, 1 PatchRejected), then 3004 LoopFailed in full batches
        runs = 1428 * 2 + -(-3004 // signal_batch.MAX_BATCH)
        assert after["messages"] - before["messages"] == runs
        got = everything.recv_many(len(sent), timeout=20)
        while len(got) < len(sent):
            more = everything.recv_many(len(sent) - len(got), timeout=20)
            assert more, f"only {len(got)} of {len(sent)} arrived"
            got += more
        assert got == sent
        wanted = [e for e in sent if e.type == "PatchRejected"]
        mine = [some.recv(timeout=20) for _ in wanted]
        assert mine == wanted
        assert everything.statistics()["malformed"] == some.statistics()["malformed"] == 0


def test_a_batch_with_bad_elements_delivers_the_good_ones(procs: Processes, runtime: Path) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime)
    with pub, sub:
        bus.deliver(pub, sub, signals.LoopFailed(loop_id="0", reason="sync"), timeout=10)
        good = {"type": "LoopFailed", "id": "x", "ts": 1.0, "source": "s", "loop_id": "1"}
        batch = [{**good, "reason": "a"}, {**good, "reason": 2}, {**good, "reason": "b"}]
        pub.send_frames([b"LoopFailed", orjson.dumps(batch)])
        pub.send_frames([b"LoopFailed", b"[]"])  # bad as a whole
        pub.send_frames([b"Bogus", orjson.dumps([{**good, "type": "Bogus", "reason": "c"}])])
        reasons = [sub.recv(timeout=10).signal.reason for _ in range(2)]  # type: ignore[union-attr]
        assert reasons == ["a", "b"]
        got = bus.deliver(pub, sub, signals.LoopFailed(loop_id="2", reason="after"), timeout=10)
        assert got.signal.reason == "after"
        stats = sub.statistics()
        assert (stats["malformed"], stats["unknown"]) == (2, 1)


def test_recv_many_takes_at_most_its_limit_and_waits_at_most_its_timeout(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["PatchRejected"])
    with pub, sub:
        bus.deliver(pub, sub, signals.PatchRejected(reason="sync"), timeout=10)
        assert sub.recv_many(5, timeout=0.05) == []
        sent = pub.publish_many([signals.PatchRejected(reason=str(i)) for i in range(10)])
        first = sub.recv_many(4, timeout=10)  # one batch message: all ten arrive at once
        assert first == sent[:4]
        assert sub.recv_many(100, timeout=10) == sent[4:]
        with pytest.raises(ValueError, match="at least 1 signal, not 0"):
            sub.recv_many(0, timeout=0)


@pytest.mark.parametrize("limit", [2.5, "3", None])
def test_recv_many_names_a_limit_that_is_no_count(runtime: Path, limit: object) -> None:
    """recv_many now reads at most `limit` messages with range(limit): a float limit
    must be refused by name, not with range's "'float' object cannot be interpreted"."""
    message = f"recv_many takes at least 1 signal, not {limit!r}"
    with bus.Subscriber(runtime) as sub, pytest.raises(ValueError, match=message):
        sub.recv_many(limit, timeout=0)  # type: ignore[arg-type]


SUBSCRIBER = """
import sys
from ipc import bus
sub = bus.Subscriber(sys.argv[1], types=["PatchAccepted"])
sub.wait_connected(timeout=10)
print(sub.recv(timeout=30).signal.hash, flush=True)
sys.stdin.readline()
"""


def test_a_sigkilled_subscriber_s_subscriptions_go_and_others_keep_receiving(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    pub, other = connected(runtime, types=["PatchRejected"])
    with pub, other:
        child = procs.start(
            [sys.executable, "-c", textwrap.dedent(SUBSCRIBER), str(runtime)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        deadline = time.monotonic() + 20
        while not select.select([child.stdout], [], [], 0.02)[0]:  # until it has one
            assert time.monotonic() < deadline, "the subscriber never received"
            pub.publish(signals.PatchAccepted(hash="ab" * 20))
        assert child.stdout.readline().strip() == "ab" * 20
        pub.drain_subscriptions()
        gone = pub.statistics()["unsubscriptions"]
        assert procs.kill(child) == -signal.SIGKILL
        # the broker drops the dead peer and, as it was PatchAccepted's only subscriber,
        # forwards the unsubscription upstream
        wait_until(
            lambda: pub.drain_subscriptions() >= 0 and pub.statistics()["unsubscriptions"] > gone,
            what="the dead subscriber's unsubscription",
        )
        got = bus.deliver(pub, other, signals.PatchRejected(reason="after"), timeout=10)
        assert got.signal.reason == "after"


def test_a_second_broker_on_the_same_runtime_dir_is_refused_and_harms_nothing(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    pub, sub = connected(runtime, types=["LoopFailed"])
    with pub, sub:
        second = procs.start(
            [sys.executable, "-m", "procs.bus.service", "--runtime-dir", str(runtime)],
            stderr=subprocess.PIPE,
        )
        assert second.wait(timeout=30) == 1
        assert "already listens" in (second.stderr.read() if second.stderr else "")
        for name in ("bus-in.ipc", "bus-out.ipc"):  # the first broker's files are still there
            assert (runtime / name).exists()
        got = bus.deliver(pub, sub, signals.LoopFailed("1", "still forwarding"), timeout=10)
        assert got.signal.reason == "still forwarding"
