"""The synapse service's decisions, against a real bus and stand-ins for its peers (real
control servers answered from threads: factoryd, the golden master, the merge queue):
PatchAccepted of its own group stops the generation and one of another group does not;
a generation stopped (Evolution) while its mutators are still being started stops every
mutator it got and starts no more. The swarm itself is tests/test_synapse_swarm.py."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ipc import control, paths
from ipc.bus import Publisher
from ipc.control import RequestRefused
from ipc.signals import Evolution, GitHash, PatchAccepted, TestFailure
from tests.helpers.bus import connected
from tests.helpers.control_server import serving
from tests.helpers.golden_queue import tiny_project
from tests.helpers.processes import Processes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SWARM = 8
OTHER = "f" * 40


@dataclass
class Peers:
    """factoryd's `mutators` supervisor, golden and the merge queue, as the synapse sees them."""

    head: str
    repo: Path
    groups: dict[str, str] = field(default_factory=dict)  # patch id -> group
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    hold_start: int | None = None  # the start (1-based) that waits for `release`
    release: threading.Event = field(default_factory=threading.Event)
    golden_state: str = "green"

    def factoryd(self, command: str, args: dict[str, Any]) -> Any:
        if command == "start":
            assert args["id"] == "mutators" and args["args"][0] == "--generation"
            if len(self.started) + 1 == self.hold_start:
                self.release.wait(10)
            self.started.append(f"mutators.{len(self.started) + 1}")
            return {"id": self.started[-1], "pid": 0, "state": "running"}
        if command == "kill":
            assert args["signal"] == "SIGTERM"
            self.killed.append(args["id"])
            return {"id": args["id"], "pid": 0, "signal": "SIGTERM"}
        if command == "stop":
            self.stopped.append(args["id"])
            return {"id": args["id"], "state": "stopped"}
        if command == "status":
            live = [{"id": c, "state": "running", "pid": 0} for c in self.started
                    if c not in self.stopped]  # fmt: skip
            return {"tree": {"id": "root", "children": [{"id": "mutators", "children": live}]}}
        raise RequestRefused(f"unexpected {command}", "unknown_command")

    def golden(self, command: str, args: dict[str, Any]) -> Any:
        red = {"hash": self.head, "at": 0, "output": "E boom"}
        failure = red if self.golden_state == "red" else None
        return {"hash": self.head, "repo": str(self.repo), "state": self.golden_state,
                "branch": "main", "last_failure": failure}  # fmt: skip

    def queue(self, command: str, args: dict[str, Any]) -> Any:
        assert command == "show"
        self.shown.append(args["patch_id"])
        return {"patch_id": args["patch_id"], "group": self.groups.get(args["patch_id"], "")}


@dataclass
class Synapse:
    runtime: Path
    peers: Peers
    pub: Publisher

    def status(self) -> dict[str, Any]:
        sock = paths.control_socket(self.runtime, "synapse")
        return dict(control.call(sock, "status", {}, timeout=10))

    def generation(self, state: str) -> dict[str, Any] | None:
        gens = self.status()["generations"]
        return gens[0] if gens and gens[0]["state"] == state else None


@pytest.fixture
def synapse(tmp_path: Path, procs: Processes, request: pytest.FixtureRequest
            ) -> Iterator[Synapse]:  # fmt: skip
    retry_red_s = str(getattr(request, "param", {}).get("retry_red_s", 600))
    runtime = tmp_path / "run"
    runtime.mkdir()
    head = tiny_project(tmp_path / "golden")
    peers = Peers(head, tmp_path / "golden")
    procs.broker(runtime)
    pub, _sub = connected(runtime, types=["Evolution"])
    with ExitStack() as stack:
        for name, handler in (("factoryd", peers.factoryd), ("golden", peers.golden),
                              ("merge_queue", peers.queue)):  # fmt: skip
            stack.enter_context(serving(paths.control_socket(runtime, name), handler))
        log = (tmp_path / "synapse.log").open("w")
        stack.callback(log.close)
        proc = procs.start([sys.executable, "-m", "procs.synapse.service", "--runtime-dir",
                            str(runtime), "--state-dir", str(tmp_path / "state"), "--sandbox",
                            "none", "--test-command", "true", "--swarm-size", str(SWARM),
                            "--mutator-ram-mb", "0", "--reconcile-s", "0.2",
                            "--retry-red-s", retry_red_s],
                           stderr=log)  # fmt: skip
        synapse = Synapse(runtime, peers, pub)
        wait_until(lambda: proc.poll() is not None or _answers(synapse), timeout=30,
                   what="the synapse")  # fmt: skip
        assert proc.poll() is None, (tmp_path / "synapse.log").read_text()
        try:
            yield synapse
        finally:
            peers.release.set()
            procs.kill(proc, signal.SIGTERM)
            pub.close()


def _answers(s: Synapse) -> bool:
    try:
        s.status()
    except control.ControlError:
        return False
    return True


def _red(s: Synapse) -> None:
    s.pub.publish(TestFailure("tests/test_core.py", "boom", GitHash(s.peers.head)), timeout=5)


def test_patch_accepted_of_its_group_stops_the_generation_and_another_group_does_not(
    synapse: Synapse,
) -> None:
    _red(synapse)
    gen = wait_until(lambda: synapse.generation("swarming"), timeout=20, what="a swarm")
    wait_until(lambda: len(synapse.peers.started) == SWARM, timeout=20, what="8 starts")
    synapse.peers.groups.update({"p-other": "synapse-someone-else", "p-ours": gen["group"]})
    synapse.pub.publish(PatchAccepted(GitHash(OTHER), "p-other"), timeout=5)
    wait_until(lambda: "p-other" in synapse.peers.shown, timeout=10, what="p-other looked up")
    assert synapse.generation("swarming") is not None and synapse.peers.stopped == []

    synapse.pub.publish(PatchAccepted(GitHash(OTHER), "p-ours"), timeout=5)
    done = wait_until(lambda: synapse.generation("done"), timeout=10, what="the swarm stopped")
    assert done["ended"] == "fix landed (p-ours)"
    assert sorted(synapse.peers.stopped) == sorted(synapse.peers.started)
    assert sorted(synapse.peers.killed) == sorted(synapse.peers.started)  # all at once first
    assert synapse.status()["counts"]["landed"] == 1


def test_a_generation_stopped_while_starting_stops_what_it_got_and_starts_no_more(
    synapse: Synapse,
) -> None:
    synapse.peers.hold_start = 3  # the third start waits: golden moves meanwhile
    _red(synapse)
    wait_until(lambda: len(synapse.peers.started) == 2, timeout=20, what="two mutators")
    synapse.pub.publish(Evolution(GitHash(OTHER), "landed"), timeout=5)
    wait_until(lambda: synapse.generation("stopping"), timeout=10, what="stopping")
    synapse.peers.release.set()
    done = wait_until(lambda: synapse.generation("done"), timeout=10, what="the swarm stopped")
    assert done["ended"] == f"golden moved to {OTHER[:12]}"
    wait_until(lambda: sorted(synapse.peers.stopped) == sorted(synapse.peers.started),
               timeout=10, what="every started mutator stopped")  # fmt: skip
    assert len(synapse.peers.started) == 3, synapse.peers.started


def test_a_red_commit_that_is_not_golden_head_any_more_starts_no_swarm(synapse: Synapse) -> None:
    synapse.pub.publish(TestFailure("tests/test_core.py", "boom", GitHash(OTHER)), timeout=5)
    done = wait_until(lambda: synapse.generation("done"), timeout=10, what="the generation")
    assert done["ended"] == f"stale: golden is at {synapse.peers.head[:12]} now"
    assert synapse.peers.started == [] and done["children"] == []


def test_a_swarm_that_ended_with_nothing_landed_goes_again_while_golden_is_red(
    synapse: Synapse,
) -> None:
    """Found by bench/chaos.py: the swarm's right fixes were lost (the merge queue was
    restarting as they were proposed), every mutator ended, and golden stayed red for
    good. Now a new generation goes, at most synapse.service.MAX_GENERATIONS (3)."""
    synapse.peers.golden_state = "red"
    _red(synapse)
    for n in (1, 2, 3):
        wait_until(lambda n=n: len(synapse.peers.started) == SWARM * n, timeout=30,
                   what=f"generation {n}'s mutators")  # fmt: skip
        synapse.peers.stopped[:] = synapse.peers.started  # each ended, nothing landed

    def third_done() -> bool:
        gens = synapse.status()["generations"]
        return len(gens) == 3 and all(g["state"] == "done" for g in gens)

    wait_until(third_done, timeout=20, what="three generations done")
    assert len(synapse.peers.started) == SWARM * 3  # and no fourth
    assert synapse.status()["counts"]["generations"] == 3


@pytest.mark.parametrize("synapse", [{"retry_red_s": 1.5}], indirect=True)
def test_a_red_never_stays_red_for_good_one_more_swarm_after_the_cool_down(
    synapse: Synapse,
) -> None:
    """Three swarms in a row found no fix: no storm, but not "red for good" either: one
    more generation once --retry-red-s has passed since the last (a model back, a
    machine less loaded)."""
    synapse.peers.golden_state = "red"
    _red(synapse)
    for n in (1, 2, 3, 4):
        wait_until(lambda n=n: len(synapse.peers.started) == SWARM * n, timeout=30,
                   what=f"generation {n}'s mutators")  # fmt: skip
        synapse.peers.stopped[:] = synapse.peers.started  # each ended, nothing landed
    starts = sorted(g["started_at"] for g in synapse.status()["generations"])
    assert len(starts) == 4
    assert starts[3] - starts[2] >= 1.5  # after the cool-down, not at once (nor 10 minutes)
    assert synapse.status()["counts"]["generations"] == 4


def test_a_red_golden_whose_signal_was_lost_still_gets_its_swarm(synapse: Synapse) -> None:
    """Found by bench/chaos.py: the heartbeat announces a red once, and a TestFailure
    published while the bus or the synapse was restarting is lost. The synapse goes by
    golden's state: a red verdict on HEAD with no live generation gets one."""
    synapse.peers.golden_state = "red"  # and no TestFailure on the bus
    wait_until(lambda: len(synapse.peers.started) == SWARM, timeout=30, what="the swarm")
    gen = synapse.status()["generations"][0]
    assert gen["context_hash"] == synapse.peers.head and gen["error"] == "E boom"


def test_a_swarm_that_ended_while_golden_turned_green_does_not_go_again(
    synapse: Synapse,
) -> None:
    _red(synapse)  # golden answers green: fixed meanwhile (the signal missed)
    wait_until(lambda: len(synapse.peers.started) == SWARM, timeout=30, what="the swarm")
    synapse.peers.stopped[:] = synapse.peers.started
    wait_until(lambda: synapse.generation("done"), timeout=20, what="the swarm ended")
    assert synapse.status()["counts"]["generations"] == 1
    assert len(synapse.peers.started) == SWARM


def test_a_green_golden_is_the_last_commit_known_good_without_its_signal(synapse: Synapse) -> None:
    """A TestPassing lost (or golden turned green by its own suite run): the synapse takes
    golden's green state as the last commit known good, where the next bisection starts
    (fewer suspects)."""
    assert synapse.status()["known_good"] == synapse.peers.head
    synapse.peers.head = "c" * 40  # golden moved and is green; no signal
    wait_until(lambda: synapse.status()["known_good"] == "c" * 40, timeout=20,
               what="the new green commit known good")  # fmt: skip
