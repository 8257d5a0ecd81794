"""The agent turn process's log: one line per record, a bounded number of lines."""

from __future__ import annotations

import io
import logging

from procs.agent.log_lines import LineBudget


def test_records_are_one_line_each_and_bounded_overall() -> None:
    stream = io.StringIO()
    handler = LineBudget(stream, max_lines=5)
    log = logging.getLogger("test_acp_log_lines")
    log.addHandler(handler)
    log.propagate = False
    try:
        for n in range(50):
            try:
                raise ValueError(f"bad thing {n}\nwith a second line")
            except ValueError:
                log.exception("handler failed for %s", n)
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    first = "handler failed for 0 [ValueError: bad thing 0 with a second line]"
    assert lines[0] == f"ERROR test_acp_log_lines: {first}"
    assert "log limit of 5 lines reached" in lines[-1]
    assert "Traceback" not in stream.getvalue()
    assert handler.statistics() == {"written": 5, "suppressed": 45}
