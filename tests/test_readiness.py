"""`ready = "notify"`: the next child starts only after READY=1 (OTP's start_link
returns once init is done); silence or an early exit is a failed start."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from tests.harness import Journal, target
from tests.waiting import pid_gone, wait_until


def test_next_sibling_starts_only_after_ready(factoryd, journal: Journal, tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "db"
        {target("ready_after_fifo", j, str(fifo))}
        ready = "notify"
        start_timeout_ms = 20000
        [[supervisor.children]]
        id = "app"
        {target("serve", j)}
    """).start(wait_ready=False)
    journal.wait_count("start", "db", 1)
    with open(fifo, "w") as f:  # let db finish its init
        f.write("go")
    journal.wait_count("start", "app", 1)
    order = [(e, c) for e, c, _ in journal.events()]
    assert order == [("start", "db"), ("ready", "db"), ("start", "app")]
    code, out, _ = d.ctl("status")
    assert code == 0
    db_row = next(line for line in out.splitlines() if line.strip().startswith("db "))
    assert db_row.endswith("serving 42 requests")


def test_silent_child_fails_its_start_after_the_timeout(factoryd, journal: Journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "mute"
        {target("never_ready", str(journal.path))}
        ready = "notify"
        start_timeout_ms = 300
    """).start(wait_ready=False)
    assert d.wait_exit() == 3
    assert "child 'mute' failed to start: no READY=1 within 0.3s" in d.log()
    mute = next(p for e, c, p in journal.events() if c == "mute")
    assert pid_gone(mute)


def test_child_exiting_before_ready_fails_its_start(factoryd, journal: Journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "quitter"
        {target("exit_with", str(journal.path), "4")}
        ready = "notify"
    """).start(wait_ready=False)
    assert d.wait_exit() == 3
    assert "exited before READY=1 (abnormal: exit code 4)" in d.log()


def test_sigterm_during_a_hung_start_stops_at_once(factoryd, journal: Journal) -> None:
    """`systemctl stop` while a child has not said READY=1 yet: a clean stop now, not
    after its 60 s start timeout."""
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "first"
        {target("serve", str(journal.path))}
        [[supervisor.children]]
        id = "slowpoke"
        {target("never_ready", str(journal.path))}
        ready = "notify"
        start_timeout_ms = 60000
    """).start(wait_ready=False)
    journal.wait_count("start", "slowpoke", 1)
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit(timeout=20) == 0
    assert journal.count("stop", "first") == 1  # the started sibling was stopped in order
    slowpoke = next(p for e, c, p in journal.events() if c == "slowpoke")
    assert pid_gone(slowpoke)
    assert '"event":"stopped_during_start"' in d.log()


def _group_speaker(journal: Journal, access: str) -> str:
    return f"""
        [supervisor]
        [[supervisor.children]]
        id = "wrapped"
        {target("ready_from_group", str(journal.path))}
        ready = "notify"
        {access}
        start_timeout_ms = 60000
    """


def test_notify_access_all_takes_ready_from_the_child_s_process_group(
    factoryd, journal: Journal
) -> None:
    d = factoryd(_group_speaker(journal, 'notify_access = "all"')).start()
    assert d.node("wrapped")["state"] == "running"


def test_by_default_only_the_child_itself_may_say_ready(factoryd, journal: Journal) -> None:
    """The subprocess's READY=1 is in factoryd's queue before the SIGTERM: had factoryd
    taken it for the child's, the start would have completed before the stop."""
    d = factoryd(_group_speaker(journal, "")).start(wait_ready=False)
    journal.wait_count("spoke", "wrapped", 1)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit(timeout=20) == 0
    assert '"event":"stopped_during_start","child":"wrapped"' in d.log()
    assert '"event":"child_started"' not in d.log()


@pytest.mark.integration  # a real datagram socket
def test_ready_sent_before_factoryd_knows_the_pid_counts(tmp_path: Path) -> None:
    """The datagram can arrive while the spawn reply carrying the pid is still on its
    way: it is kept and applied when the pid is registered, not thrown away."""
    import socket

    from supervisor.child_notify import ChildNotify

    owners: dict[int, tuple[object, str, int]] = {}
    notify = ChildNotify(tmp_path / "notify.sock", lambda pid, _pgid: owners.get(pid))  # type: ignore[arg-type,return-value]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", str(notify.path))
        notify.read()
        me = os.getpid()
        assert not notify.is_ready(me)  # nobody claims it yet
        owners[me] = (object(), "early", me)
        notify.adopt(me)
        assert notify.is_ready(me)
        notify.forget(me)
        notify.adopt(me)
        assert not notify.is_ready(me)  # applied once, then gone with the pid
    finally:
        notify.close()


def test_children_that_notify_first_thing_all_start(factoryd, journal: Journal) -> None:
    """Many starts of a target whose first act is READY=1 (the race lost ~1 in 3)."""
    j = str(journal.path)
    d = factoryd("""
        [supervisor]
        [[supervisor.children]]
        id = "eager"
        strategy = "simple_one_for_one"
        intensity = 100
        [[supervisor.children.children]]
        id = "one"
        target = "tests.children:ready_at_once"
        ready = "notify"
        start_timeout_ms = 20000
    """).start()
    for n in range(30):
        code, out, err = d.ctl("start", "eager", "--", j)
        assert code == 0, f"start {n} failed: {out}{err}"
    assert len(d.node("eager")["children"]) == 30


def test_while_a_dynamic_child_starts_status_is_answered_and_a_stop_waits_its_turn(
    factoryd, journal: Journal, tmp_path: Path
) -> None:
    """factoryd waits for a child's READY=1 inside its one loop. That wait held every
    control request (a chaos soak: a loop's start waiting for restarting peers held
    `status` and the synapse's mutator starts for 30 s). Now `status` (and logs, kill,
    shutdown) are answered inside the wait; a request that changes the tree waits for
    the start to end, then is served, unless its client gave up meanwhile (a timed-out
    or dead client's start, carried out late, ran a loop twice when it asked again)."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "svc"
        {target("serve", j)}
        [[supervisor.children]]
        id = "other"
        {target("serve", j)}
        [[supervisor.children]]
        id = "pool"
        strategy = "simple_one_for_one"
        [[supervisor.children.children]]
        id = "slow"
        {target("ready_after_fifo", j, str(fifo))}
        ready = "notify"
        restart = "temporary"
        start_timeout_ms = 60000
    """).start()
    results: dict[str, object] = {}
    starting = d.call_in_thread(results, "start", "start", id="pool")
    journal.wait_count("start", "pool.1", 1)  # its init now waits on the fifo
    status = d.status()  # answered inside the start's wait
    pool = next(c for c in status["tree"]["children"] if c["id"] == "pool")
    assert starting.is_alive() and [c["id"] for c in pool["children"]] == ["pool.1"]
    assert pool["children"][0]["state"] == "starting"  # not "stopped": nobody starts it again
    stopping = d.call_in_thread(results, "stop", "stop", id="svc")
    body = b'{"command": "stop", "args": {"id": "other"}}'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:  # asks, then gives up
        gone.connect(str(d.socket))
        gone.sendall(len(body).to_bytes(4, "big") + body)
        wait_until(lambda: d.status()["daemon"]["control"]["open"] >= 4,  # start, 2 stops,
                   what="both stop requests read by factoryd")  # this  # fmt: skip
    assert journal.count("stop", "svc") == 0 and "stop" not in results  # held
    with open(fifo, "w") as f:  # the start ends ...
        f.write("go")
    starting.join(timeout=60)
    stopping.join(timeout=60)  # ... then the held stop is served
    assert isinstance(results["start"], dict) and results["start"]["id"] == "pool.1"
    assert results["stop"] == {"id": "svc", "state": "stopped"}
    assert d.node("other")["state"] == "running"  # its client was gone: not carried out
    assert journal.count("stop", "other") == 0
