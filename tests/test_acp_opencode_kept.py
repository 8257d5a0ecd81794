"""One real opencode (`opencode acp --pure`, offline) kept for a loop's turns, a new
session per turn under the turn's role: KeptAgentTurns through the real service. The
model is a local OpenAI-compatible TEST DOUBLE scripting the writes (as in
test_acp_opencode.py). The implementer's attempt at tests/ is refused and the file is
unchanged on disk, while the auditor's, on the same opencode process, is allowed; the
auditor's attempt at code is refused. Skips when opencode is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.agent.opencode import opencode_command, write_opencode_setup
from procs.loop import FactoryLoopState
from procs.loop.kept_agent import KeptAgentTurns
from procs.loop.turns import Turn
from tests.doubles.openai_chat import ChatCompletionsDouble, TextReply, ToolCallReply
from tests.test_acp_opencode import OPENCODE

pytestmark = [
    pytest.mark.integration,  # opencode, the service and the model double as processes
    pytest.mark.skipif(
        OPENCODE is None,
        reason="opencode not installed (.ci/run installs opencode-ai into .ci/node)",
    ),
]


def turn(ws: Path, role: str, prompt: str) -> Turn:
    state = FactoryLoopState(loop_id="l", bead_id="b", attempt=1, workspace=str(ws),
                             golden_hash="a" * 40)  # fmt: skip
    return Turn(role=role, workspace=ws, system_prompt="", prompt=prompt, state=state)


def test_two_roles_on_one_opencode_each_under_its_own_policy(tmp_path: Path) -> None:
    assert OPENCODE is not None
    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    test_file = ws / "tests" / "test_calc.py"
    test_file.write_text("# the auditor's\n")
    with ChatCompletionsDouble([]) as double:
        env = write_opencode_setup(tmp_path / "home", double.base_url, double.model)
        with KeptAgentTurns(opencode_command(OPENCODE), env=env, sandbox_mode="none",
                            timeout_s=60.0) as kept:  # fmt: skip
            double.set_script([
                ToolCallReply("write", {"filePath": str(test_file), "content": "cheat\n"}),
                ToolCallReply("write", {"filePath": str(ws / "calc.py"), "content": "X = 1\n"}),
                TextReply("implemented"),
            ])  # fmt: skip
            implementer = kept.implementer(turn(ws, "implementer", "implement calc"))
            agent_pid = kept.statistics()["agent_pid"]
            double.set_script([
                ToolCallReply("write", {"filePath": str(test_file), "content": "# red\n"}),
                ToolCallReply("write", {"filePath": str(ws / "calc.py"), "content": "X = 2\n"}),
                TextReply("audited"),
            ])  # fmt: skip
            auditor = kept.auditor(turn(ws, "auditor", "write one failing test"))
            stats = kept.statistics()
    assert (stats["agent_starts"], stats["agent_pid"]) == (1, agent_pid)
    assert implementer.text == "implemented" and auditor.text == "audited"
    assert implementer.outcome == auditor.outcome == "refused"
    assert implementer.refusals == ("role implementer may not write tests (tests/test_calc.py)",)
    assert auditor.refusals == ("role auditor may not write non-test code (calc.py)",)
    assert test_file.read_text() == "# red\n"  # the implementer's cheat never reached it
    assert (ws / "calc.py").read_text() == "X = 1\n"  # the auditor's edit was refused
