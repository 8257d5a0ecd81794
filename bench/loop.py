"""The factory loop's own cost: overhead per TCR iteration, a sandboxed suite run, USS, and
the start of an agent turn.

1. Overhead per TCR iteration (everything but model time and test time). The real
   LoopDriver (procs.loop.driver) runs one bead of N requirements (`--iterations`, default
   20) on a small real git repo: calc.py + tests/test_calc.py + pytest.ini at the start,
   one test file and one function more per iteration (N+1 tests, N+4 tracked files at the
   end), cloned from a bare golden repo, landed by FastForwardLander. The agent is a
   scripted in-process AgentTurns (a TEST DOUBLE that writes the files itself: zero model
   time): the auditor writes tests/test_fK.py, the implementer rewrites calc.py, the
   reviewer approves; no TCR revert, no refactor (refactor_interval > N). Every test run
   is real pytest under bubblewrap (procs.sandbox), exactly as the driver calls it.
   Method: a LoopDriver subclass times each step() (perf_counter); the module attribute
   procs.loop.suite.run_suite (through which the driver and SuiteGauntlet run every
   suite), the scripted turns, procs.loop.git.git (every git subprocess of the loop) and
   the store's create/advance/history are wrapped with timers that sum into buckets. A
   step's overhead = its wall time - time inside run_suite - time inside the turn. An
   iteration is the steps from the auditor's accepted test (Auditing -> VerifyingRed)
   through Verifying's pass (where, after the gauntlet, the one green commit is made; the
   gauntlet is the driver's default SuiteGauntlet); the bead's tail (the auditor's
   REQUIREMENTS_COMPLETE, Reviewing, Pushing) and run()'s own start are reported apart.
   The overhead is split into git subprocesses, the SQLite store (WAL, synchronous=FULL:
   an fsync per transition) and the rest (prompt rendering, sandbox policy, Python).
   Median and p95 (nearest rank) per iteration; goal p95 <= 100 ms. The commits landed on
   golden are counted and must equal the loop's `commits`.
2. One sandboxed suite run for that repo (bwrap + pytest): every run inside the loop
   (VerifyingRed, TcrChecking, Verifying), then --suite-runs runs of suite.run_suite on
   the final repo with the bwrap policy and the same with mode "none" (no sandbox), to
   split bubblewrap's share from pytest's.
3. Memory of this process, which is the loop process here: USS (psutil
   memory_full_info().uss) and its private anonymous part (smaps_rollup; USS also counts
   file pages no other process maps right then, so it moves with what else runs): at
   start (Python + psutil + the bench's stdlib imports), after `import procs.loop`, after
   importing the driver's modules (prompts brings Jinja2), after the loop ran. Jinja2's
   share, in fresh interpreters (Python + psutil): `import jinja2, jinja2.meta` alone,
   and the same with every other module of the loop imported first (its marginal share).
4. Agent turn start with the scripted ACP agent (TEST DOUBLE tests/doubles/acp_agent.py)
   and an empty turn (the prompt "[]"), so a turn's wall time is its start cost plus an
   empty prompt; first turn and the later ones. ProcessTurns: a service process + an
   agent process per turn (spawn both, initialize, session/new). KeptAgentTurns (what a
   loop uses): one kept service + agent, a new session per turn, opened ahead of it.
   With real opencode, and split into our share and opencode's: bench/agent_turns.py.

    python3 bench/loop.py [--iterations 20] [--suite-runs 8] [--turns 8]

Runs in about 2 minutes on 2 busy cores (dominated by pytest's start: ~1.3 s a run).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
TEST_COMMAND = (sys.executable, "-m", "pytest", "-q")
CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = "import calc\n\n\ndef test_add():\n    assert calc.add(2, 3) == 5\n"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@factory.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@factory.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}
GOAL_OVERHEAD_P95_MS = 100.0


def memory_mb() -> tuple[float, float]:
    """(USS, anonymous): psutil's USS, and the private anonymous part of it (heap, from
    /proc/self/smaps_rollup): USS also counts file pages (a .so's, a .pyc's) that no
    other process maps at that moment, so it moves with what else runs on the box."""
    uss = float(psutil.Process().memory_full_info().uss) / MB
    return uss, _anonymous_kb() / 1024


def _anonymous_kb() -> float:
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"median {statistics.median(values):7.1f}  p95 {p95(values):7.1f}  "
        f"min {min(values):7.1f}  max {max(values):7.1f}  (n={len(values)})"
    )


def run_git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        timeout=30,
        check=True,
    )
    return done.stdout


def make_golden(root: Path) -> tuple[Path, Path]:
    """A bare golden repo with the starting project, and a workspace cloned from it."""
    source = root / "source"
    (source / "tests").mkdir(parents=True)
    (source / "calc.py").write_text(CALC)
    (source / "tests" / "test_calc.py").write_text(TEST_CALC)
    (source / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    run_git(source, "init", "-q", "-b", "main")
    run_git(source, "add", ".")
    run_git(source, "commit", "-q", "-m", "initial: add() and its test")
    golden, workspace = root / "golden.git", root / "ws"
    run_git(root, "clone", "-q", "--bare", str(source), str(golden))
    run_git(root, "clone", "-q", str(golden), str(workspace))
    return golden, workspace


# -- instrumentation ------------------------------------------------------------------


@dataclass
class Buckets:
    """Seconds spent inside each wrapped call, summed; suite runs' walls kept apart."""

    total: dict[str, float] = field(
        default_factory=lambda: {"suite": 0.0, "turn": 0.0, "git": 0.0, "store": 0.0}
    )
    calls: dict[str, int] = field(
        default_factory=lambda: {"suite": 0, "turn": 0, "git": 0, "store": 0}
    )
    suite_walls_ms: list[float] = field(default_factory=list)
    git_log: list[tuple[str, float]] = field(default_factory=list)  # (subcommand, ms)

    def wrap(self, bucket: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - began
                self.total[bucket] += spent
                self.calls[bucket] += 1
                if bucket == "suite":
                    self.suite_walls_ms.append(spent * 1000)
                elif bucket == "git":
                    words = [a for a in args[1:] if isinstance(a, str) and not a.startswith("-")]
                    self.git_log.append((words[0] if words else "?", spent * 1000))

        return timed

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.total), dict(self.calls)


@dataclass
class StepTime:
    phase_from: str
    phase_to: str
    iteration: int
    wall_ms: float
    spent_ms: dict[str, float]  # per bucket, inside this step
    calls: dict[str, int]
    git: list[tuple[str, float]]  # the step's git subprocesses: (subcommand, ms)

    @property
    def overhead_ms(self) -> float:
        return self.wall_ms - self.spent_ms["suite"] - self.spent_ms["turn"]


class ScriptedTurns:
    """TEST DOUBLE AgentTurns, in process: requirement K is fK(x) == x + K. Auditor: the
    first missing tests/test_fK.py, or REQUIREMENTS_COMPLETE. Implementer: calc.py with
    every fK whose test exists. Architect: nothing. Reviewer: approves."""

    def __init__(self, n: int) -> None:
        self.n = n

    def auditor(self, turn: Any) -> Any:
        from procs.loop.turns import TurnReply

        for k in range(1, self.n + 1):
            test = turn.workspace / "tests" / f"test_f{k}.py"
            if not test.exists():
                test.write_text(
                    f"import calc\n\n\ndef test_f{k}():\n    assert calc.f{k}(2) == {2 + k}\n"
                )
                return TurnReply(
                    f'Done.\nFACTORY_RESULT {{"status": "test_written", "test": "{test.name}"}}'
                )
        return TurnReply('Done.\nFACTORY_RESULT {"status": "requirements_complete"}')

    def implementer(self, turn: Any) -> Any:
        from procs.loop.turns import TurnReply

        parts = [CALC] + [
            f"def f{k}(x):\n    return x + {k}\n"
            for k in range(1, self.n + 1)
            if (turn.workspace / "tests" / f"test_f{k}.py").exists()
        ]
        (turn.workspace / "calc.py").write_text("\n\n".join(parts))
        return TurnReply('Done.\nFACTORY_RESULT {"status": "implemented", "summary": "calc"}')

    def architect(self, turn: Any) -> Any:
        from procs.loop.turns import TurnReply

        return TurnReply('Done.\nFACTORY_RESULT {"status": "refactored"}')

    def reviewer(self, turn: Any) -> Any:
        from procs.loop.turns import TurnReply

        return TurnReply('Done.\nFACTORY_RESULT {"status": "approve", "issues": []}')


def instrument(buckets: Buckets, turns: ScriptedTurns, store: Any) -> None:
    from procs.loop import git, suite

    suite.run_suite = buckets.wrap("suite", suite.run_suite)
    git.git = buckets.wrap("git", git.git)
    for role in ("auditor", "implementer", "architect", "reviewer"):
        setattr(turns, role, buckets.wrap("turn", getattr(turns, role)))
    for name in ("create", "advance", "history"):
        setattr(store, name, buckets.wrap("store", getattr(store, name)))


# -- 1 + 2 + 3: the loop --------------------------------------------------------------


def run_loop(root: Path, n: int, buckets: Buckets) -> tuple[list[StepTime], float, Any, Path, int]:
    """The loop's steps, run()'s wall ms, the final state, the workspace, and how many
    commits landed on golden."""
    from procs.loop import FactoryLoopState, LoopLimits, git
    from procs.loop.driver import LoopConfig, LoopDriver
    from procs.loop.lander import FastForwardLander
    from procs.loop.store import LoopStore

    steps: list[StepTime] = []

    class TimedDriver(LoopDriver):
        def step(self, state: FactoryLoopState) -> FactoryLoopState:
            spent0, calls0 = buckets.snapshot()
            first_git = len(buckets.git_log)
            began = time.perf_counter()
            new = super().step(state)
            wall = (time.perf_counter() - began) * 1000
            spent1, calls1 = buckets.snapshot()
            steps.append(
                StepTime(
                    state.phase.value,
                    new.phase.value,
                    new.iteration,
                    wall,
                    {k: (spent1[k] - spent0[k]) * 1000 for k in spent1},
                    {k: calls1[k] - calls0[k] for k in calls1},
                    buckets.git_log[first_git:],
                )
            )
            return new

    golden, workspace = make_golden(root)
    store = LoopStore(root / "state" / "loops.sqlite3")
    turns = ScriptedTurns(n)
    instrument(buckets, turns, store)
    requirements = " ".join(f"f{k}(x) returns x + {k}." for k in range(1, n + 1))
    config = LoopConfig(
        requirements=f"calc gains: {requirements}", test_command=TEST_COMMAND, suite_timeout_s=120.0
    )
    state = FactoryLoopState(
        loop_id="bench-1",
        bead_id="bd-bench",
        attempt=1,
        workspace=str(workspace),
        golden_hash=git.head(workspace),
        limits=LoopLimits(max_impl_attempts=2, refactor_interval=n + 1, max_iterations=n + 1),
    )
    driver = TimedDriver(store, turns, config, FastForwardLander(golden))
    began = time.perf_counter()
    final = driver.run(state)
    run_wall = (time.perf_counter() - began) * 1000
    landed = len(git.commits_between(golden, state.golden_hash, "refs/heads/main"))
    return steps, run_wall, final, workspace, landed


def split_iterations(steps: list[StepTime]) -> tuple[list[list[StepTime]], list[StepTime]]:
    """Iterations (the auditor's accepted test .. Verifying's pass) and the bead's tail."""
    iterations: list[list[StepTime]] = []
    tail: list[StepTime] = []
    for step in steps:
        if step.phase_from == "auditing" and step.phase_to == "verifying_red":
            iterations.append([step])
        elif step.phase_to in ("reviewing", "pushing", "complete", "failed") or not iterations:
            tail.append(step)
        else:
            iterations[-1].append(step)
    return iterations, tail


def report_loop(
    steps: list[StepTime], run_wall: float, final: Any, n: int, landed: int
) -> list[float]:
    iterations, tail = split_iterations(steps)
    per_iter = [sum(s.overhead_ms for s in it) for it in iterations]
    git_ms = [sum(s.spent_ms["git"] for s in it) for it in iterations]
    store_ms = [sum(s.spent_ms["store"] for s in it) for it in iterations]
    rest_ms = [o - g - s for o, g, s in zip(per_iter, git_ms, store_ms, strict=True)]
    git_calls = [sum(s.calls["git"] for s in it) for it in iterations]
    suite_ms = [sum(s.spent_ms["suite"] for s in it) for it in iterations]
    wall_ms = [sum(s.wall_ms for s in it) for it in iterations]
    turn_ms = [sum(s.spent_ms["turn"] for s in it) for it in iterations]
    print(
        f"   loop outcome: {final.phase.value} {final.reason}; greens {final.greens}, "
        f"commits {final.commits} ({landed} landed), reverts {final.reverts}, "
        f"{len(steps)} steps, run() wall {run_wall / 1000:.1f} s"
    )
    if landed != final.commits:
        print(f"   WARNING: the loop counted {final.commits} commits, {landed} landed")
    print(
        f"   iterations measured: {len(iterations)} (steps per iteration: "
        f"{sorted({len(it) for it in iterations})}, suite runs per iteration: "
        f"{sorted({sum(s.calls['suite'] for s in it) for it in iterations})})"
    )
    print("   per iteration, ms:")
    print(f"     wall (all of it)          {stats(wall_ms)}")
    print(f"     inside sandboxed suites   {stats(suite_ms)}")
    print(f"     inside scripted turns     {stats(turn_ms)}")
    print(f"     FACTORY OVERHEAD          {stats(per_iter)}")
    calls = statistics.median(git_calls)
    print(f"       of which git subprocs   {stats(git_ms)}  ({calls:.0f} calls)")
    print(f"       of which SQLite store   {stats(store_ms)}")
    print(f"       of which the rest       {stats(rest_ms)}")
    print("   overhead per phase (ms, over the iterations):")
    phases: dict[str, list[float]] = {}
    phase_git: dict[str, list[int]] = {}
    by_command: dict[str, list[float]] = {}
    for it in iterations:
        for s in it:
            phases.setdefault(s.phase_from, []).append(s.overhead_ms)
            phase_git.setdefault(s.phase_from, []).append(s.calls["git"])
            for command, ms in s.git:
                by_command.setdefault(command, []).append(ms)
    for phase, values in phases.items():
        print(
            f"     {phase:15} {stats(values)}  git calls {statistics.median(phase_git[phase]):.0f}"
        )
    print("   git subprocesses in the iterations, by subcommand (per iteration: calls, ms):")
    ranked = sorted(by_command.items(), key=lambda item: -sum(item[1]))
    for command, values in ranked:
        count, total = len(values) / len(iterations), sum(values) / len(iterations)
        print(
            f"     {command:12} {count:5.1f} calls  {total:6.1f} ms  "
            f"(median call {statistics.median(values):.1f} ms)"
        )
    setup = run_wall - sum(s.wall_ms for s in steps)
    tail_overhead = sum(s.overhead_ms for s in tail)
    print(
        f"   once per bead: run() start/end {setup:.1f} ms; tail (final audit, review, push) "
        f"overhead {tail_overhead:.1f} ms, of which git {sum(s.spent_ms['git'] for s in tail):.1f}"
    )
    met = p95(per_iter) <= GOAL_OVERHEAD_P95_MS
    print(
        f"   goal p95 <= {GOAL_OVERHEAD_P95_MS:.0f} ms: {'MET' if met else 'NOT MET'} "
        f"(p95 {p95(per_iter):.1f} ms over {len(per_iter)} iterations)"
    )
    if len(iterations) < n:
        print(f"   WARNING: {len(iterations)} iterations measured, {n} asked")
    return suite_ms


def bench_suite(workspace: Path, runs: int, in_loop_ms: list[float]) -> None:
    from procs.loop import suite

    print(f"   inside the loop (each run as the driver made it) {stats(in_loop_ms)}")
    tests = len(list((workspace / "tests").glob("test_*.py")))
    for mode in ("bwrap", "none"):
        walls = []
        for _ in range(runs):
            policy = suite.tcr_policy(workspace, timeout_s=120.0, mode=mode)
            began = time.perf_counter()
            run = suite.run_suite(workspace, TEST_COMMAND, policy)
            walls.append((time.perf_counter() - began) * 1000)
            if not run.green:
                print(f"   WARNING: the final repo is not green ({mode}): {run.why_not_green()}")
        label = "bwrap + pytest" if mode == "bwrap" else "pytest alone (mode none)"
        print(f"   final repo ({tests} test files), {label:25} {stats(walls)}")


PROBE_PRELUDE = """
import sys
sys.path.insert(0, {root!r})
import psutil
def memory_mb():
    uss = psutil.Process().memory_full_info().uss / 1048576
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Anonymous:"):
            return uss, int(line.split()[1]) / 1024
    return uss, float("nan")
"""
JINJA_PROBE = """
fresh = memory_mb()
import jinja2, jinja2.meta
alone = memory_mb()
print(*fresh, *alone)
"""
JINJA_IN_LOOP_PROBE = """
import procs.loop, procs.loop.store, procs.loop.lander, procs.loop.suite, procs.loop.tcr
import procs.loop.turns, ipc.signals
assert "jinja2" not in sys.modules
before = memory_mb()
import jinja2, jinja2.meta
jinja = memory_mb()
import procs.loop.driver
print(*before, *jinja, *memory_mb())
"""


def jinja2_share() -> list[tuple[float, float]]:
    """Fresh interpreters (Python + psutil): [before, after] `import jinja2, jinja2.meta`
    alone, and [before, after jinja2, after procs.loop.driver] when every other module of
    the loop is loaded first (Jinja2's marginal share in the loop process); each (USS,
    anonymous)."""
    found = []
    for probe in (JINJA_PROBE, JINJA_IN_LOOP_PROBE):
        code = PROBE_PRELUDE.format(root=str(ROOT)) + probe
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        values = [float(x) for x in done.stdout.split()]
        found += list(zip(values[::2], values[1::2], strict=True))
    return found


# -- 4: agent turn start --------------------------------------------------------------


def bench_turns(root: Path, count: int) -> None:
    from procs.loop import FactoryLoopState
    from procs.loop.agent_process import ProcessTurns
    from procs.loop.kept_agent import KeptAgentTurns
    from procs.loop.turns import Turn

    agent = [sys.executable, "-m", "tests.doubles.acp_agent"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ws = root / "turn-ws"
    ws.mkdir()
    state = FactoryLoopState(
        loop_id="l", bead_id="b", attempt=1, workspace=str(ws), golden_hash="a" * 40
    )
    turn = Turn(role="implementer", workspace=ws, system_prompt="", prompt="[]", state=state)
    turns = ProcessTurns(
        agent, env=env, system_prompt_first=False, sandbox_mode="none", timeout_s=60.0
    )
    walls = []
    for _ in range(count):
        began = time.perf_counter()
        turns.implementer(turn)
        walls.append((time.perf_counter() - began) * 1000)
    print(f"   ProcessTurns (service + agent processes per turn), first turn {walls[0]:.0f} ms")
    print(f"   ProcessTurns, later turns       {stats(walls[1:])}")
    walls = []
    with KeptAgentTurns(agent, env=env, system_prompt_first=False, sandbox_mode="none",
                        timeout_s=60.0) as kept:  # fmt: skip
        for _ in range(count):
            began = time.perf_counter()
            kept.implementer(turn)
            walls.append((time.perf_counter() - began) * 1000)
    print(f"   KeptAgentTurns (one agent, a session per turn), first turn {walls[0]:.0f} ms")
    print(f"   KeptAgentTurns, later turns     {stats(walls[1:])}")


def filesystem(path: Path) -> str:
    """The mount (and its type) holding `path`, from /proc/mounts."""
    best = ("?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, kind)
    except OSError:
        pass
    return f"{best[0]} ({best[1]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="TCR iterations (>= 1)")
    parser.add_argument("--suite-runs", type=int, default=8, help="extra suite runs per mode")
    parser.add_argument("--turns", type=int, default=8, help="agent turns (0: skip part 4)")
    args = parser.parse_args()
    if args.iterations < 1 or args.suite_runs < 1:
        parser.error("--iterations and --suite-runs must be >= 1")
    mem_start = memory_mb()
    import procs.loop

    mem_package = memory_mb()
    import procs.loop.driver
    import procs.loop.lander
    import procs.loop.store  # noqa: F401

    mem_driver = memory_mb()
    jinja_loaded = "jinja2" in sys.modules
    cpus = os.cpu_count()
    load = os.getloadavg()
    print(
        f"bench/loop.py: {args.iterations} TCR iterations, Python {sys.version.split()[0]}, "
        f"{cpus} CPUs, load {load[0]:.2f}/{load[1]:.2f}"
    )
    print(
        "repo: calc.py + tests/test_calc.py + pytest.ini (1 test) at the start, one test file "
        f"and one function per iteration: {args.iterations + 1} tests, "
        f"{args.iterations + 4} tracked files at the end; bare golden + a clone as workspace"
    )
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        root = Path(tmp)
        buckets = Buckets()
        print(
            f"\n1. factory overhead per TCR iteration (step wall - run_suite - turn), "
            f"scripted in-process agent, real pytest under bwrap; repos and SQLite in {tmp} on "
            f"{filesystem(root)}"
        )
        steps, run_wall, final, workspace, landed = run_loop(root, args.iterations, buckets)
        mem_after = memory_mb()
        in_loop = report_loop(steps, run_wall, final, args.iterations, landed)
        print(
            "\n2. one sandboxed suite run (suite.run_suite: tcr_policy + bwrap + pytest + "
            "junit read), ms"
        )
        in_loop_runs = buckets.suite_walls_ms
        bench_suite(workspace, args.suite_runs, in_loop_runs)
        per_iter_suite = statistics.median(in_loop)
        print(f"   per iteration the suites take {per_iter_suite:.0f} ms (median)")
        print(
            "\n3. memory of this (the loop) process, MB: USS (psutil memory_full_info().uss) "
            "and its anonymous part"
        )
        rows = [
            ("at start (Python + psutil + the bench's stdlib)", mem_start),
            ("after import procs.loop", mem_package),
            (f"after the driver, store, lander (jinja2 loaded: {jinja_loaded})", mem_driver),
            (f"after the {args.iterations}-iteration loop ran", mem_after),
        ]
        previous: tuple[float, float] | None = None
        for label, (uss, anon) in rows:
            grew = f"  (+{uss - previous[0]:.1f} / +{anon - previous[1]:.1f})" if previous else ""
            print(f"   {label:62} USS {uss:5.1f}  anon {anon:5.1f}{grew}")
            previous = (uss, anon)
        fresh, alone, before, jinja, driver = jinja2_share()
        print(
            f"   Jinja2's share (fresh interpreters): `import jinja2, jinja2.meta` alone adds "
            f"USS {alone[0] - fresh[0]:.1f} / anon {alone[1] - fresh[1]:.1f} (from "
            f"{fresh[0]:.1f}); with the rest of the loop's modules loaded first "
            f"(USS {before[0]:.1f}) it adds USS {jinja[0] - before[0]:.1f} / anon "
            f"{jinja[1] - before[1]:.1f}, then prompts + driver add USS "
            f"{driver[0] - jinja[0]:.1f} (total {driver[0]:.1f})"
        )
        if args.turns > 1:
            print(
                "\n4. agent turn start through procs.agent.service, scripted ACP agent "
                "(TEST DOUBLE), empty turn, ms"
            )
            bench_turns(root, args.turns)


if __name__ == "__main__":
    main()
