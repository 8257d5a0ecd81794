"""systemd/factory.service passes `systemd-analyze verify` with an empty stderr
(some errors only warn) and carries the directives factoryd relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "factory.service"


def _directives() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def test_unit_declares_notify_watchdog_and_ordered_stop() -> None:
    d = _directives()
    assert d["Type"] == "notify"
    assert d["NotifyAccess"] == "main"
    assert int(d["WatchdogSec"]) > 0
    assert d["KillMode"] == "mixed"
    assert d["Restart"] == "on-failure"
    assert d["RuntimeDirectory"] == "factory"
    assert "--runtime-dir /run/factory" in d["ExecStart"]


@pytest.mark.integration  # runs systemd-analyze
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    factoryd = Path(sys.executable).parent / "factoryd"
    if not factoryd.exists():
        factoryd = Path(shutil.which("factoryd") or sys.executable)
    unit = tmp_path / "factory.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/factoryd", str(factoryd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.integration  # runs systemd-analyze
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "factory.service"
    unit.write_text(UNIT.read_text().replace("KillMode=mixed", "KillMode=blended"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "kill mode" in result.stderr
