"""LLMRouter against local test doubles of llama.cpp and the Anthropic Messages API.

Routing, timeouts, retries, the circuit breaker (open / half-open / close with every
buffered request delivered), GPU tickets, budget accounting, and the no-key / no-server
errors. Real HTTP, real SQLite, real flock; time only bounds waits.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.llm.breaker import BreakerState
from procs.llm.budget import BudgetStore
from procs.llm.config import RouterConfig
from procs.llm.errors import (
    BudgetExceeded,
    CircuitOpen,
    EndpointTimeout,
    EndpointUnavailable,
    MissingAPIKey,
    TicketTimeout,
    UnknownRole,
    UpstreamError,
)
from procs.llm.router import LLMRouter
from procs.llm.tickets import FlockTickets, GpuTickets
from procs.llm.types import LLMRequest
from tests.doubles._plan import Answer, Fail, Hang
from tests.doubles.anthropic_messages import AnthropicMessagesDouble
from tests.doubles.llama_cpp import LlamaCppDouble
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # HTTP doubles on real sockets

KEY = "sk-test-double-key"
REQUEST = LLMRequest(model="", prompt="say ok", max_tokens=16, temperature=0.0)


@pytest.fixture
def llama() -> Iterator[LlamaCppDouble]:
    with LlamaCppDouble() as double:
        yield double


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicMessagesDouble]:
    monkeypatch.setenv("FACTORY_TEST_ANTHROPIC_KEY", KEY)
    with AnthropicMessagesDouble(expected_key=KEY) as double:
        yield double


def make_router(
    tmp_path: Path,
    llama_url: str,
    claude_url: str = "http://127.0.0.1:9",
    *,
    local: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
    tickets: GpuTickets | None = None,
) -> LLMRouter:
    raw: dict[str, Any] = {
        "roles": {"auditor": "local", "implementer": "local", "reviewer": "anthropic"},
        "endpoints": {
            "local": {
                "kind": "llama_cpp", "base_url": llama_url, "gpu_ticket": True,
                "timeout_s": 5.0, "retries": 2, "backoff_s": 0.001,
                "failure_threshold": 5, "reset_after_s": 1.0, **(local or {}),
            },
            "anthropic": {
                "kind": "anthropic", "base_url": claude_url, "model": "claude-double",
                "api_key_env": "FACTORY_TEST_ANTHROPIC_KEY", "retries": 0, "timeout_s": 5.0,
                "input_per_mtok": 3.0, "output_per_mtok": 15.0,
            },
        },
        **(budget or {}),
    }  # fmt: skip
    config = RouterConfig.from_dict(raw)
    store = BudgetStore(tmp_path / "llm_usage.sqlite", config.budget)
    return LLMRouter(config, store, tickets or FlockTickets(tmp_path / "tickets", 1))


def test_roles_go_to_their_endpoints(
    tmp_path: Path, llama: LlamaCppDouble, claude: AnthropicMessagesDouble
) -> None:
    llama.plan.set_default(Answer("from llama"))
    claude.plan.set_default(Answer("from claude"))
    router = make_router(tmp_path, llama.base_url, claude.base_url)
    local = router.route_request("auditor", REQUEST, timeout=10)
    remote = router.route_request("reviewer", REQUEST, timeout=10)
    assert (local.content, local.endpoint) == ("from llama", "local")
    assert (remote.content, remote.endpoint, remote.model) == (
        "from claude",
        "anthropic",
        "claude-double",
    )
    assert llama.requests == [
        {
            "prompt": "say ok",
            "n_predict": 16,
            "temperature": 0.0,
            "stream": False,
            "cache_prompt": True,
        }
    ]
    assert claude.requests[0]["messages"] == [{"role": "user", "content": "say ok"}]
    assert claude.keys_seen == [True]
    with pytest.raises(UnknownRole, match="no route for role 'janitor'"):
        router.route_request("janitor", REQUEST, timeout=10)


def test_timeout_is_a_clear_error(tmp_path: Path, llama: LlamaCppDouble) -> None:
    hang = Hang()
    llama.plan.extend([hang])
    router = make_router(tmp_path, llama.base_url, local={"timeout_s": 0.2, "retries": 0})
    with pytest.raises(EndpointTimeout, match=r"did not answer within 0\.2s"):
        router.route_request("auditor", REQUEST, timeout=10)
    hang.release.set()


def test_retryable_failures_are_retried_then_succeed(tmp_path: Path, llama: LlamaCppDouble) -> None:
    llama.plan.extend([Fail(500), Fail(503), Answer("third time")])
    router = make_router(tmp_path, llama.base_url)
    assert router.route_request("auditor", REQUEST, timeout=10).content == "third time"
    assert llama.plan.calls == 3


def test_client_errors_are_not_retried(tmp_path: Path, llama: LlamaCppDouble) -> None:
    llama.plan.extend([Fail(400, "bad grammar")])
    router = make_router(tmp_path, llama.base_url)
    with pytest.raises(UpstreamError, match="answered 400") as info:
        router.route_request("auditor", REQUEST, timeout=10)
    assert info.value.status == 400
    assert llama.plan.calls == 1


def test_retries_give_up_with_the_last_error(tmp_path: Path, llama: LlamaCppDouble) -> None:
    llama.plan.set_default(Fail(502))
    router = make_router(tmp_path, llama.base_url, local={"retries": 1})
    with pytest.raises(UpstreamError) as info:
        router.route_request("auditor", REQUEST, timeout=10)
    assert "gave up after 2 attempt(s)" in info.value.__notes__
    assert llama.plan.calls == 2


def _route_in_threads(router: LLMRouter, count: int, timeout: float) -> tuple[list, list]:
    results: list[Any] = [None] * count
    threads = []

    def call(i: int) -> None:
        try:
            results[i] = router.route_request("auditor", REQUEST, timeout=timeout).content
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever came back
            results[i] = exc

    for i in range(count):
        threads.append(threading.Thread(target=call, args=(i,)))
        threads[-1].start()
    return results, threads


class ManualClock:
    """The breakers' reset clock, moved only by the test: no race with thread start-up."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker_router(
    tmp_path: Path, llama: LlamaCppDouble, clock: ManualClock, **local: Any
) -> LLMRouter:
    config = RouterConfig.from_dict({
        "roles": {"auditor": "local"},
        "endpoints": {"local": {
            "kind": "llama_cpp", "base_url": llama.base_url, "timeout_s": 5.0,
            "backoff_s": 0.001, "failure_threshold": 2, "reset_after_s": 10.0, **local,
        }},
    })  # fmt: skip
    store = BudgetStore(tmp_path / "llm_usage.sqlite", config.budget)
    return LLMRouter(config, store, FlockTickets(tmp_path / "t", 8), breaker_clock=clock)


def test_breaker_opens_buffers_and_delivers_everything_on_close(
    tmp_path: Path, llama: LlamaCppDouble
) -> None:
    llama.plan.extend([Fail(500), Fail(500)])
    clock = ManualClock()
    router = breaker_router(tmp_path, llama, clock, retries=0)
    breaker = router.breakers["local"]
    for _ in range(2):
        with pytest.raises(UpstreamError):
            router.route_request("auditor", REQUEST, timeout=10)
    assert breaker.state is BreakerState.OPEN
    results, threads = _route_in_threads(router, 5, timeout=20)
    wait_until(lambda: breaker.statistics()["waiting"] == 5, what="5 buffered requests")
    assert llama.plan.calls == 2  # nothing reached the endpoint while open
    clock.now += 10.0  # reset_after_s passes: one probe, it succeeds, the circuit closes
    breaker.poke()
    for thread in threads:
        thread.join(timeout=20)
    assert results == ["ok"] * 5
    stats = breaker.statistics()
    assert stats["state"] == "closed"
    assert (stats["opened"], stats["closed"]) == (1, 1)
    assert (stats["buffered"], stats["released"], stats["expired"]) == (5, 5, 0)
    assert llama.plan.calls == 2 + 5


def test_failed_probe_reopens_and_buffered_requests_still_arrive(
    tmp_path: Path, llama: LlamaCppDouble
) -> None:
    llama.plan.extend([Fail(500), Fail(500), Fail(503)])  # the third is the half-open probe
    clock = ManualClock()
    router = breaker_router(tmp_path, llama, clock, retries=1)
    breaker = router.breakers["local"]
    with pytest.raises(UpstreamError):
        router.route_request("auditor", REQUEST, timeout=10)  # 2 attempts: opens
    assert breaker.state is BreakerState.OPEN
    results, threads = _route_in_threads(router, 3, timeout=20)
    wait_until(lambda: breaker.statistics()["waiting"] == 3, what="3 buffered requests")
    clock.now += 10.0
    breaker.poke()  # the probe fails: open again, its caller retries and waits again
    wait_until(
        lambda: breaker.statistics()["opened"] == 2 and breaker.statistics()["waiting"] == 3,
        what="the circuit to re-open with all 3 requests buffered",
    )
    assert llama.plan.calls == 3
    clock.now += 10.0
    breaker.poke()  # this probe succeeds: closed, everything delivered
    for thread in threads:
        thread.join(timeout=20)
    assert results == ["ok"] * 3
    stats = breaker.statistics()
    assert (stats["state"], stats["opened"], stats["closed"], stats["expired"]) == (
        "closed", 2, 1, 0,
    )  # fmt: skip
    assert llama.plan.calls == 3 + 3


def test_request_buffered_past_its_deadline_is_told_why(
    tmp_path: Path, llama: LlamaCppDouble
) -> None:
    llama.plan.extend([Fail(500)])
    router = make_router(
        tmp_path, llama.base_url, local={"retries": 0, "failure_threshold": 1, "reset_after_s": 60}
    )
    with pytest.raises(UpstreamError):
        router.route_request("auditor", REQUEST, timeout=10)
    with pytest.raises(CircuitOpen, match="circuit for endpoint 'local' is open"):
        router.route_request("auditor", REQUEST, timeout=0.2)
    assert router.breakers["local"].statistics()["expired"] == 1


def test_no_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        router = make_router(tmp_path, f"http://127.0.0.1:{port}")
        with pytest.raises(
            EndpointUnavailable, match=f"no llama.cpp server at http://127.0.0.1:{port}"
        ):
            router.route_request("auditor", REQUEST, timeout=10)


def test_no_key_fails_fast_and_sends_nothing(
    tmp_path: Path, claude: AnthropicMessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACTORY_TEST_ANTHROPIC_KEY")
    router = make_router(tmp_path, "http://127.0.0.1:9", claude.base_url)
    with pytest.raises(MissingAPIKey, match=r"set \$FACTORY_TEST_ANTHROPIC_KEY") as info:
        router.route_request("reviewer", REQUEST, timeout=10)
    assert claude.requests == []
    assert KEY not in str(info.value)


def test_wrong_key_is_not_retried_and_not_echoed(
    tmp_path: Path, claude: AnthropicMessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_TEST_ANTHROPIC_KEY", "sk-wrong-secret")
    router = make_router(tmp_path, "http://127.0.0.1:9", claude.base_url)
    with pytest.raises(UpstreamError, match="answered 401") as info:
        router.route_request("reviewer", REQUEST, timeout=10)
    assert "sk-wrong-secret" not in str(info.value)
    assert len(claude.requests) == 1


def test_local_inference_waits_for_a_gpu_ticket(
    tmp_path: Path, llama: LlamaCppDouble, claude: AnthropicMessagesDouble
) -> None:
    tickets = FlockTickets(tmp_path / "tickets", 1)
    router = make_router(tmp_path, llama.base_url, claude.base_url, tickets=tickets)
    held = tickets.acquire_nowait()
    try:
        with pytest.raises(TicketTimeout, match="no GPU ticket free out of 1"):
            router.route_request("auditor", REQUEST, timeout=0.3)
        assert llama.requests == []
        assert router.route_request("reviewer", REQUEST, timeout=10).content == "ok"
    finally:
        import os

        os.close(held)
    assert router.route_request("auditor", REQUEST, timeout=10).content == "ok"


def test_a_killed_holder_gives_its_ticket_back(tmp_path: Path) -> None:
    tickets = FlockTickets(tmp_path / "tickets", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT);"
         "fcntl.flock(fd,fcntl.LOCK_EX); print('held',flush=True); sys.stdin.read()",
         str(tickets.paths[0])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(TicketTimeout):
            tickets.acquire_nowait()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with tickets.acquire(deadline=float("inf")):
        pass


def test_usage_is_accounted_per_role_and_the_daily_budget_holds(
    tmp_path: Path, llama: LlamaCppDouble, claude: AnthropicMessagesDouble
) -> None:
    claude.plan.set_default(Answer("x", input_tokens=1000, output_tokens=1000))
    router = make_router(
        tmp_path, llama.base_url, claude.base_url,
        budget={"daily_budget_usd": 1.0, "role_budget_usd": {"reviewer": 0.03}},
    )  # fmt: skip
    day = ["2026-11-23"]
    router.budget._today = lambda: day[0]
    router.route_request("auditor", REQUEST, timeout=10)
    router.route_request("reviewer", REQUEST, timeout=10)  # $0.003 + $0.015 = $0.018
    router.route_request("reviewer", REQUEST, timeout=10)  # $0.036 >= $0.03
    with pytest.raises(BudgetExceeded, match=r"role 'reviewer' spent \$0.0360 of its \$0.0300"):
        router.route_request("reviewer", REQUEST, timeout=10)
    assert len(claude.requests) == 2
    assert router.route_request("auditor", REQUEST, timeout=10).content == "ok"  # local: free
    usage = router.budget.usage_by_role()
    assert usage["reviewer"] == {
        "calls": 2,
        "input_tokens": 2000,
        "output_tokens": 2000,
        "cost_usd": pytest.approx(0.036),
    }
    assert usage["auditor"]["calls"] == 2
    assert usage["auditor"]["cost_usd"] == 0
    router.budget.close()
    reopened = BudgetStore(
        tmp_path / "llm_usage.sqlite", router.config.budget, today=lambda: day[0]
    )
    assert reopened.spent_usd(role="reviewer") == pytest.approx(0.036)
    day[0] = "2026-11-24"
    reopened.check("reviewer")  # a new day, a new budget


def test_gpu_tickets_come_from_the_resource_ledger(tmp_path: Path, llama: LlamaCppDouble) -> None:
    from ipc.ledger import LedgerOwner, Limits
    from procs.llm.tickets import LedgerTickets

    ledger = LedgerOwner.create(tmp_path / "run", Limits(gpu_tickets=1))
    try:
        router = make_router(tmp_path, llama.base_url, tickets=LedgerTickets(ledger))
        held = ledger.acquire({"gpu": 1}, label="someone else", timeout=1.0)
        with pytest.raises(TicketTimeout, match="no GPU ticket from the ledger"):
            router.route_request("auditor", REQUEST, timeout=0.3)
        assert llama.requests == []
        ledger.release(held)
        assert router.route_request("auditor", REQUEST, timeout=10).content == "ok"
        assert ledger.statistics()["released"] >= 2  # ours went back after the call
    finally:
        ledger.destroy()
