"""`python -m procs.loop run` end to end: a bead from a JSONL file becomes green commits on
the person's repository through the real ACP client (one kept procs.agent.service --serve
per loop, a session per turn) driving a scripted ACP agent (a test double:
tests/doubles/tdd_agent.py), with the suite run by real pytest under bubblewrap and the
review asked of the real LLM router service (its reviewer role on an Anthropic Messages
test double); a second run resumes the ended loop and prints it again."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import orjson
import pytest

from ipc.control import call
from procs.loop import git
from procs.loop.cli import EXIT_COMPLETE, main
from tests.doubles._plan import Answer
from tests.doubles.anthropic_messages import AnthropicMessagesDouble
from tests.helpers.llm_router import router_process
from tests.helpers.loop_repos import CALC, make_project
from tests.helpers.sandbox import bwrap_unusable

pytestmark = pytest.mark.integration  # starts agents and sandboxed test runs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = {
    "module": "calc.py",
    "base": CALC.rstrip("\n"),
    "steps": [
        {"test_path": "tests/test_mul.py", "code": "def mul(a, b):\n    return a * b\n",
         "test": "import calc\n\n\ndef test_mul():\n    assert calc.mul(2, 3) == 6\n"},
        {"test_path": "tests/test_neg.py", "code": "def neg(a):\n    return -a\n",
         "test": "import calc\n\n\ndef test_neg():\n    assert calc.neg(4) == -4\n"},
    ],
}  # fmt: skip
REVIEW = 'Clean and tested.\nFACTORY_RESULT {"status": "approve", "issues": []}'
ROUTER = """
[roles]
reviewer = "anthropic"
[endpoints.anthropic]
kind = "anthropic"
model = "claude-haiku-4-5"
base_url = "{url}"
retries = 0
"""
BEAD = {"id": "bd-7", "title": "mul and neg", "status": "open",
        "description": "calc gains mul(a, b) and neg(a)."}  # fmt: skip


def test_a_bead_becomes_green_commits_on_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    repo = make_project(tmp_path / "repo")
    start = git.head(repo)
    (tmp_path / "issues.jsonl").write_text(json.dumps(BEAD) + "\n")
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    (tmp_path / "factory.toml").write_text(
        f'[loop]\ntest_command = ["{sys.executable}", "-m", "pytest", "-q"]\n'
        f'agent_command = ["{sys.executable}", "-m", "tests.doubles.tdd_agent"]\n'
        "refactor_interval = 2\nturn_timeout_s = 60\n"
        # the scripted agent reads its script from the host's /tmp, private in bwrap
        "sandbox_agent = false\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FACTORY_TDD_SCRIPT", str(tmp_path / "script.json"))
    monkeypatch.setenv("FACTORY_RUNTIME_DIR", str(tmp_path / "run"))
    argv = ["run", "--repo", str(repo), "--beads", str(tmp_path / "issues.jsonl"),
            "--bead", "bd-7", "--config", str(tmp_path / "factory.toml"),
            "--state-dir", str(tmp_path / "loops"), "--json"]  # fmt: skip
    out = io.StringIO()
    with AnthropicMessagesDouble() as anthropic:
        anthropic.plan.set_default(Answer(REVIEW, input_tokens=120, output_tokens=30))
        router = ROUTER.format(url=anthropic.base_url)
        with router_process(tmp_path, router, env={"ANTHROPIC_API_KEY": "test-key"}) as (_, sock):
            assert main(argv, out=out) == EXIT_COMPLETE, out.getvalue()
            usage = call(sock, "status", timeout=10)["usage_today"]["reviewer"]
            again = io.StringIO()  # the stored loop, printed again
            assert main(argv[:-1], out=again) == EXIT_COMPLETE
        review_prompt = anthropic.requests[-1]["messages"][-1]["content"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (120, 30)
    assert "You are the REVIEWER" in str(review_prompt) and "def mul" in str(review_prompt)
    report = orjson.loads(out.getvalue())
    reviews = [h["content"] for h in report["history"] if h["event"] == "ReviewDone"]
    assert reviews == [REVIEW]
    assert (report["phase"], report["greens"], report["commits"]) == ("complete", 2, 2)
    assert [h["event"] for h in report["history"]][-4:] == [
        "RefactorSkipped", "RequirementsComplete", "ReviewDone", "Pushed",
    ]  # fmt: skip
    assert len(git.commits_between(repo, start)) == 2
    assert "def neg" in (repo / "calc.py").read_text() and git.is_clean(repo)
    assert "oneshot-bd-7 complete" in again.getvalue()
