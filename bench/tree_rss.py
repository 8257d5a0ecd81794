"""The whole factory's memory with N loops live: RSS of the tree, USS of each loop.

    python3 bench/tree_rss.py [--loops 4] [--samples 5]

Method: systemd/factory.example.toml, pointed at a small real project (a golden clone,
N ready beads of one function each), runs under factoryd exactly as in
tests/test_example_config.py; the agents are a scripted in-process stand-in (`turns`
below) whose auditor waits on a release file, so all N loops are alive at once
(governor: --max-loops N). While they wait, it samples, SAMPLES times: the RSS of every
process of the tree (factoryd, the zygote, each service and loop with their
subprocesses, by psutil over factoryd's process tree) and each loop process's USS (what
it alone costs). Then it releases the loops, waits until the N beads are closed, and
stops. Agent processes are not in these figures: a kept opencode adds ~600-800 MB RSS
per loop (bench/agent_turns.py measures it), reserved in the ledger before it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ipc import control, ledger, paths  # noqa: E402
from procs.demo import project  # noqa: E402

RELEASE_ENV = "FACTORY_BENCH_RELEASE"
TEST_COMMAND = project.TEST_COMMAND


class Turns:
    """The agents, scripted: the auditor waits for the release file (bounded), then each
    bead gets one test of its own module and its implementation."""

    def _module(self, turn: Any) -> str:
        return "feat_" + str(turn.state.bead_id).replace("-", "_")

    def auditor(self, turn: Any) -> Any:
        release = Path(os.environ[RELEASE_ENV])
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # a stand-in agent "thinking" until the bench has sampled
        test = turn.workspace / "tests" / f"test_{self._module(turn)}.py"
        if test.exists():
            return _reply('{"status": "requirements_complete"}')
        module = self._module(turn)
        test.write_text(f"def test_value():\n    import {module}\n\n"
                        f"    assert {module}.value() == 7\n")  # fmt: skip
        return _reply('{"status": "test_written"}')

    def implementer(self, turn: Any) -> Any:
        (turn.workspace / f"{self._module(turn)}.py").write_text("def value():\n    return 7\n")
        return _reply('{"status": "implemented"}')

    def architect(self, turn: Any) -> Any:
        return _reply('{"status": "refactored"}')

    def reviewer(self, turn: Any) -> Any:
        return _reply('{"status": "approve", "issues": []}')


def _reply(result: str) -> Any:
    from procs.loop.turns import TurnReply

    return TurnReply(f"Done.\nFACTORY_RESULT {result}")


def turns(config: Any, held: Any, **_: Any) -> Turns:
    return Turns()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, timeout=30).stdout  # fmt: skip


def make_golden(path: Path) -> None:
    (path / "tests").mkdir(parents=True)
    (path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (path / "tests" / "test_calc.py").write_text(
        "import calc\n\n\ndef test_add():\n    assert calc.add(1, 2) == 3\n"
    )
    (path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "-c", "user.name=bench", "-c", "user.email=bench@factory", "add", "-A")
    git(path, "-c", "user.name=bench", "-c", "user.email=bench@factory", "commit", "-qm", "base")


def config_text(golden: Path, beads: Path, loop_toml: Path, loops: int) -> str:
    return project.pointed_example(
        golden, beads, loop_toml, who="bench/tree_rss.py",
        changes=[('"--lander", "merge_queue",',
                  '"--lander", "merge_queue", "--agent-turns", "bench.tree_rss:turns",'),
                 ('"--max-loops", "4"', f'"--max-loops", "{loops}"')],
    )  # fmt: skip


def tree_processes(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def sample(factoryd_pid: int, loop_pids: set[int]) -> tuple[int, int, list[int], int]:
    """(tree RSS bytes, tree USS bytes, each loop process's USS bytes, processes counted).
    RSS counts pages shared by the zygote's forks once per process; USS counts only what
    each process alone holds, so the tree's USS sum is a floor of what it really costs."""
    total, total_uss, loop_uss, count = 0, 0, [], 0
    for proc in tree_processes(factoryd_pid):
        try:
            total += proc.memory_info().rss
            uss = proc.memory_full_info().uss
            total_uss += uss
            count += 1
            if proc.pid in loop_pids:
                loop_uss.append(uss)
        except psutil.Error:
            continue
    return total, total_uss, loop_uss, count


def _loop_pids(sock: Path) -> set[int]:
    tree = control.call(sock, "status", {}, timeout=10)["tree"]
    loops = next(c for c in tree["children"] if c["id"] == "loops")
    return {c["pid"] for c in loops["children"] if c["state"] == "running" and c.get("pid")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="factory-rss-") as scratch:
        tmp = Path(scratch)
        golden, beads, loop_toml = tmp / "golden", tmp / "repo" / "issues.jsonl", tmp / "loop.toml"
        make_golden(golden)
        beads.parent.mkdir()
        beads.write_text("")
        loop_toml.write_text(
            f"[loop]\ntest_command = {json.dumps(TEST_COMMAND.split())}\n"
            'agent_command = ["scripted-in-process"]\nreviewer = "agent"\n'
        )
        cfg = tmp / "factory.toml"
        cfg.write_text(config_text(golden, beads, loop_toml, args.loops))
        runtime, release = tmp / "run", tmp / "release"
        env = {**os.environ, "PYTHONPATH": str(ROOT), RELEASE_ENV: str(release)}
        log = (tmp / "factoryd.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.daemon", "--config", str(cfg), "--runtime-dir",
             str(runtime), "--state-dir", str(tmp / "state")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        sock = paths.control_socket(runtime)
        try:
            _wait(lambda: _live_loops(sock) == 0, 120, "the tree to start")
            idle_rss, idle_uss, _, idle_count = sample(proc.pid, set())
            ids = [f"bd-{i}" for i in range(args.loops)]
            beads.write_text("".join(json.dumps({
                "id": i, "title": i, "status": "open", "priority": 2, "issue_type": "task",
                "description": f"feat_{i.replace('-', '_')}.value() is 7",
                "created_at": "2026-01-01T00:00:00Z"}) + "\n" for i in ids))  # fmt: skip
            _wait(lambda: _live_loops(sock) == args.loops, 120, f"{args.loops} live loops")
            totals, tree_uss, uss = [], [], []
            for _ in range(args.samples):
                total, total_uss, loops_uss, count = sample(proc.pid, _loop_pids(sock))
                totals.append(total)
                tree_uss.append(total_uss)
                uss.extend(loops_uss)
                time.sleep(0.2)  # spacing between samples, not synchronisation
            release.touch()
            _wait(lambda: all(json.loads(line)["status"] == "closed"
                              for line in beads.read_text().splitlines()), 180,
                  "every bead closed")  # fmt: skip
        finally:
            try:
                control.call(sock, "shutdown", {}, timeout=30)
                proc.wait(timeout=60)
            except (control.ControlError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
            ledger.destroy(runtime)
    mb = 1024 * 1024
    print(f"factory tree, example config, {args.loops} loops on scripted in-process agents "
          f"(no agent processes), {args.samples} samples")  # fmt: skip
    print(f"  idle tree ({idle_count} processes): RSS {idle_rss / mb:.0f} MB, "
          f"USS {idle_uss / mb:.0f} MB")  # fmt: skip
    print(f"  with {args.loops} live loops ({count} processes): RSS median "
          f"{statistics.median(totals) / mb:.0f} MB (max {max(totals) / mb:.0f}), USS median "
          f"{statistics.median(tree_uss) / mb:.0f} MB")  # fmt: skip
    if uss:
        print(f"  loop process USS: median {statistics.median(uss) / mb:.1f} MB, "
              f"max {max(uss) / mb:.1f} MB ({len(uss)} readings)")  # fmt: skip
    return 0


def _live_loops(sock: Path) -> int:
    tree = control.call(sock, "status", {}, timeout=10)["tree"]
    loops = next(c for c in tree["children"] if c["id"] == "loops")
    return sum(1 for c in loops["children"] if c["state"] == "running")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (control.ControlError, OSError, ValueError, StopIteration):
            pass  # the tree is still starting: ask again until the deadline
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
