"""Batch messages: many signals of one type in one `[topic, JSON array]` message.

Each element must decode exactly as `signals.decode` decodes it alone (after JSON
parsing), the good ones must survive a bad neighbour, and a message bad as a whole
raises MalformedSignal naming why.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ipc import signals
from ipc.signals import Envelope, MalformedSignal, SignalError, UnknownSignal
from ipc.signals import batch as signal_batch
from ipc.signals.batch import MAX_BATCH, decode_batch, encode_batch
from tests.helpers.signal_examples import EXAMPLES, GOOD, mutations

ENVELOPES = [signals.envelop(s, source="loop.7") for s in EXAMPLES]


@pytest.mark.parametrize("signal", EXAMPLES, ids=lambda s: type(s).__name__)
def test_a_batch_of_every_signal_type_round_trips(signal: signals.Signal) -> None:
    envelopes = signal_batch.envelop_many([signal] * 3, source="loop.7")
    topic, payload = encode_batch(envelopes)
    assert topic == type(signal).__name__.encode()
    assert orjson.loads(payload) == [orjson.loads(signals.encode(e)[1]) for e in envelopes]
    assert decode_batch([topic, payload]) == (envelopes, [])


def _single(topic: bytes, element: Any) -> Envelope | tuple[type, str]:
    try:
        return signals.decode([topic, orjson.dumps(element)])
    except SignalError as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize("envelope", ENVELOPES, ids=lambda e: e.type)
def test_each_element_decodes_as_it_would_alone(envelope: Envelope) -> None:
    good = signals.encode(envelope)[1]
    tried = refused = 0
    for frames in mutations(envelope):
        if len(frames) != 2 or not isinstance(frames[1], bytes):
            continue
        try:
            element = orjson.loads(frames[1])
        except orjson.JSONDecodeError:
            continue  # not JSON: no element of an array
        topic = frames[0]
        payload = b"[" + good.replace(envelope.type.encode(), topic, 1) + b"," + frames[1] + b"]"
        first = _single(topic, orjson.loads(good.replace(envelope.type.encode(), topic, 1)))
        alone = _single(topic, element)
        got, bad = decode_batch([topic, payload])
        outcomes = [*got, *((type(e), str(e)) for e in bad)]
        expected = [o for o in (first, alone) if isinstance(o, Envelope)]
        expected += [o for o in (first, alone) if not isinstance(o, Envelope)]
        assert outcomes == expected, frames
        tried += 1
        refused += len(bad)
    assert tried > 20 and 0 < refused < 2 * tried  # both kinds were tried


def test_a_bad_element_leaves_its_neighbours_alone() -> None:
    envelopes = signal_batch.envelop_many(
        [signals.LoopFailed(loop_id=str(i), reason="r") for i in range(3)], source="s"
    )
    body = orjson.loads(encode_batch(envelopes)[1])
    body.insert(1, {**GOOD, "reason": 1})
    body.insert(3, {**GOOD, "type": "Bogus"})
    body.append(7)
    good, bad = decode_batch([b"LoopFailed", orjson.dumps(body)])
    assert good == envelopes
    assert [type(e) for e in bad] == [MalformedSignal] * 3
    assert "LoopFailed.reason" in str(bad[0])
    assert "does not match type 'Bogus'" in str(bad[1])
    assert "JSON object" in str(bad[2])
    bogus = orjson.dumps([{**GOOD, "type": "Bogus"}] * 2)
    good, bad = decode_batch([b"Bogus", bogus])
    assert (good, [type(e) for e in bad]) == ([], [UnknownSignal] * 2)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"LoopFailed"], "expected 2 frames"),
        ([b"LoopFailed", b"[]", b""], "expected 2 frames"),
        ([b"LoopFailed", b"[{"], "not JSON"),
        ([b"LoopFailed", orjson.dumps(GOOD)], "must be a JSON array"),
        ([b"LoopFailed", b"[]"], f"1 to {MAX_BATCH} signals, not 0"),
        ([b"LoopFailed", orjson.dumps([GOOD] * (MAX_BATCH + 1))], f"not {MAX_BATCH + 1}"),
    ],
)
def test_a_message_bad_as_a_whole_raises_naming_why(frames: list[bytes], message: str) -> None:
    with pytest.raises(MalformedSignal, match=message):
        decode_batch(frames)


def test_a_full_batch_is_taken() -> None:
    good, bad = decode_batch([b"LoopFailed", orjson.dumps([GOOD] * MAX_BATCH)])
    assert (len(good), bad) == (MAX_BATCH, [])


def test_encode_batch_refuses_mixed_empty_and_long_batches() -> None:
    one = signals.envelop(EXAMPLES[0], source="s")
    other = signals.envelop(EXAMPLES[1], source="s")
    with pytest.raises(ValueError, match="one type"):
        encode_batch([one, other])
    with pytest.raises(ValueError, match="not 0"):
        encode_batch([])
    with pytest.raises(ValueError, match=f"not {MAX_BATCH + 1}"):
        encode_batch([one] * (MAX_BATCH + 1))


def test_runs_split_on_type_changes_and_at_the_limit() -> None:
    a = [signals.LoopFailed(loop_id=str(i), reason="r") for i in range(5)]
    b = [signals.PatchRejected(reason=str(i)) for i in range(2)]
    envelopes = signal_batch.envelop_many([*a[:2], *b, *a[2:]], source="s")
    lengths = [(r[0].type, len(r)) for r in signal_batch.runs(envelopes, limit=2)]
    assert lengths == [
        ("LoopFailed", 2),
        ("PatchRejected", 2),
        ("LoopFailed", 2),
        ("LoopFailed", 1),
    ]
    assert [e for r in signal_batch.runs(envelopes, limit=2) for e in r] == envelopes


@pytest.mark.parametrize("limit", [0, -3, 2.5, True, signal_batch.MAX_BATCH + 1])
def test_runs_refuses_a_limit_no_batch_can_have(limit: object) -> None:
    """runs(limit=0) or a negative limit gave runs of one, 2.5 runs of three, and a limit
    above MAX_BATCH runs that encode_batch then refuses: a bad limit is now named."""
    envelopes = signal_batch.envelop_many(
        [signals.PatchRejected(reason=str(i)) for i in range(5)], source="t"
    )
    with pytest.raises(ValueError, match=f"run limit must be an int from 1 to 256, not {limit}"):
        list(signal_batch.runs(envelopes, limit))  # type: ignore[arg-type]


def test_envelop_many_gives_fresh_ids_one_timestamp_and_refuses_non_signals() -> None:
    envelopes = signal_batch.envelop_many(EXAMPLES, source="s")
    assert len({e.id for e in envelopes}) == len(EXAMPLES)
    assert len({e.ts for e in envelopes}) == 1
    assert [e.signal for e in envelopes] == EXAMPLES
    with pytest.raises(TypeError, match="not a signal"):
        signal_batch.envelop_many([EXAMPLES[0], "LoopFailed"], source="s")  # type: ignore[list-item]
