"""The LLM router service: `route_request(role, request)` for every process of the factory.

In-process use: `LLMRouter(config, BudgetStore(...), tickets).route_request(role, req,
timeout=)`. As a supervised service (`target = "procs.llm.service:main"`), it answers on
its control socket `<runtime_dir>/llm_router.sock` (ipc.control framing), several callers at
once, one thread per call in flight (at most --workers):

    wire:  {"command": "route", "args": {"role": "auditor", "timeout_s": 60,
            "request": {"model": "", "prompt": "...", "max_tokens": 256, "temperature": 0}}}
       ->  {"ok": true, "result": {"content": ..., "usage": {...}, "endpoint": ..., ...}}
       |   {"ok": false, "error": {"type": "EndpointUnavailable", "message": "..."}}
    wire:  {"command": "status", "args": {}} -> breakers, calls per role, today's usage

Spend lives in `<state_dir>/llm_usage.sqlite`. GPU tickets come from the resource ledger
in the runtime dir when the governor has created one, else from flock slots under
`<runtime_dir>/gpu-tickets/` (see procs/llm/tickets.py); status says which.
SIGTERM stops accepting, lets calls in flight finish (bounded by --drain-s), exits 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.ledger import LedgerError, TicketLedger
from ipc.service import BadRequest, Call, Deferred, Ready, Service, ServiceLoop, serve
from procs.llm.budget import BudgetStore, DailyBudget, Prices
from procs.llm.config import RouterConfig, RouterConfigError, default_config
from procs.llm.errors import (
    BudgetExceeded,
    CircuitOpen,
    EndpointTimeout,
    EndpointUnavailable,
    LLMError,
    MissingAPIKey,
    TicketTimeout,
    UnknownRole,
    UpstreamError,
)
from procs.llm.router import LLMRouter
from procs.llm.tickets import FlockTickets, GpuTickets, LedgerTickets
from procs.llm.types import LLMRequest, LLMRequestInvalid, LLMResponse, Usage

__all__ = [
    "BudgetExceeded",
    "BudgetStore",
    "CircuitOpen",
    "DailyBudget",
    "EndpointTimeout",
    "EndpointUnavailable",
    "FlockTickets",
    "GpuTickets",
    "LLMError",
    "LLMRequest",
    "LLMRequestInvalid",
    "LLMResponse",
    "LLMRouter",
    "LedgerTickets",
    "MissingAPIKey",
    "Prices",
    "RouterConfig",
    "TicketTimeout",
    "UnknownRole",
    "UpstreamError",
    "Usage",
    "main",
    "open_router",
]

ENDPOINT = "llm_router"
MAX_CALL_TIMEOUT_S = 600.0


def open_tickets(config: RouterConfig, runtime: Path) -> GpuTickets:
    """The resource ledger's GPU tickets if the governor made one, else flock slots."""
    try:
        return LedgerTickets(TicketLedger.open(runtime))
    except LedgerError:
        return FlockTickets(runtime / "gpu-tickets", config.gpu_tickets)


def open_router(config: RouterConfig, runtime: Path, state: Path) -> LLMRouter:
    """The router with its spend ledger in `state` and GPU tickets from `runtime`."""
    budget = BudgetStore(state / "llm_usage.sqlite", config.budget)
    return LLMRouter(config, budget, open_tickets(config, runtime))


class RouterService(Service):
    """`status` is answered in the loop; each `route` runs on a worker thread (at most
    `workers` at once, `max_queued` more waiting, then `busy`), so a slow model call
    or an idle client never delays a status."""

    name = ENDPOINT

    def __init__(self, router: LLMRouter, *, workers: int, drain_s: float) -> None:
        self.router = router
        self.workers = max(1, workers)
        self.max_queued = 2 * self.workers
        self.drain_s = drain_s
        self.loop: ServiceLoop | None = None

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        return Ready("routing")

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.status, "route": self.route}

    def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        assert self.loop is not None
        return {**self.router.statistics(), "workers": self.loop.statistics()}

    def route(self, args: dict[str, Any]) -> Deferred:
        role = args.get("role")
        if not isinstance(role, str):
            raise BadRequest("args.role must be a string")
        timeout = args.get("timeout_s", 120.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise BadRequest(f"args.timeout_s must be a positive number, got {timeout!r}")
        try:
            request = LLMRequest.from_dict(args.get("request"))
        except LLMRequestInvalid as exc:
            raise control.RequestRefused(str(exc), type(exc).__name__) from None
        assert self.loop is not None
        return self.loop.run_in_thread(self._route, role, request, min(timeout, MAX_CALL_TIMEOUT_S))

    def _route(self, role: str, request: LLMRequest, timeout: float) -> dict[str, Any]:
        """On a worker thread: one call; an LLM error is an error reply of its type."""
        try:
            return self.router.route_request(role, request, timeout=timeout).to_dict()
        except (LLMError, ValueError) as exc:
            notes = "; ".join(getattr(exc, "__notes__", []))
            message = f"{exc} ({notes})" if notes else str(exc)
            raise control.RequestRefused(message, type(exc).__name__) from None

    def terminate(self, reason: str) -> None:
        service_report.report(ENDPOINT, "stopped", reason=reason)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm_router", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="router TOML (default: built-in routes)")
    parser.add_argument("--runtime-dir")
    parser.add_argument("--state-dir")
    parser.add_argument("--workers", type=int, default=8, help="calls served at once")
    parser.add_argument("--drain-s", type=float, default=30.0, help="wait for calls on stop")
    args = parser.parse_args(argv)
    try:
        config = RouterConfig.from_file(args.config) if args.config else default_config()
    except RouterConfigError as exc:
        parser.error(str(exc))
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    router = open_router(config, runtime, state)
    try:
        return serve(RouterService(router, workers=args.workers, drain_s=args.drain_s), runtime)
    finally:  # after the calls in flight drained (serve waits up to --drain-s)
        router.close()
        router.budget.close()


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
