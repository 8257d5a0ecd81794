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
# A GitHash is checked in two steps: its length here, in C, and its digits when it goes
# into the dataclass (`_hash_setter`). Cheaper than a Meta pattern (msgspec calls Python's
# re, ~0.5 µs a hash) or a GitHash dec_hook (~1.3 µs a hash).
_WireHash = Annotated[str, msgspec.Meta(min_length=40, max_length=40)]
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
    has_hash: bool  # msgspec writes a GitHash (a str subclass) only through a hook: slower


_HEX = b"0123456789abcdef"
_new_str = str.__new__


class NotCanonical(Exception):
    """The fast path cannot take this payload as it is; `decode_checked` decides."""


def _hash_setter(setter: Any) -> Any:
    """`setter` for a GitHash slot fed a 40-character str from the wire.

    Takes lower-case hex as it is; anything else (an upper-case hash, which the slow
    path still takes, or no hex at all) raises NotCanonical.
    """

    def set_hash(obj: Any, value: str | None) -> None:
        if value is not None:
            if value.encode().translate(None, _HEX):  # deletes 0-9a-f: is anything left?
                raise NotCanonical
            value = _new_str(GitHash, value)
        setter(obj, value)

    return set_hash


def _slot_filler(cls: type, names: tuple[str, ...], hints: dict[str, Any]) -> Any:
    """Set a fresh instance's slots from (id, ts, source, *fields), skipping the checks.

    Unrolled by field count (a signal has one to four fields): a loop costs twice as much.
    """
    setters = [cls.__dict__[n].__set__ for n in names]
    for i, name in enumerate(names):
        if hints[name] in (GitHash, GitHash | None):
            setters[i] = _hash_setter(setters[i])
    s0, s1, s2, s3 = [*setters, None, None, None][:4]

    def fill1(obj: Any, v: tuple[Any, ...]) -> None:
        s0(obj, v[3])

    def fill2(obj: Any, v: tuple[Any, ...]) -> None:
        s0(obj, v[3])
        s1(obj, v[4])

    def fill3(obj: Any, v: tuple[Any, ...]) -> None:
        s0(obj, v[3])
        s1(obj, v[4])
        s2(obj, v[5])

    def fill4(obj: Any, v: tuple[Any, ...]) -> None:
        s0(obj, v[3])
        s1(obj, v[4])
        s2(obj, v[5])
        s3(obj, v[6])

    if not 1 <= len(setters) <= 4:
        raise TypeError(f"{cls.__name__}: a signal has 1 to 4 fields, not {len(setters)}")
    return (fill1, fill2, fill3, fill4)[len(setters) - 1]


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
    return WirePlan(
        cls=cls,
        topic=name.encode(),
        wire=wire,
        values=getter if len(names) > 1 else lambda signal: (getter(signal),),
        fill=_slot_filler(cls, names, hints),
        has_hash=any(hints[n] in (GitHash, GitHash | None) for n in names),
    )
