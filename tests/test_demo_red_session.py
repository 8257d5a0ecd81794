"""The demo's red golden episode, piece by piece: the teammate's culprit really turns the
project red, the recorded fix answers do what the demo says (two right diffs, prose, a
wrong diff), the recorded fix model answers the router's llama.cpp client by variant,
and the episode's summary reads each mutator's end from factoryd's log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from procs.demo.episode import mutator_outcomes
from procs.demo.fix_model import RecordedFixModel
from procs.demo.recorded import PROJECT, SESSION
from procs.demo.red_session import FIX_ANSWERS, TEAMMATE, fix_answer
from procs.llm.llama_cpp import LlamaCppClient
from procs.llm.types import LLMRequest
from procs.synapse.prompt import NotADiff, extract_diff, touches_tests

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    return done.stdout


def _green(repo: Path) -> bool:
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=repo, capture_output=True, text=True, timeout=60, check=False,
                          env=env)  # fmt: skip
    return done.returncode == 0


def _landed_project(path: Path) -> None:
    """The project as it is once the three beads landed (each role's last writes)."""
    files = dict(PROJECT)
    for bead in SESSION.values():
        for step in bead["auditor"]:
            files.update(step.get("write", {}))
        for tries in bead["implementer"]:
            files.update(tries[-1].get("write", {}))
    for relpath, text in files.items():
        (path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (path / relpath).write_text(text)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "landed")


@pytest.mark.integration  # runs git and pytest
def test_the_culprit_turns_golden_red_and_the_recorded_fixes_do_what_the_demo_says(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "golden"
    repo.mkdir()
    _landed_project(repo)
    assert _green(repo)
    verdicts = []
    for message, files in TEAMMATE:
        for relpath, text in files.items():
            (repo / relpath).write_text(text)
        _git(repo, "commit", "-qam", message)
        verdicts.append(_green(repo))
    assert verdicts == [True, False, False]  # the second commit is the culprit
    red = _git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(NotADiff):
        extract_diff(FIX_ANSWERS[1])
    results = {}
    for i in (0, 2, 3):
        diff = extract_diff(FIX_ANSWERS[i])
        assert not touches_tests(diff)
        _git(repo, "checkout", "-q", "--force", red)
        (tmp_path / "fix.diff").write_text(diff)
        _git(repo, "apply", str(tmp_path / "fix.diff"))
        results[i] = _green(repo)
    assert results == {0: True, 2: False, 3: True}


def test_the_recorded_fix_model_answers_a_llama_cpp_client_by_variant() -> None:
    model = RecordedFixModel().start()
    client = LlamaCppClient("recorded", model.base_url)
    try:
        for variant in (1, 2, 5):
            prompt = f"Fix it.\nVariant {variant} of 8. Approach: any\nRules: a diff"
            reply = client.complete(LLMRequest(model="", prompt=prompt, max_tokens=64), timeout=10)
            assert reply.content == fix_answer(variant)
            assert reply.usage.output_tokens > 0 and reply.model == "recorded-fix"
        assert fix_answer(5) == fix_answer(1)  # four answers, round and round
        reply = client.complete(
            LLMRequest(model="", prompt="no variant here", max_tokens=8), timeout=10
        )
        assert reply.content == "No variant in the prompt."
        assert model.asked() == 4
        url = model.base_url
        assert httpx.post(f"{url}/v1/chat/completions", json={}, timeout=5).status_code == 404
        bad = httpx.post(f"{url}/completion", content=b"{not json", timeout=5)
        assert bad.status_code == 400 and "bad request" in bad.json()["error"]["message"]
    finally:
        client.close()
        model.stop()
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{url}/completion", json={"prompt": "x"}, timeout=2)


def test_each_mutator_s_end_is_read_from_factoryd_s_log(tmp_path: Path) -> None:
    gen = "abc123abc123-1"

    def line(child: str, **record: object) -> str:
        return f"[{child}] " + json.dumps({"service": "mutator", "generation": gen, **record})

    log = tmp_path / "factoryd.log"
    log.write_text("\n".join([
        line("mutators.1", event="asking", variant=0),
        line("mutators.2", event="asking", variant=1),
        line("mutators.2", event="gave_up", variant=1, step="format", reason="not a diff"),
        line("mutators.3", event="asking", variant=2),
        line("mutators.3", event="gave_up", variant=2, step="failing",
             reason="still red with the fix: E   assert 4 == 5"),
        line("mutators.4", event="asking", variant=3),
        line("mutators.4", event="decided", variant=3, state="accepted", landed_hash="f" * 40),
        line("mutators.9", event="gave_up", variant=0, step="x", reason="another generation")
        .replace(gen, "other-1"),
        "factoryd {not json " + gen,
    ]) + "\n")  # fmt: skip
    assert mutator_outcomes(log, gen) == {
        0: "stopped (by the synapse, before it had an answer)",
        1: "gave up at format: not a diff",
        2: "gave up at failing: still red with its diff",
        3: f"its fix landed as {'f' * 10}",
    }
    assert mutator_outcomes(tmp_path / "missing.log", gen) == {}
