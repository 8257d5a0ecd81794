"""What a JSON-RPC line says about itself, read from a bounded prefix of it.

A line we cannot decode whole (longer than the framing limit, or JSON orjson refuses, such
as an escaped lone surrogate "\\ud800") may still be a request that its sender waits on.
`read_header` scans at most PREFIX_BYTES of it, top level only (a nested "id" inside the
params never counts), and reports the id when it is readable (an integer or a UTF-8
string, its value complete within the prefix) and which of the keys "method", "result" and
"error" it saw, so the transport can answer the request, or fail our own request that the
line answers, instead of leaving either side waiting. Pure: no I/O, linear in the prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

PREFIX_BYTES = 4096
_KINDS = frozenset({"method", "result", "error"})
_WHITESPACE = b" \t\r\n"
_VALUE_ENDS = b",}]" + _WHITESPACE


@dataclass(frozen=True)
class RpcHeader:
    """`request_id`: the message's id, None when absent or unreadable; `keys`: which of
    method/result/error appear at its top level within the prefix."""

    request_id: int | str | None
    keys: frozenset[str]

    @property
    def is_response(self) -> bool:
        """A reply to a request of ours: result or error, and no method."""
        return "method" not in self.keys and bool(self.keys & {"result", "error"})


def read_header(line: bytes) -> RpcHeader:
    """The header of `line` (only its first PREFIX_BYTES are looked at)."""
    data = line[:PREFIX_BYTES]
    keys: set[str] = set()
    request_id: int | str | None = None
    i = _skip_ws(data, 0)
    if i >= len(data) or data[i] != ord("{"):
        return RpcHeader(None, frozenset())
    i += 1
    while True:
        i = _skip_ws(data, i)
        if i < len(data) and data[i] == ord(","):
            i = _skip_ws(data, i + 1)
        if i >= len(data) or data[i] != ord('"'):
            break  # the end of the object, the end of the prefix, or not JSON
        key_end = _string_end(data, i)
        if key_end is None:
            break
        key = _decode(data[i:key_end])
        i = _skip_ws(data, key_end)
        if i >= len(data) or data[i] != ord(":"):
            break
        value_start = _skip_ws(data, i + 1)
        if isinstance(key, str) and key in _KINDS:
            keys.add(key)  # present, whether or not its value fits in the prefix
        value_end = _value_end(data, value_start)
        if value_end is None:
            break
        if key == "id":
            request_id = _readable_id(_decode(data[value_start:value_end]))
        i = value_end
    return RpcHeader(request_id, frozenset(keys))


def _readable_id(value: object) -> int | str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: no reply could carry it
            return None
    return value


def _decode(token: bytes) -> object:
    """A JSON token, decoded leniently (stdlib json accepts lone surrogates); None if not."""
    try:
        return json.loads(token.decode("utf-8", errors="replace"))
    except ValueError:
        return None


def _skip_ws(data: bytes, i: int) -> int:
    while i < len(data) and data[i] in _WHITESPACE:
        i += 1
    return i


def _string_end(data: bytes, i: int) -> int | None:
    """The index just past the string opening at `i`; None if it runs past the prefix."""
    i += 1
    while i < len(data):
        byte = data[i]
        if byte == ord("\\"):
            i += 2
            continue
        if byte == ord('"'):
            return i + 1
        i += 1
    return None


def _value_end(data: bytes, i: int) -> int | None:
    """The index just past the value starting at `i`; None if it runs past the prefix."""
    if i >= len(data):
        return None
    if data[i] == ord('"'):
        return _string_end(data, i)
    if data[i] in b"{[":
        depth = 0
        while i < len(data):
            byte = data[i]
            if byte == ord('"'):
                end = _string_end(data, i)
                if end is None:
                    return None
                i = end
                continue
            if byte in b"{[":
                depth += 1
            elif byte in b"}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return None
    start = i
    while i < len(data) and data[i] not in _VALUE_ENDS:
        i += 1
    if i >= len(data) or i == start:
        return None  # a number may go on past the prefix
    return i
