"""Adversarial review of the supervisor core: each test pins a bug that was found
(and fixed) by driving a live factoryd or the zygote with real processes."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from ipc import control
from supervisor.config import ConfigError, load
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from supervisor.spec import Start
from supervisor.zygote import SpawnError, ZygoteClient
from tests.harness import ROOT, Journal, target
from tests.waiting import pid_alive, wait_until


def test_python_target_gets_broken_pipe_error_not_sigpipe(factoryd, journal: Journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "svc"
        {target("write_to_closed_socket", str(journal.path))}
        restart = "temporary"
    """).start()
    wait_until(
        lambda: journal.count("epipe", "svc") or '"event":"child_exited"' in d.log(),
        timeout=15,
        what="svc to write to a closed socket",
    )
    assert '"event":"child_exited"' not in d.log(), d.log()
    assert journal.count("epipe", "svc") == 1
    assert d.node("svc")["state"] == "running"


def test_command_child_starts_with_no_signal_ignored(factoryd, tmp_path: Path) -> None:
    out = tmp_path / "sigign"
    factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "sh"
        command = ["sh", "-c", "grep SigIgn /proc/$$/status > {out}.tmp && mv {out}.tmp {out}"]
        restart = "temporary"
    """).start()
    wait_until(out.exists, timeout=15, what="the child to write its SigIgn mask")
    mask = int(out.read_text().split()[1], 16)
    assert mask == 0, f"exec'd child inherits ignored signals: mask {mask:#x}"


@pytest.mark.parametrize(
    ("start", "problem"),
    [
        (Start(command=("true",), env=(("A=B", "x"),)), "illegal environment variable name"),
        (Start(command=("true",), env=(("A", "x\0y"),)), "null byte"),
        (Start(command=("echo", "a\0b")), "cannot exec 'echo': embedded null byte"),
        (Start(target="tests.children:serve", env=(("", "x"),)), "cannot prepare bad: "),
    ],
)
def test_child_that_cannot_be_prepared_is_a_failed_start(start: Start, problem: str) -> None:
    """Not a 'spawned' child that dies at once with exit code 127 and no word why."""
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    try:
        with pytest.raises(SpawnError, match=problem):
            zygote.spawn("bad", start, log_w, timeout=10)
    finally:
        os.close(log_r)
        os.close(log_w)
        zygote.close()


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('env = { "A=B" = "x" }', "env.A=B", "name"),
        ('env = { "" = "x" }', "env.", "name"),
        ('env = { A = "x\\u0000y" }', "env.A", "NUL"),
        ('cwd = "/tmp\\u0000x"', "cwd", "NUL"),
    ],
)
def test_config_refuses_what_the_child_could_not_be_started_with(
    tmp_path: Path, toml: str, key: str, problem: str
) -> None:
    path = tmp_path / "f.toml"
    path.write_text(
        f'[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["true"]\n{toml}\n'
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == f"supervisor.children[0].{key}"
    assert problem in err.value.problem


def test_config_refuses_nul_in_a_command(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["a\\u0000b"]\n')
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == "supervisor.children[0].command"
    assert "NUL" in err.value.problem


def test_restart_of_a_temporary_child_starts_it_again(factoryd, journal: Journal) -> None:
    """`restart` is stop-then-start; it used to stop (and so forget) a temporary child,
    then fail with "no child" and leave it gone."""
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "once"
        {target("serve", str(journal.path))}
        restart = "temporary"
    """).start()
    before = d.pid("once")
    code, out, err = d.ctl("restart", "once")
    assert (code, err) == (0, ""), err
    assert "once: restarted" in out
    journal.wait_count("start", "once", 2)
    node = d.node("once")
    assert node["state"] == "running" and node["pid"] not in (None, before)
    assert journal.count("stop", "once") == 1


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


def test_sighup_reloads_the_config(factoryd, journal: Journal, tmp_path: Path) -> None:
    """README and `factoryctl reload --help` say SIGHUP reloads; it only logged
    "reload_unsupported"."""
    one = f"""
        [supervisor]
        [[supervisor.children]]
        id = "a"
        {target("serve", str(journal.path))}
    """
    d = factoryd(one).start()
    two = (
        one
        + f"""
        [[supervisor.children]]
        id = "b"
        {target("serve", str(journal.path))}
    """
    )
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(two))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    journal.wait_count("start", "b", 1)
    assert d.node("b")["state"] == "running"
    assert '"event":"reloaded"' in d.log()


@pytest.mark.parametrize(
    ("before", "after"),
    [("one_for_one", "simple_one_for_one"), ("simple_one_for_one", "one_for_one")],
)
def test_reload_refuses_to_turn_the_root_dynamic_or_static(
    factoryd, journal: Journal, tmp_path: Path, before: str, after: str
) -> None:
    """A nested supervisor changing to or from simple_one_for_one is replaced; the root
    cannot be, and the reload used to half-apply (static children under a dynamic
    strategy, or the reverse) and say "reloaded"."""

    def config(strategy: str) -> str:
        return f"""
            [supervisor]
            strategy = "{strategy}"
            [[supervisor.children]]
            id = "w"
            {target("serve", str(journal.path))}
        """

    def shape() -> tuple[str, list[tuple[str, int | None, str]]]:
        tree = d.status()["tree"]
        return tree["strategy"], [(c["id"], c["pid"], c["state"]) for c in tree["children"]]

    d = factoryd(config(before)).start()
    before_reload = shape()
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(config(after)))
    code, _out, err = d.ctl("reload")
    assert code != 0
    assert "supervisor.strategy" in err and "simple_one_for_one" in err
    assert shape() == before_reload


def test_factoryctl_explains_a_socket_it_cannot_reach(tmp_path: Path) -> None:
    """connect() errors other than ENOENT/ECONNREFUSED escaped as a traceback."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--runtime-dir", str(not_a_dir), "status"], out=out, err=err)
    assert code == ExitStatus.NOT_RUNNING
    assert "factoryd is not running" in err.getvalue()

    too_long = tmp_path / ("d" * 120)
    err = io.StringIO()
    code = cli.main(["--runtime-dir", str(too_long), "status"], out=out, err=err)
    assert code == ExitStatus.ERROR
    assert f"cannot connect to {too_long}" in err.getvalue()


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


def test_dynamic_child_ids_do_not_take_a_static_childs_id(factoryd, journal: Journal) -> None:
    """Dynamic ids are SUP.N; a static worker named "loops.1" passed the config check,
    then the first dynamic child took over its registry entry (and forgot it on exit)."""
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "loops.1"
        {target("serve", j)}
        [[supervisor.children]]
        id = "loops"
        strategy = "simple_one_for_one"
        [[supervisor.children.children]]
        id = "loop"
        {target("serve", j)}
        restart = "temporary"
    """).start()
    dynamic = d.call("start", id="loops")
    assert dynamic["id"] != "loops.1"
    journal.wait_count("start", dynamic["id"], 1)
    static_pid = d.pid("loops.1")
    code, _out, err = d.ctl("stop", "loops.1")
    assert code == 0, err
    wait_until(lambda: journal.count("stop", "loops.1") == 1, what="the static loops.1 to stop")
    assert journal.count("stop", dynamic["id"]) == 0
    assert d.node("loops.1")["pid"] is None and static_pid is not None


def test_a_dynamic_supervisor_id_leaves_room_for_its_childrens_ids(tmp_path: Path) -> None:
    """A simple_one_for_one supervisor with a 63-character id passed the config check;
    its first start_child built the id SUP.1 (65 characters), the spec check raised
    inside the control handler, and factoryd died of it."""
    long_id = "s" * 63
    path = tmp_path / "f.toml"
    path.write_text(
        f'[supervisor]\n[[supervisor.children]]\nid = "{long_id}"\n'
        'strategy = "simple_one_for_one"\n[[supervisor.children.children]]\n'
        'id = "t"\ncommand = ["true"]\n'
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == "supervisor.children[0]"
    assert "simple_one_for_one" in err.value.problem and "characters" in err.value.problem


@pytest.mark.parametrize(("kind", "keep_it"), [("worker", True), ("worker", False), ("sup", True)])
def test_reload_after_a_temporary_child_finished(
    factoryd, journal: Journal, tmp_path: Path, kind: str, keep_it: bool
) -> None:
    """A temporary child that ended is forgotten (OTP). A reload then looked it up in
    the supervisor's state (KeyError when the new config dropped it) or put it back
    without its record (KeyError in the next status): either way factoryd died."""
    j = str(journal.path)
    once = f"""
        [[supervisor.children]]
        id = "once"
        {target("exit_with", j, "0")}
        restart = "temporary"
    """
    if kind == "sup":  # a temporary supervisor that ends once its significant child did
        once = f"""
        [[supervisor.children]]
        id = "once"
        restart = "temporary"
        auto_shutdown = "any_significant"
        [[supervisor.children.children]]
        id = "step"
        {target("exit_with", j, "0")}
        restart = "temporary"
        significant = true
        """
    base = f"""
        [supervisor]
        [[supervisor.children]]
        id = "svc"
        {target("serve", j)}
    """
    d = factoryd(base + once).start()
    wait_until(
        lambda: [c["id"] for c in d.status()["tree"]["children"]] == ["svc"],
        what="the finished temporary child to be forgotten",
    )
    (tmp_path / "factoryd.toml").write_text(textwrap.dedent(base + (once if keep_it else "")))
    code, _out, err = d.ctl("reload")
    assert code == 0, err
    assert [c["id"] for c in d.status()["tree"]["children"]] == ["svc"]
    assert d.proc is not None and d.proc.poll() is None


def test_python_target_starts_with_only_stdio_open(factoryd, tmp_path: Path) -> None:
    """Exec'd commands had every fd above 2 closed; Python targets kept what the
    zygote held (its epoll fd, fds factoryd itself inherited)."""
    out = tmp_path / "fds"
    factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "t"
        target = "tests.children:record_fds"
        args = ["{out}"]
    """).start()
    wait_until(out.exists, timeout=15, what="the child to list its fds")
    assert out.read_text() == ""


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


def test_a_waiting_command_does_not_make_a_nested_wait_spin(factoryd, journal: Journal) -> None:
    """While a stop waits out a child's shutdown time, a command that arrived meanwhile
    left the control socket readable: every select returned at once and factoryd
    burned a core for the whole wait."""
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "slow"
        {target("stubborn", str(journal.path))}
        shutdown_ms = 2500
    """).start()
    assert d.proc is not None
    daemon = psutil.Process(d.proc.pid)
    stopping = threading.Thread(target=lambda: d.call("stop", id="slow"))
    stopping.start()
    journal.wait_count("term", "slow", 1)
    cpu_before = sum(daemon.cpu_times()[:2])
    status = d.call("status")  # waits in the backlog until the stop is done
    cpu_used = sum(daemon.cpu_times()[:2]) - cpu_before
    stopping.join(timeout=30)
    assert status["tree"]["children"][0]["state"] == "stopped"
    assert cpu_used < 0.5, f"factoryd used {cpu_used:.2f} s of CPU waiting ~2.5 s"


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

    def call(name: str, command: str, **args: str) -> None:
        try:
            results[name] = d.call(command, **args)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc

    first = threading.Thread(target=call, args=("stop1", "stop"), kwargs={"id": "slow1"})
    first.start()
    journal.wait_count("term", "slow1", 1)
    queued = [
        threading.Thread(target=call, args=("stop2", "stop"), kwargs={"id": "slow2"}),
        threading.Thread(target=call, args=("status", "status")),
    ]
    for t in queued:
        t.start()
    for t in [first, *queued]:
        t.join(timeout=30)
    assert d.status()["tree"]["state"] == "running", d.log()
    assert results["stop1"] == {"id": "slow1", "state": "stopped"}
    assert results["stop2"] == {"id": "slow2", "state": "stopped"}
    assert isinstance(results["status"], dict)


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5", "soon"])
def test_factoryctl_refuses_a_timeout_it_cannot_wait(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--timeout nan / inf crashed in socket.settimeout with a traceback."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--timeout", value, "--runtime-dir", "/nonexistent", "status"])
    assert exit_.value.code == ExitStatus.USAGE
    assert "--timeout" in capsys.readouterr().err


def test_a_child_of_a_stopped_supervisor_cannot_be_started_alone(
    factoryd, journal: Journal
) -> None:
    """`start w` under a stopped supervisor started w there; starting the supervisor
    then spawned w a second time, and the first w ran on untracked."""
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "sub"
        [[supervisor.children.children]]
        id = "w"
        {target("serve", str(journal.path))}
    """).start()
    assert d.call("stop", id="sub")["state"] == "stopped"
    code, _out, err = d.ctl("start", "w")
    assert code == ExitStatus.ERROR and "sub is not running" in err
    assert d.call("start", id="sub")["state"] == "running"
    journal.wait_count("start", "w", 2)
    running = [pid for e, c, pid in journal.events() if e == "start" and pid_alive(pid)]
    assert running == [d.pid("w")]


def test_a_late_spawn_reply_is_not_taken_for_the_next_spawns(tmp_path: Path) -> None:
    """A spawn that timed out on factoryd's side still gets its reply from the zygote
    later; the next spawn took that reply as its own (the wrong pid), and the late
    child ran on untracked."""
    fifo = tmp_path / "import"
    os.mkfifo(fifo)
    zygote = ZygoteClient.start()
    log_r, log_w = os.pipe()
    try:
        slow = Start(target="tests.children:serve", args=(str(tmp_path / "j"),),
                     env=(("CHILDREN_IMPORT_WAITS_ON", str(fifo)),))  # fmt: skip
        with pytest.raises(SpawnError, match="no answer"):
            zygote.spawn("slow", slow, log_w, timeout=0.5)
        with open(fifo, "w") as f:  # the slow import finishes: its reply comes now
            f.write("go")
        pid = zygote.spawn("next", Start(command=("sleep", "30")), log_w, timeout=10)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"FACTORY_CHILD_ID=next" in environ
        wait_until(
            lambda: [c.pid for c in psutil.Process(zygote.pid).children()] == [pid],
            what="the late child to be killed (nobody tracks it)",
        )
        os.killpg(pid, signal.SIGKILL)
    finally:
        os.close(log_r)
        os.close(log_w)
        zygote.close()


def test_zygote_death_during_boot_exits_70(factoryd, journal: Journal, tmp_path: Path) -> None:
    """The zygote dying while the tree starts was reported as a failed start (3), not
    as the zygote's death (70); run()'s own ZygoteGone branch could never be reached."""
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "db"
        {target("ready_after_fifo", str(journal.path), str(fifo))}
        ready = "notify"
        start_timeout_ms = 20000
    """).start(wait_ready=False)
    journal.wait_count("start", "db", 1)
    assert d.proc is not None
    zygote = next(
        p for p in psutil.Process(d.proc.pid).children() if p.pid != journal.events()[0][2]
    )
    zygote.kill()
    assert d.wait_exit(timeout=30) == 70, d.log()
    assert '"event":"zygote_died"' in d.log()


def test_closing_a_zygote_someone_else_already_reaped_is_quiet() -> None:
    """factoryd's orphan reaper may reap a SIGKILLed zygote before close() looks for it
    (it made factoryd exit 1 with a traceback instead of 70, now and then)."""
    zygote = ZygoteClient.start()
    os.kill(zygote.pid, signal.SIGKILL)
    assert os.waitpid(zygote.pid, 0)[0] == zygote.pid  # reaped here, as the reaper would
    zygote.close(timeout=1.0)  # neither ChildProcessError nor a kill of a reused pid
