"""A loop whose config names its agent, `[loop] agent = "codex"`, runs real Codex
(codex-acp from npm) end to end: `python -m procs.loop run` reads the codex profile (its
command, its model protocol: OpenAI Responses), starts its own model gateway in front of
[loop.model] and hands Codex the gateway's /v1 URL and the loop's token, configured
offline in a private HOME. The model is a TEST DOUBLE (tests/doubles/codex_roles.py)
playing the roles with Codex's own edits (apply_patch: a new test file, then an edit of
an existing module; each one a permission request the role's policy grants). The bead
ends in one green commit on the repo's branch; the gateway counted exactly what the
double served.

Skips when codex-acp is not installed (.ci/run installs it into .ci/node).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doubles.codex_roles import CodexRoleModel, CodexTurn, add_file, append_to
from tests.helpers.loop_repos import CALC, TEST_COMMAND, make_project
from tests.helpers.repos import git
from tests.helpers.sandbox import sandbox_mode

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
CODEX = str(BIN / "codex-acp") if (BIN / "codex-acp").exists() else shutil.which("codex-acp")
RUN_TIMEOUT_S = 240
pytestmark = [
    pytest.mark.integration,  # codex, the loop, its gateway and sandboxed pytest as processes
    pytest.mark.skipif(
        CODEX is None,
        reason="codex-acp not installed (.ci/run installs @zed-industries/codex-acp into .ci/node)",
    ),
]

TEST_DOUBLE = "import calc\n\n\ndef test_double():\n    assert calc.double(2) == 4\n"
DOUBLE = "\n\ndef double(x):\n    return 2 * x"
BEAD = {"id": "bd-double", "title": "double", "status": "open",
        "description": "calc gains double(x): twice x."}  # fmt: skip
TURNS = {
    "auditor": [
        CodexTurn((add_file("tests/test_double.py", TEST_DOUBLE),),
                  {"status": "test_written", "test": "tests/test_double.py::test_double",
                   "reasoning": "drives double"}),
        CodexTurn((), {"status": "requirements_complete", "reasoning": "double: tested"}),
    ],
    "implementer": [
        CodexTurn((append_to("calc.py", "    return a + b", DOUBLE),),
                  {"status": "implemented", "summary": "double(x) = 2 * x"}),
    ],
    "reviewer": [CodexTurn((), {"status": "approve", "issues": []}, "Correct.")],
}  # fmt: skip


def test_a_loop_configured_for_codex_lands_a_green_commit_through_real_codex(
    tmp_path: Path,
) -> None:
    assert CODEX is not None
    repo = make_project(tmp_path / "repo")
    start = git(repo, "rev-parse", "HEAD").strip()
    beads = tmp_path / "issues.jsonl"
    beads.write_text(json.dumps(BEAD) + "\n")
    model = CodexRoleModel(TURNS)
    model.start()
    try:
        config = tmp_path / "loop.toml"
        config.write_text(
            '[loop]\nagent = "codex"\n'  # its command, codex-acp, is found on PATH
            f"test_command = {json.dumps(list(TEST_COMMAND))}\n"
            f'sandbox = "{sandbox_mode()}"\nturn_timeout_s = 120\nsuite_timeout_s = 120\n'
            'reviewer = "agent"\n'
            f'[loop.model]\nkind = "openai"\nbase_url = "{model.base_url}"\n'
            'model = "double-model"\n'
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FACTORY_RUNTIME_DIR": str(tmp_path / "run"),
               "PATH": f"{Path(CODEX).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
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
    # the runner's gateway counted every call the double answered, per role
    usage = report["model_usage"]
    assert usage["used_tokens"] == model.tokens["input"] + model.tokens["output"], usage
    assert sum(r["calls"] for r in usage["roles"].values()) == len(model.requests), usage
    assert set(usage["roles"]) == {"auditor", "implementer", "reviewer"}, usage
