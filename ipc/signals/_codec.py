"""The twelve signals of seed fs-002, their envelope, and the wire encoding.

On the wire a signal is two frames, `[topic, payload]`: the topic is the signal's type
name (subscriptions filter on it) and the payload one JSON object holding the envelope
(`type`, `id`, `ts`, `source`) and the signal's own fields side by side:

    [b"LoopFailed", b'{"type":"LoopFailed","id":"4f1c..-1","ts":1763900000.1,
                      "source":"factory_loop.7","loop_id":"7","reason":"timeout"}']

Decoding is strict: the topic must equal `type`, every field must be present with its
type and nothing else may appear. A bad message raises MalformedSignal, an unknown type
UnknownSignal; the bus helpers count and drop both so no service ever sees them.

Speed: each signal class gets a msgspec "wire" Struct mirroring it (envelope keys first,
tagged by `type`, unknown fields forbidden, Priority by value, ints in int64, a GitHash
40 characters long and then checked to be lower-case hex). One msgspec decoder over
their union parses and checks a payload in C; what it accepts `decode_checked` accepts
with the same values, so the public dataclass is built without re-running its checks.
Anything else (including what only the lenient path takes, such as an upper-case hash
or priority "P1") goes through `decode_checked`, which decides and names the problem.
Encoding fills the wire Struct and lets msgspec write it: the JSON orjson writes, byte
for byte, except that a float with a big exponent reads `1e16` rather than `1e+16`.
(Signals with GitHash fields, which msgspec writes only through a slower hook, are
still written by orjson.)
"""

from __future__ import annotations

import itertools
import math
import os
import time
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

import msgspec
import orjson

from ipc.signals._wire import NotCanonical, WirePlan, wire_plan
from ipc.types import GitHash, InvalidValue, Priority

ENVELOPE_KEYS = ("type", "id", "ts", "source")


# A signal says "look"; what must be looked at lives in SQLite. So a signal is small:
# one larger than MAX_SIGNAL_BYTES is refused by the publisher and the journal, and a
# bus message (one signal, or a batch) larger than MAX_MESSAGE_BYTES by the broker.
MAX_SIGNAL_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class SignalError(ValueError):
    """A message is not a valid signal."""


class SignalTooLarge(SignalError):
    """A signal's payload exceeds MAX_SIGNAL_BYTES; the message names its type and size."""


class MalformedSignal(SignalError):
    """Wrong frame count, not JSON, a missing/extra/mistyped field, or topic != type."""


class UnknownSignal(SignalError):
    """A well-formed envelope whose type is not one of the twelve signals."""


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"expected a string, got {type(value).__name__}")
    return value


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"expected an integer, got {type(value).__name__}")
    return value


def _as_hash(value: Any) -> GitHash:
    return value if type(value) is GitHash else GitHash(value)


def _as_optional_hash(value: Any) -> GitHash | None:
    return None if value is None else _as_hash(value)


def _as_priority(value: Any) -> Priority:
    return value if isinstance(value, Priority) else Priority.from_string(value)


# annotation -> (exact types accepted as they are, converter for anything else)
_CONVERTERS: dict[Any, tuple[tuple[type, ...], typing.Callable[[Any], Any]]] = {
    str: ((str,), _as_str),
    int: ((int,), _as_int),
    GitHash: ((GitHash,), _as_hash),
    GitHash | None: ((GitHash, type(None)), _as_optional_hash),
    Priority: ((Priority,), _as_priority),
}


class Signal:
    """Base of the twelve signal dataclasses: fields are checked (and coerced) on creation.

    `field_names` is each signal class's own fields, in order (the envelope's not included).
    """

    __slots__ = ()
    __test__: ClassVar[bool] = False  # pytest: these Test* names are not test classes
    field_names: ClassVar[tuple[str, ...]] = ()
    _checks: ClassVar[tuple[tuple[str, tuple[type, ...], typing.Callable[[Any], Any]], ...]] = ()
    _required: ClassVar[frozenset[str]] = frozenset()
    _allowed: ClassVar[frozenset[str]] = frozenset()
    if typing.TYPE_CHECKING:  # every concrete signal is a dataclass (`fields()` takes it)
        __dataclass_fields__: ClassVar[dict[str, Any]]

    def __post_init__(self) -> None:
        for name, exact, convert in self._checks:
            value = getattr(self, name)
            if type(value) in exact:  # the common case, checked without a call
                continue
            try:
                converted = convert(value)
            except InvalidValue as exc:
                raise MalformedSignal(f"{type(self).__name__}.{name}: {exc}") from None
            if converted is not value:
                object.__setattr__(self, name, converted)

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def fields_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.field_names}


SIGNAL_TYPES: dict[str, type[Signal]] = {}
PLANS: dict[type, WirePlan] = {}
"""Each signal's WirePlan, by signal class and by wire Struct class (for ipc.signals.batch)."""

_S = TypeVar("_S", bound=type[Signal])


def _signal(cls: _S) -> _S:
    """Register a signal dataclass and precompute its field checks (explicit, no metaclass)."""
    hints = typing.get_type_hints(cls)
    checks = []
    required = set()
    for f in fields(cls):
        if f.name in ENVELOPE_KEYS:
            raise TypeError(f"{cls.__name__}.{f.name} clashes with an envelope key")
        exact, convert = _CONVERTERS[hints[f.name]]
        checks.append((f.name, exact, convert))
        if f.default is f.default_factory:  # both MISSING: the field is required
            required.add(f.name)
    cls._checks = tuple(checks)
    cls.field_names = tuple(name for name, _, _ in checks)
    cls._required = frozenset(required)
    cls._allowed = frozenset(cls.field_names)
    SIGNAL_TYPES[cls.__name__] = cls
    plan = wire_plan(cls, cls.field_names, hints)
    PLANS[cls] = PLANS[plan.wire] = plan
    return cls


@_signal
@dataclass(frozen=True, slots=True)
class TestFailure(Signal):
    """The golden master went red (or red with a new error): `file` failed with `error`."""

    file: str
    error: str
    context_hash: GitHash


@_signal
@dataclass(frozen=True, slots=True)
class TestPassing(Signal):
    """The golden master is green again at `hash`."""

    hash: GitHash


@_signal
@dataclass(frozen=True, slots=True)
class BeadAssigned(Signal):
    """A ready bead was picked for a factory loop."""

    task_id: str
    spec: str
    requirements: str
    priority: Priority


@_signal
@dataclass(frozen=True, slots=True)
class PatchProposed(Signal):
    """A mutator or loop offers a patch (a diff against `base_hash`) to the merge queue."""

    patch_id: str
    base_hash: GitHash
    diff: str
    workspace: str = ""


@_signal
@dataclass(frozen=True, slots=True)
class PatchAccepted(Signal):
    """The merge queue absorbed a patch; the golden master is now at `hash`."""

    hash: GitHash
    patch_id: str = ""


@_signal
@dataclass(frozen=True, slots=True)
class PatchRejected(Signal):
    """The merge queue refused a patch, and says why."""

    reason: str
    patch_id: str = ""


@_signal
@dataclass(frozen=True, slots=True)
class GoldenMasterUpdated(Signal):
    """The golden master moved from `previous_hash` (None on first sight) to `hash`."""

    hash: GitHash
    previous_hash: GitHash | None = None


@_signal
@dataclass(frozen=True, slots=True)
class Evolution(Signal):
    """The world changed (new golden master): work based on older trees is stale."""

    hash: GitHash
    reason: str = ""


@_signal
@dataclass(frozen=True, slots=True)
class LoopSpawned(Signal):
    loop_id: str
    task_id: str
    phase: str


@_signal
@dataclass(frozen=True, slots=True)
class LoopComplete(Signal):
    commits: int
    reverts: int
    duration_ms: int
    loop_id: str = ""


@_signal
@dataclass(frozen=True, slots=True)
class LoopFailed(Signal):
    loop_id: str
    reason: str


@_signal
@dataclass(frozen=True, slots=True)
class ResourceExhausted(Signal):
    """A request hit a limit: `current` of `resource` in use (or free, for RAM) vs `limit`."""

    resource: str
    current: int
    limit: int


class Envelope(NamedTuple):
    """A signal as sent: who (`source`), when (`ts`, wall-clock seconds), which (`id`).

    (A NamedTuple rather than a frozen dataclass: one is built per signal sent or received.)
    """

    signal: Signal
    id: str
    ts: float
    source: str

    @property
    def type(self) -> str:
        return type(self.signal).__name__


_new_tuple = tuple.__new__  # Envelope(...) minus the Python-level __new__ NamedTuple adds


class _IdSource:
    """Unique ids without uuid4's cost: a random per-process prefix plus a counter."""

    def __init__(self) -> None:
        self.reseed()
        # a forked child gets a prefix of its own, or its ids would repeat the parent's
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter)}"


_ids = _IdSource()
next_id = _ids.next
"""A fresh envelope id (`envelop` uses it; ipc.signals.batch too)."""


def envelop(signal: Signal, *, source: str) -> Envelope:
    """Wrap `signal` with a fresh id and the current time."""
    if not isinstance(signal, Signal):
        raise TypeError(f"not a signal: {signal!r:.80}")
    return _new_tuple(Envelope, (signal, next_id(), time.time(), source))


ENCODER = msgspec.json.Encoder()
"""The msgspec encoder of wire Structs (shared with ipc.signals.batch)."""
# Built at run time from the registered signals: a value, not a type mypy can read.
WIRE_UNION: Any = typing.Union[tuple(PLANS[c].wire for c in SIGNAL_TYPES.values())]  # noqa: UP007
"""The union of every signal's wire Struct, tagged by `type` (what a decoder is built on)."""
_DECODER = msgspec.json.Decoder(WIRE_UNION)
_astuple = msgspec.structs.astuple
_new_object = object.__new__


def encode(envelope: Envelope) -> list[bytes]:
    """The two wire frames `[topic, payload]` of `envelope`."""
    signal = envelope.signal
    plan = PLANS.get(type(signal))
    if plan is not None and not plan.has_hash:
        wire = plan.wire(envelope.id, envelope.ts, envelope.source, *plan.values(signal))
        return [plan.topic, ENCODER.encode(wire)]
    # GitHash fields (orjson writes a str subclass natively, msgspec through a slow hook)
    # or a subclass of a signal: orjson, from a dict
    return [type(signal).__name__.encode(), orjson.dumps(payload_dict(envelope))]


def payload_dict(envelope: Envelope) -> dict[str, Any]:
    """The payload as a dict: the envelope keys, then the signal's fields."""
    signal = envelope.signal
    body = {
        "type": type(signal).__name__,
        "id": envelope.id,
        "ts": envelope.ts,
        "source": envelope.source,
    }
    for key in signal.field_names:
        body[key] = getattr(signal, key)
    return body


def decode(frames: list[bytes]) -> Envelope:
    """Strictly decode wire frames `[topic, payload]` into the envelope they carry.

    The common case (a valid, canonical payload) is parsed and checked by msgspec; the
    rest goes through `decode_checked`, which accepts or rejects exactly as before.

    Raises:
        MalformedSignal: wrong frame count, not JSON, a missing, extra or mistyped field
            (the message names the signal and the field), or topic != type.
        UnknownSignal: a well-formed envelope of a type that is no signal.
    """
    try:
        topic, payload = frames
        wire = _DECODER.decode(payload)
    except (msgspec.MsgspecError, ValueError, TypeError):  # said precisely by the slow path
        return decode_checked(frames)
    plan = PLANS[type(wire)]
    if topic != plan.topic:
        return decode_checked(frames)
    values = _astuple(wire)
    signal: Signal = _new_object(plan.cls)
    try:
        plan.fill(signal, values)
    except NotCanonical:
        return decode_checked(frames)
    return _new_tuple(Envelope, (signal, values[0], values[1], values[2]))


def parse_frames(frames: list[bytes], *, what: str = "payload") -> tuple[bytes, Any]:
    """`[topic, payload]` with the payload parsed by orjson; MalformedSignal otherwise."""
    if len(frames) != 2:
        raise MalformedSignal(f"expected 2 frames [topic, payload], got {len(frames)}")
    topic, payload = frames
    try:
        return topic, orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedSignal(f"{what} is not JSON: {exc}") from None


def decode_checked(frames: list[bytes]) -> Envelope:
    """Decode field by field with orjson and the dataclass checks, naming what is wrong.

    The reference for `decode`: slower, but it also takes the lenient spellings the
    signal constructors accept (an upper-case hash, priority "P1").
    """
    topic, body = parse_frames(frames)
    if not isinstance(body, dict):
        raise MalformedSignal("payload must be a JSON object")
    name = body.pop("type", None)
    if not isinstance(name, str):
        raise MalformedSignal("envelope.type must be a string")
    if topic != name.encode():
        raise MalformedSignal(f"topic {topic[:40]!r} does not match type {name[:40]!r}")
    id_, ts, source = body.pop("id", None), body.pop("ts", None), body.pop("source", None)
    if not isinstance(id_, str) or not id_:
        raise MalformedSignal(f"{name}: envelope.id must be a non-empty string")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise MalformedSignal(f"{name}: envelope.ts must be a number")
    if not isinstance(source, str):
        raise MalformedSignal(f"{name}: envelope.source must be a string")
    cls = SIGNAL_TYPES.get(name)
    if cls is None:
        raise UnknownSignal(f"unknown signal type {name[:40]!r}")
    keys = body.keys()
    if keys != cls._allowed:  # all fields given is the common case; else look closer
        if missing := cls._required - keys:
            raise MalformedSignal(f"{name}: missing field(s) {', '.join(sorted(missing))}")
        if extra := keys - cls._allowed:
            raise MalformedSignal(f"{name}: unexpected field(s) {', '.join(sorted(extra))}")
    return Envelope(cls(**body), id_, float(ts), source)
