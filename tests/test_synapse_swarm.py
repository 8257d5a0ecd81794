"""The swarm test (issue 15): golden turns red, bisection names the culprit, 8 mutators
race, exactly one fix lands, and the others are dead, with their workspaces and slots
back, within one second of PatchAccepted.

A real factoryd runs the bus, the governor, the workspace manager, the LLM router, the
golden master (refreshing from an upstream), the merge queue, the heartbeat, the synapse
and its `mutators` supervisor. The only stand-in is the model behind the router's
`mutator` role: a TEST DOUBLE (tests/doubles/fix_model.py) answering each mutator by the
variant in its prompt: prose, a wrong fix, a test edit, a diff that does not apply, two
right fixes, and two that hang (a slow model), so that they are still working when the
first fix lands and must be stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ipc import control, ledger, paths
from ipc.bus import Subscriber
from procs.synapse.bisect import rounds_bound
from tests.doubles._plan import Answer, Hang, Step
from tests.doubles.fix_model import PromptAnsweredLlamaCpp
from tests.helpers.golden_queue import TEST_COMMAND, commit, git, tiny_project
from tests.helpers.sandbox import sandbox_mode
from tests.waiting import pid_gone, wait_until

pytestmark = pytest.mark.integration

SWARM = 8
WORKERS = 3
SUSPECTS = 12
CULPRIT_AT = 5  # the 5th commit after the green one breaks add()
KILL_BUDGET_S = 1.0


def _diff(old: str, new: str, path: str = "core.py") -> str:
    return (f"--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
            f"-    {old}\n+    {new}\n")  # fmt: skip


RIGHT = _diff("return a - b", "return a + b")
ANSWERS: dict[int, Step] = {
    1: Answer("The bug is in core.py: add() subtracts. Change it back to a plus."),
    2: Answer(f"```diff\n{_diff('return a - b', 'return a * b')}```"),  # still red
    3: Answer(RIGHT),
    4: Answer(_diff("return a - b", "return a + b", "tests/test_core.py")),  # a test edit
    5: Answer(_diff("return a % b", "return a + b")),  # does not apply
    6: Answer(f"```diff\n{_diff('return a - b', 'return b + a')}```"),  # right as well
}


def answer(prompt: str) -> Step:
    for variant, step in ANSWERS.items():
        if f"Variant {variant} of {SWARM}." in prompt:
            return step
    return Hang(limit_s=60.0, then=Answer("too late"))  # variants 7 and 8: a slow model


def _config(tmp: Path, golden: Path, router: Path) -> str:
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
        args = ["--max-loops", "1", "--max-mutators", "{SWARM}", "--max-workspaces", "32",
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
        args = ["--slot-timeout-s", "5", "--llm-timeout-s", "60", "--decision-timeout-s", "60"]
        restart = "temporary"
        shutdown_ms = 1000
        [[supervisor.children]]
        id = "synapse"
        target = "procs.synapse.service:main"
        args = ["--test-command", "{test}", "--suite-timeout-s", "60", "--swarm-size", "{SWARM}",
                "--bisect-workers", "{WORKERS}", "--mutator-ram-mb", "64"]
        ready = "notify"
    """


def _call(runtime: Path, endpoint: str, command: str, **args: Any) -> Any:
    return control.call(paths.control_socket(runtime, endpoint), command, args, timeout=30)


def _mutators(status: dict[str, Any]) -> list[dict[str, Any]]:
    def find(node: dict[str, Any]) -> dict[str, Any] | None:
        if node.get("id") == "mutators":
            return node
        return next((f for c in node.get("children", []) if (f := find(c)) is not None), None)

    node = find(status["tree"])
    assert node is not None
    return [c for c in node.get("children", []) if c.get("state") == "running"]


def test_a_red_golden_is_bisected_and_fixed_by_one_of_eight_racing_mutators(
    factoryd: Any, tmp_path: Path
) -> None:
    origin, golden, other = tmp_path / "origin.git", tmp_path / "golden", tmp_path / "other"
    green = tiny_project(tmp_path / "seed")
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "seed"), str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(golden))
    git(tmp_path, "clone", "-q", str(origin), str(other))
    model = PromptAnsweredLlamaCpp(answer).start()
    router = tmp_path / "router.toml"
    router.write_text(f'[roles]\nmutator = "double"\n[endpoints.double]\nkind = "llama_cpp"\n'
                      f'base_url = "{model.base_url}"\nretries = 0\ntimeout_s = 90\n')  # fmt: skip
    d = factoryd(_config(tmp_path, golden, router)).start()
    runtime = d.runtime_dir
    try:
        failures = Subscriber(runtime, types=["TestFailure"])
        accepted = Subscriber(runtime, types=["PatchAccepted"])
        failures.wait_connected(timeout=10)
        accepted.wait_connected(timeout=10)
        wait_until(lambda: paths.control_socket(runtime, "synapse").exists(), timeout=60,
                   what="the synapse")  # fmt: skip

        suspects = []
        for i in range(1, SUSPECTS + 1):
            files = {f"notes/{i}.txt": f"note {i}\n"}
            if i == CULPRIT_AT:
                files["core.py"] = "def add(a, b):\n    return a - b\n"
            suspects.append(commit(other, files, f"change {i}"))
        git(other, "push", "-q", "origin", "main")
        started = time.monotonic()
        assert _call(runtime, "golden", "refresh")["hash"] == suspects[-1]

        red = failures.wait_for("TestFailure", timeout=60).signal
        assert str(red.context_hash) == suspects[-1] and red.file == "tests/test_core.py"

        def swarming() -> dict[str, Any] | None:
            gens = _call(runtime, "synapse", "status")["generations"]
            return gens[0] if gens and gens[0]["state"] != "bisecting" else None

        gen = wait_until(swarming, timeout=60, what="the culprit found, the swarm started")
        assert gen["size"] == SWARM and gen["culprit"] == suspects[CULPRIT_AT - 1], gen
        # the suspects: the last green commit (checked again) and the 12 after it
        assert gen["suspects"] == SUSPECTS + 1 and gen["bisect"]["workers"] == WORKERS
        assert gen["bisect"]["rounds"] <= rounds_bound(SUSPECTS + 1, WORKERS) == 2

        landing = accepted.wait_for("PatchAccepted", timeout=60)
        t_accepted = time.monotonic()
        pids = {r["child"]: r["pid"] for r in d.records("child_started")
                if r.get("supervisor") == "mutators"}  # fmt: skip
        assert len(pids) == SWARM, pids
        mutator_slots_used: list[int] = []

        def all_back() -> bool:
            if _mutators(d.status()) or not all(pid_gone(p) for p in pids.values() if p):
                return False
            listed = _call(runtime, "workspace_manager", "workspaces.list")["workspaces"]
            if any(str(w.get("slug", "")).startswith("mutator-") for w in listed):
                return False
            used = ledger.snapshot(runtime)["resources"]["mutator"]["in_use"]
            mutator_slots_used.append(used)
            return used == 0

        wait_until(all_back, timeout=KILL_BUDGET_S, what="the mutators gone and all back")
        back_s = time.monotonic() - t_accepted
        assert back_s < KILL_BUDGET_S

        # exactly one fix landed, the right one, right on top of the red commit
        head = git(golden, "rev-parse", "main")
        assert str(landing.signal.hash) == head
        assert git(golden, "rev-parse", "main^") == suspects[-1]
        assert git(golden, "show", "main:core.py") in (
            "def add(a, b):\n    return a + b",
            "def add(a, b):\n    return b + a",
        )
        queue = _call(runtime, "merge_queue", "queue")["recent"]
        ours = [e for e in queue if e["group"] == gen["group"]]
        assert [e["state"] for e in ours].count("accepted") == 1, ours

        # the generation was stopped by the landing, its stragglers with it
        final = wait_until(lambda: next(
            (g for g in _call(runtime, "synapse", "status")["generations"]
             if g["id"] == gen["id"] and g["state"] == "done"), None), timeout=10,
            what="the generation done")  # fmt: skip
        assert final["ended"].startswith(("fix landed", "golden moved")), final
        code, out, err = d.ctl("swarm")
        assert code == 0, (out, err)
        assert f"culprit {suspects[CULPRIT_AT - 1][:12]} of {SUSPECTS + 1} suspects" in out, out
        assert "ended: " in out and f"mutators {SWARM}/{SWARM}" in out, out
        code, out, _ = d.ctl("swarm", "--json")
        assert code == 0 and json.loads(out)["generations"][0]["id"] == gen["id"]
        # eight different requests, each with the file, error, hash and the culprit's diff
        prompts = model.prompts()
        assert len(prompts) == SWARM and len(set(prompts)) == SWARM
        needles = (str(red.context_hash), suspects[CULPRIT_AT - 1], red.file, "return a - b")
        assert all(n in p for p in prompts for n in needles)
        print(
            f"\nswarm: red -> landed {t_accepted - started:.1f} s after the refresh; "
            f"bisect {gen['bisect']} of {gen['suspects']} suspects; "
            f"all back {back_s * 1000:.0f} ms after PatchAccepted; "
            f"synapse stop_ms {final['stop_ms']}"
        )
    finally:
        model.release_all()
        d.stop()
        model.stop()
        ledger.destroy(runtime)
        assert green


def test_a_swarm_that_finds_no_fix_ends_and_gives_everything_back(
    factoryd: Any, tmp_path: Path
) -> None:
    """Every mutator gives up (the model answers prose): the generation ends by itself
    (the synapse's reconcile sees no mutator left), golden is untouched, and no slot or
    workspace is left. Started by hand (`react`), on a golden with one commit: the
    bisection has a single suspect and runs nothing."""
    origin, golden = tmp_path / "origin.git", tmp_path / "golden"
    head = tiny_project(tmp_path / "seed")
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "seed"), str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(golden))
    model = PromptAnsweredLlamaCpp(lambda prompt: Answer("I would rather not.")).start()
    router = tmp_path / "router.toml"
    router.write_text(f'[roles]\nmutator = "double"\n[endpoints.double]\nkind = "llama_cpp"\n'
                      f'base_url = "{model.base_url}"\nretries = 0\n')  # fmt: skip
    d = factoryd(_config(tmp_path, golden, router)).start()
    runtime = d.runtime_dir
    try:
        wait_until(lambda: paths.control_socket(runtime, "synapse").exists(), timeout=60,
                   what="the synapse")  # fmt: skip
        gen = _call(runtime, "synapse", "react", context_hash=head, file="tests/test_core.py",
                    error="by hand")  # fmt: skip

        def ended() -> dict[str, Any] | None:
            gens = _call(runtime, "synapse", "status")["generations"]
            return next((g for g in gens if g["id"] == gen["id"] and g["state"] == "done"), None)

        final = wait_until(ended, timeout=30, what="the generation to end")
        assert final["ended"] == "every mutator ended" and len(final["children"]) == SWARM
        assert final["culprit"] == head and final["bisect"]["runs"] == 0
        assert len(model.prompts()) == SWARM
        assert not _mutators(d.status())
        assert ledger.snapshot(runtime)["resources"]["mutator"]["in_use"] == 0
        listed = _call(runtime, "workspace_manager", "workspaces.list")["workspaces"]
        assert not listed
        assert git(golden, "rev-parse", "main") == head
        code, _, _ = d.ctl("swarm")
        assert code == 0
    finally:
        d.stop()
        model.stop()
        ledger.destroy(runtime)
