"""Bounds on a TOML document, checked before and after `tomllib` reads it.

`tomllib` recurses once per nested array or inline table: 3,000 nested arrays raise
RecursionError from deep inside it, and anything that walks the decoded value
recursively afterwards (repr, ==, orjson) fails the same way. A config that is too
large or too deep is refused here instead, by name:

    text = read_bounded(path, max_bytes=MAX_BYTES)   # size, before reading it all
    check_brackets(text, max_depth=MAX_DEPTH)        # [ and { nesting, before tomllib
    data = tomllib.loads(text)
    check_depth(data, max_depth=MAX_DEPTH)           # nesting of the decoded value

Each check raises TomlBoundsError(key, problem). The bracket scan is one regex pass
(strings and comments are skipped, so a "[" inside a string does not count); it stops
at the first bracket past the bound. Nothing here recurses.
"""

from __future__ import annotations

import os
import re
from typing import Any

MAX_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 100  # arrays, inline tables and tables nested in one another

_TOKENS = re.compile(
    r'"""(?:\\.|[^\\])*?"""(?!")'  # multi-line basic string (may end in up to 2 more ")
    r"|'''.*?'''(?!')"  # multi-line literal string
    r'|"(?:\\.|[^"\\\n])*"'  # basic string
    r"|'[^'\n]*'"  # literal string
    r"|#[^\n]*"  # comment
    r"|[\[\]{}]",
    re.DOTALL,
)
_HEADER = re.compile(r"\[\[?\s*([^\]\n]*?)\s*\]")
_KEY_LIMIT = 200  # characters of a key path shown in an error


class TomlBoundsError(ValueError):
    """A TOML document exceeds a bound; `key` says where, `problem` what."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def read_bounded(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES) -> str:
    """Read a UTF-8 text file of at most `max_bytes` bytes.

    Reads at most `max_bytes + 1` bytes whatever the file is (a FIFO, /dev/zero), so
    it blocks only as long as the file takes to give that much. Raises
    TomlBoundsError("(file)", ...) past the bound, OSError and UnicodeDecodeError as
    reading does.
    """
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TomlBoundsError(
            "(file)", f"larger than {max_bytes} bytes (a config is read only up to that size)"
        )
    return data.decode()


def check_brackets(text: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse arrays and inline tables nested more than `max_depth` deep in `text`.

    Raises TomlBoundsError naming the key the value belongs to (as far as one line of
    text tells it) and the line where the bound was passed. Syntax errors are left to
    tomllib.
    """
    depth = 0
    table = ""
    key = ""
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            if depth == 0:
                table, key = _where(text, match.start(), table)
            depth += 1
            if depth > max_depth:
                line = text.count("\n", 0, match.start()) + 1
                raise TomlBoundsError(
                    _shorten(key),
                    f"arrays or inline tables nested more than {max_depth} deep (line {line})",
                )
        elif token in "]}":
            depth = max(depth - 1, 0)


def _where(text: str, pos: int, table: str) -> tuple[str, str]:
    """At an opening bracket outside any value: the current table, and the key path."""
    line_start = text.rfind("\n", 0, pos) + 1
    before = text[line_start:pos]
    if not before.strip():  # a [table] or [[array.of.tables]] header
        header = _HEADER.match(text, pos)
        name = header.group(1) if header else table
        return name, name
    name = before.split("=", 1)[0].strip()
    return table, f"{table}.{name}" if table else name


def check_depth(data: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a decoded value nested more than `max_depth` deep (dotted keys and table
    headers nest tables without a single bracket). Iterative: any depth is safe here.
    Raises TomlBoundsError naming the key path where the bound was passed."""
    # (container, depth, path): path is a linked list (parent path, key), made into a
    # string only for the error.
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > max_depth:
            raise TomlBoundsError(
                _shorten(_path_text(path)), f"tables and arrays nested more than {max_depth} deep"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((v, depth + 1, (path, k)) for k, v in items if isinstance(v, dict | list))


def _path_text(path: tuple[Any, ...]) -> str:
    parts: list[str] = []
    while path:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".")


def _shorten(key: str) -> str:
    if len(key) <= _KEY_LIMIT:
        return key or "(document)"
    half = _KEY_LIMIT // 2
    return f"{key[:half]}...{key[-half:]}"
