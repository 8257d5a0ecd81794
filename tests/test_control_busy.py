"""A control socket whose listen backlog is full is busy, not gone: call() retries the
connect (EAGAIN) until its timeout, then fails saying so; commands queue meanwhile."""

from __future__ import annotations

import os
import socket
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipc import control

pytestmark = pytest.mark.integration  # real processes and sockets


@pytest.fixture
def full_backlog(tmp_path: Path) -> Iterator[tuple[Path, socket.socket, list[socket.socket]]]:
    """A listening AF_UNIX socket (backlog 1) nobody accepts, and idle clients queued on
    it until the kernel refuses one more (EAGAIN)."""
    path = tmp_path / "factoryd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(1)
    idle: list[socket.socket] = []
    try:
        for _ in range(64):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(os.fspath(path))
            except BlockingIOError:
                client.close()
                break
            idle.append(client)
        else:
            pytest.fail("the backlog never filled")
        yield path, listener, idle
    finally:
        for client in idle:
            client.close()
        listener.close()


class SteppedClock:
    """control's clock: monotonic() is what the sleeps so far add up to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_full_backlog_is_retried_until_the_timeout_then_reported_busy(
    full_backlog, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _listener, _idle = full_backlog
    clock = SteppedClock()
    monkeypatch.setattr(control, "time", clock)
    with pytest.raises(control.ControlBusy) as info:
        control.call(path, "status", timeout=0.3)
    # it kept trying, backing off, and gave up only at its deadline, not at once
    assert len(clock.sleeps) > 1
    assert clock.now >= 1000.0 + 0.3  # the deadline, as call() computed it
    assert str(info.value).startswith("factoryd is busy: its control socket's backlog is full"), (
        info.value
    )
    assert isinstance(info.value, control.ControlTimeout)


def test_a_call_waiting_on_a_full_backlog_goes_through_once_the_listener_accepts(
    full_backlog, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, listener, idle = full_backlog
    retried = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:  # the backoff between two refused connects
        retried.set()
        real_sleep(seconds)

    monkeypatch.setattr(control, "time", types.SimpleNamespace(monotonic=time.monotonic,
                                                               sleep=sleep))  # fmt: skip
    result: list[Any] = []
    caller = threading.Thread(
        target=lambda: result.append(control.call(path, "status", timeout=30)), daemon=True
    )
    caller.start()
    assert retried.wait(timeout=10), "call() never met the full backlog"
    listener.settimeout(10)
    for _ in idle:  # first in, first accepted: the idle clients, then the caller
        listener.accept()[0].close()
    conn, _ = listener.accept()
    with conn:
        deadline = time.monotonic() + 10
        assert control.recv_frame(conn, deadline=deadline) == {"command": "status", "args": {}}
        control.send_frame(conn, {"ok": True, "result": "served"}, deadline=deadline)
    caller.join(timeout=10)
    assert result == ["served"]
