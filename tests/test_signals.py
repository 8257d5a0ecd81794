"""Signal types, the envelope, strict decoding; GitHash, Priority, ProcessId."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from ipc import signals
from ipc.signals import MalformedSignal, UnknownSignal
from ipc.types import GitHash, InvalidValue, Priority, ProcessId
from tests.helpers.signal_examples import EXAMPLES, GOOD, HASH


def test_the_twelve_signals_are_registered() -> None:
    assert sorted(signals.SIGNAL_TYPES) == sorted(type(s).__name__ for s in EXAMPLES)
    assert len(signals.SIGNAL_TYPES) == 12


@pytest.mark.parametrize("signal", EXAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip(signal: signals.Signal) -> None:
    envelope = signals.envelop(signal, source="test")
    topic, payload = signals.encode(envelope)
    assert topic == type(signal).__name__.encode()
    body = orjson.loads(payload)
    assert {"type", "id", "ts", "source"} <= body.keys()
    assert signals.decode([topic, payload]) == envelope


def test_fields_are_coerced_and_checked_on_creation() -> None:
    bead = signals.BeadAssigned(task_id="t", spec="s", requirements="r", priority="High")
    assert bead.priority is Priority.HIGH
    assert type(signals.TestPassing(hash=HASH.upper()).hash) is GitHash
    with pytest.raises(MalformedSignal, match=r"TestPassing.hash: git hash must be 40 hex"):
        signals.TestPassing(hash="abc")
    with pytest.raises(MalformedSignal, match=r"LoopComplete.commits: expected an integer"):
        signals.LoopComplete(commits=True, reverts=0, duration_ms=1)


@pytest.mark.integration  # forks
def test_ids_are_unique_and_fresh_after_fork() -> None:
    ids = {signals.envelop(EXAMPLES[1], source="t").id for _ in range(1000)}
    assert len(ids) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report one id and leave without running pytest's teardown
        code = 1
        try:
            os.write(write, signals.envelop(EXAMPLES[1], source="c").id.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    child_id = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id.split("-")[0] != next(iter(ids)).split("-")[0]


def _frames(body: dict[str, object], topic: bytes | None = None) -> list[bytes]:
    return [topic if topic is not None else str(body.get("type")).encode(), orjson.dumps(body)]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"LoopFailed"], "expected 2 frames"),
        ([b"LoopFailed", b"{", b"x"], "expected 2 frames"),
        ([b"LoopFailed", b"not json"], "payload is not JSON"),
        ([b"LoopFailed", b"[1]"], "must be a JSON object"),
        (_frames(GOOD, topic=b"LoopSpawned"), "does not match type"),
        (_frames({**GOOD, "id": ""}), "envelope.id"),
        (_frames({**GOOD, "ts": "now"}), "envelope.ts"),
        (_frames({**GOOD, "source": 3}), "envelope.source"),
        (_frames({k: v for k, v in GOOD.items() if k != "reason"}), "missing field"),
        (_frames({**GOOD, "extra": 1}), "unexpected field"),
        (_frames({**GOOD, "loop_id": 7}), "LoopFailed.loop_id: expected a string"),
    ],
)
def test_malformed_messages_raise_a_named_error(frames: list[bytes], message: str) -> None:
    with pytest.raises(MalformedSignal, match=message):
        signals.decode(frames)


def test_unknown_type_raises_unknown_signal() -> None:
    with pytest.raises(UnknownSignal, match="Bogus"):
        signals.decode(_frames({**GOOD, "type": "Bogus"}))


def test_git_hash() -> None:
    assert GitHash.parse(HASH.upper()) == HASH
    assert GitHash(HASH).short == HASH[:12]
    for bad in ["", "abc", HASH + "0", "g" * 40]:
        with pytest.raises(InvalidValue, match="40 hex"):
            GitHash.parse(bad)
    with pytest.raises(InvalidValue, match="must be a string"):
        GitHash.parse(1234)  # type: ignore[arg-type]


def test_priority() -> None:
    assert [p.to_string() for p in Priority] == ["critical", "high", "medium", "low"]
    assert Priority.from_string("CRITICAL") is Priority.CRITICAL
    assert Priority.from_string("P2") is Priority.MEDIUM
    assert Priority.from_level(4) is Priority.LOW
    assert sorted([Priority.LOW, Priority.CRITICAL], key=lambda p: p.rank)[0] is Priority.CRITICAL
    with pytest.raises(InvalidValue, match="priority must be one of"):
        Priority.from_string("urgent")
    with pytest.raises(InvalidValue, match=r"0\.\.4"):
        Priority.from_level(9)


@pytest.mark.integration  # starts a process
def test_process_id_tells_a_recycled_pid_from_its_process() -> None:
    me = ProcessId.current()
    assert me.to_pid() == os.getpid() and me.is_alive()
    assert not ProcessId(me.pid, me.start_ticks + 1).is_alive()
    child = subprocess.Popen(  # runs until its stdin closes: alive while we look at it
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    pid = ProcessId.from_pid(child.pid)
    assert pid.is_alive()
    child.communicate(timeout=30)
    assert not pid.is_alive()
    with pytest.raises(InvalidValue, match="no live process"):
        ProcessId.from_pid(child.pid)
    with pytest.raises(InvalidValue, match="positive int"):
        ProcessId.from_pid(0)
