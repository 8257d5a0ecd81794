"""The operator's sandbox setting ([factory] sandbox) reaches every child and shows in
`factoryctl status`; a bad value is a config error naming the key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from supervisor import config as config_mod
from tests.harness import Journal, target
from tests.waiting import wait_until


def test_a_bad_sandbox_mode_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[factory]\nsandbox = "docker"\n[supervisor]\n')
    with pytest.raises(config_mod.ConfigError, match=r"factory\.sandbox: must be one of bwrap"):
        config_mod.load(path)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["none", "bwrap"])
def test_children_get_the_mode_and_status_shows_it(
    factoryd, journal: Journal, tmp_path: Path, mode: str
) -> None:
    dump = tmp_path / "env.txt"
    d = factoryd(f"""
        [factory]
        sandbox = "{mode}"
        [supervisor]
        [[supervisor.children]]
        id = "envy"
        {target("dump_env", str(dump))}
        restart = "temporary"
    """).start()
    wait_until(dump.exists, timeout=10, what="the child's environment dump")
    env = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert env["FACTORY_SANDBOX"] == mode
    status = d.status()["daemon"]["sandbox"]
    assert status["mode"] == mode
    assert status["bwrap"] == shutil.which("bwrap", path=os.environ.get("PATH"))
    code, out, _ = d.ctl("status")
    assert code == 0 and f"sandbox: {mode}: " in out
    if mode == "none":
        assert "WITHOUT isolation" in out
