"""A synapse restarted mid-episode takes its generation up again from its SQLite store
(procs/synapse/store.py): it adopts the mutators still running and never starts a second
swarm for the same red; and one that comes back after golden moved stops them.

A real factoryd runs the bus, the governor, the workspace manager, the LLM router, the
golden master (refreshing from an upstream), the merge queue, the heartbeat, the synapse
and its `mutators` supervisor. The only stand-in is the model behind the router's
`mutator` role, a TEST DOUBLE (tests/doubles/fix_model.py) that holds every answer
until the test lets it go, so the swarm is in flight when the synapse dies.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipc import control, ledger, paths
from tests.doubles._plan import Answer, Hang, Step
from tests.doubles.fix_model import PromptAnsweredLlamaCpp
from tests.helpers.golden_queue import TEST_COMMAND, commit, git, tiny_project
from tests.helpers.sandbox import sandbox_mode
from tests.waiting import pid_alive, pid_gone, wait_until

pytestmark = pytest.mark.integration

SWARM = 3
SLOW_TEST = "import time\n\n\ndef test_slow():\n    time.sleep(2)\n"
RIGHT = ("--- a/core.py\n+++ b/core.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
         "-    return a - b\n+    return a + b\n")  # fmt: skip


def held(prompt: str) -> Step:
    """Every mutator waits on the model; once let go, variant 1 gets the right fix."""
    text = RIGHT if f"Variant 1 of {SWARM}." in prompt else "No idea, sorry."
    return Hang(limit_s=90.0, then=Answer(text))


def _config(golden: Path, router: Path) -> str:
    test = TEST_COMMAND
    return f"""
        [factory]
        preload = ["procs", "procs.synapse.mutator"]
        sandbox = "{sandbox_mode()}"
        [supervisor]
        strategy = "one_for_one"
        intensity = 20
        period = 60
        [[supervisor.children]]
        id = "bus"
        target = "procs.bus.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "governor"
        target = "procs.governor.service:main"
        args = ["--max-loops", "1", "--max-mutators", "{SWARM}", "--max-workspaces", "16",
                "--min-free-ram-mb", "0"]
        ready = "notify"
        [[supervisor.children]]
        id = "workspaces"
        target = "procs.workspaces.service:main"
        ready = "notify"
        [[supervisor.children]]
        id = "llm_router"
        target = "procs.llm.service:main"
        args = ["--config", "{router}", "--drain-s", "1"]
        ready = "notify"
        [[supervisor.children]]
        id = "golden"
        target = "procs.golden.service:main"
        args = ["--repo", "{golden}", "--upstream", "origin", "--test-command", "{test}",
                "--suite-timeout-s", "60"]
        ready = "notify"
        start_timeout_ms = 60000
        [[supervisor.children]]
        id = "merge_queue"
        target = "procs.merge_queue.service:main"
        args = ["--k", "2", "--test-command", "{test}", "--suite-timeout-s", "60"]
        ready = "notify"
        [[supervisor.children]]
        id = "heartbeat"
        target = "procs.heartbeat.service:main"
        args = ["--test-command", "{test}", "--timeout-s", "60", "--interval-s", "300"]
        ready = "notify"
        [[supervisor.children]]
        id = "mutators"
        strategy = "simple_one_for_one"
        intensity = 50
        period = 60
        [[supervisor.children.children]]
        id = "mutator"
        target = "procs.synapse.mutator:main"
        args = ["--slot-timeout-s", "5", "--llm-timeout-s", "90", "--decision-timeout-s", "60"]
        restart = "temporary"
        shutdown_ms = 1000
        [[supervisor.children]]
        id = "synapse"
        target = "procs.synapse.service:main"
        args = ["--test-command", "{test}", "--suite-timeout-s", "60", "--swarm-size", "{SWARM}",
                "--bisect-workers", "2", "--mutator-ram-mb", "64", "--reconcile-s", "0.5"]
        ready = "notify"
    """


def _call(runtime: Path, endpoint: str, command: str, **args: Any) -> Any:
    return control.call(paths.control_socket(runtime, endpoint), command, args, timeout=30)


def _found(predicate: Callable[[], dict[str, Any] | None], timeout: float,
           what: str) -> dict[str, Any]:  # fmt: skip
    """wait_until for a status lookup: the dict once found."""
    found = wait_until(predicate, timeout=timeout, what=what)
    assert found is not None
    return found


def _mutators(d: Any) -> dict[str, int]:
    node = d.node("mutators")
    return {c["id"]: c["pid"] for c in node.get("children", []) if c.get("state") == "running"}


def _synapse(runtime: Path) -> dict[str, Any] | None:
    try:
        return dict(_call(runtime, "synapse", "status"))
    except control.ControlError:
        return None  # restarting


class RedGolden:
    """golden (a clone of origin), red at the last of three pushed commits; a swarm of
    SWARM mutators all waiting on the model."""

    def __init__(self, factoryd: Any, tmp_path: Path, *, slow_suite: bool = False) -> None:
        origin, self.golden, self.other = (tmp_path / "origin.git", tmp_path / "golden",
                                           tmp_path / "other")  # fmt: skip
        tiny_project(tmp_path / "seed")
        if slow_suite:  # every run of the suite takes 2 s: a bisection lasts long enough
            commit(tmp_path / "seed", {"tests/test_slow.py": SLOW_TEST}, "a slow test")
        git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "seed"), str(origin))
        git(tmp_path, "clone", "-q", str(origin), str(self.golden))
        git(tmp_path, "clone", "-q", str(origin), str(self.other))
        self.model = PromptAnsweredLlamaCpp(held).start()
        router = tmp_path / "router.toml"
        url = self.model.base_url
        router.write_text(f'[roles]\nmutator = "double"\n[endpoints.double]\nkind = "llama_cpp"\n'
                          f'base_url = "{url}"\nretries = 0\ntimeout_s = 90\n')  # fmt: skip
        self.d = factoryd(_config(self.golden, router)).start()
        self.runtime = self.d.runtime_dir

    def turn_red(self) -> tuple[str, dict[str, Any], dict[str, int]]:
        """(the red commit, its generation swarming, its mutators' pids) once every
        mutator has asked the model."""
        red = self.push_red()
        return red, *self.swarming(red)

    def push_red(self) -> str:
        wait_until(lambda: paths.control_socket(self.runtime, "synapse").exists(), timeout=60,
                   what="the synapse")  # fmt: skip
        commit(self.other, {"notes.txt": "1\n"}, "notes")
        commit(self.other, {"core.py": "def add(a, b):\n    return a - b\n"}, "the culprit")
        red = commit(self.other, {"VERSION": "2\n"}, "version 2")
        git(self.other, "push", "-q", "origin", "main")
        assert _call(self.runtime, "golden", "refresh")["hash"] == red
        return red

    def swarming(self, red: str) -> tuple[dict[str, Any], dict[str, int]]:
        def swarming() -> dict[str, Any] | None:
            status = _synapse(self.runtime) or {}
            gens = [g for g in status.get("generations", []) if g["context_hash"] == red]
            ok = gens and len(gens[0]["children"]) == SWARM and len(self.model.prompts()) == SWARM
            return gens[0] if ok else None

        gen = _found(swarming, 90, "the swarm asking the model")
        pids = _mutators(self.d)
        assert len(pids) == SWARM and set(pids) == set(gen["children"]), (pids, gen)
        return gen, pids

    def kill_synapse(self) -> int:
        """SIGKILL the synapse; returns its new pid once factoryd restarted it and it answers."""
        before = _synapse(self.runtime)
        assert before is not None
        os.kill(int(before["pid"]), signal.SIGKILL)
        wait_until(lambda: pid_gone(int(before["pid"])), timeout=10, what="the synapse dead")

        def restarted() -> dict[str, Any] | None:
            status = _synapse(self.runtime)
            return status if status is not None and status["pid"] != before["pid"] else None

        return int(_found(restarted, 60, "the synapse restarted")["pid"])

    def close(self) -> None:
        self.model.release_all()
        self.d.stop()
        self.model.stop()
        ledger.destroy(self.runtime)


def test_a_synapse_killed_mid_swarm_adopts_its_mutators_and_spawns_no_second_swarm(
    factoryd: Any, tmp_path: Path
) -> None:
    world = RedGolden(factoryd, tmp_path)
    try:
        red, gen, pids = world.turn_red()
        world.kill_synapse()

        def resumed() -> dict[str, Any] | None:
            status = _synapse(world.runtime) or {}
            gens = status.get("generations") or []
            return status if gens and gens[0]["resumed"] == 1 else None

        status = _found(resumed, 30, "the generation taken up again")
        [again] = status["generations"]  # the same one, and no other
        assert again["id"] == gen["id"] and again["state"] == "swarming", again
        assert sorted(again["children"]) == sorted(gen["children"])
        assert again["culprit"] == gen["culprit"] != "" and status["counts"]["generations"] == 1
        assert status["live"] == 1
        # the same mutators run on: adopted, not killed, none added, no new request
        assert _mutators(world.d) == pids and all(pid_alive(p) for p in pids.values())
        assert len(world.model.prompts()) == SWARM

        world.model.release_all()  # variant 1's fix lands; the restarted synapse stops the rest

        def done() -> dict[str, Any] | None:
            gens = (_synapse(world.runtime) or {}).get("generations") or []
            return next((g for g in gens if g["state"] == "done"), None)

        final = _found(done, 60, "the generation done")
        assert final["id"] == gen["id"] and final["ended"].startswith(("fix landed", "golden"))
        wait_until(lambda: not _mutators(world.d) and all(pid_gone(p) for p in pids.values()),
                   timeout=30, what="every mutator gone")  # fmt: skip
        assert git(world.golden, "rev-parse", "main^") == red
        assert git(world.golden, "show", "main:core.py") == "def add(a, b):\n    return a + b"
        assert ledger.snapshot(world.runtime)["resources"]["mutator"]["in_use"] == 0
        assert len(world.model.prompts()) == SWARM
    finally:
        world.close()


def test_a_synapse_back_after_golden_moved_stops_the_old_swarm(
    factoryd: Any, tmp_path: Path
) -> None:
    """Stopped while its swarm waits on the model; meanwhile a fix lands upstream and
    golden moves (the Evolution signal goes unheard). Started again, it stops that
    generation's mutators and starts nothing new: golden is green."""
    world = RedGolden(factoryd, tmp_path)
    try:
        red, gen, pids = world.turn_red()
        code, out, err = world.d.ctl("stop", "synapse")
        assert code == 0, (out, err)
        git(world.other, "pull", "-q", "--ff-only", "origin", "main")
        fixed = commit(world.other, {"core.py": "def add(a, b):\n    return a + b\n"}, "fix")
        git(world.other, "push", "-q", "origin", "main")
        assert _call(world.runtime, "golden", "refresh")["hash"] == fixed
        assert _mutators(world.d) == pids  # nobody stopped them while the synapse was down
        code, out, err = world.d.ctl("start", "synapse")
        assert code == 0, (out, err)

        def ended() -> dict[str, Any] | None:
            gens = (_synapse(world.runtime) or {}).get("generations") or []
            return gens[0] if gens and gens[0]["state"] == "done" else None

        final = _found(ended, 30, "the old generation stopped")
        assert final["id"] == gen["id"] and final["resumed"] == 1
        assert final["ended"] == f"golden moved to {fixed[:12]} while the synapse was down"
        wait_until(lambda: not _mutators(world.d) and all(pid_gone(p) for p in pids.values()),
                   timeout=30, what="every mutator gone")  # fmt: skip
        status = _synapse(world.runtime)
        assert status is not None and len(status["generations"]) == 1 and status["live"] == 0
        assert git(world.golden, "rev-parse", "main") == fixed
        assert len(world.model.prompts()) == SWARM and red != fixed
    finally:
        world.close()


def test_a_synapse_killed_mid_bisection_bisects_again_for_the_same_generation(
    factoryd: Any, tmp_path: Path
) -> None:
    """Killed while it bisects (each suite run takes 2 s): the restarted synapse bisects
    again under the same generation, then starts its swarm once."""
    world = RedGolden(factoryd, tmp_path, slow_suite=True)
    try:
        red = world.push_red()

        def bisecting() -> dict[str, Any] | None:
            gens = (_synapse(world.runtime) or {}).get("generations") or []
            return gens[0] if gens and gens[0]["context_hash"] == red else None

        gen = _found(bisecting, 90, "the red's generation")
        assert gen["state"] == "bisecting" and gen["children"] == [], gen
        world.kill_synapse()
        again, pids = world.swarming(red)
        assert again["id"] == gen["id"] and again["resumed"] == 1, again
        assert again["culprit"] != "" and again["suspects"] == 4
        status = _synapse(world.runtime)
        assert status is not None and len(status["generations"]) == 1
        assert status["counts"]["generations"] == 1 and len(world.model.prompts()) == SWARM
        world.model.release_all()
        wait_until(lambda: not _mutators(world.d) and all(pid_gone(p) for p in pids.values()),
                   timeout=60, what="every mutator gone")  # fmt: skip
        assert git(world.golden, "rev-parse", "main^") == red
    finally:
        world.close()
