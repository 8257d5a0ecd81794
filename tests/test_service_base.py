"""The service base's connections, driven in-process: a reader that never takes a large
reply does not hold the loop, replies past the backlog bound become `busy`, a handler's
bug is an `internal` error reply, and a Deferred answers later."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from ipc import control
from ipc.service import BadRequest, ControlConnections, Deferred, ServiceLoop
from tests.waiting import wait_until

BIG = "x" * (4 * 1024 * 1024)


def _handler(command: str, args: dict[str, Any]) -> Any:
    if command == "big":
        return BIG
    if command == "bug":
        raise KeyError("oops")
    if command == "bad":
        raise BadRequest("args.n must be a number")
    return {"echo": command}


class Running:
    """A loop on a thread of its own, with connections served through it."""

    def __init__(self, path: Path, handler: Any = _handler, **limits: Any) -> None:
        self.loop = ServiceLoop(workers=2, max_queued=0)
        self.conns = ControlConnections(control.ControlServer(path), self.loop, handler, **limits)
        self.loop.on_each_turn(self.conns.expire)
        self.loop.add_deadline_source(self.conns.next_deadline)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            self.loop.turn(0.05)

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=10)
        self.conns.close()
        self.loop.close()


def _ask_and_never_read(path: Path, command: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    body = b'{"command":"%s","args":{}}' % command.encode()
    s.sendall(len(body).to_bytes(4, "big") + body)
    return s


@pytest.mark.integration  # a real control socket
def test_readers_that_never_take_a_large_reply_hold_up_nobody(tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    svc = Running(path, reply_timeout_s=60.0)
    held = [_ask_and_never_read(path, "big") for _ in range(8)]
    try:
        assert control.call(path, "small", timeout=5) == {"echo": "small"}  # not held up
        stats = svc.conns.statistics()
        assert stats["open"] >= 8 and stats["reply_backlog_bytes"] > 0
    finally:
        for s in held:
            s.close()
        svc.close()


@pytest.mark.integration  # a real control socket
def test_unread_replies_are_bounded_and_then_busy(tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    svc = Running(path, max_reply_backlog_bytes=6 * 1024 * 1024)
    held = [_ask_and_never_read(path, "big") for _ in range(3)]
    try:
        wait_until(lambda: svc.conns.statistics()["busy"] >= 1, timeout=10, what="a busy reply")
        assert svc.conns.statistics()["reply_backlog_bytes"] <= 6 * 1024 * 1024
    finally:
        for s in held:
            s.close()
        svc.close()


@pytest.mark.integration  # a real control socket
def test_slow_reader_is_closed_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    svc = Running(path, reply_timeout_s=0.2)
    held = _ask_and_never_read(path, "big")
    try:
        wait_until(lambda: svc.conns.statistics()["abandoned"] == 1, timeout=10, what="expiry")
        assert svc.conns.statistics()["reply_backlog_bytes"] == 0
    finally:
        held.close()
        svc.close()


@pytest.mark.integration  # a real control socket
def test_errors_are_replies_and_the_service_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    svc = Running(path)
    try:
        with pytest.raises(control.RemoteError) as bug:
            control.call(path, "bug", timeout=5)
        assert bug.value.type == "internal" and "KeyError" in str(bug.value)
        with pytest.raises(control.RemoteError) as bad:
            control.call(path, "bad", timeout=5)
        assert bad.value.type == "bad_request" and "args.n" in str(bad.value)
        assert control.call(path, "ok", timeout=5) == {"echo": "ok"}
    finally:
        svc.close()


@pytest.mark.integration  # a real control socket
def test_a_deferred_reply_comes_from_a_worker_and_busy_past_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    release = threading.Event()
    loops: list[ServiceLoop] = []

    def handler(command: str, args: dict[str, Any]) -> Any:
        if command == "slow":
            return loops[0].run_in_thread(lambda: release.wait(10) and "done")
        return {"echo": command}

    svc = Running(path, handler)
    loops.append(svc.loop)
    answers: list[Any] = []

    def slow_call() -> None:
        try:
            answers.append(control.call(path, "slow", timeout=10))
        except control.RemoteError as exc:
            answers.append(exc.type)

    callers = [threading.Thread(target=slow_call) for _ in range(3)]
    try:
        for t in callers:
            t.start()
        # two run on the two workers; the third is refused at once (max_queued = 0)
        wait_until(lambda: answers == ["busy"], timeout=10, what="the third call refused")
        assert control.call(path, "status", timeout=5) == {"echo": "status"}  # not held up
        release.set()
        for t in callers:
            t.join(timeout=10)
        assert sorted(answers, key=str) == ["busy", "done", "done"]
    finally:
        release.set()
        svc.close()


def test_deferred_delivers_once_and_to_late_callbacks() -> None:
    d = Deferred()
    seen: list[Any] = []
    d.add_done_callback(lambda x: seen.append(x.result()))
    d.resolve(1)
    d.resolve(2)  # the first outcome stands
    d.add_done_callback(lambda x: seen.append(x.result()))
    assert seen == [1, 1]
