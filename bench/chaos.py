"""The chaos soak: the whole factory under SIGKILL, then its invariants, each counted.

    python3 bench/chaos.py [--duration 120] [--seed 1] [--loops 8] [--json] [--keep]
        [--interval-s 2] [--turn-s 1] [--settle-s 180] [--red-at 0.3] [--no-red-golden]

Runs systemd/factory.example.toml under factoryd (run as systemd would: bench/chaos_unit.py)
on a small real project (procs/demo's textstats in git: golden) with --loops loop slots
and a beads file kept about --loops + 2 ready beads deep, each one chaos module for a
scripted ACP agent process (bench/chaos_agent.py: real agent processes, in the sandbox,
each turn --turn-s long). Every --interval-s it SIGKILLs one random process: a service,
a loop, an agent, a mutator, the zygote or factoryd itself (then restarted: same config,
same dirs, RestartSec=2s). At --red-at of the run a teammate pushes a red commit to
golden's upstream (bench/chaos_red.py), so the synapse's mutators run (and get killed).
After --duration it stops killing and feeding beads, pauses the dispatcher and lets the
factory settle (no loop or mutator left, no bead claimed: each one closed, back in the
queue or blocked; golden green again; at most --settle-s), reads the ledger and the
workspaces, stops factoryd cleanly, and checks (bench/chaos_checks.py):

  beads lost / claimed twice / unsettled (not done, back in the queue, or blocked with
  a reason); golden commits red (each checked out, its suite run; the teammate's aside)
  and golden left red; loops not ended (complete, or failed with a reason); ledger leaks
  (GPU tickets, loop and mutator slots, RAM once idle; units no live holder holds);
  workspaces, git worktrees, mounts, loop devices and processes left after the clean
  stop; factoryd's exit status.

Figures: kills by kind, recovery times (kill -> the child running again under a new pid,
or -> READY=1 of the restarted factoryd) median and p95, why loops failed, the red
golden's fix, temp entries killed processes left, every invariant with its count.
Exit 0 when every invariant is 0, 1 otherwise, 2 when the factory cannot start, 130
on SIGTERM or SIGINT (factoryd stopped first).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench import chaos_checks as checks  # noqa: E402
from bench.chaos_agent import bead_text  # noqa: E402
from bench.chaos_red import RedGolden, SlowFixModel, config_changes, prepare_golden  # noqa: E402
from bench.chaos_unit import Unit, descendants, reap_orphans  # noqa: E402
from ipc import control, ledger  # noqa: E402
from procs.demo import project  # noqa: E402
from supervisor.prctl import PR_SET_CHILD_SUBREAPER, prctl  # noqa: E402

KINDS = ("service", "loop", "agent", "mutator", "zygote", "factoryd")
# How often each kind is drawn (among those with a live process): the tree restarts as
# a whole after a zygote or factoryd kill, so those are rarer, or nothing would land.
WEIGHTS = {"service": 4, "loop": 4, "agent": 4, "mutator": 4, "zygote": 1, "factoryd": 1}
READY_TIMEOUT_S = 120.0
POLL_S = 0.2
AGENT_SCRIPT = ROOT / "bench" / "chaos_agent.py"


@dataclass
class Kill:
    kind: str
    target: str
    pid: int
    at: float
    recovered_s: float | None = None


@dataclass
class Soak:
    work: Path
    loops: int
    turn_s: float
    rng: random.Random
    red_at_s: float | None  # when the teammate pushes the red commit (None: never)
    fix_delay_s: float = 4.0
    marker: str = field(default_factory=lambda: f"FACTORY_CHAOS_RUN={uuid.uuid4().hex}")
    kills: list[Kill] = field(default_factory=list)
    pending: dict[str, Kill] = field(default_factory=dict)  # child id -> its kill
    restarts: list[Kill] = field(default_factory=list)  # zygote/factoryd kills waiting READY
    written: dict[str, int] = field(default_factory=dict)  # bead id -> chaos module
    live_twice: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # why a tick killed nothing
    looks_s: list[float] = field(default_factory=list)  # how long each look took
    unit: Unit = field(init=False)
    golden: Path = field(init=False)
    beads: Path = field(init=False)
    start_commit: str = field(init=False)
    red: RedGolden = field(init=False)
    fix_model: SlowFixModel | None = None
    test_command: list[str] = field(init=False)

    # -- set-up ----------------------------------------------------------------------
    def set_up(self) -> None:
        self.golden = self.work / "golden"
        self.beads = self.work / "repo" / ".beads" / "issues.jsonl"
        project.make_golden(self.golden)
        upstream = self.work / "upstream.git"
        self.start_commit = prepare_golden(self.golden, upstream)
        self.red = RedGolden(self.golden, upstream, self.work / "teammate")
        model = self.fix_model = SlowFixModel(self.fix_delay_s)
        model.start()
        router_toml = self.work / "router.toml"
        router_toml.write_text(project.router_toml(model.base_url))
        self.beads.parent.mkdir(parents=True)
        self.beads.write_text("")
        sandbox = "none" if project.bwrap_problem() else "bwrap"
        self.test_command = project.TEST_COMMAND.split()
        loop_toml = self.work / "loop.toml"
        agent = [sys.executable, str(AGENT_SCRIPT), "--turn-s", str(self.turn_s)]
        loop_toml.write_text(
            f"[loop]\ntest_command = {json.dumps(self.test_command)}\n"
            f'agent_command = {json.dumps(agent)}\nreviewer = "agent"\nsandbox = "{sandbox}"\n'
            "suite_timeout_s = 120\nturn_timeout_s = 60\n"
        )
        more = config_changes(upstream, router_toml)
        text = factory_toml(self.golden, self.beads, loop_toml, loops=self.loops,
                            sandbox=sandbox, more=more)  # fmt: skip
        config = self.work / "factory.toml"
        config.write_text(text)
        env = project.daemon_env(dict(os.environ))
        (self.work / "tmp").mkdir()
        env["TMPDIR"] = str(self.work / "tmp")  # the unit's PrivateTmp=yes, in effect
        key, _, value = self.marker.partition("=")
        env[key] = value
        self.unit = Unit(ROOT, config, self.work, env)

    # -- beads -----------------------------------------------------------------------
    def feed(self) -> None:
        """Keep about loops + 2 beads open (ready or running): append new ones to the
        beads file under its writers' lock (procs/beads/jsonl.py), as `bd create` would."""
        beads = checks.read_beads(self.beads)
        open_ = sum(1 for b in self.written if beads.get(b, {}).get("status") in
                    (None, "open", "in_progress"))  # fmt: skip
        want = self.loops + 2 - open_
        if want <= 0:
            return
        lines = []
        for _ in range(want):
            k = len(self.written) + 1
            bead_id = f"chaos-{k}"
            self.written[bead_id] = k
            lines.append(json.dumps({
                "id": bead_id, "title": f"chaos module {k}", "description": bead_text(k),
                "status": "open", "priority": 2, "issue_type": "task",
                "created_at": "2026-01-01T00:00:00Z"}) + "\n")  # fmt: skip
        lock = self.beads.with_name(self.beads.name + ".lock")
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            old = self.beads.read_text()
            tmp = self.beads.with_name(f".{self.beads.name}.chaos.tmp")
            tmp.write_text(old + ("" if not old or old.endswith("\n") else "\n") + "".join(lines))
            os.replace(tmp, self.beads)

    # -- the soak --------------------------------------------------------------------
    def run(self, duration_s: float, interval_s: float) -> None:
        """Kill on a fixed cadence: a tick that comes while factoryd is down or
        restarting (or passed while we waited on it) is counted as skipped."""
        began = time.monotonic()
        deadline = began + duration_s
        next_kill = began + interval_s
        next_feed = 0.0
        while time.monotonic() < deadline:
            looked = time.monotonic()
            status = self.watch()
            now = time.monotonic()
            self.looks_s.append(now - looked)
            if now >= next_feed:
                self.feed()
                next_feed = now + 1.0
                if self.red_at_s is not None and now - began >= self.red_at_s:
                    self.red.push_when_synced()
            if now >= next_kill:
                missed = int((now - next_kill) // interval_s)
                self.skip("passed while we waited on factoryd", missed)
                next_kill += (missed + 1) * interval_s
                if not self.unit.ready:
                    self.skip("factoryd restarting")
                elif status is None:
                    self.skip("factoryd did not answer status")
                else:
                    self.kill_one(status)
            time.sleep(max(0.0, min(POLL_S, next_kill - time.monotonic())))

    def skip(self, why: str, n: int = 1) -> None:
        if n:
            self.skipped[why] = self.skipped.get(why, 0) + n

    def watch(self) -> dict[str, Any] | None:
        """One look: factoryd's death (restart it), READY=1, recoveries, double loops."""
        reap_orphans(keep={self.unit.pid})
        if self.unit.exited() is not None:
            self.unit.restart_after_death()
            return None
        if self.unit.poll_notify():
            now = time.monotonic()
            for kill in self.restarts:
                kill.recovered_s = now - kill.at
            self.restarts.clear()
            self.pending.clear()  # a new tree: every child started anew
        if not self.unit.ready:
            return None
        status = self.unit.status()
        if status is None:
            return None
        workers = {w["id"]: w for w in _workers(status["tree"])}
        now = time.monotonic()
        for child_id, kill in list(self.pending.items()):
            w = workers.get(child_id)
            if w is None:
                del self.pending[child_id]  # ended (a transient loop done) or removed
            elif w.get("state") == "running" and w.get("pid") not in (None, kill.pid):
                kill.recovered_s = now - kill.at
                del self.pending[child_id]
        self._check_double_loops(workers)
        return status

    def _check_double_loops(self, workers: dict[str, dict[str, Any]]) -> None:
        by_bead: dict[str, list[str]] = {}
        for child_id, w in workers.items():
            bead = _arg(w, "--bead")
            if child_id.startswith("loops.") and bead and w.get("state") in ("running", "starting"):
                by_bead.setdefault(bead, []).append(child_id)
        for bead, ids in by_bead.items():
            if len(ids) > 1:
                self.live_twice.append(f"{bead}: live loops {', '.join(sorted(ids))}")

    def kill_one(self, status: dict[str, Any]) -> None:
        candidates = self._candidates(status)
        kinds = [k for k in KINDS if candidates.get(k)]
        kind = self.rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        target, pid = self.rng.choice(sorted(candidates[kind]))
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            self.skip("the process was gone")
            return
        kill = Kill(kind, target, pid, time.monotonic())
        self.kills.append(kill)
        if kind in ("zygote", "factoryd"):
            self.restarts.append(kill)
        elif kind in ("service", "loop", "mutator"):
            self.pending[target] = kill

    def _candidates(self, status: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
        found: dict[str, list[tuple[str, int]]] = {k: [] for k in KINDS}
        for w in _workers(status["tree"]):
            pid = w.get("pid")
            if w.get("state") != "running" or not isinstance(pid, int):
                continue
            kind = ("loop" if w["id"].startswith("loops.") else
                    "mutator" if w["id"].startswith("mutators.") else "service")  # fmt: skip
            found[kind].append((w["id"], pid))
        for proc in descendants():
            with contextlib.suppress(psutil.Error):
                if str(AGENT_SCRIPT) in proc.cmdline():
                    found["agent"].append((f"agent {proc.pid}", proc.pid))
        zygote = (status.get("daemon") or {}).get("zygote") or {}
        if isinstance(zygote.get("pid"), int):
            found["zygote"].append(("zygote", zygote["pid"]))
        found["factoryd"].append(("factoryd", self.unit.pid))
        return found

    # -- settle, stop, check ----------------------------------------------------------
    def settle(self, timeout_s: float) -> float:
        """Pause the dispatcher (no new loops; dead ones are still resumed), then wait (at
        most timeout_s) until no loop or mutator runs and no bead is claimed (each one
        done, back in the queue, or blocked), and a red golden is fixed. Returns how long
        it took."""
        began = time.monotonic()
        deadline = began + timeout_s
        paused = False
        while time.monotonic() < deadline:
            status = self.watch()
            if status is not None and not paused:
                with contextlib.suppress(control.ControlError):
                    self.unit.call("pause", {"reason": "chaos soak: settling"}, "dispatcher")
                    paused = True
            if status is not None and paused:
                beads = checks.read_beads(self.beads)
                loops_live = [w for w in _workers(status["tree"]) if w["id"].startswith("loops.")]
                claimed = [
                    b for b in self.written if beads.get(b, {}).get("status") == "in_progress"
                ]
                mutators = [w for w in _workers(status["tree"]) if w["id"].startswith("mutators.")]
                if not loops_live and not claimed and not mutators and self._red_settled():
                    break
            time.sleep(POLL_S)
        return time.monotonic() - began

    def _red_settled(self) -> bool:
        episode = self.red.outcome()
        return not episode.get("on_golden") or bool(episode.get("fixed_by"))

    def check(self) -> dict[str, Any]:
        """Read the live state (ledger, workspaces), stop factoryd cleanly, check all."""
        snapshot = checks.read_ledger(self.unit.runtime)
        try:
            listed = self.unit.call("workspaces.list", endpoint="workspace_manager")
        except control.ControlError:
            listed = None
        code = self.unit.stop()
        deadline = time.monotonic() + 10
        while descendants() and time.monotonic() < deadline:
            reap_orphans(keep=set())
            time.sleep(0.05)
        left = {p.pid for p in descendants()} | set(checks.environ_marked(self.marker))
        left.discard(os.getpid())
        loop_tmp = self.work / "state" / "loop-tmp"  # ipc.paths.loop_tmp: each loop's own
        temp_left = sorted([p.name for p in (self.work / "tmp").iterdir()]
                           + [f"loop-tmp/{p.name}" for p in loop_tmp.glob("*")])  # fmt: skip
        beads = checks.read_beads(self.beads)
        landed = checks.landed_modules(self.golden, self.start_commit)
        culprit = {self.red.culprit} if self.red.culprit else set()
        red, checked = checks.golden_red(self.golden, self.start_commit, self.test_command,
                                         culprit)  # fmt: skip
        episode = self.red.outcome()
        unfixed = bool(episode.get("on_golden")) and not episode.get("fixed_by")
        unended, phases, reasons = checks.loops_unended(self.unit.state)
        roots = [self.work, self.unit.runtime, self.unit.state]
        invariants = {
            "beads lost": checks.beads_lost(self.written, beads, landed),
            "beads claimed twice": checks.beads_claimed_twice(self.written, landed,
                                                              self.live_twice),
            "beads not done, queued or blocked with a reason":
                checks.beads_unsettled(self.written, beads, landed),
            "golden commits red (the teammate's culprit aside)": red,
            "golden left red (the culprit never fixed)": (int(unfixed), []),
            "loops not ended (complete, or failed with a reason)": unended,
            "ledger leaks (tickets, slots, RAM; dead holders)": checks.ledger_leaks(snapshot),
            "workspaces left": checks.workspaces_left(listed),
            "git worktrees left": checks.worktrees_left(self.golden),
            "mounts left": checks.mounts_under(roots),
            "loop devices left": checks.loop_devices_on(roots),
            "processes left": checks.processes_left(sorted(left)),
            "factoryd clean stop (exit status != 0)": (0 if code == 0 else 1,
                                                       [] if code == 0 else [f"exit {code}"]),
        }  # fmt: skip
        statuses: dict[str, int] = {}
        for b in self.written:
            s = str(beads.get(b, {}).get("status", "missing"))
            statuses[s] = statuses.get(s, 0) + 1
        return {"invariants": invariants, "golden_commits_checked": checked, "beads": statuses,
                "loops": phases, "failure_reasons": reasons, "red_golden": episode,
                "temp_left": temp_left}  # fmt: skip


def factory_toml(golden: Path, beads: Path, loop_toml: Path, *, loops: int, sandbox: str,
                 more: list[tuple[str, str]]) -> str:  # fmt: skip
    """systemd/factory.example.toml pointed at the soak: its paths, this interpreter's
    pytest, the chaos agents' turns, `loops` loop slots, metrics on any free port, and
    the `more` changes (the red golden's)."""
    changes = [
        ('"--lander", "merge_queue",',
         '"--lander", "merge_queue", "--agent-turns", "bench.chaos_agent:turns",'),
        ('"--max-loops", "4"', f'"--max-loops", "{loops}"'),
        *more,
    ]  # fmt: skip
    return project.pointed_example(golden, beads, loop_toml, changes=changes, sandbox=sandbox,
                                   who="bench/chaos.py")  # fmt: skip


def _workers(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node.get("type") == "worker":
        return [node]
    return [w for c in node.get("children", []) for w in _workers(c)]


def _arg(worker: dict[str, Any], name: str) -> str | None:
    """The value of option `name` in a worker's start ("target(arg, arg, ...)")."""
    start = str(worker.get("start") or "")
    args = start[start.find("(") + 1 : start.rfind(")")].split(", ")
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def figures(soak: Soak, result: dict[str, Any], took: dict[str, float]) -> dict[str, Any]:
    kills = {k: sum(1 for x in soak.kills if x.kind == k) for k in KINDS}
    recoveries: dict[str, Any] = {}
    for kind in KINDS:
        times = [x.recovered_s for x in soak.kills if x.kind == kind and x.recovered_s is not None]
        if times:
            recoveries[kind] = {"n": len(times), "median_s": statistics.median(times),
                                "p95_s": _percentile(times, 0.95)}  # fmt: skip
    every = [x.recovered_s for x in soak.kills if x.recovered_s is not None]
    if every:
        recoveries["all"] = {"n": len(every), "median_s": statistics.median(every),
                             "p95_s": _percentile(every, 0.95)}  # fmt: skip
    invariants = {name: {"count": n, "examples": ex} for name, (n, ex)
                  in result["invariants"].items()}  # fmt: skip
    return {
        "kills": kills, "kills_total": len(soak.kills), "ticks_skipped": soak.skipped,
        "look_s": {"median": statistics.median(soak.looks_s or [0.0]),
                   "p95": _percentile(soak.looks_s or [0.0], 0.95)},
        "recoveries": recoveries, "factoryd_starts": soak.unit.starts,
        "orphans_at_factoryd_death": soak.unit.orphans, "beads_written": len(soak.written),
        "beads": result["beads"], "loops": result["loops"],
        "loop_failures": result["failure_reasons"], "red_golden": result["red_golden"],
        "temp_left": {"count": len(result["temp_left"]), "examples": result["temp_left"][:5]},
        "golden_commits_checked": result["golden_commits_checked"], "invariants": invariants,
        "ok": all(v["count"] == 0 for v in invariants.values()), **took,
    }  # fmt: skip


def render(fig: dict[str, Any]) -> str:
    lines = [
        f"chaos soak: {fig['kills_total']} kills in {fig['chaos_s']:.0f} s "
        f"(ticks skipped: {fig['ticks_skipped'] or 'none'}), settled in "
        f"{fig['settle_s']:.1f} s, checked in {fig['check_s']:.1f} s",
        "kills by kind: " + ", ".join(f"{k} {n}" for k, n in fig["kills"].items()),
        f"factoryd starts: {fig['factoryd_starts']}; processes left when factoryd died "
        f"(SIGKILLed as systemd would): {fig['orphans_at_factoryd_death']}",
        f"recovery (kill -> running again under a new pid / factoryd READY=1; seen by looks "
        f"at status taking median {fig['look_s']['median'] * 1000:.0f} ms, p95 "
        f"{fig['look_s']['p95'] * 1000:.0f} ms):",
    ]
    for kind, r in fig["recoveries"].items():
        lines.append(f"  {kind:<9} n={r['n']:<4} median {r['median_s'] * 1000:7.0f} ms   "
                     f"p95 {r['p95_s'] * 1000:7.0f} ms")  # fmt: skip
    lines.append(f"beads: {fig['beads_written']} written, by status {fig['beads']}; "
                 f"loops by phase {fig['loops']}; golden commits checked "
                 f"{fig['golden_commits_checked']}")  # fmt: skip
    for why, n in sorted(fig["loop_failures"].items(), key=lambda item: -item[1]):
        lines.append(f"  failed x{n}: {why}")
    lines.append(f"red golden: {fig['red_golden']}")
    lines.append(f"temp entries left by killed processes (the unit's PrivateTmp=yes removes "
                 f"them at stop, not before): {fig['temp_left']}")  # fmt: skip
    lines.append("invariants (count of violations):")
    for name, v in fig["invariants"].items():
        lines.append(f"  {v['count']:>4}  {name}")
        lines.extend(f"          {example}" for example in v["examples"])
    lines.append("ALL INVARIANTS HOLD" if fig["ok"] else "INVARIANTS BROKEN")
    return "\n".join(lines)


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop factoryd cleanly (nothing of the soak is left), exit 130."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of killing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loops", type=int, default=8, help="loop slots (live loops)")
    parser.add_argument("--interval-s", type=float, default=2.0, help="between kills")
    parser.add_argument("--turn-s", type=float, default=1.0, help="each agent turn's length")
    parser.add_argument("--settle-s", type=float, default=180.0, help="most to wait after")
    parser.add_argument(
        "--red-at",
        type=float,
        default=0.3,
        help="when a teammate pushes a red commit, as a fraction of --duration",
    )
    parser.add_argument("--no-red-golden", action="store_true", help="no red golden episode")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    for name in ("duration", "interval_s", "turn_s", "settle_s"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.loops < 1:
        parser.error(f"--loops must be >= 1, got {args.loops}")
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # the tree's orphans come to us: nothing escapes
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="factory-chaos-"))
    red_at = None if args.no_red_golden else args.duration * args.red_at
    soak = Soak(work, args.loops, args.turn_s, random.Random(args.seed), red_at)
    try:
        soak.set_up()
        soak.unit.start()
        if not soak.unit.wait_ready(READY_TIMEOUT_S):
            print(f"chaos: factoryd did not become ready (log: {work / 'factoryd.log'})",
                  file=sys.stderr)  # fmt: skip
            return 2
        began = time.monotonic()
        soak.run(args.duration, args.interval_s)
        chaos_s = time.monotonic() - began
        settle_s = soak.settle(args.settle_s)
        began = time.monotonic()
        result = soak.check()
        took = {"chaos_s": chaos_s, "settle_s": settle_s, "check_s": time.monotonic() - began}
    except Interrupted as exc:
        print(f"chaos: interrupted ({exc}): factoryd stopped", file=sys.stderr)
        return 130
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second one must not cut the stop
            signal.signal(signum, signal.SIG_IGN)
        if hasattr(soak, "unit"):
            soak.unit.stop()
            ledger.destroy(soak.unit.runtime)
        if soak.fix_model is not None:
            soak.fix_model.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    fig = figures(soak, result, took)
    print(json.dumps(fig, indent=2) if args.json else render(fig))
    if args.keep:
        print(f"kept {work}")
    return 0 if fig["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
