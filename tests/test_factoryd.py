"""factoryd as an operator sees it: factoryctl against a live daemon, sd_notify,
orphan reaping, and no process left behind even after factoryd is SIGKILLed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ipc import control
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from tests.harness import ROOT, Journal, target
from tests.waiting import pid_alive, pid_gone, wait_gone, wait_until

pytestmark = pytest.mark.integration  # a live factoryd


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

    running = d.pid("svc")
    assert running is not None and pid_alive(running)
    code, _, _ = d.ctl("stop", "svc")
    assert code == 0 and d.node("svc")["state"] == "stopped"
    assert d.pid("svc") is None  # a stopped child has no pid ...
    assert pid_gone(running)  # ... and the one it had is gone (stop waits for the exit)
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
    """`stop slow` takes its 1.5 s shutdown time; a `stop svc` sent meanwhile waits,
    then is served (it is not refused), while a status is answered inside the wait."""
    d = factoryd(_two_workers(journal)).start()
    journal.wait_count("start", "slow", 1)
    results: dict[str, object] = {}
    stopper = threading.Thread(target=lambda: results.update(stop=d.call("stop", id="slow")))
    stopper.start()
    journal.wait_count("term", "slow", 1)  # the daemon is now inside the 1.5 s stop
    second = threading.Thread(target=lambda: results.update(svc=d.call("stop", id="svc")))
    second.start()
    status = d.call("status")  # at once, inside the stop
    stopper.join(timeout=30)
    second.join(timeout=30)
    assert results["stop"] == {"id": "slow", "state": "stopped"}
    assert results["svc"] == {"id": "svc", "state": "stopped"}
    assert status["tree"]["children"][0]["state"] == "running"  # svc: its stop waited
    assert journal.count("stop", "svc") == 1


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
    """A stop waiting out a child's shutdown time must not starve the watchdog (200 ms).
    The shutdown time is longer than the test: three beats must come while the stop
    is still waiting, then the test ends the stop itself by SIGKILLing the child."""
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(15)
    try:
        d = factoryd(
            f"""
            [supervisor]
            [[supervisor.children]]
            id = "slow"
            {target("stubborn", str(journal.path))}
            shutdown_ms = 600000
            """,
            env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"},
        ).start()
        journal.wait_count("start", "slow", 1)
        slow = d.pid("slow")
        assert slow is not None
        results: dict[str, object] = {}
        stopper = threading.Thread(
            target=lambda: results.update(
                stop=control.call(d.socket, "stop", {"id": "slow"}, timeout=120)
            )
        )
        stopper.start()
        journal.wait_count("term", "slow", 1)  # the stop has begun
        drain_datagrams(listener)  # beats from before the stop do not count
        beats = 0
        while beats < 3:  # each recv is bounded by 15 s; a starved watchdog sends none
            beats += listener.recv(4096).decode().count("WATCHDOG=1")
        assert stopper.is_alive()  # the beats came while the stop was waiting
        os.kill(slow, signal.SIGKILL)
        stopper.join(timeout=60)
        assert results["stop"] == {"id": "slow", "state": "stopped"}
    finally:
        listener.close()


def drain_datagrams(listener: socket.socket) -> None:
    """Read and drop whatever datagrams are queued on `listener` now."""
    timeout = listener.gettimeout()
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.recv(4096)
    listener.settimeout(timeout)


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


def test_a_crashing_control_handler_answers_internal_and_factoryd_lives(factoryd, journal) -> None:
    """A bug in one handler is reported with its traceback and answered 'internal'; it
    does not take the tree down. No handler crashes on purpose, so this factoryd runs
    with `logs` broken by the test (tests/helpers/crashing_factoryd.py)."""
    d = factoryd(
        f"""
        [supervisor]
        intensity = 5
        [[supervisor.children]]
        id = "svc"
        {target("serve", str(journal.path))}
        """,
        module="tests.helpers.crashing_factoryd",
    ).start()
    svc = d.pid("svc")
    with pytest.raises(control.RemoteError) as info:
        d.call("logs", id="svc")
    assert info.value.type == "internal" and "RuntimeError('boom')" in str(info.value)
    [crash] = [
        json.loads(line.removeprefix("factoryd "))
        for line in d.log().splitlines()
        if line.startswith("factoryd {") and '"event":"control_handler_crashed"' in line
    ]
    assert crash["command"] == "logs" and "boom" in crash["traceback"]
    # factoryd lives, and so does its tree: it answers, and it still supervises
    assert d.proc is not None and d.proc.poll() is None
    assert d.node("svc")["state"] == "running" and d.pid("svc") == svc
    assert svc is not None
    os.killpg(svc, signal.SIGKILL)
    journal.wait_count("start", "svc", 2)
    assert d.pid("svc") not in (None, svc)


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


@pytest.mark.parametrize("problem", ["too long", "Not a directory"])
def test_factoryd_explains_a_runtime_dir_it_cannot_use(tmp_path: Path, problem: str) -> None:
    """An unusable runtime dir (socket path too long for AF_UNIX, a file in the way)
    ended factoryd with a traceback instead of words."""
    config = tmp_path / "f.toml"
    config.write_text('[supervisor]\n[[supervisor.children]]\nid = "a"\ncommand = ["true"]\n')
    if problem == "too long":
        runtime = tmp_path / ("r" * 110)
    else:
        (tmp_path / "file").write_text("")
        runtime = tmp_path / "file" / "run"
    argv = ["--config", str(config), "--runtime-dir", str(runtime)]
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor.daemon", *argv, "--state-dir", str(tmp_path / "s")],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert problem in proc.stderr and str(runtime) in proc.stderr
