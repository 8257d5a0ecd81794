"""The msgspec mirror of the signal dataclasses: one wire Struct per signal (private to
ipc.signals, which registers each signal here and owns encode/decode).

A wire Struct holds the envelope keys and the signal's fields side by side, tagged by
`type`, and accepts only what `ipc.signals.decode_checked` accepts unchanged, so a value
msgspec lets through can be put into the public dataclass without its checks running again.
"""

from __future__ import annotations

import operator
import typing
from dataclasses import MISSING, fields
from typing import Annotated, Any, NamedTuple

import msgspec

from ipc.types import GitHash, Priority

# annotation -> what the wire Struct accepts: only what decode_checked accepts unchanged.
# orjson reads integers outside [-2**63, 2**64) as floats (no integers); msgspec bounds
# must fit an int64, so [2**63, 2**64) is left to the slow path, which takes it.
_WireInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# msgspec checks a pattern by calling Python's re (~0.5 µs a hash): the wire checks only
# the length, and `_as_wire_hash` the digits (str.strip, in C), falling back if they are not.
_WireHash = Annotated[str, msgspec.Meta(min_length=40, max_length=40)]
_HEX_DIGITS = "0123456789abcdef"
_WIRE_TYPES: dict[Any, Any] = {
    str: str,
    int: _WireInt,
    GitHash: _WireHash,
    GitHash | None: _WireHash | None,
    Priority: Priority,
}
_WIRE_ENVELOPE = [
    ("id", Annotated[str, msgspec.Meta(min_length=1)]),
    ("ts", float),
    ("source", str),
]


class WirePlan(NamedTuple):
    """How one signal class meets its wire Struct (built once, in `_signal`)."""

    cls: type
    topic: bytes
    wire: type[msgspec.Struct]
    values: typing.Callable[[Any], tuple[Any, ...]]  # signal -> its field values, in order
    fill: typing.Callable[[Any, tuple[Any, ...]], None]  # sets the slots from the wire's astuple


class NotCanonical(Exception):
    """The fast path cannot take this payload as it is; `decode_checked` decides."""


def _as_wire_hash(value: str | None) -> GitHash | None:
    """A 40-character str from the wire as a GitHash, if it is lower-case hex already."""
    if value is None:
        return None
    if value.strip(_HEX_DIGITS):  # something other than 0-9a-f is left
        raise NotCanonical
    return str.__new__(GitHash, value)


def _slot_filler(cls: type, names: tuple[str, ...], hashes: frozenset[str]) -> Any:
    """Set a fresh instance's slots from (id, ts, source, *fields), skipping the checks.

    Unrolled by field count (a signal has one to four fields): a loop costs twice as much.
    """
    plain = tuple(cls.__dict__[n].__set__ for n in names)

    def retyped(s: Any) -> Any:
        return lambda obj, value: s(obj, _as_wire_hash(value))

    s = tuple(retyped(f) if n in hashes else f for f, n in zip(plain, names, strict=True))
    if len(s) == 1:
        return lambda obj, v: s[0](obj, v[3])
    if len(s) == 2:
        s0, s1 = s
        return lambda obj, v: (s0(obj, v[3]), s1(obj, v[4]))
    if len(s) == 3:
        s0, s1, s2 = s
        return lambda obj, v: (s0(obj, v[3]), s1(obj, v[4]), s2(obj, v[5]))
    if len(s) == 4:
        s0, s1, s2, s3 = s
        return lambda obj, v: (s0(obj, v[3]), s1(obj, v[4]), s2(obj, v[5]), s3(obj, v[6]))
    raise TypeError(f"{cls.__name__}: a signal has 1 to 4 fields, not {len(s)}")


def wire_plan(cls: type, names: tuple[str, ...], hints: dict[str, Any]) -> WirePlan:
    """The msgspec Struct mirroring `cls` on the wire, and how to move values across."""
    spec: list[Any] = list(_WIRE_ENVELOPE)
    for f in fields(cls):
        wire_type = _WIRE_TYPES[hints[f.name]]
        spec.append((f.name, wire_type) if f.default is MISSING else (f.name, wire_type, f.default))
    name = cls.__name__
    wire = msgspec.defstruct(
        f"{name}Wire", spec, tag=name, tag_field="type", forbid_unknown_fields=True, gc=False
    )
    getter = operator.attrgetter(*names)
    hashes = frozenset(n for n in names if hints[n] in (GitHash, GitHash | None))
    return WirePlan(
        cls=cls,
        topic=name.encode(),
        wire=wire,
        values=getter if len(names) > 1 else lambda signal: (getter(signal),),
        fill=_slot_filler(cls, names, hashes),
    )
