"""OTP semantics with real processes: strategies, restart types, intensity, nesting,
ordered shutdown, process groups. Each test drives a live factoryd."""

from __future__ import annotations

import os
import signal

from supervisor.ctl.exit_status import ExitStatus
from tests.harness import Factoryd, Journal, target
from tests.waiting import pid_alive, wait_gone, wait_until


def _tree(journal: Journal, strategy: str, ids: list[str], intensity: int = 10) -> str:
    children = "".join(
        f"""
        [[supervisor.children]]
        id = "{cid}"
        {target("serve", str(journal.path)).replace(chr(10), chr(10) + "        ")}
        shutdown_ms = 5000
        """
        for cid in ids
    )
    return f"""
        [supervisor]
        strategy = "{strategy}"
        intensity = {intensity}
        period = 30
        {children}
    """


def test_one_for_one_restarts_only_the_killed_child(factoryd, journal) -> None:
    d = factoryd(_tree(journal, "one_for_one", ["a", "b", "c"])).start()
    before = {c: d.pid(c) for c in "abc"}
    os.killpg(before["b"], signal.SIGKILL)
    journal.wait_count("start", "b", 2)
    after = {c: d.pid(c) for c in "abc"}
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    assert d.node("b")["restarts"] == 1
    assert d.node("b")["last_exit"] == "abnormal: killed by SIGKILL"


def _started(d: Factoryd, n: int) -> list[str]:
    """The ids of factoryd's child_started records, once there are `n` (a child may
    journal its start before factoryd has written its own record of it)."""
    wait_until(lambda: len(d.records("child_started")) >= n, what=f"{n} child_started records")
    return [r["child"] for r in d.records("child_started")]


def test_one_for_all_restarts_every_child_in_order(factoryd, journal) -> None:
    d = factoryd(_tree(journal, "one_for_all", ["a", "b", "c"])).start()
    before = {c: d.pid(c) for c in "abc"}
    os.killpg(before["b"], signal.SIGKILL)
    for c in "abc":
        journal.wait_count("start", c, 2)
    # siblings stopped in reverse start order (their own records: each stop is waited
    # for), then all started in order (factoryd's records: "started" is not "ready")
    assert [c for e, c, _ in journal.events() if e == "stop"] == ["c", "a"]
    assert _started(d, 6)[3:] == ["a", "b", "c"]
    assert all(d.pid(c) != before[c] for c in "abc")


def test_rest_for_one_restarts_the_child_and_those_after_it(factoryd, journal) -> None:
    d = factoryd(_tree(journal, "rest_for_one", ["a", "b", "c", "d"])).start()
    before = {c: d.pid(c) for c in "abcd"}
    os.killpg(before["b"], signal.SIGKILL)
    for c in "bcd":
        journal.wait_count("start", c, 2)
    # stopped in reverse start order (each stop waits for the exit, so the children's own
    # records are ordered) ...
    stops = [c for e, c, _ in journal.events() if e == "stop"]
    assert stops == ["d", "c"]
    # ... then started again in order: factoryd's own records (a child's first line may
    # be written after its next sibling was started: "started" is not "ready")
    assert _started(d, 7)[4:] == ["b", "c", "d"]
    assert d.pid("a") == before["a"]


def test_simple_one_for_one_starts_dynamic_children_with_extra_args(factoryd, tmp_path) -> None:
    journal = Journal(tmp_path / "dyn")
    d = factoryd("""
        [supervisor]
        strategy = "one_for_one"
        [[supervisor.children]]
        id = "loops"
        strategy = "simple_one_for_one"
        intensity = 5
        period = 10
        [[supervisor.children.children]]
        id = "loop"
        target = "tests.children:exit_on_usr1"
        restart = "transient"
    """).start()
    first = d.call("start", id="loops", args=[str(journal.path), "3"])
    second = d.call("start", id="loops", args=[str(journal.path), "0"])
    assert (first["id"], second["id"]) == ("loops.1", "loops.2")
    journal.wait_count("start", "loops.2", 1)
    # a transient dynamic child that exits abnormally is restarted with the same args
    os.kill(first["pid"], signal.SIGUSR1)
    journal.wait_count("start", "loops.1", 2)
    # one that exits normally is forgotten
    os.kill(second["pid"], signal.SIGUSR1)
    wait_until(
        lambda: [c["id"] for c in d.node("loops")["children"]] == ["loops.1"],
        what="loops.2 to be removed",
    )


def test_restart_types_with_real_exits(factoryd, journal) -> None:
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        strategy = "one_for_one"
        intensity = 10
        period = 30
        [[supervisor.children]]
        id = "perm"
        {target("exit_on_usr1", j, "0")}
        restart = "permanent"
        [[supervisor.children]]
        id = "trans_ok"
        {target("exit_on_usr1", j, "0")}
        restart = "transient"
        [[supervisor.children]]
        id = "trans_bad"
        {target("exit_on_usr1", j, "2")}
        restart = "transient"
        [[supervisor.children]]
        id = "temp"
        {target("exit_on_usr1", j, "2")}
        restart = "temporary"
    """).start()
    for cid in ("perm", "trans_ok", "trans_bad", "temp"):
        os.kill(d.pid(cid), signal.SIGUSR1)
    journal.wait_count("start", "perm", 2)  # permanent: restarted even after exit 0
    journal.wait_count("start", "trans_bad", 2)  # transient: restarted after exit 2
    wait_until(lambda: d.node("trans_ok")["state"] == "stopped", what="trans_ok stopped")
    wait_until(
        lambda: "temp" not in [c["id"] for c in d.status()["tree"]["children"]],
        what="temporary child removed",
    )
    assert journal.count("start", "trans_ok") == 1
    assert d.node("trans_ok")["last_exit"] == "normal"


def test_root_intensity_exceeded_makes_factoryd_exit_nonzero(factoryd, journal) -> None:
    d = factoryd(f"""
        [supervisor]
        strategy = "one_for_one"
        intensity = 2
        period = 60
        [[supervisor.children]]
        id = "crasher"
        {target("exit_with", str(journal.path), "1")}
        [[supervisor.children]]
        id = "bystander"
        {target("serve", str(journal.path))}
    """).start(wait_ready=False)
    assert d.wait_exit() == 1  # DaemonExit.GAVE_UP: systemd's Restart=on-failure takes over
    assert journal.count("start", "crasher") == 3  # the first start and 2 restarts
    assert journal.count("stop", "bystander") == 1  # terminated before the supervisor exits
    assert "reached max restart intensity" in d.log()


def test_nested_supervisor_escalates_to_its_parent_which_restarts_it(factoryd, journal) -> None:
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        strategy = "one_for_one"
        intensity = 1
        period = 60
        [[supervisor.children]]
        id = "top"
        {target("serve", j)}
        [[supervisor.children]]
        id = "inner"
        strategy = "one_for_one"
        intensity = 1
        period = 60
        [[supervisor.children.children]]
        id = "steady"
        {target("serve", j)}
        [[supervisor.children.children]]
        id = "flaky"
        {target("exit_on_usr1", j, "1")}
    """).start()
    top_pid = d.pid("top")
    os.kill(d.pid("flaky"), signal.SIGUSR1)  # 1 restart: within inner's intensity
    journal.wait_count("start", "flaky", 2)
    os.kill(d.pid("flaky"), signal.SIGUSR1)  # 2nd: inner gives up, root restarts inner
    journal.wait_count("start", "flaky", 3)
    journal.wait_count("start", "steady", 2)
    assert journal.count("stop", "steady") == 1
    assert d.node("inner")["restarts"] == 1
    assert d.node("inner")["last_exit"] == "shutdown: reached max restart intensity"
    assert d.pid("top") == top_pid  # one_for_one at the root: siblings untouched
    assert d.proc.poll() is None


def test_shutdown_stops_children_in_reverse_start_order(factoryd, journal) -> None:
    d = factoryd(_tree(journal, "one_for_one", ["first", "second", "third"])).start()
    code, out, _ = d.ctl("shutdown", "--wait")
    assert code == 0 and "stopped" in out
    assert d.wait_exit() == 0
    stops = [c for e, c, _ in journal.events() if e == "stop"]
    assert stops == ["third", "second", "first"]
    # the last words printed on SIGTERM reached the log, tagged with the child id
    assert "[first] first got SIGTERM, last words" in d.log()


def test_stubborn_child_is_killed_after_its_shutdown_time(factoryd, journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "stubborn"
        {target("stubborn", str(journal.path))}
        shutdown_ms = 300
    """).start()
    pid = d.pid("stubborn")
    code, out, _ = d.ctl("stop", "stubborn")
    assert code == 0 and out == "stubborn: stopped\n"
    journal.wait_count("term", "stubborn", 1)  # it got SIGTERM first, and ignored it
    assert not pid_alive(pid)
    assert d.node("stubborn")["last_exit"] == "shutdown: killed after shutdown timeout"


def test_a_childs_whole_process_group_dies_with_it(factoryd, journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "parent"
        {target("with_grandchild", str(journal.path))}
    """).start()
    journal.wait_count("grandchild", "parent", 1)
    grandchild = next(p for e, _, p in journal.events() if e == "grandchild")
    assert os.getpgid(grandchild) == d.pid("parent")
    os.kill(d.pid("parent"), signal.SIGKILL)  # only the leader: the group must follow
    wait_gone(grandchild)


def test_failed_start_at_boot_leaves_nothing_running(factoryd, journal) -> None:
    d = factoryd(f"""
        [supervisor]
        [[supervisor.children]]
        id = "good"
        {target("serve", str(journal.path))}
        [[supervisor.children]]
        id = "bad"
        command = ["/nonexistent/program"]
    """).start(wait_ready=False)
    assert d.wait_exit() == 3
    assert "child 'bad' failed to start: cannot exec '/nonexistent/program'" in d.log()
    # the started sibling was stopped (it may not have got to its own records yet)
    (good,) = [r["pid"] for r in d.records("child_started") if r["child"] == "good"]
    assert [r["child"] for r in d.records("child_terminated")] == ["good"]
    wait_gone(good)


def test_auto_shutdown_when_a_significant_child_finishes(factoryd, journal) -> None:
    j = str(journal.path)
    d = factoryd(f"""
        [supervisor]
        auto_shutdown = "any_significant"
        [[supervisor.children]]
        id = "service"
        {target("serve", j)}
        [[supervisor.children]]
        id = "job"
        {target("exit_on_usr1", j, "0")}
        restart = "transient"
        significant = true
    """).start()
    os.kill(d.pid("job"), signal.SIGUSR1)
    assert d.wait_exit() == 0  # the root shut down on purpose: not a failure
    assert journal.count("stop", "service") == 1
    assert '"reason":"shutdown: auto_shutdown"' in d.log()


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
