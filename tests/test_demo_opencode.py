"""The demo's real opencode agents: the scripted role model answers the loop's real
prompts (procs/loop/prompts.py) with the recorded session's turns as opencode `write`
calls and FACTORY_RESULT lines, over OpenAI chat completions as opencode asks (SSE);
and opencode is found on PATH, in the local cache, or installed there by npm, with a
plain reason when it cannot be had."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from procs.demo import opencode_cache
from procs.demo.recorded import BEADS, SESSION
from procs.demo.role_model import RecordedRoleModel, answer
from procs.loop import prompts


def _prompt(role: str, bead: str, **context: Any) -> str:
    description = next(b["description"] for b in BEADS if b["id"] == bead)
    common = {"language": "python", "test_command": "pytest -q", "requirements": description}
    fill = {
        "auditor": {**common, "refactor_interval": 3, "last_feedback": ""},
        "implementer": {**common, "auditor_reasoning": "drives it", "test_output": "F",
                        "max_attempts": 3},
        "architect": {"language": "python", "test_command": "pytest -q", "greens": 1,
                      "session_history": "-", "hard_limits": {}, "cupid_properties": [],
                      "lines_before": 1, "lines_now": 1},
        "reviewer": {"requirements": description, "statistics": {}, "diff": "-"},
    }[role]  # fmt: skip
    return prompts.system_prompt(role) + "\n\n" + prompts.render(role, **fill, **context)


def _turn(prompt: str) -> tuple[list[dict[str, Any]], str]:
    """Ask as opencode does, one request per tool call, until the final text."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    calls: list[dict[str, Any]] = []
    for _ in range(10):
        text, call = answer(messages)
        if call is None:
            return calls, text
        calls.append(call)
        messages += [{"role": "assistant", "content": None}, {"role": "tool", "content": "ok"}]
    raise AssertionError("no final text after 10 tool calls")


def _result(text: str) -> dict[str, Any]:
    last = text.strip().splitlines()[-1]
    assert last.startswith("FACTORY_RESULT "), text
    return dict(json.loads(last.removeprefix("FACTORY_RESULT ")))


def test_the_role_model_answers_the_loop_s_prompts_with_the_recorded_turns() -> None:
    session = SESSION["ts-2"]
    calls, text = _turn(_prompt("auditor", "ts-2", iteration=1))
    assert calls == [{"name": "write", "arguments": {
        "filePath": "tests/test_sentences.py",
        "content": session["auditor"][0]["write"]["tests/test_sentences.py"]}}]  # fmt: skip
    assert _result(text) == session["auditor"][0]["result"]
    calls, text = _turn(_prompt("auditor", "ts-2", iteration=2))
    assert calls == [] and _result(text)["status"] == "requirements_complete"
    for attempt in (1, 2):  # the wrong try first, as recorded
        calls, text = _turn(_prompt("implementer", "ts-2", attempt=attempt))
        step = session["implementer"][0][attempt - 1]
        assert [c["arguments"]["content"] for c in calls] == list(step["write"].values())
        assert _result(text) == step["result"]
    calls, text = _turn(_prompt("implementer", "ts-3", attempt=1))
    assert [c["arguments"]["filePath"] for c in calls] == ["textstats/top.py"]
    assert _result(_turn(_prompt("architect", "ts-1"))[1])["status"] == "refactored"
    assert _result(_turn(_prompt("reviewer", "ts-3"))[1])["status"] == "approve"
    unknown = _prompt("auditor", "ts-1", iteration=1).replace(BEADS[0]["description"], "?")
    assert _result(_turn(unknown)[1]) == {"status": "no_recording"}
    assert _result(_turn("Hello there")[1]) == {"status": "no_recording"}


def test_the_role_model_serves_chat_completions_as_opencode_asks() -> None:
    model = RecordedRoleModel().start()
    prompt = _prompt("implementer", "ts-1", attempt=1)
    body = {"model": model.model, "messages": [{"role": "user", "content": prompt}],
            "tools": [{"type": "function", "function": {"name": "write"}}]}  # fmt: skip
    try:
        url = model.base_url
        streamed = httpx.post(f"{url}/chat/completions", json={**body, "stream": True}, timeout=5)
        events = [json.loads(line[6:]) for line in streamed.text.splitlines()
                  if line.startswith("data: {")]  # fmt: skip
        call = events[0]["choices"][0]["delta"]["tool_calls"][0]
        assert call["function"]["name"] == "write" and call["index"] == 0
        assert json.loads(call["function"]["arguments"])["filePath"] == "textstats/counts.py"
        assert events[1]["choices"][0]["finish_reason"] == "tool_calls"
        assert streamed.text.rstrip().endswith("data: [DONE]")
        whole = httpx.post(f"{url}/chat/completions", json={**body, "tools": []}, timeout=5)
        assert whole.json()["choices"][0]["message"]["content"] == "Scripted title"
        assert httpx.post(f"{url}/embeddings", json=body, timeout=5).status_code == 404
        bad = httpx.post(f"{url}/chat/completions", content=b"{nope", timeout=5)
        assert bad.status_code == 400 and "bad request" in bad.json()["error"]["message"]
        assert model.requests == 2  # the bad one is not a request
    finally:
        model.stop()


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_opencode_is_found_on_path_then_in_the_cache_then_installed_by_npm(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    bin_dir, cache_home = tmp_path / "bin", tmp_path / "cache"
    env = {"PATH": str(bin_dir), "XDG_CACHE_HOME": str(cache_home)}
    cached = cache_home / "factory" / "npm" / "node_modules" / ".bin" / "opencode"
    # no opencode, no npm: said plainly
    binary, note = opencode_cache.find_or_install(env, said.append)
    assert binary is None and "npm is not either" in note
    # a failing npm: its exit and last line
    _executable(bin_dir / "npm", "#!/bin/sh\necho 'npm ERR! network unreachable' >&2\nexit 7\n")
    binary, note = opencode_cache.find_or_install(env, said.append)
    assert binary is None and "exit 7: npm ERR! network unreachable" in note
    # an npm that installs: the package pinned, into the cache (--prefix)
    installs = (f'#!/bin/sh\necho "$@" > {tmp_path}/npm-args\nmkdir -p {cached.parent}\n'
                f'printf "#!/bin/sh\\n" > {cached} && chmod +x {cached}\n')  # fmt: skip
    _executable(bin_dir / "npm", installs)
    binary, note = opencode_cache.find_or_install(env, said.append)
    assert binary == str(cached) and "installed into the local cache" in note
    args = (tmp_path / "npm-args").read_text().split()
    assert args[:3] == ["install", "--prefix", str(cached.parents[2])]
    assert args[-1] == opencode_cache.PACKAGE == "opencode-ai@1.18.33"
    assert said and all("installing opencode-ai@1.18.33" in line for line in said)
    # cached: npm is not run again
    os.remove(tmp_path / "npm-args")
    binary, note = opencode_cache.find_or_install(env, said.append)
    assert binary == str(cached) and "local cache" in note
    assert not (tmp_path / "npm-args").exists()
    # on PATH first
    _executable(bin_dir / "opencode", "#!/bin/sh\n")
    binary, note = opencode_cache.find_or_install(env, said.append)
    assert binary == str(bin_dir / "opencode") and "on PATH" in note
