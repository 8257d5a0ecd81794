"""The loop process under a real factoryd: a dynamic child of the `loops` supervisor
(simple_one_for_one, transient), with the bus and its journal, the resource governor
(one loop slot) and the workspace manager (copy strategy) in the tree.

- a bead becomes a commit on golden through the production path: KeptAgentTurns, one
  kept ACP agent per loop and a new session per turn, driving a scripted ACP agent (a
  test double: tests/doubles/tdd_agent.py); LoopSpawned and LoopComplete reach the bus
  (its journal);
  the loop exits 0 and is not restarted, its workspace freed;
- a bad bead is a failed start, reported by `start`; a second loop finds no loop slot;
- SIGKILLed (its whole process group) once in each phase, held there by a hold point
  (tests/helpers/loop_holds.py: the scripted in-process turns, a wrapper of the test
  command, a FIFO in golden's git config), the loop is restarted by factoryd, resumes
  in the same workspace and lands the same commits (messages and trees) as an unkilled
  run, with the same history, no entry doubled; killed while Rebasing (golden moved
  under it), it lands the same changes on the new golden;
- stopped (SIGTERM to its group) in the middle of a test run, it records nothing the
  stop broke (no red suite, no revert), and a new start resumes it.
One factoryd and one unkilled baseline run serve the whole module.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ipc import control, ledger, paths
from ipc.journal import JournalReader, journal_path
from ipc.loop_records import LoopReader, loops_path
from tests.harness import ROOT, Factoryd
from tests.helpers import loop_holds
from tests.helpers.loop_repos import make_project
from tests.helpers.repos import git
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PY = sys.executable
HOLDS_SCRIPT = ROOT / "tests" / "helpers" / "loop_holds.py"
GOLDEN_HOLD = "golden"  # a FIFO included by golden's .git/config: the lander's first git call
PHASES = ("auditing", "verifying_red", "implementing", "tcr_checking", "verifying",
          "refactoring", "reviewing", "pushing")  # fmt: skip
# The hold points that keep a fresh loop in each phase: each one is armed while the
# loop waits at the one before it, so it is the next of its kind the loop reaches.
CHAINS = {
    "auditing": ["auditor"],
    "verifying_red": ["auditor", "suite"],
    "implementing": ["implementer"],
    "tcr_checking": ["implementer", "suite"],
    "verifying": ["implementer", "suite", "suite"],  # TcrChecking's run, then the gauntlet's
    "refactoring": ["architect"],
    "reviewing": ["reviewer"],
    "pushing": ["reviewer", GOLDEN_HOLD],
}
TDD_SCRIPT = {
    "module": "calc.py", "base": "def add(a, b):\n    return a + b",
    "steps": [{"test_path": "tests/test_mul.py", "code": "def mul(a, b):\n    return a * b\n",
               "test": "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n"}],
}  # fmt: skip
LOOP_SIGNALS = ["LoopSpawned", "LoopComplete", "LoopFailed"]
BEADS = [
    "bd-base",
    "bd-agent",
    "bd-bad-text",
    "bd-second",
    "bd-rebasing",
    "bd-stop",
    *(f"bd-{phase}" for phase in PHASES),
]


@dataclass
class Tree:
    d: Factoryd
    tmp: Path
    holds: Path
    beads: Path
    held_config: Path
    agent_config: Path
    golden_fds: list[int] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def golden(self, name: str) -> Path:
        return make_project(self.tmp / name)

    def start(self, bead: str, golden: Path, *extra: str) -> dict[str, Any]:
        args = ["--bead", bead, "--repo", str(golden), *extra]
        return self.d.call("start", id="loops", args=args)  # type: ignore[no-any-return]

    def start_held(self, bead: str, golden: Path) -> dict[str, Any]:
        return self.start(bead, golden, "--config", str(self.held_config), "--agent-turns",
                          "tests.helpers.loop_holds:held_turns")  # fmt: skip

    def loop(self, loop_id: str) -> dict[str, Any]:
        with LoopReader(loops_path(self.state)) as reader:
            return reader.loop(loop_id)

    def wait_ended(self, loop_id: str, child: str, timeout: float = 90.0) -> dict[str, Any]:
        """The loop's record once it is Complete or Failed and its process is gone."""

        def ended() -> dict[str, Any] | None:
            if not loops_path(self.state).exists():
                return None
            try:
                loop = self.loop(loop_id)
            except LookupError:
                return None
            if loop["phase"] not in ("complete", "failed"):
                return None
            children = [c["id"] for c in self.d.node("loops").get("children", [])]
            return None if child in children else loop

        return wait_until(ended, timeout=timeout, what=f"loop {loop_id} to end ({child})")

    def starts(self, child: str) -> int:
        return sum(1 for r in self.d.records("child_started") if r["child"] == child)

    # -- hold points -------------------------------------------------------------------

    def arm(self, name: str, golden: Path) -> None:
        if name == GOLDEN_HOLD:
            fifo = self.holds / f"golden-{golden.name}"
            os.mkfifo(fifo, 0o600)
            git(golden, "config", "include.path", str(fifo))
        else:
            loop_holds.arm(self.holds, name)

    def wait_held(self, name: str, golden: Path) -> None:
        if name != GOLDEN_HOLD:
            wait_until(lambda: loop_holds.is_held(self.holds, name), timeout=60,
                       what=f"the loop to reach hold {name}")  # fmt: skip
            return

        def reader_waits() -> bool:  # a writer open succeeds once git has the FIFO open
            try:
                fd = os.open(self.holds / f"golden-{golden.name}", os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return False
            self.golden_fds.append(fd)  # held open: git waits in read() until we close it
            return True

        wait_until(reader_waits, timeout=60, what="the lander's git to read golden's config")

    def release(self, name: str) -> None:
        loop_holds.release(self.holds, name)

    def clear_holds(self) -> None:
        """Forget the hold points of an earlier test (a killed holder leaves its own)."""
        for path in self.holds.iterdir():
            path.unlink()

    def disarm_golden(self, golden: Path) -> None:
        config = golden / ".git" / "config"
        lines = config.read_text().splitlines(keepends=True)
        config.write_text("".join(line for line in lines if "[include]" not in line
                                  and "golden-" not in line))  # fmt: skip

    def close_golden_fds(self) -> None:
        while self.golden_fds:
            os.close(self.golden_fds.pop())


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    tmp = tmp_path_factory.mktemp("loops")
    holds = tmp / "holds"
    holds.mkdir()
    beads = tmp / "issues.jsonl"
    text = {"title": "calc.mul", "description": "calc gains mul(a, b), the product."}
    beads.write_text("".join(
        json.dumps({"id": bead, "status": "open", **({} if bead == "bd-bad-text" else text)})
        + "\n" for bead in BEADS
    ))  # fmt: skip
    script = tmp / "tdd_script.json"
    script.write_text(json.dumps(TDD_SCRIPT))
    common = "sandbox = \"none\"\nsuite_timeout_s = 60\nturn_timeout_s = 60\n" \
             "refactor_interval = 1\nmax_impl_attempts = 2\nreviewer = \"agent\"\n"  # fmt: skip
    held_config = tmp / "held.toml"
    held_config.write_text(
        f'[loop]\ntest_command = ["{PY}", "{HOLDS_SCRIPT}", "{holds}", "--", "{PY}", "-m", '
        f'"pytest", "-q"]\nagent_command = ["held-turns-in-process"]\n{common}'
    )
    agent_config = tmp / "agent.toml"
    agent_config.write_text(
        f'[loop]\ntest_command = ["{PY}", "{HOLDS_SCRIPT}", "{holds}", "--", "{PY}", "-m", '
        f'"pytest", "-q"]\nagent_command = ["{PY}", "-m", "tests.doubles.tdd_agent"]\n{common}'
    )
    d = Factoryd(tmp, f"""
        [factory]
        preload = ["procs.loop.service"]  # as in production: a loop (re)start is a fork
        [supervisor]
        strategy = "rest_for_one"
        intensity = 5
        period = 30
        [[supervisor.children]]
        id = "bus"
        target = "procs.bus.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "signal_journal"
        target = "procs.journal.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "governor"
        target = "procs.governor.service:main"
        args = ["--max-loops", "1", "--min-free-ram-mb", "0"]
        ready = "notify"
        [[supervisor.children]]
        id = "workspaces"
        target = "procs.workspaces.service:main"
        args = ["--strategy", "copy", "--snapshot-pool", "0"]
        ready = "notify"
        [[supervisor.children]]
        id = "loops"
        strategy = "simple_one_for_one"
        intensity = 20
        period = 60
        [[supervisor.children.children]]
        id = "loop"
        target = "procs.loop.service:main"
        args = ["--beads", "{beads}", "--slot-timeout-s", "0"]
        restart = "transient"
        ready = "notify"
        start_timeout_ms = 60000
        shutdown_ms = 5000
        env = {{ FACTORY_TEST_HOLDS = "{holds}", FACTORY_TDD_SCRIPT = "{script}" }}
    """)  # fmt: skip
    d.start()
    t = Tree(d, tmp, holds, beads, held_config, agent_config)
    try:
        yield t
    finally:
        t.close_golden_fds()
        d.stop()
        ledger.destroy(d.runtime_dir)


@dataclass(frozen=True)
class Outcome:
    commits: list[tuple[str, str, str]]  # (subject, tree, patch id) landed on golden, in order
    events: list[str]
    counters: tuple[int, int, int, int]  # iteration, greens, commits, reverts


def outcome(t: Tree, loop_id: str, golden: Path, start: str) -> Outcome:
    loop = t.loop(loop_id)
    assert loop["phase"] == "complete", loop
    seqs = [entry["seq"] for entry in loop["history"]]
    assert seqs == list(range(1, len(seqs) + 1)), f"history seqs {seqs}"
    commits = []
    for commit in git(golden, "rev-list", "--reverse", f"{start}..main").split():
        subject, tree_id = git(golden, "log", "-1", "--format=%s%n%T", commit).splitlines()
        patch = subprocess.run(["git", "-C", str(golden), "patch-id", "--stable"], check=True,
                               input=git(golden, "show", commit), capture_output=True,
                               text=True, timeout=10).stdout.split()[0]  # fmt: skip
        commits.append((subject, tree_id, patch))
    return Outcome(
        commits,
        [entry["event"] for entry in loop["history"]],
        (loop["iteration"], loop["greens"], loop["commits"], loop["reverts"]),
    )


@pytest.fixture(scope="module")
def baseline(tree: Tree) -> Outcome:
    """An unkilled run of the held loop (nothing armed)."""
    golden = tree.golden("golden-base")
    start = git(golden, "rev-parse", "HEAD").strip()
    child = tree.start_held("bd-base", golden)["id"]
    tree.wait_ended("bd-base.1", child)
    result = outcome(tree, "bd-base.1", golden, start)
    visited = {entry["from"] for entry in tree.loop("bd-base.1")["history"]}
    assert visited == set(PHASES), "the baseline must pass through every phase once"
    assert result.events[-1] == "Pushed" and result.commits
    return result


def test_a_bead_becomes_a_commit_through_agent_processes(tree: Tree) -> None:
    golden = tree.golden("golden-agent")
    start = git(golden, "rev-parse", "HEAD").strip()
    started = tree.start("bd-agent", golden, "--config", str(tree.agent_config))
    assert started["id"].startswith("loops.")
    loop = tree.wait_ended("bd-agent.1", started["id"])
    assert loop["phase"] == "complete", loop["reason"]
    assert (loop["greens"], loop["commits"], loop["reverts"]) == (1, 1, 0)
    assert [h["event"] for h in loop["history"]][-3:] == [
        "RequirementsComplete", "ReviewDone", "Pushed"]  # fmt: skip
    assert "def mul" in (golden / "calc.py").read_text()
    assert len(git(golden, "rev-list", f"{start}..main").split()) == 1
    assert tree.starts(started["id"]) == 1  # exit 0: transient, not restarted
    assert not Path(loop["workspace"]).exists()  # freed through the manager
    listed = control.call(tree.d.runtime_dir / "workspace_manager.sock", "workspaces.list",
                          {}, timeout=10)  # fmt: skip
    assert [w for w in listed["workspaces"] if w["slug"].startswith("loop-bd-agent")] == []

    def signals() -> list[tuple[str, dict[str, Any]]] | None:
        with JournalReader(journal_path(tree.state)) as journal:
            found = [(e.type, e.fields()) for e in journal.read(types=LOOP_SIGNALS)
                     if e.fields().get("loop_id") == "bd-agent.1"]  # fmt: skip
        return found if len(found) == 2 else None

    (spawned, spawned_fields), (ended, ended_fields) = wait_until(signals, what="loop signals")
    assert (spawned, spawned_fields["task_id"], spawned_fields["phase"]) == (
        "LoopSpawned", "bd-agent", "auditing")  # fmt: skip
    assert (ended, ended_fields["commits"], ended_fields["reverts"]) == ("LoopComplete", 1, 0)


def test_bad_input_is_a_failed_start(tree: Tree) -> None:
    golden = tree.golden("golden-bad")
    with pytest.raises(control.RemoteError) as refused:
        tree.start("bd-bad-text", golden, "--config", str(tree.held_config))
    assert "exit code 2" in str(refused.value)
    assert "no title or description" in tree.d.log()
    routed = tree.tmp / "routed.toml"  # the reviewer on the router (the default): none runs
    routed.write_text(tree.held_config.read_text().replace('reviewer = "agent"\n', ""))
    with pytest.raises(control.RemoteError) as refused:
        tree.start("bd-base", golden, "--config", str(routed), "--agent-turns",
                   "tests.helpers.loop_holds:held_turns")  # fmt: skip
    assert "exit code 2" in str(refused.value)
    assert "no LLM router answers on" in tree.d.log() and 'reviewer = \\"agent\\"' in tree.d.log()


@pytest.mark.parametrize("phase", PHASES)
def test_a_loop_sigkilled_in_a_phase_resumes_with_the_same_commits(
    tree: Tree, baseline: Outcome, phase: str
) -> None:
    bead, loop_id = f"bd-{phase}", f"bd-{phase}.1"
    golden = tree.golden(f"golden-{phase}")
    start = git(golden, "rev-parse", "HEAD").strip()
    chain = CHAINS[phase]
    tree.clear_holds()
    tree.arm(chain[0], golden)
    child = tree.start_held(bead, golden)
    for held, following in itertools.pairwise(chain):
        tree.wait_held(held, golden)
        tree.arm(following, golden)
        tree.release(held)
    tree.wait_held(chain[-1], golden)
    before = tree.loop(loop_id)
    assert before["phase"] == phase
    assert tree.d.node(child["id"])["status_text"].startswith(phase)  # STATUS=
    if phase == "auditing":  # the one loop slot is taken: another loop cannot start
        with pytest.raises(control.RemoteError) as refused:
            tree.start_held("bd-second", tree.golden("golden-second"))
        assert "exit code 75" in str(refused.value)
        assert '"no_loop_slot"' in tree.d.log() and "loop exhausted" in tree.d.log()
    if chain[-1] == GOLDEN_HOLD:
        tree.disarm_golden(golden)  # the restarted loop must find golden as it was
    own_tmp = paths.loop_tmp(tree.state, loop_id)
    assert own_tmp.is_dir()  # the loop's temp files go here, not in /tmp
    os.killpg(child["pid"], signal.SIGKILL)
    (own_tmp / "gauntlet-rev-tests-left").mkdir(parents=True, exist_ok=True)  # as a kill leaves
    tree.close_golden_fds()
    loop = tree.wait_ended(loop_id, child["id"])
    assert loop["phase"] == "complete", loop["reason"]
    assert tree.starts(child["id"]) == 2  # restarted by factoryd, once
    assert not own_tmp.exists()  # emptied by the restart, removed at the end
    assert loop["workspace"] == before["workspace"]  # the same workspace, not a new one
    assert outcome(tree, loop_id, golden, start) == baseline


def test_a_loop_sigkilled_while_rebasing_lands_the_same_changes_on_the_new_golden(
    tree: Tree, baseline: Outcome
) -> None:
    loop_id = "bd-rebasing.1"
    golden = tree.golden("golden-rebasing")
    start = git(golden, "rev-parse", "HEAD").strip()
    tree.clear_holds()
    tree.arm("reviewer", golden)
    child = tree.start_held("bd-rebasing", golden)
    tree.wait_held("reviewer", golden)
    (golden / "README.txt").write_text("another bead landed first\n")
    git(golden, "add", "README.txt")
    git(golden, "commit", "-q", "-m", "another bead")
    tree.arm(GOLDEN_HOLD, golden)
    tree.release("reviewer")
    while True:  # the loop waits on golden's config while we look: its phase holds still
        tree.wait_held(GOLDEN_HOLD, golden)
        phase = tree.loop(loop_id)["phase"]
        if phase == "rebasing":
            break
        assert phase == "pushing"
        tree.close_golden_fds()  # the lander reads on (and finds golden moved)
    tree.disarm_golden(golden)
    os.killpg(child["pid"], signal.SIGKILL)
    tree.close_golden_fds()
    loop = tree.wait_ended(loop_id, child["id"])
    assert loop["phase"] == "complete", loop["reason"]
    assert tree.starts(child["id"]) == 2
    result = outcome(tree, loop_id, golden, start)
    assert result.events == [*baseline.events[:-1], "PushConflict", "Rebased",
                             "GauntletPassed", "Pushed"]  # fmt: skip
    assert result.commits[0][0] == "another bead"
    ours = [(subject, patch) for subject, _, patch in result.commits[1:]]
    assert ours == [(subject, patch) for subject, _, patch in baseline.commits]
    assert result.counters == baseline.counters


def test_a_loop_stopped_during_a_test_run_records_nothing_the_stop_broke(
    tree: Tree, baseline: Outcome
) -> None:
    loop_id = "bd-stop.1"
    golden = tree.golden("golden-stop")
    start = git(golden, "rev-parse", "HEAD").strip()
    tree.clear_holds()
    tree.arm("implementer", golden)
    child = tree.start_held("bd-stop", golden)
    tree.wait_held("implementer", golden)
    tree.arm("suite", golden)
    tree.release("implementer")
    tree.wait_held("suite", golden)
    # SIGTERM to the group: the test run dies of it too; that is not a red suite
    tree.d.call("stop", id=child["id"])
    stopped = tree.loop(loop_id)
    assert stopped["phase"] == "tcr_checking"
    assert [h["event"] for h in stopped["history"]] == baseline.events[:3]
    assert '"event":"stopped"' in tree.d.log()
    again = tree.start_held("bd-stop", golden)  # as the dispatcher would, later
    loop = tree.wait_ended(loop_id, again["id"])
    assert loop["phase"] == "complete", loop["reason"]
    assert outcome(tree, loop_id, golden, start) == baseline
