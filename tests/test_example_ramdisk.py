"""systemd/factory.example.toml with its RAM disk option on, under a real factoryd that is
restarted while a loop works: golden is a btrfs subvolume on the loop-mounted RAM disk,
the loop's workspace a snapshot of it; factoryd stops mid-loop (its zygote, the owner of
every loop workspace, goes with it) and starts again; the workspace manager keeps the
loop's workspace (its bead is still claimed), the resumed loop adopts it and finishes in
it, and the bead's commit lands on the RAM disk's golden, never on the seed.

The only stand-in is the agent (a scripted in-process TEST DOUBLE, `turns` below); its
implementer waits for the test's gate, so the restart comes while the loop is mid-phase.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipc import control, ledger, paths
from procs.workspaces import ramdisk as ramdisks
from tests.helpers.example_factory import runnable_example
from tests.helpers.ramdisks import new_spec, skip_unless_loop_mounts, teardown_ramdisk
from tests.helpers.repos import git
from tests.helpers.sandbox import skip_without_bwrap
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

GATE = "FACTORY_TEST_GATE"
BEAD = {"id": "bd-1", "title": "double", "status": "open", "priority": 1,
        "issue_type": "task", "description": "feature.double(x) returns 2 * x",
        "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip


class Turns:
    """TEST DOUBLE of the agents: a test of feature.double, then (once the test's gate
    is open) its implementation."""

    def auditor(self, turn: Any) -> Any:
        test = turn.workspace / "tests" / "test_feature.py"
        if test.exists():
            return _reply('{"status": "requirements_complete"}')
        test.write_text("def test_double():\n    import feature\n\n"
                        "    assert feature.double(4) == 8\n")  # fmt: skip
        return _reply('{"status": "test_written", "test": "test_double"}')

    def implementer(self, turn: Any) -> Any:
        gate = Path(os.environ[GATE])
        gate.with_name("waiting").write_text(str(turn.workspace))
        wait_until(gate.exists, timeout=120, what="the test's gate")
        (turn.workspace / "feature.py").write_text("def double(x):\n    return 2 * x\n")
        return _reply('{"status": "implemented", "summary": "double"}')

    def architect(self, turn: Any) -> Any:
        return _reply('{"status": "refactored", "summary": "nothing to do"}')

    def reviewer(self, turn: Any) -> Any:
        return _reply('{"status": "approve", "issues": []}')


def _reply(result: str) -> Any:
    from procs.loop.turns import TurnReply  # the loop process's module

    return TurnReply(f"Done.\nFACTORY_RESULT {result}")


def turns(config: Any, held: Any, **_: Any) -> Turns:
    return Turns()


def with_ramdisk(text: str, spec: ramdisks.RamDiskSpec) -> str:
    """The example's RAM disk option switched on, as its comments say."""
    for old, new in [
        ('id = "workspaces"\n',
         f'id = "workspaces"\nargs = ["--ramdisk", "--ramdisk-name", "{spec.name}", '
         f'"--ramdisk-size-mb", "{spec.size_mb}", "--reconcile-s", "1"]\n'),
        ('"--branch", "main",', '"--branch", "main", "--ramdisk",'),
        ('"--workspace-strategy", "worktree"]', '"--workspace-strategy", "snapshot"]'),
        ('"--min-free-disk-mb", "1024"', '"--min-free-disk-mb", "64"'),  # a small RAM disk
    ]:  # fmt: skip
        assert text.count(old) == 1, f"the example no longer has {old!r} once"
        text = text.replace(old, new)
    return text


def records(log: str, child: str, event: str) -> list[dict[str, Any]]:
    """A child's structured records of `event` in factoryd's log ("[child] {...}")."""
    prefix = f"[{child}] "
    found = []
    for line in log.splitlines():
        if line.startswith(prefix) and f'"event":"{event}"' in line:
            found.append(orjson.loads(line[len(prefix) :]))
    return found


@pytest.mark.needs_root
def test_a_restarted_factory_resumes_a_loop_in_its_ramdisk_snapshot(factoryd, tmp_path: Path
                                                                    ) -> None:  # fmt: skip
    skip_without_bwrap()
    skip_unless_loop_mounts("btrfs")
    example = runnable_example(tmp_path, agent_turns="tests.test_example_ramdisk:turns")
    seed, beads = example.golden, example.beads
    start = git(seed, "rev-parse", "HEAD").strip()
    spec = new_spec(tmp_path / "run", "btrfs")
    text = with_ramdisk(example.text, spec)
    gate = tmp_path / "gate"
    env = {GATE: str(gate)}
    d = factoryd(text, env=env).start(wait_ready=False)
    try:
        assert d.runtime_dir.resolve() == spec.runtime_dir.resolve()
        wait_until(lambda: d.records("ready") or d.proc.poll() is not None, timeout=90,
                   what="the tree up")  # fmt: skip
        assert d.records("ready"), d.log()
        golden = control.call(paths.control_socket(d.runtime_dir, "golden"), "get_hash", {},
                              timeout=10)  # fmt: skip
        assert golden["repo"] == str(spec.golden) == golden["workspace_source"]
        beads.write_text(json.dumps(BEAD) + "\n")
        waiting = gate.with_name("waiting")
        wait_until(waiting.exists, timeout=100, what="the loop's implementer turn")
        manager = paths.control_socket(d.runtime_dir, "workspace_manager")
        [ws] = control.call(manager, "workspaces.list", {}, timeout=10)["workspaces"]
        assert (ws["strategy"], ws["source"]) == ("snapshot", str(spec.golden))
        assert Path(ws["path"]).parent == spec.workspaces and ws["owner_loop"]

        d.stop()  # the whole tree, mid-implementer: the zygote (the owner) is gone
        assert Path(ws["path"]).is_dir()
        gate.write_text("open")
        d = factoryd(text, env=env).start(wait_ready=False)

        def closed() -> bool:
            return json.loads(beads.read_text().splitlines()[0])["status"] == "closed"

        wait_until(closed, timeout=150, what="bd-1 closed after the restart")
        log = d.log()
        [detached] = [r for r in records(log, "workspaces", "workspace_orphan")
                      if r["id"] == ws["id"]]  # fmt: skip
        assert detached["action"] == "detached", detached
        [adopted] = records(log, "workspaces", "workspace_adopted")
        assert adopted["workspace"]["id"] == ws["id"]
        state = ["--state-dir", str(d.tmp / "state")]
        code, out, err = d.ctl(*state, "loops", "--json")
        assert code == 0, err
        [loop] = json.loads(out)["loops"]
        assert (loop["phase"], loop["workspace"]) == ("complete", ws["path"]), loop
        head = git(spec.golden, "rev-parse", "main").strip()
        assert "return 2 * x" in git(spec.golden, "show", "main:feature.py")
        assert git(spec.golden, "merge-base", "--is-ancestor", start, head) == ""
        assert git(seed, "rev-parse", "main").strip() == start  # the seed is not written
        d.stop()
        assert d.proc.returncode == 0
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)
        teardown_ramdisk(spec)
