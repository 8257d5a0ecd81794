"""procs.llm.service as a real process: route and status over its control socket, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc.control import RemoteError, call
from tests.doubles._plan import Answer
from tests.doubles.llama_cpp import LlamaCppDouble
from tests.helpers.llm_router import router_process

pytestmark = pytest.mark.integration  # the router as a real process

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, LlamaCppDouble]]:
    with LlamaCppDouble() as llama:
        config = f"""
[roles]
auditor = "local"
[endpoints.local]
kind = "llama_cpp"
base_url = "{llama.base_url}"
gpu_ticket = true
retries = 0
"""
        with router_process(tmp_path, config) as (proc, sock):
            yield proc, sock, llama


def test_service_routes_and_reports(
    service: tuple[subprocess.Popen[bytes], Path, LlamaCppDouble], tmp_path: Path
) -> None:
    proc, sock, llama = service
    llama.plan.set_default(Answer("served", input_tokens=5, output_tokens=2))
    request = {"model": "", "prompt": "hi", "max_tokens": 8, "temperature": 0.0}
    reply = call(sock, "route", {"role": "auditor", "request": request}, timeout=10)
    assert reply["content"] == "served"
    assert reply["usage"] == {"input_tokens": 5, "output_tokens": 2}
    status = call(sock, "status", timeout=10)
    assert status["calls"] == {"auditor": {"answered": 1, "failed": 0}}
    assert status["breakers"]["local"]["state"] == "closed"
    assert status["usage_today"]["auditor"]["input_tokens"] == 5
    with pytest.raises(RemoteError, match="max_tokens must be positive") as info:
        call(sock, "route", {"role": "auditor", "request": dict(request, max_tokens=0)}, timeout=10)
    assert info.value.type == "LLMRequestInvalid"
    with pytest.raises(RemoteError, match="no route for role 'janitor'") as info:
        call(sock, "route", {"role": "janitor", "request": request}, timeout=10)
    assert info.value.type == "UnknownRole"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not sock.exists()
    assert (tmp_path / "state" / "llm_usage.sqlite").exists()


def test_bad_config_exits_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text('[roles]\nauditor = "nowhere"\n[endpoints]\n')
    done = subprocess.run(
        [sys.executable, "-m", "procs.llm.service",
         "--config", str(config), "--runtime-dir", str(tmp_path / "run"),
         "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert b"roles.auditor = 'nowhere' names no endpoint" in done.stderr


def test_factoryctl_llm_shows_breakers_and_usage(
    service: tuple[subprocess.Popen[bytes], Path, LlamaCppDouble], tmp_path: Path
) -> None:
    import io

    from supervisor.ctl import cli

    _proc, sock, llama = service
    llama.plan.set_default(Answer("ok", input_tokens=7, output_tokens=3))
    request = {"model": "", "prompt": "hi", "max_tokens": 8, "temperature": 0.0}
    call(sock, "route", {"role": "auditor", "request": request}, timeout=10)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--runtime-dir", str(sock.parent), "llm"], out=out, err=err)
    assert code == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert any(line.split()[:2] == ["local", "closed"] for line in lines)
    assert any(line.split()[:4] == ["auditor", "1", "7", "3"] for line in lines)
