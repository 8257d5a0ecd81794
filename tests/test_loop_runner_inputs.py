"""The one-shot runner refuses bad input before it changes anything, each time naming
what was wrong: a bad or incomplete [loop] config, an unknown bead, a dirty repo, a
missing agent command, an unreachable model. The config and bead readers on their own."""

from __future__ import annotations

import io
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.loop.bead_text import BeadNotFound, read_bead
from procs.loop.cli import EXIT_USAGE, main
from procs.loop.config import LoopConfigError, config_from, load_config
from tests.helpers import repos
from tests.helpers.loop_repos import make_project, write

BEADS = (
    '{"id":"bd-1","title":"Add mul","description":"calc.mul(a, b) multiplies.",'
    '"acceptance_criteria":"mul(2, 3) == 6","status":"open"}\n'
    "not json at all\n"
    '{"_type":"memory","id":"bd-9"}\n'
    '{"id":"bd-2","title":"","status":"open"}\n'
)


def config_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "factory.toml"
    path.write_text(body)
    return path


def test_config_defaults_and_every_bad_key_named(tmp_path: Path) -> None:
    model = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}
    good = config_from({"test_command": ["python3", "-m", "pytest"], "refactor_interval": 2,
                        "model": model})  # fmt: skip
    assert good.agent_command == ("opencode", "acp", "--pure")
    assert good.limits.refactor_interval == 2 and good.model is not None
    bad = [
        ({}, "test_command is required"),
        ({"test_command": "pytest"}, "test_command must be a non-empty list"),
        ({"test_command": ["pytest"], "max_impl_attempts": 0}, "max_impl_attempts"),
        ({"test_command": ["pytest"], "sandbox": "off"}, 'sandbox must be "bwrap" or "none"'),
        ({"test_command": ["pytest"], "suite_timeout_s": -1}, "suite_timeout_s"),
        ({"test_command": ["pytest"], "refactr_interval": 2},
         "unknown key(s) ['refactr_interval']"),
        ({"test_command": ["pytest"], "model": {"kind": "x", "base_url": "http://a"}}, "kind"),
        ({"test_command": ["pytest"], "model": {"kind": "openai", "base_url": "ftp://a"}},
         "base_url"),
    ]  # fmt: skip
    for table, message in bad:
        with pytest.raises(LoopConfigError, match=re.escape(message)):
            config_from(table)
    with pytest.raises(LoopConfigError, match=r"factory\.toml"):
        load_config(config_file(tmp_path, "[loop\n"))


def test_a_bead_is_read_with_its_sections_and_malformed_lines_counted(tmp_path: Path) -> None:
    beads = tmp_path / "issues.jsonl"
    beads.write_text(BEADS)
    bead = read_bead(beads, "bd-1")
    assert bead.requirements == (
        "## Add mul\n\ncalc.mul(a, b) multiplies.\n\n### Acceptance Criteria\nmul(2, 3) == 6"
    )
    assert bead.malformed_lines == 1
    with pytest.raises(BeadNotFound, match=r"no bead 'bd-9' among 2 issues .*\(1 malformed"):
        read_bead(beads, "bd-9")


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    beads = tmp_path / "issues.jsonl"
    beads.write_text(BEADS)
    config = config_file(tmp_path, f'[loop]\ntest_command = ["{sys.executable}", "-m", '
                         '"pytest"]\nagent_command = ["true"]\nsandbox = "none"\n')  # fmt: skip
    return {"repo": make_project(tmp_path / "repo"), "beads": beads, "config": config,
            "state": tmp_path / "state"}  # fmt: skip


def run_cli(inputs: dict[str, Path], bead: str = "bd-1", config: Path | None = None) -> int:
    argv = ["run", "--repo", str(inputs["repo"]), "--beads", str(inputs["beads"]),
            "--bead", bead, "--config", str(config or inputs["config"]),
            "--state-dir", str(inputs["state"])]  # fmt: skip
    return main(argv, out=io.StringIO())


def refused(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], message: str,
            **kw: Any) -> None:  # fmt: skip
    head = repos.git(inputs["repo"], "rev-parse", "HEAD")
    assert run_cli(inputs, **kw) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not inputs["state"].exists(), "the runner changed something before refusing"
    assert repos.git(inputs["repo"], "rev-parse", "HEAD") == head


@pytest.mark.integration  # runs git
def test_the_runner_refuses_bad_input_before_any_change(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused(inputs, capsys, "no bead 'bd-404'", bead="bd-404")
    refused(inputs, capsys, "bead bd-2 has no title or description", bead="bd-2")
    no_tests = config_file(tmp_path, '[loop]\nagent_command = ["true"]\n')
    refused(inputs, capsys, "test_command is required", config=no_tests)
    missing_agent = config_file(
        tmp_path,
        '[loop]\ntest_command = ["pytest"]\nagent_command = ["no-such-agent-xyz"]\n'
        'sandbox = "none"\n',
    )
    refused(inputs, capsys, "'no-such-agent-xyz' is not on PATH", config=missing_agent)
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    no_model = config_file(tmp_path, '[loop]\ntest_command = ["pytest"]\nagent_command = '
                           '["true"]\nsandbox = "none"\n[loop.model]\nkind = "openai"\n'
                           f'base_url = "http://127.0.0.1:{port}/v1"\n')  # fmt: skip
    refused(inputs, capsys, "does not answer", config=no_model)
    monkeypatch.setenv("FACTORY_RUNTIME_DIR", str(tmp_path / "run"))  # no router there
    routed = config_file(tmp_path, '[loop]\ntest_command = ["pytest"]\nagent_command = '
                         '["true"]\nsandbox = "none"\nreviewer = "router"\n')  # fmt: skip
    refused(inputs, capsys, "no LLM router answers on", config=routed)
    refused(inputs, capsys, '[loop] reviewer = "agent"', config=routed)
    write(inputs["repo"], "calc.py", "# uncommitted\n")
    refused(inputs, capsys, "has uncommitted changes")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"test_command": ["pytest"]}, True),  # bwrap: the agent too, by default
        ({"test_command": ["pytest"], "sandbox": "none"}, False),
        ({"test_command": ["pytest"], "sandbox_agent": False}, False),
    ],
)
def test_agents_run_in_the_sandbox_whenever_tests_do(table: dict[str, Any], expected: bool
                                                     ) -> None:  # fmt: skip
    assert config_from(table).sandbox_agent is expected


def test_an_agent_sandbox_without_bwrap_is_refused() -> None:
    with pytest.raises(LoopConfigError, match='sandbox_agent = true needs sandbox = "bwrap"'):
        config_from({"test_command": ["pytest"], "sandbox": "none", "sandbox_agent": True})
    with pytest.raises(LoopConfigError, match="sandbox_agent must be true or false"):
        config_from({"test_command": ["pytest"], "sandbox_agent": "yes"})
