"""The msgspec fast path of signals.decode/encode against the field-by-field reference.

`decode` must accept exactly what `decode_checked` accepts, with the same values and
value types, and reject the rest with the same error; `encode` must write the JSON the
orjson encoder wrote before it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ipc import signals
from ipc.signals import Envelope, MalformedSignal, SignalError, UnknownSignal
from ipc.signals import _codec as codec
from ipc.types import GitHash, Priority
from tests.helpers.signal_examples import EXAMPLES, GOOD, HASH, envelope_body, mutations

ENVELOPES = [signals.envelop(s, source="loop.7") for s in EXAMPLES]


def _outcome(decoder: Any, frames: list[Any]) -> tuple[Any, ...]:
    """What a decoder made of `frames`: the envelope with every value's type, or the error."""
    try:
        envelope = decoder(frames)
    except SignalError as exc:
        return (type(exc), str(exc))
    signal = envelope.signal
    kinds = tuple(type(v) for v in (*envelope[1:], *signal.fields_dict().values()))
    return (envelope, type(signal), kinds)


@pytest.mark.parametrize("envelope", ENVELOPES, ids=lambda e: e.type)
def test_decode_agrees_with_the_reference_on_every_mutation(envelope: Envelope) -> None:
    cases = mutations(envelope)
    accepted = 0
    for frames in cases:
        fast, slow = _outcome(signals.decode, frames), _outcome(signals.decode_checked, frames)
        assert fast == slow, frames
        accepted += not isinstance(fast[0], type)
    assert 1 < accepted < len(cases)  # both kinds were tried


def test_canonical_payloads_never_take_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(frames: list[bytes]) -> Envelope:
        raise AssertionError(f"slow path for {frames!r:.80}")

    monkeypatch.setattr(codec, "decode_checked", refuse)  # where decode looks it up
    for envelope in ENVELOPES:
        assert signals.decode(signals.encode(envelope)) == envelope
    with pytest.raises(AssertionError, match="slow path"):  # and the probe does work
        signals.decode([b"LoopFailed", orjson.dumps({**GOOD, "reason": 1})])


def test_decoded_values_keep_their_types() -> None:
    for envelope in ENVELOPES:
        got = signals.decode(signals.encode(envelope))
        assert got == envelope
        assert type(got.ts) is float and type(got.id) is str and type(got.source) is str
        for name, value in got.signal.fields_dict().items():
            assert type(value) is type(getattr(envelope.signal, name)), name


def test_lenient_spellings_still_decode_canonically() -> None:
    body = {"type": "BeadAssigned", "id": "x-1", "ts": 7, "source": "s", "task_id": "t"}
    bead = {**body, "spec": "s", "requirements": "r", "priority": "P1"}
    got = signals.decode([b"BeadAssigned", orjson.dumps(bead)])
    assert got.signal.priority is Priority.HIGH and got.ts == 7.0 and type(got.ts) is float
    passing = {**body, "type": "TestPassing", "hash": f" {HASH.upper()} "}
    del passing["task_id"]
    got = signals.decode([b"TestPassing", orjson.dumps(passing)])
    assert got.signal.hash == HASH and type(got.signal.hash) is GitHash


BEAD = {**GOOD, "type": "BeadAssigned", "task_id": "t", "spec": "s", "requirements": "r"}
del BEAD["loop_id"], BEAD["reason"]
GOLD = {**GOOD, "type": "GoldenMasterUpdated", "hash": HASH}
del GOLD["loop_id"], GOLD["reason"]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({**GOLD, "hash": "abc"}, MalformedSignal, r"GoldenMasterUpdated\.hash: git hash must"),
        ({**GOLD, "hash": "g" * 40}, MalformedSignal, r"GoldenMasterUpdated\.hash: .*40 hex"),
        ({**GOLD, "previous_hash": 1}, MalformedSignal, r"GoldenMasterUpdated\.previous_hash"),
        ({**BEAD, "priority": "urgent"}, MalformedSignal, r"BeadAssigned\.priority: priority"),
        ({**BEAD, "priority": 1}, MalformedSignal, r"BeadAssigned\.priority: .*a string"),
        (BEAD, MalformedSignal, r"BeadAssigned: missing field\(s\) priority"),
        ({**GOOD, "loop_id": None}, MalformedSignal, r"LoopFailed\.loop_id: expected a string"),
        ({**GOOD, "reason": 2.5}, MalformedSignal, r"LoopFailed\.reason: expected a string"),
        ({**GOOD, "colour": "red"}, MalformedSignal, r"LoopFailed: unexpected field\(s\) colour"),
        ({**GOOD, "ts": True}, MalformedSignal, r"LoopFailed: envelope\.ts"),
        ({**GOOD, "type": "Bogus"}, UnknownSignal, r"unknown signal type 'Bogus'"),
    ],
)
def test_decode_errors_name_the_signal_and_field(
    body: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        signals.decode([str(body["type"]).encode(), orjson.dumps(body)])


def test_integers_outside_64_bits_are_refused_as_before() -> None:
    body = {**GOOD, "type": "LoopComplete", "commits": 1, "reverts": 0, "duration_ms": 5}
    del body["reason"]
    for big, ok in [(2**63 - 1, True), (2**64 - 1, True), (2**64, False), (-(2**63) - 1, False)]:
        payload = orjson.dumps(body).replace(b'"commits":1', b'"commits":%d' % big)
        if ok:
            assert signals.decode([b"LoopComplete", payload]).signal.commits == big
        else:
            with pytest.raises(MalformedSignal, match=r"LoopComplete\.commits: expected an int"):
                signals.decode([b"LoopComplete", payload])


@pytest.mark.parametrize("envelope", ENVELOPES, ids=lambda e: e.type)
def test_encode_writes_the_json_orjson_wrote(envelope: Envelope) -> None:
    topic, payload = signals.encode(envelope)
    assert topic == envelope.type.encode()
    assert payload == orjson.dumps(envelope_body(envelope))  # same keys, order and bytes


def test_encode_differs_from_orjson_only_in_big_exponents() -> None:
    envelope = signals.envelop(signals.LoopFailed(loop_id="7", reason="r"), source="s")
    far = envelope._replace(ts=1.5e300)
    payload = signals.encode(far)[1]
    assert payload != orjson.dumps(envelope_body(far))  # 1.5e300 vs orjson's 1.5e+300
    assert orjson.loads(payload) == orjson.loads(orjson.dumps(envelope_body(far)))
    assert signals.decode([b"LoopFailed", payload]) == far


def test_encode_refuses_what_json_cannot_hold() -> None:
    envelope = signals.envelop(signals.LoopFailed(loop_id="7", reason="r"), source="s")
    with pytest.raises(TypeError):
        signals.encode(envelope._replace(source=object()))  # type: ignore[arg-type]
