"""A real agent through the model gateway: opencode (npm opencode-ai, ACP mode, offline)
with the gateway's token as its API key and the gateway as its baseURL, in front of the
scripted OpenAI TEST DOUBLE. Every request the double answered is counted, per role, with
the tokens the double reported (opencode streams; its title requests count too)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.agent import AcpAgent, RolePolicy
from procs.agent.opencode import opencode_command, opencode_config, opencode_env
from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_store import GatewayStore
from procs.llm.tickets import FlockTickets
from tests.doubles.openai_chat import ChatCompletionsDouble, TextReply
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def find_opencode() -> str | None:
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "opencode"
    return str(local) if local.exists() else shutil.which("opencode")


OPENCODE = find_opencode()
pytestmark = [
    pytest.mark.integration,  # opencode, the gateway and the model double as servers
    pytest.mark.skipif(
        OPENCODE is None,
        reason="opencode not installed (.ci/run installs opencode-ai into .ci/node)",
    ),
]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, ChatCompletionsDouble]]:
    script = [TextReply("audited"), TextReply("implemented")]
    with ChatCompletionsDouble(script, usage=(123, 45)) as double:
        config = GatewayConfig.from_dict(
            {"upstreams": {"local": {"kind": "openai", "base_url": double.base_url,
                                     "gpu_ticket": True}}}
        )  # fmt: skip
        store = GatewayStore(tmp_path / "state" / "model_gateway.sqlite")
        gateway = Gateway(config, store, FlockTickets(tmp_path / "tickets", 1))
        gateway.start()
        try:
            yield gateway, double
        finally:
            gateway.stop()
            store.close()


async def two_turns(gateway: Gateway, token: str, home: Path, workspace: Path) -> list[str]:
    assert OPENCODE is not None
    home.mkdir(parents=True)
    config_file = home / "opencode.json"
    config = opencode_config(gateway.openai_base_url, "scripted", api_key=token)
    config_file.write_text(json.dumps(config))
    agent = await AcpAgent.start(
        opencode_command(OPENCODE), workspace=workspace,
        policy=RolePolicy.for_role("auditor"), env=opencode_env(home, config_file), timeout=90,
    )  # fmt: skip
    messages = []
    try:
        for role in ("auditor", "implementer"):
            gateway.store.set_role(token, role)  # what the loop does before each turn
            await agent.new_session(timeout=60)
            result = await agent.prompt(f"act as the {role}", timeout=60)
            messages.append(result.record.message)
    finally:
        await agent.close()
    return messages


def test_opencode_through_the_gateway_is_counted_per_role(
    gateway: tuple[Gateway, ChatCompletionsDouble], tmp_path: Path
) -> None:
    front, double = gateway
    token = front.store.issue("fs-oc", "loop-oc", budget_tokens=1_000_000)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    messages = asyncio.run(two_turns(front, token, tmp_path / "home", workspace))
    assert messages == ["audited", "implemented"]
    answered = len(double.requests)

    def counted() -> int:
        roles = front.store.usage("fs-oc")["roles"]
        return sum(r["calls"] for r in roles.values())

    wait_until(lambda: counted() == len(double.requests), what="every call counted")
    usage = front.store.usage("fs-oc")
    assert answered >= 2
    assert any(r.body.get("stream") for r in double.requests)  # the streamed path was taken
    assert usage["used_tokens"] == (123 + 45) * len(double.requests)
    assert usage["roles"]["auditor"]["calls"] >= 1
    assert usage["roles"]["implementer"]["calls"] >= 1
    assert all(r["aborted"] == 0 for r in usage["roles"].values())
