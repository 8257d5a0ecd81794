"""The README's first command runs the demo: it must work on a fresh checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs the demo's processes

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "sent SIGKILL to ticker" in out
    assert "pool.2: running" in out
    assert "factoryd exited 0" in out
    # after the rest_for_one restart, publish was restarted by its sibling's crash
    assert "publish" in out and "shutdown" in out
