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
import contextlib
import selectors
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ipc import paths, service_report
from ipc.control import (
    ControlServer,
    ControlTimeout,
    ProtocolError,
    error_reply,
    parse_request,
    recv_frame,
    send_frame,
)
from ipc.ledger import LedgerError, TicketLedger
from ipc.posix_signals import StopSignals
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


def handle(router: LLMRouter, command: str, args: dict[str, Any]) -> Any:
    """One control command; raises LLMError / LLMRequestInvalid / ValueError on refusal."""
    if command == "status":
        return router.statistics()
    if command != "route":
        raise ValueError(f"unknown command {command!r} (route, status)")
    role = args.get("role")
    if not isinstance(role, str):
        raise LLMRequestInvalid("args.role must be a string")
    timeout = args.get("timeout_s", 120.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise LLMRequestInvalid(f"args.timeout_s must be a positive number, got {timeout!r}")
    request = LLMRequest.from_dict(args.get("request"))
    timeout = min(float(timeout), MAX_CALL_TIMEOUT_S)
    return router.route_request(role, request, timeout=timeout).to_dict()


def serve_connection(router: LLMRouter, conn: socket.socket) -> None:
    """Read one request from `conn`, answer it, close it; never raises."""
    with conn:
        try:
            command, args = parse_request(recv_frame(conn, deadline=time.monotonic() + 10.0))
        except (ControlTimeout, ProtocolError) as exc:
            reply: dict[str, Any] = error_reply("protocol", str(exc))
        else:
            try:
                reply = {"ok": True, "result": handle(router, command, args)}
            except (LLMError, ValueError) as exc:
                notes = "; ".join(getattr(exc, "__notes__", []))
                message = f"{exc} ({notes})" if notes else str(exc)
                reply = error_reply(type(exc).__name__, message)
            except Exception as exc:  # noqa: BLE001 - a bug of ours, told to the caller
                reply = error_reply("internal", f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(ControlTimeout, OSError):
            send_frame(conn, reply, deadline=time.monotonic() + 5.0)


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
    server = ControlServer(paths.control_socket(runtime, ENDPOINT))
    stop = StopSignals().install()
    pool = ThreadPoolExecutor(max_workers=max(1, args.workers), thread_name_prefix="route")
    service_report.ready(ENDPOINT, "routing", socket=str(server.path))
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(server.fileno(), selectors.EVENT_READ, "accept")
            sel.register(stop, selectors.EVENT_READ, "stop")
            while not stop.requested:
                for key, _ in sel.select(timeout=None):
                    if key.data == "stop":
                        stop.drain()
                    elif (conn := server.accept_nowait()) is not None:
                        pool.submit(serve_connection, router, conn)
    finally:
        server.close()
        pool.shutdown(wait=False, cancel_futures=True)
        _drain(pool, args.drain_s)
        router.close()
        router.budget.close()
        stop.restore()
    return 0


def _drain(pool: ThreadPoolExecutor, timeout: float) -> None:
    """Wait up to `timeout` s for the calls in flight (their own timeouts bound them too)."""
    deadline = time.monotonic() + timeout
    for thread in list(getattr(pool, "_threads", ())):
        thread.join(max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
