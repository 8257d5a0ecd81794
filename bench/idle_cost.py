"""What an idle factory costs: model calls and CPU with nothing ready, for a while.

    python3 bench/idle_cost.py [--seconds 600]

Method: systemd/factory.example.toml over a small real project (as bench/tree_rss.py
sets it up) with an empty beads export, so nothing is ready. Once the tree is up it
reads, for every process of factoryd's tree, its CPU time (user + system, psutil), and
the LLM router's and the model gateway's call counters; it waits SECONDS; then reads them
again. CPU share = CPU seconds spent / wall seconds (of one core). Processes that
started or ended in the window count only while they lived (they would be a finding:
an idle tree should start none). Goal (issue 14): 0 model calls, <= 0.5 % CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from tree_rss import _wait, config_text, make_golden  # noqa: E402

from ipc import control, ledger, paths  # noqa: E402


def cpu_by_process(root_pid: int) -> dict[int, tuple[str, float]]:
    """{pid: (name, CPU seconds)} for factoryd and everything under it."""
    out = {}
    root = psutil.Process(root_pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            out[proc.pid] = (" ".join(proc.cmdline()[-2:])[:60], times.user + times.system)
        except psutil.Error:
            continue
    return out


def model_calls(runtime: Path) -> int:
    """Calls the router answered or failed plus calls the gateway served, so far."""
    total = 0
    router = control.call(paths.control_socket(runtime, "llm_router"), "status", {}, timeout=10)
    for counts in router.get("calls", {}).values():
        total += int(counts.get("answered", 0)) + int(counts.get("failed", 0))
    gateway = control.call(paths.control_socket(runtime, "model_gateway"), "status", {},
                           timeout=10)  # fmt: skip
    total += int(gateway.get("calls", 0) or 0)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="factory-idle-") as scratch:
        tmp = Path(scratch)
        golden, beads, loop_toml = tmp / "golden", tmp / "repo" / "issues.jsonl", tmp / "loop.toml"
        make_golden(golden)
        beads.parent.mkdir()
        beads.write_text("")
        loop_toml.write_text(
            '[loop]\ntest_command = ["python3", "-m", "pytest", "-q"]\n'
            'agent_command = ["scripted-in-process"]\nreviewer = "agent"\n'
        )
        cfg = tmp / "factory.toml"
        cfg.write_text(config_text(tmp, golden, beads, loop_toml, 4))
        runtime = tmp / "run"
        env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.daemon", "--config", str(cfg), "--runtime-dir",
             str(runtime), "--state-dir", str(tmp / "state")],
            cwd=BENCH.parent, env=env, stdout=(tmp / "factoryd.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        sock = paths.control_socket(runtime)
        try:
            _wait(lambda: control.call(sock, "status", {}, timeout=10)["tree"], 120, "the tree")
            _wait(lambda: model_calls(runtime) >= 0, 60, "the router and the gateway")
            time.sleep(5)  # past the start-up (golden's and the heartbeat's first suites)
            before, calls_before, t0 = cpu_by_process(proc.pid), model_calls(runtime), time.time()
            time.sleep(args.seconds)  # the idle window being measured
            after, calls_after, t1 = cpu_by_process(proc.pid), model_calls(runtime), time.time()
        finally:
            try:
                control.call(sock, "shutdown", {}, timeout=30)
                proc.wait(timeout=60)
            except (control.ControlError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
            ledger.destroy(runtime)
    wall = t1 - t0
    spent: list[tuple[float, Any, str]] = []
    for pid, (name, cpu) in after.items():
        spent.append((cpu - before.get(pid, (name, 0.0))[1], pid, name))
    total = sum(s for s, _, _ in spent)
    started = sorted(set(after) - set(before))
    print(f"idle factory (example config, nothing ready) for {wall:.0f} s, "
          f"{len(after)} processes, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"  model calls in the window: {calls_after - calls_before} (goal 0)")
    print(f"  CPU: {total:.2f} s = {100 * total / wall:.3f} % of one core (goal <= 0.5 %)")
    for cpu, pid, name in sorted(spent, reverse=True)[:6]:
        print(f"    {100 * cpu / wall:7.4f} %  pid {pid} {name}")
    print(f"  processes started in the window: {len(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
