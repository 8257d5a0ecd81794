"""The README's first command, `python3 -m procs.demo`: the whole factory turns three
beads of a small project into commits on golden, then a teammate's commit turns golden
red and the swarm fixes it (the culprit named, exactly one fix on golden, no mutator
left); it says plainly that its agents and its fix model are scripted when no model is
configured, prints golden's log and the red episode, and exits 0. Ctrl-C stops
everything. The pure tests check what it writes: the configs factoryd, the loop and the
router accept, the model path's [loop.model], and the refusal when the example config
is gone."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import psutil
import pytest

from procs.demo import project
from procs.demo.red_session import CULPRIT_MESSAGE, TEAMMATE
from procs.llm.config import RouterConfig, default_config
from procs.loop.config import config_from
from supervisor.config import parse

ROOT = Path(__file__).resolve().parent.parent
NO_MODEL = ("FACTORY_DEMO_MODEL_URL", "FACTORY_DEMO_MODEL", "ANTHROPIC_API_KEY")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in NO_MODEL}


@pytest.mark.integration
def test_the_readme_demo_closes_three_beads_with_commits_on_golden() -> None:
    """The command as written: real opencode agents on the scripted model where opencode
    can be had (.ci/run puts it on PATH), else the in-process replay; said either way."""
    done = subprocess.run([sys.executable, "-m", "procs.demo"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=420, check=False)  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    if "MODEL IS SCRIPTED" in out:  # at the start and the end
        assert out.count("agents: real opencode agents (opencode ") == 2, out
        assert out.index("MODEL IS SCRIPTED") < out.index("factoryd is up")
    else:
        assert out.count("SCRIPTED AGENTS: no model is configured") == 2, out
    _assert_the_demo_went_as_it_must(out)


@pytest.mark.integration
def test_with_scripted_the_agents_replay_in_process() -> None:
    done = subprocess.run([sys.executable, "-m", "procs.demo", "--scripted"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=180,
                          check=False)  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert out.count("SCRIPTED AGENTS: no model is configured") == 2  # at the start and the end
    assert out.index("SCRIPTED AGENTS") < out.index("factoryd is up")
    assert "MODEL IS SCRIPTED" not in out and "npm" not in out
    _assert_the_demo_went_as_it_must(out)


def _assert_the_demo_went_as_it_must(out: str) -> None:
    log = out.split("$ git log --oneline main")[1].split("\nclosed beads:", maxsplit=1)[0]
    commits = re.findall(r"^([0-9a-f]{7,}) (.+)$", log, re.M)
    # the first commit, 3 beads, the teammate's 3, the swarm's one fix on top
    assert len(commits) == 8 and "textstats: the package" in commits[-1][1], log
    assert commits[0][1].startswith("synapse: fix ") and commits[1][1] == TEAMMATE[-1][0]
    assert [c[1] for c in commits].count(CULPRIT_MESSAGE) == 1
    culprit = next(c[0] for c in commits if c[1] == CULPRIT_MESSAGE)
    # golden red (the heartbeat's TestFailure), the culprit named, then green on the fix
    red = out.index("golden is RED at ")
    named = out.index(f"synapse: culprit {culprit}")
    green = out.index(f"golden is green again at {commits[0][0]}")
    assert red < named < green, out
    assert "tests/test_counts.py" in out[red : out.index("\n", red)]
    assert "mutators race to fix it" in out and "SCRIPTED FIX MODEL" in out
    episode = out.split("fixed by the swarm:\n")[1]
    assert re.search(r"mutators spawned: [1-4] \(swarm size [1-4]\); still running: 0", episode)
    assert re.search(rf'culprit: {culprit}\w* "{CULPRIT_MESSAGE}"', episode), episode
    assert f"fix: {commits[0][0]}" in episode and "fixes on golden: 1" in episode
    assert re.search(r"golden red for \d+\.\d s", episode)
    assert "its fix landed as" in episode
    closed = re.findall(r"^  (ts-\d)  closed +.+ landed as [0-9a-f]{10}$", out, re.M)
    assert closed == ["ts-1", "ts-2", "ts-3"]
    # ts-3 is blocked by ts-1: dispatched only once ts-1 is closed
    assert out.index("ts-1 closed") < out.index("ts-3 dispatched")
    assert "factoryd stopped (exit 0)" in out


@pytest.mark.integration
def test_ctrl_c_stops_the_factory_and_exits_130(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "procs.demo", "--dir", str(work), "--keep",
                             "--scripted"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded by the demo's own start timeout
            if "factoryd is up" in line:
                break
        tree = [p for p in psutil.process_iter(["cmdline"])
                if str(work / "factory.toml") in (p.info["cmdline"] or [])]  # fmt: skip
        assert len(tree) > 1  # factoryd and its zygote's forks
        proc.send_signal(signal.SIGINT)
        out = proc.stdout.read()
        assert proc.wait(timeout=90) == 130, out
        assert "interrupted (SIGINT): stopping the factory" in out
        assert [p.pid for p in tree if _alive(p)] == []
        assert (work / "factoryd.log").exists()  # --keep kept the work directory
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _specs(node: Any) -> list[Any]:
    children = getattr(node, "children", None)
    if children is None:
        return [node]
    return [node, *(s for c in children for s in _specs(c))]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_configs_it_writes_are_what_factoryd_the_loop_and_the_router_accept(
    tmp_path: Path,
) -> None:
    loop, router = tmp_path / "loop.toml", tmp_path / "router.toml"
    upstream = tmp_path / "upstream.git"
    for scripted, sandbox in ((True, "bwrap"), (False, "none")):
        text = project.factory_toml(tmp_path / "golden", tmp_path / "issues.jsonl", loop,
                                    upstream=upstream, router_config=router,
                                    scripted=scripted, sandbox=sandbox)  # fmt: skip
        config = parse(tomllib.loads(text))
        assert config.sandbox == sandbox
        assert (project.REPLAY in text) is scripted
        assert "/var/lib/factory" not in text and "/etc/factory/loop.toml" not in text
        specs = {c.id: c for c in _specs(config.tree)}
        golden = list(specs["golden"].start.args)
        assert golden[golden.index("--upstream") + 1] == str(upstream) and "--push" in golden
        assert float(golden[golden.index("--refresh-s") + 1]) > 0
        assert list(specs["llm_router"].start.args) == ["--config", str(router)]
        synapse = list(specs["synapse"].start.args)
        assert synapse[synapse.index("--swarm-size") + 1] == "4"
    routes = RouterConfig.from_dict(tomllib.loads(project.router_toml("http://127.0.0.1:9")))
    recorded = routes.endpoints[routes.roles["mutator"]]
    assert recorded.kind == "llama_cpp" and recorded.base_url == "http://127.0.0.1:9"
    assert set(default_config().roles) == set(routes.roles)
    loop_text = project.loop_toml(project.Agents(True, "no model"), "bwrap")
    replay = config_from(tomllib.loads(loop_text)["loop"])
    assert replay.model is None and replay.sandbox == "bwrap"


def test_with_a_model_url_the_loops_run_opencode_on_it_unmetered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {"FACTORY_DEMO_MODEL_URL": "http://127.0.0.1:8080/v1", "FACTORY_DEMO_MODEL": "qwen"}
    monkeypatch.setenv("PATH", str(tmp_path))  # no opencode: said why, and replayed
    agents = project.choose_agents(env)
    assert agents.scripted and "opencode is not on PATH" in agents.why
    (tmp_path / "opencode").write_text("#!/bin/sh\n")
    (tmp_path / "opencode").chmod(0o755)
    agents = project.choose_agents(env)
    assert not agents.scripted
    loop = config_from(tomllib.loads(project.loop_toml(agents, "none"))["loop"])
    assert loop.agent_command == ("opencode", "acp", "--pure")
    assert loop.model is not None and loop.model.base_url == env["FACTORY_DEMO_MODEL_URL"]
    assert loop.model.name == "qwen" and not loop.model.metered
    assert loop.sandbox == "none"
    no_url = project.choose_agents({"ANTHROPIC_API_KEY": "k"})
    assert no_url.scripted and "FACTORY_DEMO_MODEL_URL" in no_url.why


def test_a_missing_example_config_is_said_plainly(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr(project, "EXAMPLE", tmp_path / "factory.example.toml")
    with pytest.raises(project.DemoError, match="is missing: the demo runs the repository"):
        project.factory_toml(tmp_path, tmp_path, tmp_path, upstream=tmp_path,
                             router_config=tmp_path, scripted=True, sandbox="bwrap")  # fmt: skip


def test_without_pytest_the_demo_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytest" else real(name, *a))  # fmt: skip
    with pytest.raises(project.DemoError, match=r"pytest is not installed for .*pip install"):
        project.check_pytest()
