"""procs.llm.gateway_service as a real process: READY once the port listens, tokens,
turns and usage over its control socket, and a SIGKILL that loses no count or token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ipc import paths
from ipc.control import RemoteError, call
from tests.doubles.openai_chat import ChatCompletionsDouble, HeldReply, TextReply
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # the gateway as a real process

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
TOOLS = [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}]


class GatewayProcess:
    """Starts the service, reads its READY=1 from a NOTIFY_SOCKET of our own."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.runtime = tmp_path / "run"
        self.state = tmp_path / "state"
        self.config = config
        self.notify_path = tmp_path / "notify.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> Path:
        return paths.control_socket(self.runtime, "model_gateway")

    def start(self) -> dict[str, Any]:
        """Start it, wait for READY=1 (bounded); returns model_gateway.json."""
        self.notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(self.notify_path))
            notify.settimeout(30)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "procs.llm.gateway_service", "--config", str(self.config),
                 "--runtime-dir", str(self.runtime), "--state-dir", str(self.state)],
                cwd=ROOT, process_group=0, stderr=subprocess.DEVNULL,
                env={**os.environ, "NOTIFY_SOCKET": str(self.notify_path)},
            )  # fmt: skip
            message = notify.recv(4096)
        assert b"READY=1" in message
        info = orjson.loads((self.runtime / "model_gateway.json").read_bytes())
        assert info["pid"] == self.proc.pid
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=5):
            pass  # READY came once the port listened
        return dict(info)

    def kill(self, sig: int) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGKILL)


@pytest.fixture
def upstream() -> Iterator[ChatCompletionsDouble]:
    with ChatCompletionsDouble([], usage=(123, 45)) as double:
        yield double


@pytest.fixture
def gateway(tmp_path: Path, upstream: ChatCompletionsDouble) -> Iterator[GatewayProcess]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[upstreams.local]\nkind = "openai"\nbase_url = "{upstream.base_url}"\ngpu_ticket = true\n'
    )
    process = GatewayProcess(tmp_path, config)
    try:
        yield process
    finally:
        process.close()


def stream_chat(url: str, token: str) -> list[bytes]:
    with (
        httpx.Client(trust_env=False, timeout=10) as client,
        client.stream(
            "POST", url + "/chat/completions", json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer,
    ):  # fmt: skip
        assert answer.status_code == 200
        return [line.encode() for line in answer.iter_lines() if line]


def test_counts_and_tokens_survive_a_sigkill(gateway: GatewayProcess) -> None:
    info = gateway.start()
    grant = call(gateway.sock, "token", {"bead": "fs-1", "loop": "loop-1",
                                         "budget_tokens": 10_000}, timeout=10)  # fmt: skip
    assert grant["openai_base_url"] == info["openai_base_url"]
    token = grant["token"]
    assert call(gateway.sock, "turn", {"token": token, "role": "implementer"}, timeout=10) == {
        "bead": "fs-1",
        "role": "implementer",
    }
    assert stream_chat(grant["openai_base_url"], token)[-1] == b"data: [DONE]"
    usage = call(gateway.sock, "usage", {"bead": "fs-1"}, timeout=10)
    assert usage["roles"]["implementer"]["input_tokens"] == 123

    assert gateway.kill(signal.SIGKILL) == -signal.SIGKILL
    again = gateway.start()
    assert again["port"] == info["port"]  # agents configured before the crash reach it
    stream_chat(again["openai_base_url"], token)  # the same token, the same role
    usage = call(gateway.sock, "usage", {"bead": "fs-1"}, timeout=10)
    assert usage["roles"] == {
        "implementer": {"calls": 2, "input_tokens": 246, "output_tokens": 90,
                        "cached_tokens": 0, "aborted": 0},
    }  # fmt: skip
    assert usage["over_budget"] is False
    assert gateway.kill(signal.SIGTERM) == 0


def test_a_bead_over_budget_is_reported_with_the_reason(gateway: GatewayProcess) -> None:
    gateway.start()
    grant = call(gateway.sock, "token", {"bead": "fs-2", "budget_tokens": 100}, timeout=10)
    stream_chat(grant["openai_base_url"], grant["token"])
    with httpx.Client(trust_env=False, timeout=10) as client:
        refused = client.post(
            grant["openai_base_url"] + "/chat/completions", json=CHAT,
            headers={"Authorization": f"Bearer {grant['token']}"},
        )  # fmt: skip
    assert refused.status_code == 429
    usage = call(gateway.sock, "usage", {"bead": "fs-2"}, timeout=10)
    assert usage["over_budget"] is True
    assert usage["reason"] == "bead fs-2 is over its budget of 100 tokens (used 168)"
    assert refused.json()["error"]["message"] == usage["reason"]
    assert usage["roles"]["unassigned"]["calls"] == 1  # no turn declared yet


def test_control_errors_name_the_problem(gateway: GatewayProcess) -> None:
    gateway.start()
    with pytest.raises(RemoteError, match=r"args\.bead must be a non-empty string"):
        call(gateway.sock, "token", {"budget_tokens": 5}, timeout=10)
    with pytest.raises(RemoteError, match="budget_tokens must be an integer >= 0"):
        call(gateway.sock, "token", {"bead": "fs-3", "budget_tokens": "lots"}, timeout=10)
    with pytest.raises(RemoteError, match="not issued by this gateway") as info:
        call(gateway.sock, "turn", {"token": "fgw-nope", "role": "auditor"}, timeout=10)
    assert info.value.type == "unknown_token"
    grant = call(gateway.sock, "token", {"bead": "fs-3"}, timeout=10)
    assert call(gateway.sock, "revoke", {"token": grant["token"]}, timeout=10) == {"revoked": True}
    status = call(gateway.sock, "status", timeout=10)
    assert status["upstreams"]["local"]["breaker"]["state"] == "closed"
    assert status["live_tokens"] == 0


def _refused(port: int) -> bool:
    """Nobody accepts on `port`: refused, or reset (a probe caught in the backlog as the
    listener closed: the close is what we wait for)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def test_sigterm_lets_the_call_in_flight_finish(
    gateway: GatewayProcess, upstream: ChatCompletionsDouble
) -> None:
    info = gateway.start()
    held = HeldReply(TextReply("finished after the stop"))
    upstream.set_script([held])
    grant = call(gateway.sock, "token", {"bead": "fs-4"}, timeout=10)
    answers: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(trust_env=False, timeout=20) as client:
            answers.append(client.post(
                grant["openai_base_url"] + "/chat/completions", json={**CHAT, "tools": TOOLS},
                headers={"Authorization": f"Bearer {grant['token']}"},
            ))  # fmt: skip

    worker = threading.Thread(target=ask)
    worker.start()
    assert held.started.wait(10)
    assert gateway.proc is not None
    os.kill(gateway.proc.pid, signal.SIGTERM)
    wait_until(lambda: _refused(info["port"]), what="the listener to close on SIGTERM")
    assert gateway.proc.poll() is None  # still draining
    held.release.set()
    worker.join(20)
    assert answers[0].status_code == 200
    assert answers[0].json()["choices"][0]["message"]["content"] == "finished after the stop"
    assert gateway.proc.wait(timeout=20) == 0


# The child block the example config gets (with a config naming the test's upstream).
CHILD_BLOCK = """
[[supervisor.children.children]]
id = "model_gateway"
target = "procs.llm.gateway_service:main"
ready = "notify"
shutdown_ms = 25000
pass_env = ["ANTHROPIC_API_KEY"]
"""


def test_runs_under_factoryd_as_the_example_child(
    factoryd: Any, tmp_path: Path, upstream: ChatCompletionsDouble
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[upstreams.local]\nkind = "openai"\nbase_url = "{upstream.base_url}"\n')
    d = factoryd(
        '[supervisor]\n[[supervisor.children]]\nid = "services"\nstrategy = "one_for_one"\n'
        + CHILD_BLOCK
        + f'args = ["--config", "{config}"]\n'
    ).start()
    assert d.node("model_gateway")["state"] == "running"
    sock = paths.control_socket(d.runtime_dir, "model_gateway")
    grant = call(sock, "token", {"bead": "fs-5", "role": "auditor"}, timeout=10)
    info = orjson.loads((d.runtime_dir / "model_gateway.json").read_bytes())
    assert info["openai_base_url"] == grant["openai_base_url"]
    stream_chat(grant["openai_base_url"], grant["token"])
    usage = call(sock, "usage", {"bead": "fs-5"}, timeout=10)
    assert usage["roles"]["auditor"] == {"calls": 1, "input_tokens": 123, "output_tokens": 45,
                                         "cached_tokens": 0, "aborted": 0}  # fmt: skip
    d.stop()
    assert d.proc is not None and d.proc.returncode == 0
