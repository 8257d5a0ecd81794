"""Rewrite fields of one JSON object line, leaving every other byte of it as it was.

A changed bead's line keeps its key order, its spacing and the spelling of the fields
that did not change (Go's `\\u003c`, a raw 'é', a float's digits): only the members
whose values change are written anew, in the line's own style (', ' and ': ' or the
compact ',' and ':'; raw UTF-8 unless the line escapes it). A new member goes at the
end; a removed one takes its separator with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DELETE: Any = object()
"""A patch value that removes the member."""

_decoder = json.JSONDecoder()
_WS = " \t\r\n"


class NotAnObjectLine(ValueError):
    """The line is not one JSON object (it cannot be spliced)."""


@dataclass
class _Member:
    lead: str  # what stands before the key: '' for the first, else ', ' or ','
    key: str
    key_text: str  # the key as written, quotes included
    colon: str  # ': ' or ':' as written
    value_text: str


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _members(text: str) -> tuple[str, list[_Member], str]:
    """(head up to and with '{' and its whitespace, members, tail from the last value on)."""
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        raise NotAnObjectLine("not a JSON object")
    i = _skip_ws(text, i + 1)
    head = text[:i]
    members: list[_Member] = []
    lead = ""
    while i < len(text) and text[i] != "}":
        start = i
        key, i = _decoder.raw_decode(text, i)
        if not isinstance(key, str):
            raise NotAnObjectLine(f"a key at column {start} is not a string")
        key_text = text[start:i]
        colon_start = i
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != ":":
            raise NotAnObjectLine(f"no ':' after key {key!r}")
        i = _skip_ws(text, i + 1)
        colon = text[colon_start:i]
        value_start = i
        _, i = _decoder.raw_decode(text, i)
        members.append(_Member(lead, key, key_text, colon, text[value_start:i]))
        sep_start = i
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            lead = text[sep_start:i]
        elif i < len(text) and text[i] == "}":
            return head, members, text[sep_start:]
        else:
            raise NotAnObjectLine(f"expected ',' or '}}' at column {i}")
    return head, members, text[i:]


def _style(members: list[_Member], text: str) -> tuple[tuple[str, str], bool]:
    colon = members[0].colon if members else ":"
    sep = next((m.lead for m in members if m.lead), ", " if colon == ": " else ",")
    ascii_only = text.isascii() and "\\u" in text  # escapes what is not ASCII
    return (sep, colon), ascii_only


def dumps_like(value: Any, separators: tuple[str, str], ensure_ascii: bool) -> str:
    return json.dumps(value, separators=separators, ensure_ascii=ensure_ascii)


def splice(line: bytes, patch: Mapping[str, Any]) -> bytes:
    """`line` (one JSON object, no newline) with `patch` applied: key -> new value, or
    DELETE. Members the patch does not name keep their bytes. Raises NotAnObjectLine."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotAnObjectLine(f"not UTF-8: {exc}") from None
    try:
        head, members, tail = _members(text)
    except json.JSONDecodeError as exc:
        raise NotAnObjectLine(str(exc)) from None
    separators, ensure_ascii = _style(members, text)
    by_key = {m.key: m for m in members}
    for key, value in patch.items():
        member = by_key.get(key)
        if value is DELETE:
            if member is not None:
                members.remove(member)
                del by_key[key]
            continue
        value_text = dumps_like(value, separators, ensure_ascii)
        if member is not None:
            member.value_text = value_text
        else:
            key_text = dumps_like(key, separators, ensure_ascii)
            new = _Member(separators[0], key, key_text, separators[1], value_text)
            members.append(new)
            by_key[key] = new
    if members:
        members[0].lead = ""
        for m in members[1:]:
            m.lead = m.lead or separators[0]
    body = "".join(m.lead + m.key_text + m.colon + m.value_text for m in members)
    if not members and not tail.lstrip(_WS).startswith("}"):
        tail = "}" + tail
    return (head + body + tail).encode("utf-8")
