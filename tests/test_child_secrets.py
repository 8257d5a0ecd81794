"""API keys and tokens in factoryd's environment reach only the children whose spec
lists them in pass_env (the LLM router), commands and Python targets alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import ConfigError, parse
from tests.waiting import wait_until

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "OPENAI_API_KEY": "sk-openai-test",
    "GITHUB_TOKEN": "ghp-test",
}


def _env_of(path: Path) -> dict[str, str]:
    wait_until(path.exists, timeout=20, what=f"{path} to be written")
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_only_children_that_list_a_secret_in_pass_env_see_it(factoryd, tmp_path: Path) -> None:
    out = {name: tmp_path / f"{name}.env" for name in ("router", "agent", "py_router", "py_agent")}

    def command(name: str) -> str:
        script = f"env > {out[name]}.tmp && mv {out[name]}.tmp {out[name]} && exec sleep 600"
        return f'command = ["sh", "-c", "{script}"]'

    def target(name: str) -> str:
        return f'target = "tests.children:dump_env"\nargs = ["{out[name]}"]\n'

    config = f"""
[supervisor]
[[supervisor.children]]
id = "router"
{command("router")}
pass_env = ["ANTHROPIC_API_KEY"]
[[supervisor.children]]
id = "agent"
{command("agent")}
[[supervisor.children]]
id = "py_router"
restart = "temporary"
{target("py_router")}
pass_env = ["ANTHROPIC_API_KEY", "GITHUB_TOKEN"]
[[supervisor.children]]
id = "py_agent"
restart = "temporary"
{target("py_agent")}
"""
    env = {**SECRETS, "FACTORY_TEST_PLAIN": "visible"}
    factoryd(config, env=env).start()
    router, agent = _env_of(out["router"]), _env_of(out["agent"])
    py_router, py_agent = _env_of(out["py_router"]), _env_of(out["py_agent"])
    for seen in (router, agent, py_router, py_agent):
        assert seen["FACTORY_TEST_PLAIN"] == "visible"  # nothing else is taken away
        assert "OPENAI_API_KEY" not in seen
    assert router["ANTHROPIC_API_KEY"] == "sk-ant-test"
    assert "GITHUB_TOKEN" not in router
    assert py_router["ANTHROPIC_API_KEY"] == "sk-ant-test"
    assert py_router["GITHUB_TOKEN"] == "ghp-test"
    for seen in (agent, py_agent):
        assert not {"ANTHROPIC_API_KEY", "GITHUB_TOKEN"} & seen.keys()


@pytest.mark.parametrize(
    ("pass_env", "problem"),
    [
        ('"ANTHROPIC_API_KEY"', "must be an array of strings"),
        ('["PATH"]', "'PATH' is not a secret variable, every child inherits it anyway"),
    ],
)
def test_pass_env_is_checked_by_name(pass_env: str, problem: str) -> None:
    import tomllib

    text = '[supervisor]\n[[supervisor.children]]\nid = "r"\ncommand = ["true"]\n'
    with pytest.raises(ConfigError) as info:
        parse(tomllib.loads(text + f"pass_env = {pass_env}\n"), "f.toml")
    assert info.value.key == "supervisor.children[0].pass_env"
    assert problem in info.value.problem
