"""Child output capture: lines tagged with the child id, partial lines kept until EOF,
and the per-child rings bounded even when dynamic children come and go forever."""

from __future__ import annotations

import io
import os

from supervisor import child_logs
from supervisor.child_logs import ChildLogs


def _drain(logs: ChildLogs, fd: int) -> None:
    while logs.read(fd):
        pass


def test_lines_are_tagged_and_a_last_partial_line_survives_eof() -> None:
    sink = io.StringIO()
    logs = ChildLogs(sink)
    r, w = logs.open_pipe("svc")
    os.write(w, b"one\ntwo\nno newline at the end")
    os.close(w)
    _drain(logs, r)
    assert sink.getvalue() == "[svc] one\n[svc] two\n[svc] no newline at the end\n"
    assert [text for _, text in logs.tail("svc", 2)] == ["two", "no newline at the end"]
    assert logs.tail("unknown", 5) == []


def test_rings_of_finished_children_are_bounded(monkeypatch) -> None:
    monkeypatch.setattr(child_logs, "_MAX_RINGS", 3)
    logs = ChildLogs(io.StringIO())
    live_r, live_w = logs.open_pipe("live")
    for n in range(5):
        r, w = logs.open_pipe(f"loop.{n}")
        os.write(w, b"hello\n")
        os.close(w)
        _drain(logs, r)
    assert len(logs.rings) == 3
    assert "live" in logs.rings  # a child with an open pipe keeps its ring
    assert "loop.4" in logs.rings and "loop.0" not in logs.rings
    os.close(live_w)
    _drain(logs, live_r)
