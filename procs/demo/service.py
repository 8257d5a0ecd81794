"""The whole factory in one command: three beads of a small project become commits.

    python3 -m procs.demo [--dir DIR] [--keep] [--timeout S] [--scripted]

Makes a small real Python project (`textstats`, a git repository: the golden master)
with a beads file of three beads (ts-3 blocked by ts-1), writes the factory config from
systemd/factory.example.toml and a loop.toml beside it, starts factoryd on them
(`python -m supervisor.daemon`) and follows the work: each bead dispatched to its
loop, the loop's phase changes (TDD-TCR: a red test, an implementation, the suite, the
review), the merge queue landing each patch on golden, the bead closed. Then the red
golden episode (procs/demo/episode.py): a teammate's commits reach golden through its
upstream, one breaks it, and the synapse's swarm fixes it. At the end it prints golden's
log, the closed beads, the figures (time per bead, commits, reverts, tree RSS) and the
red episode (culprit, mutators, the fix, time red), and stops factoryd. Exit 0 only when
all three beads are closed with their commits on golden and golden is green again on
exactly one fix of the swarm with the culprit named and no mutator left; 1 otherwise; 2
when it cannot start; 130 on Ctrl-C (everything is stopped first).

The agents: with no model configured, real opencode agents (on PATH, else from the
local cache, else installed there with npm: procs/demo/opencode_cache.py) whose model is
a stand-in replaying a recorded session through opencode's tools
(procs/demo/role_model.py); where opencode cannot be had, or with --scripted, scripted
agents replay that session in-process (procs/demo/recorded.py through
procs/demo/agents.py). Either way the demo says so at the start and at the end. With
FACTORY_DEMO_MODEL_URL set to an OpenAI-compatible base URL
(a llama.cpp server: http://127.0.0.1:8080/v1) and opencode on PATH, the loops run
`opencode acp --pure` on that model (FACTORY_DEMO_MODEL names it), unmetered; without
opencode the demo says why and replays. The swarm's model is always the recorded fix
model (procs/demo/fix_model.py) behind the router, and the demo says so. The sandbox:
bubblewrap where it can run; otherwise sandbox = "none", with a warning at the start and
the end.

The work directory (a new temporary one, or --dir DIR, which must be empty or new) is
removed at the end unless --keep. This is a process kind's entry point, not a service
of the tree: it is factoryd's client, through ipc only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import psutil

from ipc import control, ledger, paths
from procs.demo import opencode_cache, project
from procs.demo.episode import RedEpisode
from procs.demo.fix_model import RecordedFixModel
from procs.demo.recorded import BEADS
from procs.demo.role_model import RecordedRoleModel
from procs.demo.watch import Watcher

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_START, EXIT_INTERRUPTED = 0, 1, 2, 130
POLL_S = 0.25  # between looks at the beads file, the loops database and the queue
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 10.0
BEADS_SEEN_S = 10.0  # for the beads service to read the beads file once it is written
SCRIPTED_NOTICE = ("SCRIPTED AGENTS: {why}, so scripted agents replay a recorded session "
                   "(procs/demo/recorded.py); no model wrote this code. Set "
                   "FACTORY_DEMO_MODEL_URL (with opencode on PATH) to use a model.")  # fmt: skip
SCRIPTED_FIX_NOTICE = ("SCRIPTED FIX MODEL: the swarm's mutators ask the router, whose "
                       "mutator role is a stand-in replaying recorded answers "
                       "(procs/demo/red_session.py); no model wrote the fix.")  # fmt: skip
SANDBOX_WARNING = ('WARNING: NO SANDBOX: {why}; sandbox = "none": the tests of agent-written '
                   "code run unisolated, as you.")  # fmt: skip


def stop_factoryd(daemon: subprocess.Popen[Any], shutdown: Callable[[], object], *,
                  timeout_s: float) -> None:  # fmt: skip
    """Stop a factoryd we started: its `shutdown` call (a clean, ordered stop), then
    SIGTERM, then SIGKILL to its process group, each waited for at most `timeout_s`."""
    if daemon.poll() is not None:
        return
    with contextlib.suppress(control.ControlError):
        shutdown()
    try:
        daemon.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop everything, then exit 130."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m procs.demo", description=__doc__
                                     .split("\n")[0])  # fmt: skip
    parser.add_argument("--dir", type=Path, help="work here (empty or new) instead of a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--scripted",
        action="store_true",
        help="with no model configured, replay the session in-process instead "
        "of real opencode agents on a scripted model",
    )
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after S seconds (120 scripted, 300 opencode on the "
                             "scripted model, 1800 with a model)")  # fmt: skip
    args = parser.parse_args(argv)
    say = _Printer(out or sys.stdout)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        work = _work_dir(args.dir)
    except project.DemoError as exc:
        say(f"demo: {exc}")
        return EXIT_CANNOT_START
    demo = Demo(work, say)
    try:
        return demo.run(args.timeout, opencode=not args.scripted)
    except Interrupted as exc:
        say(f"\ninterrupted ({exc}): stopping the factory")
        return EXIT_INTERRUPTED
    except project.DemoError as exc:
        say(f"demo: {exc}")
        return EXIT_CANNOT_START if demo.daemon is None else EXIT_FAILED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second one must not cut the stop
            signal.signal(signum, signal.SIG_IGN)
        demo.stop()
        if args.keep:
            say(f"kept {work} (factoryd.log, factory.toml, loop.toml, golden/, state/)")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if work.exists():
                say(f"could not remove all of {work} (something still mounted there?)")


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, line: str = "") -> None:
        self.out.write(line + "\n")
        self.out.flush()


def _work_dir(chosen: Path | None) -> Path:
    if chosen is None:
        return Path(tempfile.mkdtemp(prefix="factory-demo-"))
    chosen = chosen.resolve()
    if chosen.exists() and (not chosen.is_dir() or any(chosen.iterdir())):
        raise project.DemoError(f"--dir {chosen} must be a new or empty directory")
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


class Demo:
    def __init__(self, work: Path, say: _Printer) -> None:
        self.work, self.say = work, say
        self.golden, self.beads = work / "golden", work / "repo" / ".beads" / "issues.jsonl"
        self.runtime, self.state = work / "run", work / "state"
        self.upstream = work / "upstream.git"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.fix_model: RecordedFixModel | None = None
        self.role_model: RecordedRoleModel | None = None
        self.peak_rss = 0
        self.stopped_code: int | None = None

    # -- the run ---------------------------------------------------------------------
    def run(self, timeout: float | None, *, opencode: bool = False) -> int:
        project.check_pytest()
        agents = project.choose_agents(dict(os.environ))
        if agents.scripted and opencode and not os.environ.get("FACTORY_DEMO_MODEL_URL"):
            agents = self._opencode_agents(agents)
        no_bwrap = project.bwrap_problem()
        sandbox = "none" if no_bwrap else "bwrap"
        self._banner(agents, no_bwrap)
        start = project.make_golden(self.golden)
        project.make_upstream(self.golden, self.upstream)
        self.fix_model = RecordedFixModel().start()
        router_config = self.work / "router.toml"
        router_config.write_text(project.router_toml(self.fix_model.base_url))
        self.beads.parent.mkdir(parents=True)
        self.beads.write_text("")  # empty until the tree is up: then the beads become ready
        loop_config = self.work / "loop.toml"
        loop_config.write_text(project.loop_toml(agents, sandbox))
        config = self.work / "factory.toml"
        text = project.factory_toml(self.golden, self.beads, loop_config, upstream=self.upstream,
                                    router_config=router_config, scripted=agents.scripted,
                                    sandbox=sandbox)  # fmt: skip
        config.write_text(text)
        watcher = Watcher(self.beads, self.state, self.runtime)
        self._start_daemon(config)
        services = self._wait_for_tree()
        self.say(f"{watcher.stamp()} factoryd is up: {len(services)} services running "
                 f"({', '.join(services)})")  # fmt: skip
        with contextlib.suppress(control.ControlError, KeyError, TypeError):
            url = self._call("status", "metrics")["url"]
            self.say(f"{watcher.stamp()} metrics (Prometheus text): {url}")
        self.beads.write_text(project.beads_jsonl())
        self.say(f"{watcher.stamp()} {len(BEADS)} beads written; the beads service: "
                 f"{self._beads_view()}")  # fmt: skip
        limit = timeout if timeout is not None else (
            120.0 if agents.scripted else 300.0 if agents.recorded_model else 1800.0)  # fmt: skip
        deadline = time.monotonic() + limit
        done = self._follow(watcher, deadline, lambda: _all_closed(watcher),
                            "not every bead closed")  # fmt: skip
        episode = RedEpisode(self.golden, self.upstream, self.work / "teammate", self.runtime,
                             watcher.stamp)  # fmt: skip
        if done:
            done = self._follow(watcher, deadline, lambda: episode.done,
                                "golden is not green on the swarm's fix", episode.poll)  # fmt: skip
        closing = self._summary(watcher, start)
        lines, fixed = episode.summary(self.work / "factoryd.log", [*watcher.decisions.values()])
        for line in lines:
            self.say(line)
        watcher.close()
        self.stop()
        self.say(f"factoryd stopped (exit {self.stopped_code})")
        self._banner_end(agents, no_bwrap)
        ok = done and closing and fixed and self.stopped_code == 0
        self.say("demo: all 3 beads closed, their commits on golden; golden's red fixed by the "
                 "swarm" if ok else
                 "demo: FAILED (see above; --keep keeps factoryd.log and the state)")  # fmt: skip
        return EXIT_OK if ok else EXIT_FAILED

    def _opencode_agents(self, replay: project.Agents) -> project.Agents:
        """Real opencode on the recorded role model, or `replay` (said why)."""
        binary, note = opencode_cache.find_or_install(dict(os.environ), self.say)
        if binary is None:
            self.say(f"opencode: {note}; the agents are scripted in-process instead")
            return replay
        self.role_model = RecordedRoleModel().start()
        return project.Agents(
            False, f"real opencode agents ({note}) whose MODEL IS SCRIPTED: a stand-in "
                   "replaying the recorded session (procs/demo/role_model.py)",
            model_url=self.role_model.base_url, model_name=self.role_model.model,
            command=(binary, "acp", "--pure"), recorded_model=True,
        )  # fmt: skip

    def _banner(self, agents: project.Agents, no_bwrap: str | None) -> None:
        self.say("Factory demo: a small Python project (textstats), 3 beads, the whole "
                 "factory (systemd/factory.example.toml) under factoryd")  # fmt: skip
        if agents.scripted:
            self.say(SCRIPTED_NOTICE.format(why=agents.why))
        else:
            self.say(f"agents: {agents.why}")
        self.say(SANDBOX_WARNING.format(why=no_bwrap) if no_bwrap else
                 "sandbox: bubblewrap (every test run of agent code is isolated)")  # fmt: skip
        self.say(SCRIPTED_FIX_NOTICE)
        self.say(f"work directory: {self.work}\n")

    def _banner_end(self, agents: project.Agents, no_bwrap: str | None) -> None:
        self.say(SCRIPTED_FIX_NOTICE)
        if agents.recorded_model:
            self.say(f"agents: {agents.why}")
        if agents.scripted:
            self.say(SCRIPTED_NOTICE.format(why=agents.why))
        if no_bwrap:
            self.say(SANDBOX_WARNING.format(why=no_bwrap))

    def _start_daemon(self, config: Path) -> None:
        log = (self.work / "factoryd.log").open("wb")
        try:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "supervisor.daemon", "--config", str(config),
                 "--runtime-dir", str(self.runtime), "--state-dir", str(self.state)],
                cwd=project.ROOT, env=project.daemon_env(dict(os.environ)), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()

    def _call(self, command: str, endpoint: str = "factoryd") -> Any:
        return control.call(paths.control_socket(self.runtime, endpoint), command, {},
                            timeout=CALL_TIMEOUT_S)  # fmt: skip

    def _wait_for_tree(self) -> list[str]:
        """The running services' ids, once every worker runs and the governor's ledger is
        up. Raises DemoError when factoryd exits or START_TIMEOUT_S passes."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self._check_alive("while starting")
            with contextlib.suppress(control.ControlError):
                status = self._call("status")
                workers = _workers(status["tree"])
                if workers and status.get("resources") is not None and all(
                        w["state"] == "running" for w in workers):  # fmt: skip
                    return [w["id"] for w in workers]
            if time.monotonic() > deadline:
                raise project.DemoError(f"the tree did not start in {START_TIMEOUT_S:.0f} s:\n"
                                        + self._log_tail())  # fmt: skip
            time.sleep(POLL_S)

    def _beads_view(self) -> str:
        """What the beads service says of them (`factoryctl beads`), once it has read all
        of them: ready (or already claimed) and blocked, with its reasons."""
        deadline = time.monotonic() + BEADS_SEEN_S
        while True:
            with contextlib.suppress(control.ControlError):
                view = self._call("list", "beads")
                ready = [b["id"] for b in view.get("ready") or []]
                claimed = [c["bead_id"] for c in view.get("claimed") or []]
                blocked = [f"{b['id']} ({'; '.join(b.get('reasons') or ['blocked'])})"
                           for b in view.get("blocked") or []]  # fmt: skip
                if len(ready) + len(claimed) + len(blocked) >= len(BEADS):
                    return (f"ready {', '.join(sorted({*ready, *claimed}))}; "
                            f"blocked {', '.join(blocked) or 'none'}")  # fmt: skip
            if time.monotonic() > deadline:
                return "(it has not read them yet)"
            time.sleep(POLL_S / 5)

    def _follow(self, watcher: Watcher, deadline: float, finished: Callable[[], bool],
                what: str, more: Callable[[], list[str]] | None = None) -> bool:  # fmt: skip
        """Print progress (the watcher's, then `more`'s) until `finished()` (True) or the
        deadline (monotonic) passes: then `what` is said and False returned."""
        next_rss = 0.0
        while True:
            self._check_alive("mid-run")
            for line in [*watcher.poll(), *(more() if more else [])]:
                self.say(line)
            if time.monotonic() >= next_rss:
                self.peak_rss = max(self.peak_rss, self._tree_rss())
                next_rss = time.monotonic() + 1.0
            if finished():
                return True
            if time.monotonic() > deadline:
                self.say(f"{watcher.stamp()} gave up at the time limit: {what}")
                return False
            time.sleep(POLL_S)

    def _check_alive(self, when: str) -> None:
        if self.daemon is not None and self.daemon.poll() is not None:
            raise project.DemoError(f"factoryd exited {self.daemon.returncode} {when}:\n"
                                    + self._log_tail())  # fmt: skip

    def _tree_rss(self) -> int:
        """RSS of factoryd and every process under it, in bytes (0 when it is gone)."""
        if self.daemon is None:
            return 0
        try:
            root = psutil.Process(self.daemon.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.work / "factoryd.log").read_text(errors="replace")
        except OSError:
            return "(no factoryd.log)"
        return "\n".join("  | " + line for line in text.splitlines()[-lines:])

    # -- the end ---------------------------------------------------------------------
    def _summary(self, watcher: Watcher, start: str) -> bool:
        """Print golden's log, the closed beads and the figures; True when every bead's
        work is on golden (each bead's files in main's tree, main past the start)."""
        self.say("\n$ git log --oneline main    # golden")
        log = project.git(self.golden, "log", "--oneline", "main")
        self.say(log.rstrip())
        new = int(project.git(self.golden, "rev-list", "--count", f"{start}..main").strip())
        self.say("\nclosed beads:")
        on_golden = True
        landed = {str(d.get("bead_id")): str(d.get("landed_hash") or "")
                  for d in watcher.decisions.values() if d.get("state") == "accepted"}  # fmt: skip
        for bead in BEADS:
            seen = watcher.beads.get(bead["id"])
            status = seen.status if seen else "open"
            commit = landed.get(bead["id"], "")
            there = bool(commit) and _is_ancestor(self.golden, commit, "main")
            on_golden = on_golden and there and status == "closed"
            where = f"landed as {commit[:10]}" if there else "NOT on golden"
            self.say(f"  {bead['id']}  {status:<11} {bead['title']:<18} {where}")
        self.say("\nfigures:")
        self.say(f"  {'bead':<6}{'dispatched→closed':>19}{'commits':>9}{'reverts':>9}"
                 f"{'iterations':>12}")  # fmt: skip
        commits = reverts = 0
        for bead in BEADS:
            seen = watcher.beads.get(bead["id"])
            loop = watcher.loops.get(seen.loop_id, {}) if seen else {}
            took = "-"
            if seen and seen.dispatched_at is not None and seen.closed_at is not None:
                took = f"{seen.closed_at - seen.dispatched_at:.1f} s"
            commits += int(loop.get("commits") or 0)
            reverts += int(loop.get("reverts") or 0)
            self.say(f"  {bead['id']:<6}{took:>19}{loop.get('commits') or 0:>9}"
                     f"{loop.get('reverts') or 0:>9}{loop.get('iteration') or 0:>12}")  # fmt: skip
        accepted = sum(1 for d in watcher.decisions.values() if d.get("state") == "accepted")
        rejected = len(watcher.decisions) - accepted
        elapsed = time.monotonic() - watcher.started
        self.say(f"  golden: {new} new commits; loops kept {commits} commits, reverted "
                 f"{reverts}; merge queue landed {accepted}, rejected {rejected}")  # fmt: skip
        self.say(f"  tree RSS (factoryd and everything under it): peak "
                 f"{self.peak_rss / 2**20:.0f} MB; {elapsed:.1f} s since it started")  # fmt: skip
        return on_golden and new >= len(BEADS)

    def stop(self) -> None:
        """Stop factoryd (its shutdown call, then SIGTERM, then SIGKILL to its group) and
        remove the governor's ledger; then the recorded fix model. Idempotent."""
        daemon = self.daemon
        if daemon is None or self.stopped_code is not None:
            self._stop_fix_model()
            return
        stop_factoryd(daemon, lambda: self._call("shutdown"), timeout_s=STOP_TIMEOUT_S)
        self.stopped_code = daemon.returncode
        ledger.destroy(self.runtime)
        self._stop_fix_model()

    def _stop_fix_model(self) -> None:
        if self.fix_model is not None:
            self.fix_model.stop()
            self.fix_model = None
        if self.role_model is not None:
            self.role_model.stop()
            self.role_model = None


def _all_closed(watcher: Watcher) -> bool:
    return all(watcher.beads.get(b["id"]) and watcher.beads[b["id"]].status == "closed"
               for b in BEADS)  # fmt: skip


def _workers(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node["type"] == "worker":
        return [node]
    return [w for c in node.get("children", []) for w in _workers(c)]


def _is_ancestor(repo: Path, commit: str, ref: str) -> bool:
    done = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, ref],
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    return done.returncode == 0
