"""The start of an agent turn after the first, with one kept agent per loop (issue 11's
goal: <= 50 ms; a process per turn costs opencode's start, ~4.4 s, plus session/new).

Real opencode (`opencode acp --pure`, offline, as in tests/test_acp_opencode.py) behind
the loop's KeptAgentTurns (procs/loop/kept_agent.py: the service `procs.agent.service
--serve` keeps the agent, a new session per turn under the turn's role policy). Its
model is the OpenAI-compatible TEST DOUBLE (tests/doubles/openai_chat.py), which here
also stamps when each request arrives. The workspace is a small git repo, as a loop's
is. Each turn is one scripted text reply ("done"); the roles rotate implementer,
auditor, architect, so every turn is a new session under another policy. Between turns
the bench waits --gap-s (default 1 s), as a loop does while it runs the tests (~1.3 s
a suite run under bwrap, bench/loop.py): the next session is opened in that time.

Per turn (perf_counter/monotonic, one clock, the double runs in this process):
  request -> first model request  from the loop's call (KeptAgentTurns.<role>(turn):
        the request line, the service's new session, session/prompt, opencode's own
        work up to its first chat-completions call with tools) to that call's arrival
        at the double, minus the model time of any answer finished before it (opencode's
        title request, without tools, may come first). This is the turn start as the
        model sees it; opencode's own share in it is not ours to cut.
  session ready  inside the service: from the request to the session with its policy
        (session/new was opened ahead of the turn, so normally just the policy's).
  ours / opencode's  that split where the service sends session/prompt (its
        time.monotonic(), one clock across processes): our share is the request line,
        the session with its policy and the prompt's send; opencode's is its own work
        from session/prompt to its first model call.
  loop overhead  the loop's wall time of the turn minus the service's prompt wall time:
        what the kept agent adds to a turn in all (request and result lines, the
        session, its end).
First turn (the agent's start) apart. Median and p95 (nearest rank) of the later turns.
Memory: RSS of the agent's process tree (opencode and its children) after the first turn
and after the last (does a kept agent grow with its sessions?), and of the service.
With --baseline-turns N, N turns through ProcessTurns (a service + opencode per turn)
for comparison, measured the same way.

    python3 bench/agent_turns.py [--turns 12] [--gap-s 1.0] [--baseline-turns 2]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
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

from procs.agent.opencode import opencode_command, write_opencode_setup  # noqa: E402
from procs.loop import FactoryLoopState  # noqa: E402
from procs.loop.agent_process import ProcessTurns  # noqa: E402
from procs.loop.kept_agent import KeptAgentTurns  # noqa: E402
from procs.loop.turns import Turn  # noqa: E402
from tests.doubles.openai_chat import (  # noqa: E402
    ChatCompletionsDouble,
    RecordedRequest,
    Reply,
    TextReply,
)

GOAL_MS = 50.0
ROLES = ("implementer", "auditor", "architect")


class StampedDouble(ChatCompletionsDouble):
    """The model double, noting when each request arrived (time.monotonic)."""

    def __init__(self) -> None:
        super().__init__([])
        self.arrivals: list[tuple[float, RecordedRequest]] = []

    def _next_reply(self, body: dict[str, Any]) -> tuple[Reply, RecordedRequest]:
        arrived = time.monotonic()
        reply, record = super()._next_reply(body)
        self.arrivals.append((arrived, record))
        return reply, record

    def first_scripted_since(self, began: float) -> tuple[float, float]:
        """(arrival of the first request with tools after `began`, model time of the
        answers that ended before it)."""
        for arrived, record in list(self.arrivals):
            if arrived >= began and record.scripted:
                before = sum(
                    r.served_s for a, r in self.arrivals
                    if began <= a and a + r.served_s <= arrived and not r.scripted
                )  # fmt: skip
                return arrived, before
        raise RuntimeError("no model request with tools in the turn")


def tree_rss_mb(pid: int | None) -> float:
    """RSS of `pid` and its descendants, MB (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / (1024 * 1024)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"median {statistics.median(values):7.1f}  p95 {p95(values):7.1f}  "
        f"min {min(values):7.1f}  max {max(values):7.1f}  (n={len(values)}) ms"
    )


def make_turn(ws: Path, role: str) -> Turn:
    state = FactoryLoopState(
        loop_id="bench", bead_id="b", attempt=1, workspace=str(ws), golden_hash="a" * 40
    )
    return Turn(role=role, workspace=ws, system_prompt="", prompt="say done", state=state)


def make_repo(ws: Path) -> None:
    """A loop's workspace in small: code, a test, a pytest.ini, one commit."""
    (ws / "tests").mkdir(parents=True)
    (ws / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (ws / "tests" / "test_calc.py").write_text(
        "import calc\n\n\ndef test_add():\n    assert calc.add(2, 3) == 5\n"
    )
    (ws / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@factory.invalid",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@factory.invalid"}  # fmt: skip
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run(["git", *argv], cwd=ws, env=env, check=True, timeout=60)


def run_turns(
    turns: Any, double: StampedDouble, ws: Path, count: int, gap_s: float
) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for n in range(count):
        if n:
            time.sleep(gap_s)  # the loop's own work between turns (its test run)
        role = ROLES[n % len(ROLES)]
        double.set_script([TextReply("done")])
        began = time.monotonic()
        reply = getattr(turns, role)(make_turn(ws, role))
        ended = time.monotonic()
        assert reply.text == "done", reply
        first, model_before = double.first_scripted_since(began)
        row = {"wall": ended - began, "first_model": first - began - model_before}
        last = getattr(turns, "last_answer", None)
        if last is not None:
            row["session"] = last["session_s"]
            row["overhead"] = (ended - began) - last["result"]["wall_s"]
            row["ours"] = last["prompt_sent_at"] - began
            row["opencode"] = first - last["prompt_sent_at"] - model_before
        row = {k: v * 1000 for k, v in row.items()}
        stats_of = getattr(turns, "statistics", None)
        if stats_of is not None:
            now = stats_of()
            row["agent_mb"] = tree_rss_mb(now["agent_pid"])
            row["service_mb"] = tree_rss_mb(now["service_pid"]) - row["agent_mb"]
        rows.append(row)
    return rows


class RecordingKeptTurns(KeptAgentTurns):
    """KeptAgentTurns keeping the service's last answer (for its session and wall times)."""

    last_answer: dict[str, Any] | None = None

    def _reply(self, turn: Turn, answer: dict[str, Any]) -> Any:
        self.last_answer = answer
        return super()._reply(turn, answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=12, help="turns on the kept agent (>= 2)")
    parser.add_argument("--gap-s", type=float, default=1.0, help="pause between turns")
    parser.add_argument("--baseline-turns", type=int, default=2, help="ProcessTurns turns")
    args = parser.parse_args()
    if args.turns < 2:
        parser.error("--turns must be >= 2")
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "opencode"
    binary = str(local) if local.exists() else shutil.which("opencode")
    if binary is None:
        raise SystemExit("opencode is not installed (.ci/run installs opencode-ai into .ci/node)")
    load = os.getloadavg()
    print(f"bench/agent_turns.py: real opencode, model TEST DOUBLE; {os.cpu_count()} CPUs, "
          f"load {load[0]:.2f}/{load[1]:.2f}")  # fmt: skip
    double = StampedDouble()
    with tempfile.TemporaryDirectory(prefix="bench-agent-turns-") as tmp, double:
        root = Path(tmp)
        ws = root / "ws"
        make_repo(ws)
        env = write_opencode_setup(root / "home", double.base_url, double.model)
        command = opencode_command(binary)
        with RecordingKeptTurns(command, env=env, sandbox_mode="none", timeout_s=120.0) as kept:
            rows = run_turns(kept, double, ws, args.turns, args.gap_s)
            starts = kept.statistics()["agent_starts"]
        first, later = rows[0], rows[1:]
        print(f"\nKeptAgentTurns: {args.turns} turns, {starts} agent start(s), roles rotating, "
              f"{args.gap_s} s between turns")  # fmt: skip
        print(f"  first turn (agent start)        wall {first['wall']:.0f} ms, "
              f"to first model request {first['first_model']:.0f} ms")  # fmt: skip
        for label, key in (
            ("request -> first model request", "first_model"),
            ("  of which ours: -> session/prompt", "ours"),
            ("  of which opencode's", "opencode"),
            ("session ready (service)", "session"),
            ("loop overhead (wall - prompt)", "overhead"),
            ("wall", "wall"),
        ):
            print(f"  later turns, {label:<36} {stats([r[key] for r in later])}")
        print(f"  RSS: agent tree {first['agent_mb']:.0f} MB after the first turn, "
              f"{rows[-1]['agent_mb']:.0f} MB after turn {len(rows)}; the service "
              f"{rows[-1]['service_mb']:.0f} MB")  # fmt: skip
        for what, key in (("request -> first model request", "first_model"),
                          ("our share (request -> session/prompt)", "ours")):  # fmt: skip
            value = p95([r[key] for r in later])
            verdict = "meets" if value <= GOAL_MS else "misses"
            print(f"  goal <= {GOAL_MS:.0f} ms, {what}: p95 {value:.1f} ms {verdict} it")
        if args.baseline_turns > 0:
            # ProcessTurns runs the service in the workspace: procs/ must be on its path.
            process_env = {**env, "PYTHONPATH": str(ROOT)}
            process = ProcessTurns(command, env=process_env, sandbox_mode="none", timeout_s=120.0)
            base = run_turns(process, double, ws, args.baseline_turns, args.gap_s)
            print(f"\nProcessTurns (a service + opencode per turn): {args.baseline_turns} turns")
            print(f"  request -> first model request  {stats([r['first_model'] for r in base])}")
            print(f"  wall                            {stats([r['wall'] for r in base])}")


if __name__ == "__main__":
    main()
