"""A gen_server never blocks on one caller: against factoryd and every service of the
example tree, idle clients, half-sent requests and clients that leave before their
reply delay nobody, and every process answers an unknown command the same way."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import control, ledger, paths
from tests.harness import Factoryd
from tests.helpers.example_factory import runnable_example
from tests.waiting import wait_until

SERVICES = ("bus", "signal_journal", "resource_governor", "workspace_manager", "llm_router")
NORMAL_S = 3.0  # a status call answers well within this when nobody is in the way


@pytest.fixture
def tree(factoryd, tmp_path: Path) -> Iterator[Factoryd]:
    d = factoryd(runnable_example(tmp_path).text).start()
    try:
        yield d
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)


def _sockets(d: Factoryd) -> dict[str, Path]:
    found = {name: paths.control_socket(d.runtime_dir, name) for name in SERVICES}
    return {"factoryd": d.socket, **found}


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return s


def _frame(command: str) -> bytes:
    body = b'{"command":"%s","args":{}}' % command.encode()
    return len(body).to_bytes(4, "big") + body


def test_idle_half_sent_and_departed_clients_delay_nobody(tree: Factoryd) -> None:
    held: list[socket.socket] = []
    try:
        for path in _sockets(tree).values():
            for _ in range(5):  # connect and say nothing
                held.append(_connect(path))
            half = _connect(path)  # half a frame, then silence
            half.sendall(_frame("status")[:6])
            held.append(half)
            for _ in range(5):  # ask, then leave before the reply
                with _connect(path) as gone:
                    gone.sendall(_frame("status"))
        for name, path in _sockets(tree).items():
            result = control.call(path, "status", timeout=NORMAL_S)  # raises past NORMAL_S
            assert isinstance(result, dict), name
        # the tree lives on, nothing restarted
        assert tree.proc is not None and tree.proc.poll() is None
        code, _, err = tree.ctl("status")
        assert code == 0, err
    finally:
        for s in held:
            s.close()


def test_every_process_answers_an_unknown_command_alike(tree: Factoryd) -> None:
    for name, path in _sockets(tree).items():
        with pytest.raises(control.RemoteError) as caught:
            control.call(path, "frobnicate", timeout=NORMAL_S)
        assert caught.value.type == "unknown_command", name
        assert "unknown command 'frobnicate'" in str(caught.value), name
        assert "status" in str(caught.value), name  # the known ones are named


def test_readers_that_never_take_their_logs_do_not_stall_factoryd(factoryd, journal) -> None:
    """Eight `logs` requests of ~4 MB each that are never read: factoryd keeps serving
    and keeps handling child exits (before, each held its loop for seconds)."""
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "chatty"
        target = "tests.children:chatter"
        args = ["{j}", "500"]
        [[supervisor.children]]
        id = "victim"
        target = "tests.children:serve"
        args = ["{j}"]
    """).start()
    journal.wait_count("start", "chatty", 1)
    wait_until(
        lambda: len(d.call("logs", id="chatty", lines=500)["lines"]) == 500,
        timeout=20,
        what="chatty's 500 lines in its ring",
    )
    victim = d.pid("victim")
    assert victim is not None
    held = []
    try:
        for _ in range(8):
            s = _connect(d.socket)
            body = b'{"command":"logs","args":{"id":"chatty","lines":500}}'
            s.sendall(len(body).to_bytes(4, "big") + body)
            held.append(s)
        os.killpg(victim, signal.SIGKILL)
        journal.wait_count("start", "victim", 2, timeout=NORMAL_S)  # restarted meanwhile
        assert isinstance(control.call(d.socket, "status", timeout=NORMAL_S), dict)
    finally:
        for s in held:
            s.close()
