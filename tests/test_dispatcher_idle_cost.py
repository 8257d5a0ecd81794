"""Idle cost, measured (issue 14: "with nothing ready, 0 model calls and <= 0.5 % CPU for
the whole tree"): a real factoryd with the bus, the governor, the beads service (nothing
ready), the LLM router, the `loops` supervisor, the dispatcher and the heartbeat (golden
green). Once both have done their start work, the tree is watched for IDLE_S seconds:

- counted and asserted: no model call (the router's counters stay empty), no loop child,
  no dispatcher round and no heartbeat check beyond their timers (none in the window);
- measured and printed, never asserted (timings belong to no unit assert): the CPU time
  each process tree used in the window, as a share of one core.
Run with `-s` to see the figures (CPU time from /proc/PID/task/*/schedstat, in ns).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ipc import control, ledger, paths
from tests.harness import Factoryd
from tests.helpers.loop_repos import make_project
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

IDLE_S = 10.0
SERVICES = ("bus", "governor", "beads", "llm_router", "dispatcher", "heartbeat")


@pytest.fixture
def idle_tree(tmp_path: Path) -> Iterator[Factoryd]:
    golden = make_project(tmp_path / "golden")
    beads = tmp_path / "issues.jsonl"
    beads.write_text("")
    suite = f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q"
    d = Factoryd(tmp_path, f"""
        [factory]
        preload = ["procs"]
        [supervisor]
        strategy = "one_for_one"
        [[supervisor.children]]
        id = "bus"
        target = "procs.bus.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "governor"
        target = "procs.governor.service:main"
        args = ["--max-loops", "2", "--min-free-ram-mb", "0"]
        ready = "notify"
        [[supervisor.children]]
        id = "beads"
        target = "procs.beads.service:main"
        args = ["--jsonl", "{beads}", "--bd", "never"]
        ready = "notify"
        [[supervisor.children]]
        id = "llm_router"
        target = "procs.llm.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "loops"
        strategy = "simple_one_for_one"
        [[supervisor.children.children]]
        id = "loop"
        target = "procs.loop.service:main"
        args = ["--beads", "{beads}", "--repo", "{golden}"]
        restart = "transient"
        ready = "notify"
        [[supervisor.children]]
        id = "dispatcher"
        target = "procs.dispatcher.service:main"
        args = ["--golden", "{golden}"]
        ready = "notify"
        [[supervisor.children]]
        id = "heartbeat"
        target = "procs.heartbeat.service:main"
        args = ["--repo", "{golden}", "--golden", "git", "--sandbox", "none",
                "--test-command", "{suite}"]
        ready = "notify"
    """)  # fmt: skip
    d.start()
    try:
        yield d
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)


def call(d: Factoryd, endpoint: str, command: str) -> Any:
    return control.call(paths.control_socket(d.runtime_dir, endpoint), command, {}, timeout=10)


def cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and its live subprocesses, every thread, to the nanosecond
    (/proc/PID/task/TID/schedstat: time on a CPU; psutil's 10 ms ticks would read 0)."""
    try:
        procs = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    total_ns = 0
    for proc in procs:
        for stat in Path(f"/proc/{proc}/task").glob("*/schedstat"):
            try:
                total_ns += int(stat.read_text().split()[0])
            except (OSError, ValueError, IndexError):  # the thread ended as we read
                continue
    return total_ns / 1e9


def cpu_s_alone(pid: int) -> float:
    """CPU seconds of `pid`'s own threads (factoryd: its children are counted apart)."""
    total_ns = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total_ns / 1e9


def test_an_idle_factory_makes_no_model_call_and_its_cpu_is_measured(
    idle_tree: Factoryd,
) -> None:
    d = idle_tree
    wait_until(lambda: call(d, "dispatcher", "status")["rounds"] >= 1, timeout=30,
               what="the dispatcher's first round")  # fmt: skip
    wait_until(lambda: call(d, "heartbeat", "status")["last_run"], timeout=60,
               what="the heartbeat's first run")  # fmt: skip
    dispatcher, heartbeat = call(d, "dispatcher", "status"), call(d, "heartbeat", "status")
    assert dispatcher["last_round"]["ready"] == 0 and dispatcher["last_error"] is None
    assert heartbeat["last_run"]["green"] is True
    pids = {name: d.pid(name) for name in SERVICES}
    assert d.proc is not None
    before = {name: cpu_s(pid) for name, pid in pids.items() if pid}
    daemon_before = cpu_s_alone(d.proc.pid)
    began = time.monotonic()
    watched = [psutil.Process(pid) for pid in pids.values() if pid]
    gone, _ = psutil.wait_procs(watched, timeout=IDLE_S)  # the window: nobody may exit
    elapsed = time.monotonic() - began
    assert gone == []
    after = {name: cpu_s(pid) for name, pid in pids.items() if pid}
    daemon_after = cpu_s_alone(d.proc.pid)
    shares = {name: 100.0 * (after[name] - before[name]) / elapsed for name in before}
    shares["factoryd"] = 100.0 * (daemon_after - daemon_before) / elapsed
    total = sum(shares.values())
    print(f"\nidle {elapsed:.1f} s, CPU % of one core: "
          + ", ".join(f"{k} {v:.4f}" for k, v in sorted(shares.items()))
          + f"; whole tree {total:.4f} (dispatcher+heartbeat "
          f"{shares['dispatcher'] + shares['heartbeat']:.4f})")  # fmt: skip

    assert call(d, "dispatcher", "status")["rounds"] == dispatcher["rounds"]  # timer: 60 s
    assert call(d, "heartbeat", "status")["checks"] == heartbeat["checks"]  # interval: 300 s
    assert call(d, "llm_router", "status")["calls"] == {}  # no model call, ever
    assert d.node("loops").get("children", []) == []

    # what the timers will cost when they fire: one reconcile round, one HEAD check
    periodic = {"dispatcher": ("round", "rounds", 60.0),
                "heartbeat": ("check", "checks", 300.0)}  # fmt: skip
    for name, (command, counter, period_s) in periodic.items():
        before_s, done = cpu_s(pids[name] or 0), call(d, name, "status")[counter]
        call(d, name, command)
        wait_until(lambda n=name, c=counter, k=done: call(d, n, "status")[c] > k, timeout=30,
                   what=f"the {name}'s {command}")  # fmt: skip
        cost_ms = 1000.0 * (cpu_s(pids[name] or 0) - before_s)
        print(
            f"one {name} {command}: {cost_ms:.1f} ms CPU (status calls included), "
            f"{cost_ms / 10.0 / period_s:.4f} % at its default period {period_s:g} s"
        )
    assert call(d, "llm_router", "status")["calls"] == {}
