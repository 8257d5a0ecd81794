"""LLMRouter: send a role's request to its endpoint with a budget, a breaker and retries.

One call, in order: find the role's endpoint (UnknownRole), check today's budget
(BudgetExceeded), then up to 1 + retries attempts, each one admitted by the endpoint's
circuit breaker (buffered while open, CircuitOpen at the deadline), holding a GPU ticket
for local endpoints (TicketTimeout), bounded by min(endpoint timeout, time left). Retryable
failures (no server, timeout, 429, 5xx) back off exponentially with jitter; others (no key,
bad request) fail at once. Tokens and cost are recorded per role after a success.
Nothing here blocks past the caller's `timeout`, plus at most one HTTP connect of 2 s.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from procs.llm.anthropic_api import AnthropicClient
from procs.llm.breaker import CircuitBreaker
from procs.llm.budget import BudgetStore
from procs.llm.config import EndpointSpec, RouterConfig
from procs.llm.errors import EndpointTimeout, LLMError, UnknownRole
from procs.llm.llama_cpp import DEFAULT_BASE_URL, LlamaCppClient
from procs.llm.tickets import GpuTickets
from procs.llm.types import LLMRequest, LLMResponse


class CompletionClient(Protocol):
    name: str

    def complete(self, request: LLMRequest, *, timeout: float) -> LLMResponse: ...

    def close(self) -> None: ...


def build_client(spec: EndpointSpec) -> CompletionClient:
    if spec.kind == "llama_cpp":
        return LlamaCppClient(spec.name, spec.base_url or DEFAULT_BASE_URL, spec.model)
    return AnthropicClient(
        spec.name, base_url=spec.base_url, model=spec.model or "claude-sonnet-4-5",
        api_key_env=spec.api_key_env,
    )  # fmt: skip


class LLMRouter:
    """Routes by role; thread-safe, so a service may serve several callers at once."""

    def __init__(
        self,
        config: RouterConfig,
        budget: BudgetStore,
        tickets: GpuTickets,
        *,
        clients: dict[str, CompletionClient] | None = None,
        rng: random.Random | None = None,
        breaker_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.budget = budget
        self.tickets = tickets
        self.clients = clients or {name: build_client(s) for name, s in config.endpoints.items()}
        self.breakers = {
            name: CircuitBreaker(
                name,
                failure_threshold=s.failure_threshold,
                reset_after_s=s.reset_after_s,
                clock=breaker_clock,
            )
            for name, s in config.endpoints.items()
        }
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def route_request(self, role: str, request: LLMRequest, *, timeout: float) -> LLMResponse:
        """Answer `request` for `role` within `timeout` seconds or raise an LLMError."""
        deadline = time.monotonic() + timeout
        name = self.config.roles.get(role)
        if name is None:
            raise UnknownRole(f"no route for role {role!r} (routed: {sorted(self.config.roles)})")
        spec = self.config.endpoints[name]
        self.budget.check(role)
        try:
            response = self._attempts(spec, request, deadline)
        except LLMError as exc:
            self._count(role, "failed")
            exc.add_note(f"role {role!r} -> endpoint {name!r}")
            raise
        cost = spec.prices.cost(response.usage)
        self.budget.record(role, name, response.usage, cost)
        self._count(role, "answered")
        return response

    def _attempts(self, spec: EndpointSpec, request: LLMRequest, deadline: float) -> LLMResponse:
        breaker = self.breakers[spec.name]
        client = self.clients[spec.name]
        attempt = 0
        while True:
            attempt += 1
            admission = breaker.admit(deadline=deadline)
            try:
                with self._ticket(spec, deadline):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise EndpointTimeout(f"no time left to call endpoint {spec.name!r}")
                    response = client.complete(request, timeout=min(spec.timeout_s, left))
            except LLMError as exc:
                if exc.retryable:
                    breaker.record_failure(admission)
                else:
                    breaker.record_neutral(admission)
                pause = spec.backoff_s * (2 ** (attempt - 1)) * (0.5 + self._rng.random())
                if not exc.retryable or attempt > spec.retries:
                    exc.add_note(f"gave up after {attempt} attempt(s)")
                    raise
                if time.monotonic() + pause >= deadline:
                    exc.add_note(f"gave up after {attempt} attempt(s): deadline before next try")
                    raise
                time.sleep(pause)
                continue
            except BaseException:
                breaker.record_neutral(admission)
                raise
            breaker.record_success(admission)
            return response

    def _ticket(self, spec: EndpointSpec, deadline: float) -> AbstractContextManager[object]:
        if spec.gpu_ticket:
            return self.tickets.acquire(deadline=deadline)
        return contextlib.nullcontext()

    def _count(self, role: str, what: str) -> None:
        with self._lock:
            per_role = self._counts.setdefault(role, {"answered": 0, "failed": 0})
            per_role[what] += 1

    def statistics(self) -> dict[str, object]:
        with self._lock:
            calls = {role: dict(c) for role, c in self._counts.items()}
        stats: dict[str, object] = {
            "calls": calls,
            "breakers": {name: b.statistics() for name, b in self.breakers.items()},
            "usage_today": self.budget.usage_by_role(),
        }
        stats["gpu_tickets_from"] = type(self.tickets).__name__
        if hasattr(self.tickets, "statistics"):
            stats["gpu_tickets"] = self.tickets.statistics()
        return stats

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
