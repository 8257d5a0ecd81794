"""Many signals of one type in one bus message: `[topic, JSON array of payloads]`.

Why: on a small box the bus costs more per message than per byte. Each message wakes
ZeroMQ's I/O threads and the broker, ~25 µs of CPU in all against ~4 µs of codec, so
a burst sent as a few batch messages moves several times the signals a second that
one message per signal does. Measured in bench/bus.py.

A batch holds 1 to MAX_BATCH signals, all of the topic's type; each element is the same
JSON object a single-signal message carries. Decoding is strict per element: a bad
element is reported with the error `ipc.signals.decode` gives for it alone, and the good
ones still come through. Only a message that is bad as a whole (not a JSON array,
empty, too long, wrong frame count) raises.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import msgspec
import orjson

from ipc.signals import Envelope, MalformedSignal, Signal, SignalError
from ipc.signals import _codec as signals
from ipc.signals._wire import NotCanonical

MAX_BATCH = 256
"""Signals in one batch message at most (a publisher splits longer runs). Small on
purpose: ZeroMQ's high-water marks count messages, so a subscriber that stops reading
can have up to HWM x MAX_BATCH signals queued for it rather than HWM. 32 a message
already gives most of the gain (bench/bus.py)."""

_BATCH_DECODER = msgspec.json.Decoder(list[signals.WIRE_UNION])
_new_tuple = tuple.__new__


def envelop_many(batch: Iterable[Signal], *, source: str) -> list[Envelope]:
    """Wrap each signal with a fresh id; they share one timestamp (they leave together)."""
    items = list(batch)
    for signal in items:
        if not isinstance(signal, Signal):
            raise TypeError(f"not a signal: {signal!r:.80}")
    now = time.time()
    next_id = signals.next_id
    return [_new_tuple(Envelope, (signal, next_id(), now, source)) for signal in items]


def runs(envelopes: Sequence[Envelope], limit: int = MAX_BATCH) -> Iterable[Sequence[Envelope]]:
    """Consecutive envelopes of one signal type, at most `limit` each, in order.

    Raises ValueError (at once) for a limit that is no int from 1 to MAX_BATCH.
    """
    if type(limit) is not int or not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"run limit must be an int from 1 to {MAX_BATCH}, not {limit!r}")
    return _runs(envelopes, limit)


def _runs(envelopes: Sequence[Envelope], limit: int) -> Iterable[Sequence[Envelope]]:
    start = 0
    n = len(envelopes)
    while start < n:
        cls = type(envelopes[start].signal)
        end = start + 1
        stop = min(n, start + limit)
        while end < stop and type(envelopes[end].signal) is cls:
            end += 1
        yield envelopes[start:end]
        start = end


def encode_batch(envelopes: Sequence[Envelope]) -> list[bytes]:
    """The two frames `[topic, JSON array]` of 1..MAX_BATCH envelopes of one type."""
    if not 0 < len(envelopes) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} signals, not {len(envelopes)}")
    cls = type(envelopes[0].signal)
    if any(type(e.signal) is not cls for e in envelopes):
        raise ValueError(f"a batch holds signals of one type ({cls.__name__}) only")
    plan = signals.PLANS.get(cls)
    if plan is not None and not plan.has_hash:
        wire, values = plan.wire, plan.values
        body = [wire(e.id, e.ts, e.source, *values(e.signal)) for e in envelopes]
        return [plan.topic, signals.ENCODER.encode(body)]
    # GitHash fields or a subclass: orjson from dicts, as signals.encode does
    return [cls.__name__.encode(), orjson.dumps([signals.payload_dict(e) for e in envelopes])]


def is_batch(frames: list[bytes]) -> bool:
    """Whether a received message is a batch (its payload is a JSON array)."""
    return len(frames) == 2 and frames[1][:1] == b"["


def decode_batch(frames: list[bytes]) -> tuple[list[Envelope], list[SignalError]]:
    """The good envelopes of a batch message, in order, and the error of each bad element.

    Raises:
        MalformedSignal: the message as a whole is bad: not two frames, the payload not
            a JSON array, or an array of no or more than MAX_BATCH elements.
    """
    try:
        topic, payload = frames
        wires = _BATCH_DECODER.decode(payload)
    except (msgspec.MsgspecError, ValueError, TypeError):
        return _decode_batch_checked(frames)
    if not 0 < len(wires) <= MAX_BATCH:
        return _decode_batch_checked(frames)  # raises, naming the length
    good: list[Envelope] = []
    bad: list[SignalError] = []
    plans, astuple, new_object = signals.PLANS, msgspec.structs.astuple, object.__new__
    for wire in wires:
        plan = plans[type(wire)]
        if plan.topic == topic:
            values = astuple(wire)
            signal: Signal = new_object(plan.cls)
            try:
                plan.fill(signal, values)
            except NotCanonical:
                pass  # e.g. an upper-case hash: the element alone decides, below
            else:
                good.append(_new_tuple(Envelope, (signal, values[0], values[1], values[2])))
                continue
        _decode_element(topic, signals.ENCODER.encode(wire), good, bad)
    return good, bad


def _decode_batch_checked(frames: list[bytes]) -> tuple[list[Envelope], list[SignalError]]:
    """The slow path: parse the array with orjson and decode each element on its own."""
    topic, body = signals.parse_frames(frames, what="batch payload")
    if not isinstance(body, list):
        raise MalformedSignal("a batch payload must be a JSON array")
    if not 0 < len(body) <= MAX_BATCH:
        raise MalformedSignal(f"a batch holds 1 to {MAX_BATCH} signals, not {len(body)}")
    good: list[Envelope] = []
    bad: list[SignalError] = []
    for element in body:  # what is no object is refused as a single payload would be
        _decode_element(topic, orjson.dumps(element), good, bad)
    return good, bad


def _decode_element(
    topic: bytes, payload: bytes, good: list[Envelope], bad: list[SignalError]
) -> None:
    try:
        good.append(signals.decode([topic, payload]))
    except SignalError as exc:
        bad.append(exc)
