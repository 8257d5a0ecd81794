"""A loop runs the agent its config names, `[loop] agent = "codex"` or `"claude"`, end to
end with the real agent from npm (codex-acp, claude-agent-acp): `python -m procs.loop
run` reads the profile (its command, found on PATH; its model protocol: OpenAI Responses
or Anthropic Messages), starts its own model gateway in front of [loop.model] (kind
"openai" or "anthropic") and hands the agent the gateway's URL for that protocol and
the loop's token, configured offline in a private HOME. The model is a TEST DOUBLE
(tests/doubles/role_tools.py) playing the roles with the agent's own edits (a new test
file, then an edit of an existing module; each one a permission request the role's
policy grants). The bead ends in one green commit on the repo's branch, and the gateway
counted exactly what the double served, per role.

Skips, naming the package, when an agent is not installed (.ci/run installs them into
.ci/node).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.doubles.role_tools import (
    Action,
    ClaudeRoleModel,
    CodexRoleModel,
    RoleTurn,
    add_file,
    append_to,
    claude_write,
)
from tests.helpers.loop_repos import CALC, TEST_COMMAND, make_project
from tests.helpers.repos import git
from tests.helpers.sandbox import sandbox_mode

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
RUN_TIMEOUT_S = 240
pytestmark = pytest.mark.integration  # the agent, the loop, its gateway, sandboxed pytest

TEST_DOUBLE = "import calc\n\n\ndef test_double():\n    assert calc.double(2) == 4\n"
DOUBLE = "\n\ndef double(x):\n    return 2 * x"
BEAD = {"id": "bd-double", "title": "double", "status": "open",
        "description": "calc gains double(x): twice x."}  # fmt: skip
LOOP_ID = f"oneshot-{BEAD['id']}"  # the runner's workspace: STATE/workspaces/LOOP_ID


def turns(test: tuple[Action, ...], code: tuple[Action, ...]) -> dict[str, list[RoleTurn]]:
    """The bead's turns: the auditor's test (action `test`), the implementer's code
    (actions `code`), the auditor's "complete", the reviewer's approval."""
    return {
        "auditor": [
            RoleTurn(test, {"status": "test_written", "test": "tests/test_double.py::test_double",
                            "reasoning": "drives double"}),
            RoleTurn((), {"status": "requirements_complete", "reasoning": "double: tested"}),
        ],
        "implementer": [
            RoleTurn(code, {"status": "implemented", "summary": "double(x) = 2 * x"}),
        ],
        "reviewer": [RoleTurn((), {"status": "approve", "issues": []}, "Correct.")],
    }  # fmt: skip


def codex(workspace: Path) -> CodexRoleModel:
    return CodexRoleModel(turns((add_file("tests/test_double.py", TEST_DOUBLE),),
                                (append_to("calc.py", "    return a + b", DOUBLE),)))  # fmt: skip


def claude(workspace: Path) -> ClaudeRoleModel:
    # Claude writes an existing file only after it read it
    calc = str(workspace / "calc.py")
    code: tuple[Action, ...] = ({"tool": "Read", "input": {"file_path": calc}},
                                 claude_write(calc, CALC + DOUBLE + "\n"))  # fmt: skip
    return ClaudeRoleModel(turns((claude_write(str(workspace / "tests/test_double.py"),
                                               TEST_DOUBLE),), code))  # fmt: skip


AGENTS: dict[str, tuple[str, str, str, Callable[[Path], CodexRoleModel | ClaudeRoleModel]]] = {
    # [loop] agent -> (its command, its npm package, [loop.model] kind, the double)
    "codex": ("codex-acp", "@zed-industries/codex-acp", "openai", codex),
    "claude": ("claude-agent-acp", "@agentclientprotocol/claude-agent-acp", "anthropic", claude),
}


@pytest.mark.parametrize("agent", list(AGENTS))
def test_a_loop_configured_for_an_agent_lands_a_green_commit_through_it(
    agent: str, tmp_path: Path
) -> None:
    command, package, kind, double = AGENTS[agent]
    binary = str(BIN / command) if (BIN / command).exists() else shutil.which(command)
    if binary is None:
        pytest.skip(f"{command} not installed (.ci/run installs {package} into .ci/node)")
    repo = make_project(tmp_path / "repo")
    start = git(repo, "rev-parse", "HEAD").strip()
    beads = tmp_path / "issues.jsonl"
    beads.write_text(json.dumps(BEAD) + "\n")
    model = double(tmp_path / "state" / "workspaces" / LOOP_ID)
    model.start()
    try:
        config = tmp_path / "loop.toml"
        config.write_text(
            f'[loop]\nagent = "{agent}"\n'  # its command is found on PATH
            f"test_command = {json.dumps(list(TEST_COMMAND))}\n"
            f'sandbox = "{sandbox_mode()}"\nturn_timeout_s = 120\nsuite_timeout_s = 120\n'
            'reviewer = "agent"\n'
            f'[loop.model]\nkind = "{kind}"\nbase_url = "{model.base_url}"\n'
            'model = "double-model"\n'
        )
        path = f"{Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FACTORY_RUNTIME_DIR": str(tmp_path / "run"),
               "PATH": path, "ANTHROPIC_API_KEY": "the-double-ignores-it"}  # fmt: skip
        argv = [sys.executable, "-m", "procs.loop", "run", "--repo", str(repo), "--beads",
                str(beads), "--bead", BEAD["id"], "--config", str(config), "--state-dir",
                str(tmp_path / "state"), "--json"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=RUN_TIMEOUT_S, check=False)  # fmt: skip
    finally:
        model.stop()
    why = (f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}\n"
           f"off script: {model.off_script}\ntool results: {model.tool_results}")  # fmt: skip
    assert done.returncode == 0, why
    report = json.loads(done.stdout)
    assert report["phase"] == "complete", why
    assert [h["event"] for h in report["history"]] == [
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "RequirementsComplete", "ReviewDone", "Pushed",
    ], why  # fmt: skip
    assert model.off_script == []
    assert {role: len(p) for role, p in model.prompts.items()} == {
        "auditor": 2, "implementer": 1, "reviewer": 1,
    }  # fmt: skip
    landed = git(repo, "rev-list", f"{start}..main").split()
    assert len(landed) == report["commits"] == 1
    assert (repo / "calc.py").read_text() == CALC + DOUBLE + "\n"
    assert (repo / "tests" / "test_double.py").read_text() == TEST_DOUBLE
    # the runner's gateway counted every call the double answered
    usage = report["model_usage"]
    assert usage["used_tokens"] == model.tokens["input"] + model.tokens["output"], usage
    assert sum(r["calls"] for r in usage["roles"].values()) == len(model.requests), usage
    assert set(usage["roles"]) == {"auditor", "implementer", "reviewer"}, usage
