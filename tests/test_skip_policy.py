"""FACTORY_ALLOWED_SKIPS: a run with a skip the list does not allow fails, whatever else
passed; unset, any skip is allowed; set but empty, none is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import skip_policy
from tests.helpers.processes import ROOT

SUITE = """
import pytest

def test_passes():
    pass

def test_without_a_gpu():
    pytest.skip("no NVIDIA GPU here")

def test_hiding_a_bug():
    pytest.skip("cannot loop-mount btrfs here: mount failed")
"""


def test_allowed_reasons_are_split_on_semicolons() -> None:
    assert skip_policy.allowed_reasons({}) is None
    assert skip_policy.allowed_reasons({skip_policy.ENV: ""}) == []
    assert skip_policy.allowed_reasons({skip_policy.ENV: " jj is missing ; no GPU;"}) == [
        "jj is missing",
        "no GPU",
    ]


def test_a_skip_is_unexpected_unless_its_reason_contains_an_allowed_one() -> None:
    skips = [("t::a", "jj (Jujutsu) is not installed here"), ("t::b", "cannot loop-mount")]
    assert skip_policy.unexpected(skips, ["jj (Jujutsu) is not installed"]) == [skips[1]]
    assert skip_policy.unexpected(skips, []) == skips
    assert skip_policy.unexpected([], []) == []


def _run(tmp_path: Path, allowed: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import (  # noqa: F401\n"
        "    pytest_runtest_logreport, pytest_sessionfinish, pytest_terminal_summary,\n"
        ")\n"
    )
    env = {k: v for k, v in os.environ.items() if k != skip_policy.ENV}
    env["PYTHONPATH"] = str(ROOT)
    if allowed is not None:
        env[skip_policy.ENV] = allowed
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("allowed", "code"),
    [(None, 0), ("no NVIDIA GPU;cannot loop-mount", 0), ("no NVIDIA GPU", 1), ("", 1)],
)
def test_a_session_with_a_skip_not_allowed_fails(
    tmp_path: Path, allowed: str | None, code: int
) -> None:
    done = _run(tmp_path, allowed)
    assert done.returncode == code, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout
    if code:
        assert "skips not allowed here" in done.stdout
        assert "test_hiding_a_bug: cannot loop-mount btrfs here" in done.stdout
