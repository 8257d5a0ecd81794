"""The model gateway's Gemini API path, in-process over real sockets, with the scripted
Gemini API TEST DOUBLE (tests/doubles/gemini_api.py) as the upstream: counts per bead and
role equal the double's usageMetadata (streamed included), the agent's token never goes
upstream, and refusals (budget, token, body, upstream down) are in Gemini's error shape."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from procs.llm import gateway_gemini
from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_store import CallUsage, GatewayStore
from procs.llm.gateway_usage import StreamMeter
from procs.llm.tickets import FlockTickets
from tests.doubles._plan import Answer, Fail, Hang, Plan
from tests.doubles.gemini_api import GeminiApiDouble

KEY_ENV = "FACTORY_TEST_GATEWAY_GEMINI_KEY"
UPSTREAM_KEY = "AIza-upstream"
BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"temperature": 0}}  # fmt: skip
GENERATE = "/v1beta/models/gemini-2.5-pro:generateContent"
STREAM = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
# The double's figures per call: prompt 31 + 4 cached, candidates 17 + 6 thoughts.
PER_CALL = {"input_tokens": 31, "output_tokens": 23, "cached_tokens": 4}


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)


@pytest.fixture
def double() -> Iterator[GeminiApiDouble]:
    plan = Plan(default=Answer("hello from gemini", input_tokens=31, output_tokens=17))
    with GeminiApiDouble(
        plan, expected_key=UPSTREAM_KEY, cached_tokens=4, thoughts_tokens=6
    ) as double:
        yield double


@contextlib.contextmanager
def make_gateway(tmp_path: Path, base_url: str, **spec: Any) -> Iterator[Gateway]:
    upstream = {"kind": "gemini", "base_url": base_url, "api_key_env": KEY_ENV, **spec}
    config = GatewayConfig.from_dict({"upstreams": {"gemini": upstream}, "max_body_bytes": 4096})
    store = GatewayStore(tmp_path / "state" / "model_gateway.sqlite")
    gateway = Gateway(config, store, FlockTickets(tmp_path / "tickets", 1))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
        store.close()


@pytest.fixture
def gateway(tmp_path: Path, double: GeminiApiDouble) -> Iterator[Gateway]:
    with make_gateway(tmp_path, double.base_url) as gateway:
        yield gateway


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


def post(
    client: httpx.Client, gateway: Gateway, path: str, token: str, **kw: Any
) -> httpx.Response:
    body = kw.pop("json", BODY)
    return client.post(gateway.gemini_base_url + path, json=body,
                       headers={"x-goog-api-key": token}, **kw)  # fmt: skip


def sse_chunks(text: str) -> list[Any]:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_counts_match_the_double_plain_and_streamed_per_role(
    gateway: Gateway, client: httpx.Client, double: GeminiApiDouble
) -> None:
    token = gateway.store.issue("fs-g1", "loop-g1", role="implementer")
    plain = post(client, gateway, GENERATE, token)
    assert plain.status_code == 200, plain.text
    assert plain.json()["usageMetadata"]["totalTokenCount"] == 58
    gateway.store.set_role(token, "reviewer")
    url = gateway.gemini_base_url + STREAM
    with client.stream("POST", url, json=BODY, headers={"x-goog-api-key": token}) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        chunks = sse_chunks(streamed.read().decode())
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
        "hello from gemini"
    )
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    roles = gateway.store.usage("fs-g1")["roles"]
    for role in ("implementer", "reviewer"):
        assert roles[role] == {"calls": 1, **PER_CALL, "aborted": 0}
    assert gateway.store.usage("fs-g1")["used_tokens"] == 2 * 58  # = totalTokenCount
    # The upstream got its own key, the model and the stream's alt=sse, never our token.
    assert [(s.action, s.key_ok) for s in double.requests] == [
        ("generateContent", True), ("streamGenerateContent", True)]  # fmt: skip
    assert double.requests[1].path.endswith(":streamGenerateContent?alt=sse")
    assert double.requests[0].body == BODY


def test_a_key_in_the_query_is_the_token_and_is_not_passed_on(
    gateway: Gateway, client: httpx.Client, double: GeminiApiDouble
) -> None:
    token = gateway.store.issue("fs-g2", "loop-g2", role="auditor")
    url = f"{gateway.gemini_base_url}{STREAM}&key={token}"
    with client.stream("POST", url, json=BODY) as streamed:
        assert streamed.status_code == 200
        streamed.read()
    assert double.requests[-1].key_ok
    assert double.requests[-1].path == STREAM  # the key taken out, alt=sse kept
    assert gateway.store.usage("fs-g2")["roles"]["auditor"]["output_tokens"] == 23
    bearer = client.post(gateway.gemini_base_url + GENERATE, json=BODY,
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert bearer.status_code == 200  # GEMINI_API_KEY_AUTH_MECHANISM=bearer
    assert token not in "".join(s.path for s in double.requests)


def test_count_tokens_passes_through_uncounted(
    gateway: Gateway, client: httpx.Client, double: GeminiApiDouble
) -> None:
    token = gateway.store.issue("fs-g3", "loop-g3", role="implementer", budget_tokens=1)
    path = "/v1beta/models/gemini-2.5-pro:countTokens"
    assert post(client, gateway, path, token).json() == {"totalTokens": 9}
    assert gateway.store.usage("fs-g3")["roles"] == {}


def test_over_budget_is_refused_in_geminis_shape_before_the_upstream(
    gateway: Gateway, client: httpx.Client, double: GeminiApiDouble
) -> None:
    token = gateway.store.issue("fs-g4", "loop-g4", role="implementer", budget_tokens=50)
    assert post(client, gateway, GENERATE, token).status_code == 200  # 58 > 50 now
    calls = double.plan.calls
    refused = post(client, gateway, STREAM, token)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert "over its budget of 50 tokens (used 58)" in error["message"]
    retry = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
    assert retry and int(retry[0]["retryDelay"].rstrip("s")) > 300  # terminal for Gemini CLI
    assert double.plan.calls == calls


def test_a_bad_or_missing_token_is_refused_in_geminis_shape(
    gateway: Gateway, client: httpx.Client, double: GeminiApiDouble
) -> None:
    for headers in ({"x-goog-api-key": "fgw-not-issued"}, {}):
        refused = client.post(gateway.gemini_base_url + GENERATE, json=BODY, headers=headers)
        assert refused.status_code == 401
        error = refused.json()["error"]
        assert (error["code"], error["status"]) == (401, "UNAUTHENTICATED")
    assert "x-goog-api-key" in error["message"]
    assert double.requests == []


def test_bodies_and_routes_are_refused_in_geminis_shape(
    gateway: Gateway, client: httpx.Client
) -> None:
    token = gateway.store.issue("fs-g5", "loop-g5")
    missing = post(client, gateway, GENERATE, token, json={"prompt": "hi"})
    assert missing.status_code == 400
    assert missing.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "needs 'contents'" in missing.json()["error"]["message"]
    big = post(client, gateway, GENERATE, token, json={"contents": ["x" * 5000]})
    assert big.status_code == 413 and big.json()["error"]["code"] == 413
    unknown = post(client, gateway, "/v1beta/models/m:embedContent", token)
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"


def test_upstream_down_or_silent_is_502_or_504_in_geminis_shape(
    tmp_path: Path, client: httpx.Client
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with make_gateway(tmp_path, f"http://127.0.0.1:{closed_port}") as gateway:
        token = gateway.store.issue("fs-g6", "loop-g6", role="implementer")
        down = post(client, gateway, GENERATE, token)
        assert down.status_code == 502
        error = down.json()["error"]
        assert (error["code"], error["status"]) == (502, "UNAVAILABLE")
        assert "is the model server running?" in error["message"]
        assert gateway.store.usage("fs-g6")["roles"] == {}
    held = Hang(limit_s=5)
    with (
        GeminiApiDouble(Plan([held]), expected_key=UPSTREAM_KEY) as slow,
        make_gateway(tmp_path / "2", slow.base_url, timeout_s=0.3) as gateway,
    ):
        token = gateway.store.issue("fs-g7", "loop-g7")
        silent = post(client, gateway, GENERATE, token)
        held.release.set()
        assert silent.status_code == 504
        assert silent.json()["error"]["status"] == "DEADLINE_EXCEEDED"


def test_an_upstream_error_passes_through_and_a_broken_stream_ends_in_an_error(
    tmp_path: Path, client: httpx.Client
) -> None:
    plan = Plan([Fail(503, "model overloaded")], default=Answer("abcdef", 20, 9))
    with (
        GeminiApiDouble(plan, expected_key=UPSTREAM_KEY, chunks=3, break_after=2) as double,
        make_gateway(tmp_path, double.base_url) as gateway,
    ):
        token = gateway.store.issue("fs-g8", "loop-g8", role="implementer")
        failed = post(client, gateway, GENERATE, token)
        assert failed.status_code == 503
        assert failed.json()["error"]["message"] == "model overloaded"  # the upstream's own
        url = gateway.gemini_base_url + STREAM
        with client.stream("POST", url, json=BODY, headers={"x-goog-api-key": token}) as answer:
            text = answer.read().decode()
        events = text.split("\r\n\r\n")
        assert len(sse_chunks(text)) == 2
        error = orjson.loads(events[-1])["error"]  # bare JSON, as @google/genai checks
        assert (error["code"], error["status"]) == (502, "UNAVAILABLE")
        assert "broke the stream" in error["message"]
        usage = gateway.store.usage("fs-g8")["roles"]["implementer"]
        assert (usage["calls"], usage["aborted"]) == (2, 1)
        assert (usage["input_tokens"], usage["output_tokens"]) == (20, 6)  # the 2nd chunk's


def test_usage_metadata_and_stream_meter() -> None:
    meta = {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 7,
            "thoughtsTokenCount": 5, "toolUsePromptTokenCount": 3}  # fmt: skip
    assert gateway_gemini.usage({"usageMetadata": meta}) == CallUsage(43, 12, 60)
    assert gateway_gemini.usage([{"usageMetadata": {"promptTokenCount": 2}}, {"x": 1}]) == (
        CallUsage(2, 0, 0)
    )
    assert gateway_gemini.usage({"candidates": []}) is None
    meter = StreamMeter("gemini")
    for count in (1, 4):
        chunk = {"usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": count}}
        assert meter.keep(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
    assert meter.usage == CallUsage(9, 4, 0) and not meter.done
    assert gateway_gemini.without_key("/p?alt=sse&key=fgw-x") == "/p?alt=sse"
    assert gateway_gemini.without_key("/p?key=fgw-x") == "/p"
    assert gateway_gemini.route("GET", "/v1/models") is None  # OpenAI's
    assert gateway_gemini.route("POST", "/v1/models/m:generateContent") == ("gemini", True)


GENAI_SCRIPT = """
const {GoogleGenAI} = require('@google/genai');
const ai = new GoogleGenAI({apiKey: process.env.TOKEN,
                            httpOptions: {baseUrl: process.env.GOOGLE_GEMINI_BASE_URL}});
(async () => {
  const contents = 'hi';
  const one = await ai.models.generateContent({model: 'gemini-2.5-pro', contents});
  let text = '';
  for await (const c of await ai.models.generateContentStream({model: 'gemini-2.5-pro', contents}))
    text += c.text ?? '';
  const counted = await ai.models.countTokens({model: 'gemini-2.5-pro', contents});
  let refused = '';
  try { await ai.models.generateContent({model: 'gemini-2.5-pro', contents}); }
  catch (e) { refused = `${e.status} ${e.message}`; }
  console.log(JSON.stringify({one: one.text, text, total: counted.totalTokens, refused}));
})();
"""


# .ci/run installs the SDK beside the agents; node finds it there through NODE_PATH
CI_NODE_MODULES = Path(__file__).resolve().parent.parent / ".ci" / "node" / "node_modules"
NODE_ENV = {**os.environ, "NODE_PATH": os.pathsep.join(
    p for p in (os.environ.get("NODE_PATH", ""), str(CI_NODE_MODULES)) if p)}  # fmt: skip


def _genai_resolves() -> bool:
    try:
        probe = ["node", "-e", "require.resolve('@google/genai')"]
        done = subprocess.run(probe, check=False, capture_output=True, timeout=30, env=NODE_ENV)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _genai_resolves(), reason="node with @google/genai (NODE_PATH) needed")
def test_the_real_google_genai_sdk_through_the_gateway(
    gateway: Gateway, double: GeminiApiDouble
) -> None:
    token = gateway.store.issue("fs-g9", "loop-g9", role="implementer", budget_tokens=100)
    env = {**NODE_ENV, "TOKEN": token, "GOOGLE_GEMINI_BASE_URL": gateway.gemini_base_url}
    node = ["node", "-e", GENAI_SCRIPT]
    done = subprocess.run(node, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["one"] == out["text"] == "hello from gemini"
    assert out["total"] == 9
    assert out["refused"].startswith("429 ") and "RESOURCE_EXHAUSTED" in out["refused"]
    assert gateway.store.usage("fs-g9")["roles"]["implementer"]["calls"] == 2
    assert all(s.key_ok for s in double.requests)
