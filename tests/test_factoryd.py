"""factoryd as an operator sees it: factoryctl against a live daemon, sd_notify,
orphan reaping, and no process left behind even after factoryd is SIGKILLed."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from ipc import control
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from tests.harness import Journal, target
from tests.waiting import pid_alive, pid_gone, wait_gone, wait_until


def _two_workers(journal: Journal) -> str:
    j = str(journal.path)
    return f"""
        [supervisor]
        intensity = 5
        period = 30
        [[supervisor.children]]
        id = "svc"
        {target("serve", j)}
        [[supervisor.children]]
        id = "slow"
        {target("stubborn", j)}
        shutdown_ms = 1500
    """


def test_factoryctl_status_kill_stop_start_restart(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    code, out, _ = d.ctl("status")
    assert code == ExitStatus.SUCCESS
    assert "svc" in out and "running" in out and "RSS" in out
    code, out, _ = d.ctl("status", "--json")
    tree = json.loads(out)["tree"]
    svc = tree["children"][0]
    assert svc["state"] == "running" and svc["rss_bytes"] > 0 and svc["cpu_s"] >= 0

    old = d.pid("svc")
    code, out, _ = d.ctl("kill", "svc", "--signal", "TERM")
    assert code == 0 and "SIGTERM" in out
    journal.wait_count("start", "svc", 2)
    assert d.pid("svc") != old  # permanent: back after the kill

    code, _, _ = d.ctl("stop", "svc")
    assert code == 0 and d.node("svc")["state"] == "stopped"
    assert not pid_alive(d.pid("svc") or 0)
    code, _, _ = d.ctl("start", "svc")
    assert code == 0 and d.node("svc")["state"] == "running"
    before = d.pid("svc")
    code, _, _ = d.ctl("restart", "svc")
    assert code == 0 and d.pid("svc") not in (None, before)
    code, out, _ = d.ctl("logs", "svc")
    assert code == 0 and "svc got SIGTERM, last words" in out


def test_factoryctl_errors_have_exit_codes_and_words(factoryd, journal, tmp_path) -> None:
    d = factoryd(_two_workers(journal)).start()
    code, _, err = d.ctl("kill", "nope")
    assert code == ExitStatus.NOT_FOUND and "no child 'nope'" in err
    code, _, err = d.ctl("kill", "svc", "--signal", "NOTASIGNAL")
    assert code == ExitStatus.USAGE and "unknown signal" in err  # a bad_request
    code, _, err = d.ctl("start", "svc")
    assert code == ExitStatus.ERROR and "already running" in err
    d.stop()
    code, _, err = d.ctl("status")
    assert code == ExitStatus.NOT_RUNNING
    assert "factoryd is not running" in err and str(d.socket) in err


def test_control_socket_is_owner_only(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    mode = stat.S_IMODE(d.socket.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(d.runtime_dir.stat().st_mode) & 0o077 == 0


def test_malformed_control_request_gets_an_error_not_a_crash(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(d.socket))
        s.sendall(len(b"not json").to_bytes(4, "big") + b"not json")
        reply = control.recv_frame(s, deadline=time.monotonic() + 10)
    assert reply["ok"] is False and reply["error"]["type"] == "protocol"
    with pytest.raises(control.RemoteError, match="unknown command 'frobnicate'"):
        d.call("frobnicate")
    assert d.status()["tree"]["state"] == "running"


def test_commands_queue_while_another_runs(factoryd, journal) -> None:
    """`stop slow` takes its 1.5 s shutdown time; a status sent meanwhile waits, then
    answers (it is not refused)."""
    d = factoryd(_two_workers(journal)).start()
    journal.wait_count("start", "slow", 1)
    results: dict[str, object] = {}
    stopper = threading.Thread(target=lambda: results.update(stop=d.call("stop", id="slow")))
    stopper.start()
    journal.wait_count("term", "slow", 1)  # the daemon is now inside the 1.5 s stop
    status = d.call("status")
    stopper.join(timeout=30)
    assert results["stop"] == {"id": "slow", "state": "stopped"}
    assert status["tree"]["children"][1]["state"] == "stopped"


def test_sd_notify_ready_watchdog_stopping(factoryd, journal, tmp_path) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(15)
    try:
        d = factoryd(
            _two_workers(journal),
            env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"},
        ).start()
        messages: list[str] = []

        def until(field: str) -> None:
            while not any(field in m for m in messages):
                messages.append(listener.recv(4096).decode())

        until("READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=running 2 children" in ready
        assert f"MAINPID={d.proc.pid}" in ready
        until("WATCHDOG=1")
        d.proc.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert d.wait_exit() == 0
    finally:
        listener.close()


def test_abstract_notify_socket_address(factoryd, journal) -> None:
    name = f"factory-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(15)
    try:
        factoryd(_two_workers(journal), env={"NOTIFY_SOCKET": "@" + name}).start()
        assert "READY=1" in listener.recv(4096).decode()
    finally:
        listener.close()


def _orphan_of_factoryd(factoryd, journal, fifo):
    """A daemon whose child left an orphan (in its own session, waiting on `fifo`) that
    has been adopted by the zygote, a subreaper; returns (daemon, orphan pid)."""
    os.mkfifo(fifo)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "maker"
        {target("orphan_maker", str(journal.path), str(fifo))}
        restart = "transient"
    """).start()
    journal.wait_count("orphan", "maker", 1)
    orphan = next(p for e, _, p in journal.events() if e == "orphan")
    zygote = d.status()["daemon"]["zygote"]["pid"]
    wait_until(lambda: _ppid(orphan) == zygote, what="orphan adopted by the zygote")
    return d, orphan


def test_orphans_are_reaped_by_the_zygote_and_counted(factoryd, journal, tmp_path) -> None:
    fifo = tmp_path / "release"
    d, orphan = _orphan_of_factoryd(factoryd, journal, fifo)
    wait_until(lambda: d.node("maker")["state"] == "stopped", what="maker to exit")
    fd = os.open(fifo, os.O_WRONLY)
    os.close(fd)
    wait_until(lambda: not Path(f"/proc/{orphan}").exists(), what="orphan reaped, not a zombie")
    assert d.status()["daemon"]["orphans_reaped"] >= 1


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except FileNotFoundError:
        return -1


def test_sigkill_of_factoryd_leaves_no_process_behind(factoryd, journal, tmp_path) -> None:
    """Children, their groups, the zygote, and an orphan that left its group (in a
    session of its own, adopted by the zygote): nothing outlives a SIGKILLed factoryd."""
    j = str(journal.path)
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "a"
        {target("with_grandchild", j)}
        [[supervisor.children]]
        id = "b"
        command = ["sleep", "600"]
        [[supervisor.children]]
        id = "c"
        {target("orphan_maker", j, str(fifo))}
        restart = "transient"
    """).start()
    journal.wait_count("grandchild", "a", 1)
    journal.wait_count("orphan", "c", 1)
    zygote = d.status()["daemon"]["zygote"]["pid"]
    pids = [d.pid("a"), d.pid("b"), zygote]
    pids += [p for e, _, p in journal.events() if e in ("grandchild", "orphan")]
    orphan = next(p for e, _, p in journal.events() if e == "orphan")
    wait_until(lambda: _ppid(orphan) == zygote, what="the orphan adopted by the zygote")
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    for pid in pids:
        wait_gone(pid)
    assert all(pid_gone(p) for p in pids)


def test_second_daemon_on_the_same_runtime_dir_is_refused(factoryd, journal, tmp_path) -> None:
    first = factoryd(_two_workers(journal)).start()
    second = factoryd(_two_workers(journal), name="second")
    second.start(wait_ready=False)
    assert second.wait_exit() == 3
    assert "already listens" in second.log()
    assert first.status()["tree"]["state"] == "running"


def test_watchdog_keeps_beating_while_a_slow_child_stops(factoryd, journal, tmp_path) -> None:
    """A stop bounded by a 1.5 s shutdown time must not starve the watchdog (200 ms)."""
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(15)
    try:
        d = factoryd(
            _two_workers(journal),
            env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"},
        ).start()
        journal.wait_count("start", "slow", 1)
        stopper = threading.Thread(target=lambda: d.call("stop", id="slow"))
        stopper.start()
        journal.wait_count("term", "slow", 1)  # the stop has begun
        beats = 0
        while stopper.is_alive():  # each recv is bounded by the listener's timeout
            beats += listener.recv(4096).decode().count("WATCHDOG=1")
        stopper.join(timeout=30)
        assert beats >= 3  # at ~100 ms intervals during the 1.5 s stop
    finally:
        listener.close()


def test_zygote_death_ends_factoryd_for_a_clean_restart(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    workers = [d.pid("svc"), d.pid("slow")]
    os.kill(d.status()["daemon"]["zygote"]["pid"], signal.SIGKILL)
    assert d.wait_exit() == 70  # DaemonExit.ZYGOTE_DIED: systemd restarts the service
    for pid in workers:
        wait_gone(pid)
    assert '"event":"zygote_died"' in d.log()


def test_brutal_kill_skips_sigterm(factoryd, journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "svc"
        {target("serve", str(journal.path))}
        shutdown = "brutal_kill"
    """).start()
    code, _, _ = d.ctl("stop", "svc")
    assert code == 0
    assert journal.count("stop", "svc") == 0  # never saw SIGTERM, so never said goodbye
    assert d.node("svc")["state"] == "stopped"


def test_runtime_dir_option_after_the_subcommand(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["status", "--json", "--runtime-dir", str(d.runtime_dir)], out=out, err=err)
    assert code == 0 and json.loads(out.getvalue())["tree"]["id"] == "root"


def test_orphans_still_running_at_stop_are_killed(factoryd, journal, tmp_path) -> None:
    d, orphan = _orphan_of_factoryd(factoryd, journal, tmp_path / "never-written")
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert pid_gone(orphan)


def test_status_says_when_there_is_no_resource_ledger(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    assert d.status()["resources"] is None
    code, out, _ = d.ctl("status")
    assert code == 0 and "resources: no ledger" in out


def test_a_crashing_control_handler_answers_internal_and_factoryd_lives(tmp_path) -> None:
    """A bug in one handler is reported with its traceback and answered 'internal'; it
    does not take the tree down (driven in-process: no handler crashes on purpose)."""
    from ipc.control import RequestRefused
    from supervisor.child_logs import ChildLogs
    from supervisor.control_api import ControlApi

    reports: list[tuple[str, dict]] = []

    def statistics() -> dict:
        raise RuntimeError("boom")

    api = ControlApi(
        registry=None, root=None, child_logs=ChildLogs(io.StringIO()),  # type: ignore[arg-type]
        statistics=statistics, request_stop=lambda: None, reload=dict,
        runtime_dir=tmp_path, report=lambda event, **f: reports.append((event, f)),
    )  # fmt: skip
    api.cmd_status = lambda args: statistics()  # type: ignore[method-assign]
    with pytest.raises(RequestRefused) as info:
        api.handle("status", {})
    assert info.value.type == "internal" and "RuntimeError('boom')" in str(info.value)
    ((event, fields),) = reports
    assert event == "control_handler_crashed" and "boom" in fields["traceback"]


def test_half_sent_requests_do_not_hold_up_the_loop(factoryd, journal) -> None:
    """Clients that send half a frame and stall used to hold factoryd in a blocking read
    for 5 s each; now bytes are taken as they come and others are served meanwhile."""
    d = factoryd(_two_workers(journal)).start()
    stalled = []
    for _ in range(4):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(str(d.socket))
        s.sendall(b"\x00\x00")  # half of a length header, then nothing
        stalled.append(s)
    try:
        # 4 stalled clients x 5 s would overrun this call's bound if each blocked the loop
        assert control.call(d.socket, "status", timeout=5)["tree"]["state"] == "running"
    finally:
        for s in stalled:
            s.close()


def test_a_request_sent_in_pieces_is_answered(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    body = b'{"command": "status", "args": {}}'
    frame = len(body).to_bytes(4, "big") + body
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(d.socket))
        for i in range(0, len(frame), 5):
            s.sendall(frame[i : i + 5])
        reply = control.recv_frame(s, deadline=time.monotonic() + 10)
    assert reply["ok"] is True and reply["result"]["tree"]["id"] == "root"


def test_an_oversized_frame_length_gets_a_protocol_error(factoryd, journal) -> None:
    d = factoryd(_two_workers(journal)).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(d.socket))
        s.sendall((control.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        reply = control.recv_frame(s, deadline=time.monotonic() + 10)
    assert reply["ok"] is False and reply["error"]["type"] == "protocol"
    assert "exceeds" in reply["error"]["message"]
    assert d.status()["tree"]["state"] == "running"
