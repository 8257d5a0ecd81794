"""Logging for the agent turn process: one line per record, a bounded number of lines.

Without a configured handler Python's last-resort handler writes every warning from the
acp library with its full traceback (logging.exception), so whatever an agent makes the
library complain about reaches our stderr in full. `install()` puts a `LineBudget` on the
root logger instead: each record is one line ("WARNING name: message [ExcType: text]",
cut at `max_line_chars`), at most `max_lines` of them; past that, one line says so and
the rest are only counted (`suppressed`). The stderr of a turn stays small whatever the
agent sends; the structured result and failure reports are written separately.
"""

from __future__ import annotations

import logging
from typing import TextIO

MAX_LINES = 100
MAX_LINE_CHARS = 300


class LineBudget(logging.Handler):
    def __init__(
        self, stream: TextIO, *, max_lines: int = MAX_LINES, max_line_chars: int = MAX_LINE_CHARS
    ) -> None:
        super().__init__(logging.WARNING)
        self.stream = stream
        self.max_lines = max_lines
        self.max_line_chars = max_line_chars
        self.written = 0
        self.suppressed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.written >= self.max_lines:
            self.suppressed += 1
            return
        self.written += 1
        try:
            line = f"{record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                line += f" [{type(exc).__name__}: {exc}]"
            line = " ".join(line.split())[: self.max_line_chars]
            if self.written == self.max_lines:
                line += f" (log limit of {self.max_lines} lines reached; the rest are counted)"
            self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into its caller
            self.handleError(record)

    def statistics(self) -> dict[str, int]:
        return {"written": self.written, "suppressed": self.suppressed}


def install(stream: TextIO, *, max_lines: int = MAX_LINES) -> LineBudget:
    """Replace the root logger's handlers with a LineBudget on `stream`; returns it."""
    handler = LineBudget(stream, max_lines=max_lines)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return handler
