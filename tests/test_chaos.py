"""The chaos soak's CI version: bench/chaos.py for 70 s with a fixed seed, every
invariant at zero.

The whole example factory (every service, the dispatcher, loops of real scripted agent
processes in the sandbox, the merge queue landing on golden) under a SIGKILL every 2 s
of a random service, loop, agent, mutator, zygote or factoryd itself (restarted as
systemd would), and a teammate's red commit on golden's upstream a third of the way in
(the synapse's mutators must fix it); then it settles, stops cleanly and is checked: no
bead lost or claimed twice, no golden commit red but the teammate's, which a fix
follows, nothing leaked (ledger, workspaces, worktrees, mounts, loop
devices, processes), every loop ended with a reason, every bead done, queued or
blocked with a reason. The figures are printed (pytest -s shows them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import ROOT
from tests.helpers.sandbox import skip_without_bwrap

pytestmark = pytest.mark.integration

DURATION_S = 70
SEED = 7
LIMIT_S = 420  # killing, settling (at most 180 s), checking, stopping: a bound, not a figure


def test_the_factory_keeps_every_invariant_under_random_sigkills() -> None:
    skip_without_bwrap()  # the example runs every test under bubblewrap
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--duration", str(DURATION_S),
         "--seed", str(SEED), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=LIMIT_S, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), f"no figures (exit {done.returncode}): {done.stderr[-3000:]}"
    figures = json.loads(done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1])
    print(json.dumps(figures, indent=1))
    broken = {name: v for name, v in figures["invariants"].items() if v["count"]}
    assert broken == {}, json.dumps(broken, indent=1)
    assert done.returncode == 0, done.stderr[-3000:]
    kills = figures["kills"]
    # the soak did kill, and across the tree: services, loops, agents and the tree itself
    assert figures["kills_total"] >= 10, kills
    assert kills["service"] and kills["loop"] and kills["agent"], kills
    assert kills["zygote"] + kills["factoryd"] >= 1, kills
    assert figures["beads"].get("closed", 0) >= 1, figures["beads"]  # work still landed
    assert figures["red_golden"]["fixed_by"], figures["red_golden"]  # and the swarm's fix
