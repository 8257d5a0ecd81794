"""A control client that sends its request and goes away without reading the reply
costs the server nothing: factoryd and its tree keep running and answer the next one."""

from __future__ import annotations

import socket

from ipc import control
from tests.harness import Journal, target


def _ask_and_leave(path: object, command: str = "status") -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        body = b'{"command":"%s","args":{}}' % command.encode()
        s.sendall(len(body).to_bytes(4, "big") + body)


def test_clients_that_close_early_do_not_stop_factoryd(factoryd, journal: Journal) -> None:
    d = factoryd(f"""
        [supervisor]
        intensity = 1
        [[supervisor.children]]
        id = "worker"
        {target("serve", str(journal.path))}
    """).start()
    pid = d.pid("worker")
    for _ in range(20):
        _ask_and_leave(d.socket)
    status = control.call(d.socket, "status", timeout=10)
    assert d.proc is not None and d.proc.poll() is None
    assert d.pid("worker") == pid
    assert status["daemon"]["control"]["served"] >= 1
