"""Bad configs are refused with file, key and problem; a good one parses in full."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from supervisor.config import ConfigError, load
from supervisor.spec import ChildSpec, RestartType, Strategy, SupervisorSpec

GOOD = """
[factory]
preload = ["procs"]
[supervisor]
strategy = "one_for_one"
intensity = 5
period = 30
[[supervisor.children]]
id = "echo"
command = ["python3", "child.py", "/tmp/out"]
restart = "permanent"
shutdown_ms = 5000
[[supervisor.children]]
id = "services"
strategy = "rest_for_one"
restart = "transient"
[[supervisor.children.children]]
id = "bus"
target = "procs.bus:main"
args = ["--hwm", "100000"]
env = { LOG = "debug" }
shutdown = "brutal_kill"
[[supervisor.children]]
id = "loops"
strategy = "simple_one_for_one"
[[supervisor.children.children]]
id = "loop"
target = "procs.factory_loop:main"
restart = "transient"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "factory.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_config_parses_into_a_tree(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, GOOD))
    root = cfg.tree
    assert cfg.preload == ("procs",)
    assert (root.flags.strategy, root.flags.intensity, root.flags.period_s) == (
        Strategy.ONE_FOR_ONE,
        5,
        30.0,
    )
    echo, services, loops = root.children
    assert isinstance(echo, ChildSpec) and echo.shutdown_s == 5.0
    assert echo.start.command == ("python3", "child.py", "/tmp/out")
    assert isinstance(services, SupervisorSpec) and services.restart is RestartType.TRANSIENT
    bus = services.children[0]
    assert isinstance(bus, ChildSpec)
    assert bus.shutdown_s == 0.0 and bus.start.env == (("LOG", "debug"),)
    assert isinstance(loops, SupervisorSpec)
    assert loops.flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            "[supervisor]\nstrategy = 'one_for_some'\n",
            "supervisor.strategy",
            "must be one of one_for_one, one_for_all, rest_for_one, simple_one_for_one",
        ),
        ("[supervisor]\nintensity = -1\n", "supervisor.intensity", "integer >= 0"),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n"
            "notify_access = 'exec'\n",
            "supervisor.children[0].notify_access",
            "must be one of main, all",
        ),
        ("[supervisor]\nperiod = 0\n", "supervisor.period", "number > 0"),
        ("[supervisor]\nstrategee = 'one_for_one'\n", "supervisor.strategee", "unknown key"),
        ("[factory]\n", "supervisor", "missing"),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\n",
            "supervisor.children[0]",
            "needs command",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = 'ls'\n",
            "supervisor.children[0].command",
            "array of strings",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\ntarget = 'a:b'\n",
            "supervisor.children[0]",
            "not both",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n"
            "restart = 'always'\n",
            "supervisor.children[0].restart",
            "one of permanent, transient, temporary",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\nshutdown_ms = -5\n",
            "supervisor.children[0].shutdown_ms",
            "integer >= 0",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n"
            "shutdown = 'soon'\n",
            "supervisor.children[0].shutdown",
            "brutal_kill",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ntarget = 'not a target'\n",
            "supervisor.children[0]",
            "package.module:function",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'has space'\ncommand = ['ls']\n",
            "supervisor.children[0]",
            "id must be",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n"
            "[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n",
            "supervisor",
            "duplicate child id 'x'",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n"
            "[[supervisor.children]]\nid = 'sub'\n[[supervisor.children.children]]\nid = 'x'\n"
            "command = ['ls']\n",
            "supervisor",
            "id 'x' is used twice in the tree",
        ),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\n"
            "significant = true\n",
            "supervisor.children[0]",
            "significant child must be transient or temporary",
        ),
        (
            "[supervisor]\nauto_shutdown = 'any_significant'\n[[supervisor.children]]\n"
            "id = 'x'\ncommand = ['ls']\n",
            "supervisor",
            "no child is significant",
        ),
        ("[supervisor]\nstrategy = 'simple_one_for_one'\n", "supervisor", "exactly one child spec"),
        (
            "[supervisor]\n[[supervisor.children]]\nid = 'x'\ncommand = ['ls']\nenv = { A = 1 }\n",
            "supervisor.children[0].env.A",
            "must be a string",
        ),
        ("[supervisor\n", "(syntax)", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    assert problem in err.problem
    assert str(err).startswith(f"{path}: {key}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "absent.toml")


@pytest.mark.integration  # factoryd as a process
def test_factoryd_refuses_a_bad_config_and_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    path = _write(
        tmp_path,
        f"""
        [supervisor]
        [[supervisor.children]]
        id = "would_start"
        command = ["touch", "{marker}"]
        [[supervisor.children]]
        id = "broken"
        command = ["ls"]
        restart = "sometimes"
    """,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor.daemon",
            "--config",
            str(path),
            "--runtime-dir",
            str(tmp_path / "run"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{path}: supervisor.children[1].restart: must be one of" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "run" / "factoryd.sock").exists()


@pytest.mark.integration  # factoryd as a process
def test_check_flag_validates_without_starting(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.daemon", "--config", str(path), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "ok" in result.stdout
