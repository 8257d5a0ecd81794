"""factoryd's one loop stays responsive with real children and clients: a chatty child
does not starve it, idle control connections do not hold it up, a command that arrives
during a stop's wait neither makes the wait spin nor goes unanswered (status is answered
inside the wait, as inside a child's start), and requests queued behind a stop are all
served."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from ipc import control
from tests.harness import Journal, target
from tests.waiting import wait_asleep


def test_a_chatty_child_does_not_starve_the_event_loop(factoryd, journal: Journal) -> None:
    """A child that writes without pause (`yes`) kept factoryd reading its pipe forever:
    no control request answered, no exit handled, no watchdog beat."""
    d = factoryd(f"""
        [supervisor]
        intensity = 5
        [[supervisor.children]]
        id = "chatty"
        command = ["yes"]
        shutdown = "brutal_kill"
        [[supervisor.children]]
        id = "svc"
        {target("serve", str(journal.path))}
    """).start()
    status = control.call(d.socket, "status", timeout=5)
    svc = next(c for c in status["tree"]["children"] if c["id"] == "svc")
    os.killpg(svc["pid"], signal.SIGKILL)
    journal.wait_count("start", "svc", 2, timeout=10)
    assert control.call(d.socket, "logs", {"id": "chatty", "lines": 1}, timeout=5)["lines"]


def test_idle_control_connections_do_not_hold_up_the_loop(factoryd, journal: Journal) -> None:
    """Each connection that sent nothing kept factoryd in a blocking read for 5 s: no
    restart, no other command, no watchdog meanwhile. Now only a readable connection
    is served, and one idle past the timeout is closed."""
    d = factoryd(f"""
        [supervisor]
        intensity = 5
        [[supervisor.children]]
        id = "svc"
        {target("serve", str(journal.path))}
    """).start()
    pid = d.pid("svc")
    idle = []
    for _ in range(6):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(str(d.socket))
        idle.append(s)
    try:
        assert control.call(d.socket, "status", timeout=5)["tree"]["state"] == "running"
        os.killpg(pid, signal.SIGKILL)
        journal.wait_count("start", "svc", 2, timeout=5)
        assert idle[0].recv(1) == b""  # closed by factoryd once idle too long
    finally:
        for s in idle:
            s.close()


def test_a_waiting_command_does_not_make_a_nested_wait_spin_and_status_is_answered_in_it(
    factoryd, journal: Journal, tmp_path: Path
) -> None:
    """While a stop waits out a child's shutdown time, a command that arrived meanwhile
    left the control socket readable: every select returned at once and factoryd
    burned a core for the whole wait. It must sleep through the wait (the watchdog
    wakes it now and then) and answer a command that changes the tree (here a second
    stop) once the stop is done; `status` it answers at once, inside the wait (a chaos
    soak: a loop's start held every status and every mutator start for 30 s). The
    shutdown time is longer than the test: the test ends the stop itself, by
    SIGKILLing the child, so nothing here depends on how long anything takes."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    try:
        d = factoryd(
            f"""
            [supervisor]
            [[supervisor.children]]
            id = "slow"
            {target("stubborn", str(journal.path))}
            shutdown_ms = 600000
            """,
            env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"},
        ).start()
        assert d.proc is not None
        slow = d.pid("slow")
        assert slow is not None
        results: dict[str, object] = {}
        stopping = threading.Thread(
            target=lambda: results.update(
                stop=control.call(d.socket, "stop", {"id": "slow"}, timeout=120)
            )
        )
        stopping.start()
        journal.wait_count("term", "slow", 1)  # the stop now waits out the shutdown time
        during = control.call(d.socket, "status", {}, timeout=30)  # answered in the wait
        assert stopping.is_alive()
        assert during["tree"]["children"][0]["pid"] == slow  # not stopped yet
        body = b'{"command": "stop", "args": {"id": "slow"}}'
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as queued:
            queued.settimeout(60)
            queued.connect(str(d.socket))
            queued.sendall(len(body).to_bytes(4, "big") + body)  # held behind the stop
            wait_asleep(d.proc.pid, what="factoryd asleep in the stop's wait, not spinning")
            assert stopping.is_alive()  # all of that happened inside the stop
            os.kill(slow, signal.SIGKILL)  # the stop is over
            stopping.join(timeout=60)
            reply = control.recv_frame(queued, deadline=time.monotonic() + 60)
        assert results["stop"] == {"id": "slow", "state": "stopped"}
        assert reply["ok"] is True, reply  # the second stop, handled after the first
        assert d.status()["tree"]["children"][0]["state"] == "stopped"
    finally:
        notify.close()


def test_requests_queued_behind_a_stop_are_all_served(factoryd, journal: Journal) -> None:
    """Two requests that queued behind a slow stop are accepted together and come out
    of one select; the first one's nested wait must not spoil the second's event, nor
    count as the second client's idle time (5 s) though it lasts longer."""
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "slow1"
        {target("stubborn", j)}
        shutdown_ms = 500
        [[supervisor.children]]
        id = "slow2"
        {target("stubborn", j)}
        shutdown_ms = 5500
    """).start()
    results: dict[str, object] = {}
    first = d.call_in_thread(results, "stop1", "stop", id="slow1")
    journal.wait_count("term", "slow1", 1)
    queued = [d.call_in_thread(results, "stop2", "stop", id="slow2"),
              d.call_in_thread(results, "status", "status")]  # fmt: skip
    for t in [first, *queued]:
        t.join(timeout=30)
    assert d.status()["tree"]["state"] == "running", d.log()
    assert results["stop1"] == {"id": "slow1", "state": "stopped"}
    assert results["stop2"] == {"id": "slow2", "state": "stopped"}
    assert isinstance(results["status"], dict)
