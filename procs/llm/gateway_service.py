"""The model gateway as a supervised service (`procs.llm.gateway_service:main`).

It serves agents' model traffic over HTTP on 127.0.0.1 (procs/llm/gateway.py) and
answers loops on its control socket `<runtime_dir>/model_gateway.sock` (ipc.control):

    token  {"bead": "fs-12", "loop": "loop-7", "budget_tokens": 200000, "role": "auditor"}
        -> {"token": "fgw-...", "bead": "fs-12", "openai_base_url": "http://127.0.0.1:P/v1",
            "anthropic_base_url": "http://127.0.0.1:P", "gemini_base_url": "http://127.0.0.1:P"}
    turn   {"token": "fgw-...", "role": "implementer"}  -> {"bead": "fs-12", "role": ...}
    usage  {"bead": "fs-12"} -> {"roles": {role: {calls, input_tokens, output_tokens,
            cached_tokens, aborted}}, "budget_tokens", "used_tokens", "over_budget", "reason"}
    revoke {"token": "fgw-..."} -> {"revoked": true}
    status {} -> responses by HTTP status, upstreams and their breakers, live tokens

READY goes out once the HTTP port listens. The URLs are also written to
`<runtime_dir>/model_gateway.json` (0600, with the pid); a restart binds the port named
there again when it is free, so agents configured before a crash keep their base URL.
Tokens and counts live in `<state_dir>/model_gateway.sqlite` and survive restarts.
SIGTERM stops accepting and lets calls in flight finish (bounded by --drain-s), exit 0.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ipc import control, paths
from ipc.ledger import LedgerError, TicketLedger
from ipc.service import BadRequest, Call, Ready, Service, ServiceLoop, StartFailed, serve
from procs.llm.gateway import Gateway
from procs.llm.gateway_config import GatewayConfig, GatewayConfigError
from procs.llm.gateway_store import NO_ROLE, GatewayStore, UnknownToken
from procs.llm.tickets import FlockTickets, GpuTickets, LedgerTickets

ENDPOINT = "model_gateway"
INFO_FILE = "model_gateway.json"
DEFAULT_CONFIG = {
    "upstreams": {
        "local": {"kind": "openai", "base_url": "http://127.0.0.1:8080/v1", "gpu_ticket": True},
        "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com"},
        "gemini": {"kind": "gemini", "base_url": "https://generativelanguage.googleapis.com"},
    }
}


def open_tickets(config: GatewayConfig, runtime: Path) -> GpuTickets:
    """The governor's ledger tickets when it made one, else flock slots shared with the
    router (the same `<runtime_dir>/gpu-tickets/`)."""
    try:
        return LedgerTickets(TicketLedger.open(runtime), label=ENDPOINT)
    except LedgerError:
        return FlockTickets(runtime / "gpu-tickets", config.gpu_tickets)


def last_port(runtime: Path) -> int:
    """The port the previous run wrote down, 0 when none."""
    try:
        port = orjson.loads((runtime / INFO_FILE).read_bytes()).get("port", 0)
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return 0
    return port if isinstance(port, int) and 0 < port < 65536 else 0


def bind(config: GatewayConfig, store: GatewayStore, tickets: GpuTickets, runtime: Path) -> Gateway:
    """The configured port; with port 0, the last run's port if free, else any free one."""
    if config.port == 0 and (port := last_port(runtime)):
        try:
            return Gateway(config, store, tickets, port=port)
        except OSError:
            pass  # taken by now: any free port, agents are given the new URL with new tokens
    return Gateway(config, store, tickets)


def write_info(runtime: Path, gateway: Gateway) -> Path:
    """Atomically (temp file + rename), 0600."""
    path = runtime / INFO_FILE
    info = {
        "pid": os.getpid(),
        "port": gateway.port,
        "base_url": gateway.base_url,
        "openai_base_url": gateway.openai_base_url,
        "anthropic_base_url": gateway.base_url,
        "gemini_base_url": gateway.gemini_base_url,
        "socket": str(paths.control_socket(runtime, ENDPOINT)),
    }
    temp = path.with_name(f".{INFO_FILE}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, orjson.dumps(info, option=orjson.OPT_INDENT_2))
    finally:
        os.close(fd)
    os.replace(temp, path)
    return path


def _text(args: dict[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"args.{key} must be a non-empty string")
    return value


class GatewayService(Service):
    """Control calls are short SQLite operations answered in the loop; the HTTP server
    runs on the one worker thread, and the service stops (exit 1) if it ever ends."""

    name = ENDPOINT
    workers = 1

    def __init__(
        self, config: GatewayConfig, runtime: Path, state: Path, *, drain_s: float = 20.0
    ) -> None:
        self.config = config
        self.drain_s = drain_s
        self.runtime = runtime
        self.state = state
        self.store: GatewayStore | None = None
        self.gateway: Gateway | None = None

    def init(self, loop: ServiceLoop) -> Ready:
        self.store = GatewayStore(self.state / "model_gateway.sqlite")
        try:
            self.gateway = bind(
                self.config, self.store, open_tickets(self.config, self.runtime), self.runtime
            )
        except OSError as exc:
            raise StartFailed(f"cannot listen on 127.0.0.1:{self.config.port}: {exc}") from exc
        info = write_info(self.runtime, self.gateway)
        serving = loop.run_in_thread(self.gateway.serve)
        serving.add_done_callback(lambda _d: loop.stop(1, "the HTTP server ended"))
        return Ready(
            f"serving on {self.gateway.base_url}", base_url=self.gateway.base_url, info=str(info)
        )

    def calls(self) -> Mapping[str, Call]:
        return {
            "token": self.token,
            "turn": self.turn,
            "usage": self.usage,
            "revoke": self.revoke,
            "status": self.status,
        }

    def token(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None and self.gateway is not None
        budget = args.get("budget_tokens")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < 0
        ):
            raise BadRequest(f"args.budget_tokens must be an integer >= 0, got {budget!r}")
        bead = _text(args, "bead")
        token = self.store.issue(
            bead, _text(args, "loop", bead), role=_text(args, "role", NO_ROLE), budget_tokens=budget
        )
        return {
            "token": token,
            "bead": bead,
            "openai_base_url": self.gateway.openai_base_url,
            "anthropic_base_url": self.gateway.base_url,
            "gemini_base_url": self.gateway.gemini_base_url,
        }

    def turn(self, args: dict[str, Any]) -> dict[str, str]:
        assert self.store is not None
        try:
            grant = self.store.set_role(_text(args, "token"), _text(args, "role"))
        except UnknownToken as exc:
            raise control.RequestRefused(str(exc), "unknown_token") from None
        return {"bead": grant.bead, "role": grant.role}

    def usage(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        return self.store.usage(_text(args, "bead"))

    def revoke(self, args: dict[str, Any]) -> dict[str, bool]:
        assert self.store is not None
        return {"revoked": self.store.revoke(_text(args, "token"))}

    def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        assert self.gateway is not None
        return self.gateway.statistics()

    def terminate(self, reason: str) -> None:
        if self.gateway is not None:
            self.gateway.stop(drain_s=self.drain_s)
        if self.store is not None:
            self.store.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=ENDPOINT, description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        type=Path,
        help="gateway TOML (default: local llama.cpp "
        "at 127.0.0.1:8080/v1 with GPU tickets, and api.anthropic.com)",
    )
    parser.add_argument("--runtime-dir")
    parser.add_argument("--state-dir")
    parser.add_argument("--drain-s", type=float, default=20.0, help="on stop, wait for calls")
    args = parser.parse_args(argv)
    try:
        config = (
            GatewayConfig.from_file(args.config)
            if args.config
            else GatewayConfig.from_dict(DEFAULT_CONFIG)
        )
    except GatewayConfigError as exc:
        parser.error(str(exc))
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    service = GatewayService(config, runtime, state, drain_s=args.drain_s)
    return serve(service, runtime)


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
