"""The model gateway in-process, over real sockets, with the scripted doubles as upstreams:
counts equal what the upstream reported (streamed included, both protocols), per role;
budgets, tokens, bodies and upstream failures are refused with the protocol's JSON error."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from procs.llm.errors import TicketTimeout
from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_store import GatewayStore
from procs.llm.tickets import FlockTickets
from tests.doubles._http import DoubleServer, RequestContext
from tests.doubles._plan import Answer, Fail, Plan
from tests.doubles.anthropic_messages import AnthropicMessagesDouble
from tests.doubles.openai_chat import ChatCompletionsDouble, HeldReply, TextReply
from tests.waiting import wait_until

UPSTREAM_KEY_ENV = "FACTORY_TEST_GATEWAY_UPSTREAM_KEY"
CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
TOOLS = [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}]
MESSAGES = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def openai_double() -> Iterator[ChatCompletionsDouble]:
    with ChatCompletionsDouble([], usage=(123, 45), models=["scripted"]) as double:
        yield double


@pytest.fixture
def anthropic_double(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicMessagesDouble]:
    monkeypatch.setenv(UPSTREAM_KEY_ENV, "sk-upstream")
    plan = Plan(default=Answer("hello", input_tokens=31, output_tokens=17))
    with AnthropicMessagesDouble(plan, expected_key="sk-upstream") as double:
        yield double


@contextlib.contextmanager
def make_gateway(
    tmp_path: Path, upstreams: dict[str, dict[str, Any]], **top: Any
) -> Iterator[Gateway]:
    config = GatewayConfig.from_dict({"upstreams": upstreams, **top})
    store = GatewayStore(tmp_path / "state" / "model_gateway.sqlite")
    gateway = Gateway(config, store, FlockTickets(tmp_path / "tickets", 1))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        store.close()


@pytest.fixture
def gateway(
    tmp_path: Path, openai_double: ChatCompletionsDouble, anthropic_double: AnthropicMessagesDouble
) -> Iterator[Gateway]:
    with make_gateway(
        tmp_path,
        {
            "local": {"kind": "openai", "base_url": openai_double.base_url, "gpu_ticket": True},
            "claude": {
                "kind": "anthropic",
                "base_url": anthropic_double.base_url,
                "api_key_env": UPSTREAM_KEY_ENV,
            },
        },
        max_body_bytes=4096,
    ) as gateway:
        yield gateway


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


def chat(client: httpx.Client, gateway: Gateway, token: str, **body: Any) -> httpx.Response:
    return client.post(
        gateway.openai_base_url + "/chat/completions",
        json={**CHAT, **body},
        headers={"Authorization": f"Bearer {token}"},
    )


def stream_events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of a streamed answer, JSON decoded ([DONE] kept as text)."""
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def test_openai_counts_match_the_upstream_plain_and_streamed(
    gateway: Gateway, client: httpx.Client, openai_double: ChatCompletionsDouble
) -> None:
    token = gateway.store.issue("fs-1", "loop-1", role="implementer")
    answer = chat(client, gateway, token)
    assert answer.status_code == 200
    assert answer.json()["usage"]["prompt_tokens"] == 123
    url = gateway.openai_base_url + "/chat/completions"
    auth = {"Authorization": f"Bearer {token}"}
    with client.stream("POST", url, json={**CHAT, "stream": True}, headers=auth) as streamed:
        assert streamed.status_code == 200
        events = stream_events(streamed)
    # The gateway asked for usage the client did not ask for, and kept that chunk from it.
    assert openai_double.requests[-1].body["stream_options"] == {"include_usage": True}
    assert events[-1] == "[DONE]"
    assert all(e == "[DONE]" or e["choices"] for e in events)
    assert events[0]["choices"][0]["delta"]["content"] == "Scripted title"
    usage = gateway.store.usage("fs-1")["roles"]["implementer"]
    assert usage == {"calls": 2, "input_tokens": 246, "output_tokens": 90,
                     "cached_tokens": 0, "aborted": 0}  # fmt: skip


def test_openai_stream_that_asked_for_usage_gets_it(gateway: Gateway, client: httpx.Client) -> None:
    token = gateway.store.issue("fs-1", "loop-1", role="auditor")
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    auth = {"Authorization": f"Bearer {token}"}
    url = gateway.openai_base_url + "/chat/completions"
    with client.stream("POST", url, json=body, headers=auth) as streamed:
        events = stream_events(streamed)
    assert events[-2]["usage"]["completion_tokens"] == 45
    assert gateway.store.usage("fs-1")["roles"]["auditor"]["output_tokens"] == 45


def test_anthropic_counts_match_the_upstream_plain_and_streamed(
    gateway: Gateway, client: httpx.Client, anthropic_double: AnthropicMessagesDouble
) -> None:
    token = gateway.store.issue("fs-2", "loop-2", role="reviewer")
    url = gateway.base_url + "/v1/messages"
    plain = client.post(url, json=MESSAGES, headers={"x-api-key": token})
    assert plain.status_code == 200, plain.text  # the upstream got its own key, not ours
    assert plain.json()["content"][0]["text"] == "hello"
    body = {**MESSAGES, "stream": True}
    with client.stream("POST", url, json=body, headers={"x-api-key": token}) as streamed:
        assert streamed.status_code == 200
        text = streamed.read().decode()
    assert "event: message_start" in text and "event: message_stop" in text
    assert anthropic_double.keys_seen == [True, True]
    usage = gateway.store.usage("fs-2")["roles"]["reviewer"]
    assert usage["input_tokens"] == 62 and usage["output_tokens"] == 34 and usage["calls"] == 2


def responses_double(ctx: RequestContext) -> None:
    """A TEST DOUBLE of POST /v1/responses (OpenAI Responses), plain or streamed."""
    body = ctx.json()
    usage = {"input_tokens": 77, "output_tokens": 11, "total_tokens": 88}
    done = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "usage": usage,
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}],
    }
    if not body.get("stream"):
        ctx.reply_json(200, done)
        return
    ctx.start_sse()
    ctx.send_sse(
        {"type": "response.created", "response": {**done, "status": "in_progress", "usage": None}},
        "response.created",
    )
    ctx.send_sse(
        {"type": "response.output_text.delta", "delta": "ok"}, "response.output_text.delta"
    )
    ctx.send_sse({"type": "response.completed", "response": done}, "response.completed")


def test_openai_responses_are_counted_plain_and_streamed(
    tmp_path: Path, client: httpx.Client
) -> None:
    with DoubleServer(responses_double) as server:
        upstream = {"kind": "openai", "base_url": server.base_url + "/v1"}
        with make_gateway(tmp_path, {"local": upstream}) as gateway:
            token = gateway.store.issue("fs-16", "loop-16", role="implementer")
            url = gateway.openai_base_url + "/responses"
            auth = {"Authorization": f"Bearer {token}"}
            request = {"model": "m", "input": "hi"}
            assert client.post(url, json=request, headers=auth).json()["status"] == "completed"
            body = {**request, "stream": True}
            with client.stream("POST", url, json=body, headers=auth) as answer:
                text = answer.read().decode()
            assert text.split("\n\n")[-2].startswith("event: response.completed")
            missing = client.post(url, json={"model": "m"}, headers=auth)
            assert "needs 'input'" in missing.json()["error"]["message"]
            usage = gateway.store.usage("fs-16")["roles"]["implementer"]
            assert (usage["calls"], usage["input_tokens"], usage["output_tokens"]) == (2, 154, 22)


def test_usage_is_attributed_to_the_role_of_each_turn(
    gateway: Gateway, client: httpx.Client
) -> None:
    token = gateway.store.issue("fs-3", "loop-3")
    gateway.store.set_role(token, "auditor")
    chat(client, gateway, token)
    gateway.store.set_role(token, "implementer")
    chat(client, gateway, token)
    chat(client, gateway, token)
    roles = gateway.store.usage("fs-3")["roles"]
    assert {r: (u["calls"], u["input_tokens"]) for r, u in roles.items()} == {
        "auditor": (1, 123),
        "implementer": (2, 246),
    }


def test_calls_at_once_are_each_counted(gateway: Gateway) -> None:
    tokens = [gateway.store.issue(f"fs-{i % 2}", f"loop-{i}", role="implementer")
              for i in range(8)]  # fmt: skip
    url = gateway.openai_base_url + "/chat/completions"

    def stream(token: str) -> None:
        with (
            httpx.Client(trust_env=False, timeout=20) as own,
            own.stream("POST", url, json={**CHAT, "stream": True},
                       headers={"Authorization": f"Bearer {token}"}) as answer,
        ):  # fmt: skip
            assert answer.status_code == 200
            answer.read()

    workers = [threading.Thread(target=stream, args=(t,)) for t in tokens for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    for bead in ("fs-0", "fs-1"):
        usage = gateway.store.usage(bead)["roles"]["implementer"]
        assert (usage["calls"], usage["input_tokens"]) == (12, 12 * 123)


def test_a_bead_over_budget_is_refused_before_the_upstream(
    gateway: Gateway, client: httpx.Client, openai_double: ChatCompletionsDouble
) -> None:
    token = gateway.store.issue("fs-4", "loop-4", role="implementer", budget_tokens=200)
    assert chat(client, gateway, token).status_code == 200  # 168 used, under 200
    assert chat(client, gateway, token).status_code == 200  # 336 used: overshoots once
    refused = chat(client, gateway, token)
    assert refused.status_code == 429
    message = "bead fs-4 is over its budget of 200 tokens (used 336)"
    assert refused.json()["error"]["type"] == "budget_exceeded"
    assert refused.json()["error"]["message"] == message
    assert len(openai_double.requests) == 2
    usage = gateway.store.usage("fs-4")
    assert usage["over_budget"] is True and usage["reason"] == message


def test_missing_unknown_and_revoked_tokens_get_401(
    gateway: Gateway, client: httpx.Client, openai_double: ChatCompletionsDouble
) -> None:
    url = gateway.openai_base_url + "/chat/completions"
    missing = client.post(url, json=CHAT)
    assert missing.status_code == 401
    assert "no token" in missing.json()["error"]["message"]
    unknown = chat(client, gateway, "fgw-made-up")
    assert unknown.status_code == 401
    assert "not issued by this gateway" in unknown.json()["error"]["message"]
    token = gateway.store.issue("fs-5", "loop-5")
    assert gateway.store.revoke(token)
    revoked = client.post(
        gateway.base_url + "/v1/messages", json=MESSAGES, headers={"x-api-key": token}
    )
    assert revoked.status_code == 401
    assert revoked.json()["type"] == "error"  # Anthropic's shape on the Anthropic route
    assert "fs-5 was revoked" in revoked.json()["error"]["message"]
    assert openai_double.requests == []


def test_a_restarted_loops_new_token_revokes_its_old_one(
    gateway: Gateway, client: httpx.Client, openai_double: ChatCompletionsDouble
) -> None:
    """A loop SIGKILLed before its end never revoked its token: the token its restart
    asks for (same loop id) ends the old one; another loop's token is untouched."""
    old = gateway.store.issue("fs-12", "loop-12", role="implementer")
    other = gateway.store.issue("fs-13", "loop-13", role="implementer")
    new = gateway.store.issue("fs-12", "loop-12", role="implementer")
    stale = chat(client, gateway, old)
    assert stale.status_code == 401
    assert "fs-12 was revoked" in stale.json()["error"]["message"]
    assert chat(client, gateway, new).status_code == 200
    assert chat(client, gateway, other).status_code == 200
    assert len(openai_double.requests) == 2  # the stale key never reached the model


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b'{"model": "m", "messages": [', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"model": "m"}', "needs 'messages'"),
        (b'{"model": "m", "messages": [], "stream": "yes"}', "'stream' must be true or false"),
    ],
)
def test_a_malformed_body_gets_400_naming_the_problem(
    gateway: Gateway, client: httpx.Client, body: bytes, names: str
) -> None:
    token = gateway.store.issue("fs-6", "loop-6")
    answer = client.post(
        gateway.openai_base_url + "/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert names in answer.json()["error"]["message"]
    assert chat(client, gateway, token).status_code == 200  # and it goes on serving


def test_bodies_over_the_limit_get_413_and_chunked_bodies_are_read(
    gateway: Gateway, client: httpx.Client
) -> None:
    token = gateway.store.issue("fs-7", "loop-7")
    auth = {"Authorization": f"Bearer {token}"}
    url = gateway.openai_base_url + "/chat/completions"
    big = orjson.dumps({**CHAT, "pad": "x" * 5000})
    assert client.post(url, content=big, headers=auth).status_code == 413
    chunked = client.post(url, content=iter([big[:1000]]), headers=auth)
    assert chunked.status_code == 400  # read whole through chunked framing, then judged
    small = orjson.dumps(CHAT)
    assert client.post(url, content=iter([small[:10], small[10:]]), headers=auth).is_success
    too_big = client.post(url, content=iter([big[:3000], big[3000:]]), headers=auth)
    assert too_big.status_code == 413


def test_models_and_unknown_routes(gateway: Gateway, client: httpx.Client) -> None:
    token = gateway.store.issue("fs-8", "loop-8")
    models = client.get(gateway.openai_base_url + "/models",
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert models.json()["data"][0]["id"] == "scripted"
    lost = client.post(gateway.base_url + "/v1/completions", json=CHAT)
    assert lost.status_code == 404
    assert "POST /v1/chat/completions" in lost.json()["error"]["message"]
    counted = client.post(gateway.base_url + "/v1/messages/count_tokens", json=MESSAGES,
                          headers={"x-api-key": token})  # fmt: skip
    assert counted.status_code == 404  # relayed: the double has no token counter
    assert "no route POST /v1/messages/count_tokens" in counted.json()["error"]["message"]
    assert gateway.store.usage("fs-8")["roles"] == {}  # neither is a model call


def test_upstream_errors_pass_through_with_their_body(
    gateway: Gateway, client: httpx.Client, anthropic_double: AnthropicMessagesDouble
) -> None:
    anthropic_double.plan.extend([Fail(529, "overloaded right now")])
    token = gateway.store.issue("fs-9", "loop-9")
    answer = client.post(
        gateway.base_url + "/v1/messages", json=MESSAGES, headers={"x-api-key": token}
    )
    assert answer.status_code == 529
    assert answer.json()["error"]["message"] == "overloaded right now"
    wait_until(  # the breaker counts it once the answer is through
        lambda: gateway.statistics()["upstreams"]["claude"]["breaker"]["consecutive_failures"],
        what="the breaker to count the 529",
    )


def test_no_upstream_gives_502_then_the_open_breaker_503(
    tmp_path: Path, client: httpx.Client
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upstream = {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                "failure_threshold": 2, "reset_after_s": 600}  # fmt: skip
    with make_gateway(tmp_path, {"gone": upstream}) as gateway:
        token = gateway.store.issue("fs-10", "loop-10")
        for _ in range(2):
            down = chat(client, gateway, token)
            assert down.status_code == 502
            assert down.json()["error"]["type"] == "upstream_unavailable"
            assert f"upstream 'gone' at http://127.0.0.1:{port}/v1" in down.text
        refused = chat(client, gateway, token)
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "circuit_open"
        assert "circuit breaker opened after 2 failures" in refused.text


def test_a_silent_upstream_gets_504(tmp_path: Path, client: httpx.Client) -> None:
    held = HeldReply(TextReply("late"), timeout_s=10)
    with ChatCompletionsDouble([held]) as double:
        upstream = {"kind": "openai", "base_url": double.base_url, "timeout_s": 0.3}
        with make_gateway(tmp_path, {"local": upstream}) as gateway:
            token = gateway.store.issue("fs-11", "loop-11")
            silent = chat(client, gateway, token, tools=TOOLS)
            assert silent.status_code == 504
            assert silent.json()["error"]["type"] == "upstream_timeout"
            assert "sent nothing for 0.3s" in silent.json()["error"]["message"]
            held.release.set()


def test_a_call_holds_a_gpu_ticket_until_its_answer_is_through(
    tmp_path: Path, client: httpx.Client
) -> None:
    slow = HeldReply(TextReply("slow"))
    with ChatCompletionsDouble([slow]) as double:
        upstream = {"kind": "openai", "base_url": double.base_url, "gpu_ticket": True,
                    "ticket_wait_s": 0.2}  # fmt: skip
        with make_gateway(tmp_path, {"local": upstream}) as gateway:
            token = gateway.store.issue("fs-11", "loop-11")
            first: list[httpx.Response] = []
            worker = threading.Thread(
                target=lambda: first.append(chat(client, gateway, token, tools=TOOLS))
            )
            worker.start()
            assert slow.started.wait(10)
            busy = chat(client, gateway, token)  # the only ticket is held: waits, then 503
            assert busy.status_code == 503
            assert busy.json()["error"]["type"] == "gpu_busy"
            slow.release.set()
            worker.join(10)
            assert first[0].status_code == 200
            assert chat(client, gateway, token).status_code == 200  # the ticket came back


def test_a_client_gone_mid_stream_ends_the_upstream_call(
    tmp_path: Path, client: httpx.Client
) -> None:
    upstream_closed = threading.Event()
    first_sent = threading.Event()

    def endless(ctx: RequestContext) -> None:
        ctx.start_sse()
        usage = {"usage": {"prompt_tokens": 9, "completion_tokens": 1}, "choices": [
            {"index": 0, "delta": {"content": "x"}}]}  # fmt: skip
        try:
            ctx.send_sse(usage)
            first_sent.set()
            for _ in range(1_000_000):
                ctx.send_sse({"choices": [{"index": 0, "delta": {"content": "y" * 200}}]})
        except (BrokenPipeError, ConnectionResetError):
            upstream_closed.set()
            raise

    with DoubleServer(endless) as server:
        upstream = {"kind": "openai", "base_url": server.base_url + "/v1", "gpu_ticket": True}
        with make_gateway(tmp_path, {"local": upstream}) as gateway:
            token = gateway.store.issue("fs-12", "loop-12", role="implementer")
            body = orjson.dumps({**CHAT, "stream": True})
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw:
                raw.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                    + f"Authorization: Bearer {token}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                assert raw.recv(4096).startswith(b"HTTP/1.1 200")
                assert first_sent.wait(10)
            assert upstream_closed.wait(10), "the gateway kept reading for a client gone"
            roles = wait_until(
                lambda: gateway.store.usage("fs-12")["roles"], what="the aborted call's record"
            )
            assert roles["implementer"]["aborted"] == 1
            assert roles["implementer"]["input_tokens"] == 9  # what the stream had said so far
            tickets = FlockTickets(tmp_path / "tickets", 1)  # the gateway's one ticket is free
            os.close(wait_until(lambda: _try_ticket(tickets), what="the GPU ticket back"))


def _try_ticket(tickets: FlockTickets) -> int | None:
    try:
        return tickets.acquire_nowait()
    except TicketTimeout:
        return None


def test_an_upstream_that_breaks_its_stream_ends_it_with_an_error_event(
    tmp_path: Path, client: httpx.Client
) -> None:
    def broken(ctx: RequestContext) -> None:
        handler = ctx.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        event = (
            b"event: message_start\ndata: "
            + orjson.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 21}}})
            + b"\n\n"
        )
        handler.wfile.write(b"%x\r\n%b\r\n" % (len(event), event))
        handler.close_connection = True  # hang up with no last chunk

    with DoubleServer(broken) as server:
        upstream = {"kind": "anthropic", "base_url": server.base_url, "api_key_env": ""}
        with make_gateway(tmp_path, {"claude": upstream}) as gateway:
            token = gateway.store.issue("fs-15", "loop-15", role="implementer")
            body = {**MESSAGES, "stream": True}
            url = gateway.base_url + "/v1/messages"
            with client.stream("POST", url, json=body, headers={"x-api-key": token}) as answer:
                text = answer.read().decode()
            assert text.startswith("event: message_start")
            assert "event: error" in text and "broke the stream" in text
            usage = gateway.store.usage("fs-15")["roles"]["implementer"]
            assert (usage["aborted"], usage["input_tokens"]) == (1, 21)
            wait_until(  # counted once the answer is through
                lambda: (
                    gateway.statistics()["upstreams"]["claude"]["breaker"]["consecutive_failures"]
                    == 1
                ),
                what="the breaker to count the broken stream",
            )


def test_counts_and_tokens_survive_a_new_gateway_on_the_same_store(
    tmp_path: Path, client: httpx.Client, openai_double: ChatCompletionsDouble
) -> None:
    upstreams = {"local": {"kind": "openai", "base_url": openai_double.base_url}}
    with make_gateway(tmp_path, upstreams) as gateway:
        token = gateway.store.issue("fs-13", "loop-13", role="architect", budget_tokens=10_000)
        assert chat(client, gateway, token).status_code == 200
    with make_gateway(tmp_path, upstreams) as gateway:
        assert chat(client, gateway, token).status_code == 200
        usage = gateway.store.usage("fs-13")
        assert usage["roles"]["architect"]["calls"] == 2
        assert usage["used_tokens"] == 336 and usage["budget_tokens"] == 10_000


def test_the_upstream_key_is_required_and_never_echoed(
    gateway: Gateway, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPSTREAM_KEY_ENV)
    token = gateway.store.issue("fs-14", "loop-14")
    answer = client.post(
        gateway.base_url + "/v1/messages", json=MESSAGES, headers={"x-api-key": token}
    )
    assert answer.status_code == 503
    assert f"${UPSTREAM_KEY_ENV}" in answer.json()["error"]["message"]
    assert os.environ.get(UPSTREAM_KEY_ENV) is None
