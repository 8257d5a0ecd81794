"""One place for the project's test command: loop.toml's [loop] test_command and
suite_timeout_s, read by the golden master and the merge queue (--config), a flag still
overriding it; bad input names the file and the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from procs.suite_config import Suite, SuiteConfigError, resolve_suite
from tests.helpers.golden_queue import TEST_COMMAND, ServiceProcess, tiny_project
from tests.helpers.processes import Processes

DEFAULT = "python3 -m pytest -q"


def loop_toml(path: Path, body: str) -> Path:
    path.write_text(f"[loop]\n{body}\n")
    return path


def test_loop_toml_then_flags_then_defaults(tmp_path: Path) -> None:
    config = loop_toml(
        tmp_path / "loop.toml", 'test_command = ["pytest", "-x"]\nsuite_timeout_s = 42'
    )
    got = resolve_suite(config=config, test_command=None, timeout_s=None, default_command=DEFAULT)
    assert got == Suite(("pytest", "-x"), 42.0, str(config))
    got = resolve_suite(
        config=config, test_command="make 'check all'", timeout_s=7.0, default_command=DEFAULT
    )
    assert got == Suite(("make", "check all"), 7.0, "--test-command")
    got = resolve_suite(config=None, test_command=None, timeout_s=None, default_command=DEFAULT)
    assert got == Suite(("python3", "-m", "pytest", "-q"), 600.0, "default")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("test_command = 'pytest'", "[loop] test_command must be a list of strings"),
        ("test_command = []", "the test command"),
        ('test_command = ["pytest"]\nsuite_timeout_s = "soon"', "suite_timeout_s must be a number"),
        ('test_command = ["pytest"]\nsuite_timeout_s = 0', "finite number of seconds > 0"),
        ("test_command = [", "--config"),
    ],
)
def test_bad_loop_toml_is_named(tmp_path: Path, body: str, words: str) -> None:
    config = loop_toml(tmp_path / "loop.toml", body)
    with pytest.raises(SuiteConfigError, match=re.escape(words)):
        resolve_suite(config=config, test_command=None, timeout_s=None, default_command=DEFAULT)


def test_a_missing_loop_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(SuiteConfigError, match=r"--config .*nope\.toml"):
        resolve_suite(
            config=tmp_path / "nope.toml",
            test_command=None,
            timeout_s=None,
            default_command=DEFAULT,
        )


def test_a_required_command_and_the_sandbox_setting(tmp_path: Path) -> None:
    """The heartbeat has no default suite: without a command anywhere it is an error
    that says where to set one; [loop] sandbox is read (and checked) as well."""
    with pytest.raises(SuiteConfigError, match=r"no test command: .*\[loop\] test_command"):
        resolve_suite(config=loop_toml(tmp_path / "a.toml", "suite_timeout_s = 5"),
                      test_command=None, timeout_s=None, default_command=None)  # fmt: skip
    config = loop_toml(tmp_path / "b.toml", 'test_command = ["pytest"]\nsandbox = "none"')
    got = resolve_suite(config=config, test_command=None, timeout_s=None, default_command=None)
    assert got.sandbox == "none" and got.command == ("pytest",)
    with pytest.raises(SuiteConfigError, match="sandbox must be a string"):
        resolve_suite(config=loop_toml(tmp_path / "c.toml", 'test_command = ["t"]\nsandbox = 1'),
                      test_command=None, timeout_s=None, default_command=None)  # fmt: skip


@pytest.mark.integration
def test_golden_and_the_queue_run_loop_tomls_command(tmp_path: Path, procs: Processes) -> None:
    repo = tmp_path / "golden"
    tiny_project(repo)
    red = loop_toml(tmp_path / "red.toml", f"test_command = {json.dumps(['false'])}")
    gm = ServiceProcess(
        procs, tmp_path, "golden", "golden", "--repo", str(repo), "--config", str(red)
    )
    assert gm.ready, gm.log.read_text()
    assert gm.events("ready")[0]["state"] == "red"  # `false` from loop.toml ran
    suite = gm.call("status")["suite"]
    assert (suite["command"], suite["from"], suite["timeout_s"]) == (["false"], str(red), 600.0)
    gm.proc.terminate()
    assert gm.proc.wait(timeout=30) == 0

    green = loop_toml(
        tmp_path / "green.toml",
        f"test_command = {json.dumps(TEST_COMMAND.split())}\nsuite_timeout_s = 90",
    )
    gm = ServiceProcess(
        procs,
        tmp_path,
        "golden",
        "golden",
        "--repo",
        str(repo),
        "--config",
        str(red),
        "--test-command",
        TEST_COMMAND,
    )
    assert gm.events("ready")[-1]["state"] == "green"  # the flag overrides loop.toml
    queue = ServiceProcess(procs, tmp_path, "merge_queue", "merge_queue", "--config", str(green))
    assert queue.ready, queue.log.read_text()
    status = queue.call("status")
    assert status["test_command"] == TEST_COMMAND.split()
    assert (status["suite_timeout_s"], status["suite_from"]) == (90.0, str(green))
