"""ACP turn overhead of our client, with the model's time taken out.

Two measurements, N turns each in one session:
  scripted  our AcpAgent against the scripted ACP TEST DOUBLE agent (tests/doubles/
            acp_agent.py): one turn = session/prompt, one fs/write_text_file call back
            through our handler (role check + atomic write), one session/update, the reply.
            Nearly everything measured is our client plus the JSON-RPC stdio wire.
  opencode  real opencode (`opencode acp --pure`) whose model is the OpenAI-compatible
            TEST DOUBLE: each turn is a `write` tool call (edit permission decided by our
            policy, fs/write_text_file mirror) then a text reply. We report the turn's wall
            time, the time the model double spent answering (model time), the rest
            (opencode + our client), and the time spent inside our client's handlers.

    python bench/acp_turn.py [--turns 20] [--skip-opencode]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procs.agent import AcpAgent, RolePolicy  # noqa: E402
from procs.agent.client import FactoryClient  # noqa: E402
from procs.agent.opencode import opencode_command, write_opencode_setup  # noqa: E402
from tests.doubles.openai_chat import ChatCompletionsDouble, TextReply, ToolCallReply  # noqa: E402

HANDLERS = ("request_permission", "write_text_file", "read_text_file", "session_update")


class HandlerClock:
    """Sums the wall time spent inside FactoryClient's handlers (our share of a turn)."""

    def __init__(self) -> None:
        self.total_s = 0.0
        for name in HANDLERS:
            original = getattr(FactoryClient, name)
            setattr(FactoryClient, name, self._wrap(original))

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.total_s += time.perf_counter() - began

        return timed


def report(name: str, samples_ms: list[float]) -> None:
    median = statistics.median(samples_ms)
    p95 = statistics.quantiles(samples_ms, n=20)[18] if len(samples_ms) >= 2 else median
    print(f"  {name:<28} median {median:8.2f} ms   p95 {p95:8.2f} ms")


async def scripted(turns: int, clock: HandlerClock) -> None:
    ws = Path(tempfile.mkdtemp(prefix="bench-acp-ws-"))
    agent = await AcpAgent.start(
        [sys.executable, "-m", "tests.doubles.acp_agent"], workspace=ws,
        policy=RolePolicy.for_role("implementer"),
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
    )  # fmt: skip
    walls, ours = [], []
    try:
        await agent.new_session()
        for i in range(turns + 3):
            ops = [{"op": "write", "path": str(ws / "src" / f"m{i}.py"), "content": "x = 1\n"}]
            before = clock.total_s
            result = await agent.prompt(json.dumps(ops), timeout=30)
            assert result.stop_reason == "end_turn", result.stop_reason
            if i >= 3:  # warm-up turns dropped
                walls.append(result.wall_s * 1000)
                ours.append((clock.total_s - before) * 1000)
    finally:
        await agent.close()
    print(f"scripted ACP agent, {turns} turns (1 fs/write_text_file each):")
    report("turn wall time", walls)
    report("inside our handlers", ours)


async def opencode(binary: str, turns: int, clock: HandlerClock) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-acp-oc-"))
    ws = tmp / "ws"
    ws.mkdir()
    with ChatCompletionsDouble([]) as double:
        env = write_opencode_setup(tmp / "home", double.base_url, double.model)
        began = time.perf_counter()
        agent = await AcpAgent.start(
            opencode_command(binary), workspace=ws, policy=RolePolicy.for_role("implementer"),
            env=env, timeout=120,
        )  # fmt: skip
        started = time.perf_counter() - began
        walls, model, rest, ours = [], [], [], []
        try:
            began = time.perf_counter()
            await agent.new_session(timeout=120)
            new_session = time.perf_counter() - began
            for i in range(turns + 2):
                target = str(ws / "src" / f"m{i}.py")
                double.set_script(
                    [ToolCallReply("write", {"filePath": target, "content": f"x = {i}\n"}),
                     TextReply("done")]
                )  # fmt: skip
                model_before, ours_before = double.model_time_s(), clock.total_s
                result = await agent.prompt(f"write {target}", timeout=120)
                assert result.stop_reason == "end_turn", result.stop_reason
                assert Path(target).exists()
                if i >= 2:
                    model_s = double.model_time_s() - model_before
                    walls.append(result.wall_s * 1000)
                    model.append(model_s * 1000)
                    rest.append((result.wall_s - model_s) * 1000)
                    ours.append((clock.total_s - ours_before) * 1000)
        finally:
            await agent.close()
    print(f"opencode {agent.agent_info.get('version', '?')}, {turns} turns "
          "(write tool call + text reply):")  # fmt: skip
    print(f"  start+initialize {started * 1000:.0f} ms, session/new {new_session * 1000:.0f} ms")
    report("turn wall time", walls)
    report("model double time", model)
    report("turn minus model", rest)
    report("inside our handlers", ours)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--skip-opencode", action="store_true")
    args = parser.parse_args()
    clock = HandlerClock()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    asyncio.run(scripted(args.turns * 5, clock))
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "opencode"
    binary = str(local) if local.exists() else shutil.which("opencode")
    if args.skip_opencode or binary is None:
        print("opencode: skipped" + ("" if binary else " (not installed)"))
        return
    asyncio.run(opencode(binary, args.turns, clock))


if __name__ == "__main__":
    main()
