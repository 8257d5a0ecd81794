"""The model gateway: agents' model server on 127.0.0.1, a metered pass-through.

Coding agents (opencode, Claude Code, ...) are pointed at it instead of their model
server, with a token from the gateway as their API key, so every agent token is counted
per bead and role, budgeted, GPU-ticketed and passes the breaker:

    POST /v1/chat/completions   OpenAI chat completions (streamed or not) -> the "openai" upstream
    POST /v1/responses          OpenAI Responses (streamed or not) -> the "openai" upstream
    GET  /v1/models             the upstream's model list (Anthropic's with anthropic-version)
    POST /v1/messages/count_tokens  Anthropic's token counter (no tokens spent: not metered)
    POST /v1/messages           Anthropic Messages (streamed or not) -> the "anthropic" upstream
    POST /v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse (metered),
         :countTokens (not), GET /v1beta/models   the Gemini API -> the "gemini" upstream
         (procs.llm.gateway_gemini: Gemini CLI's GOOGLE_GEMINI_BASE_URL is `base_url`)

In-process (tests, benches, this process kind; other kinds may not import procs.llm, so
a loop, one-shot or not, runs `procs.llm.gateway_service` and speaks to its socket):

    gateway = Gateway(config, GatewayStore(state / "model_gateway.sqlite"), tickets)
    base_url = gateway.start()             # serving on a thread: http://127.0.0.1:PORT
    token = gateway.store.issue("bead-1", "loop-1", budget_tokens=200_000)
    gateway.store.set_role(token, "implementer")    # before each role's turn
    gateway.store.usage("bead-1")          # counts per role, over_budget, reason
    gateway.stop()

Refusals are JSON in the protocol's error shape (procs.llm.gateway_errors): 401 missing or
unknown token, 400 bad body, 413 body over max_body_bytes, 429 bead over budget (before the
upstream is asked), 502/504 upstream down or silent, 503 open breaker, no GPU ticket, or too
busy. The server is the stdlib's ThreadingHTTPServer (one thread per connection,
`max_concurrent` requests at once); an idle or slow client is dropped after IDLE_S.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from ipc import service_report
from procs.llm import gateway_gemini
from procs.llm.gateway_config import GatewayConfig
from procs.llm.gateway_exchange import BodyTooLarge, Exchange, MalformedHttp
from procs.llm.gateway_store import CallUsage, GatewayStore, UnknownToken
from procs.llm.gateway_upstream import Refusal, Request, Upstream
from procs.llm.gateway_usage import BadRequestBody, ask_openai_usage, parse_request
from procs.llm.tickets import GpuTickets

IDLE_S = 120.0
HOST = "127.0.0.1"
# (method, path) -> (protocol, metered), and the Gemini API's by gateway_gemini.route
ROUTES = {
    ("POST", "/v1/chat/completions"): ("openai", True),
    ("POST", "/v1/responses"): ("responses", True),
    ("POST", "/v1/messages"): ("anthropic", True),
    ("GET", "/v1/models"): ("openai", False),
    ("POST", "/v1/messages/count_tokens"): ("anthropic", False),
}
UPSTREAM_KIND = {"openai": "openai", "responses": "openai", "anthropic": "anthropic",
                 "gemini": "gemini"}  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5: a burst of agents' calls (a dozen at
    # once under load) found it full and was reset (ECONNRESET), so calls were lost
    request_queue_size = 128
    gateway: Gateway

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a request (a reset while reading the request
        line): one record, not socketserver's traceback on stderr."""
        error = sys.exc_info()[1]
        service_report.report("model_gateway", "connection_error", error=repr(error))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    timeout = IDLE_S
    server: _Server

    def _serve(self) -> None:
        self.server.gateway.handle(Exchange(self))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return  # never log: request lines may carry what agents send


class Gateway:
    """The HTTP front; `store` holds tokens and counts, one Upstream per protocol kind."""

    def __init__(
        self,
        config: GatewayConfig,
        store: GatewayStore,
        tickets: GpuTickets | None = None,
        *,
        port: int | None = None,
    ) -> None:
        """Binds and listens at once (raises OSError when `port` is taken); serves once
        `start()` or `serve()` is called. `port` None: the config's (0: any free)."""
        self.config = config
        self.store = store
        self.upstreams = {spec.kind: Upstream(spec, tickets) for spec in config.upstreams.values()}
        self._slots = threading.BoundedSemaphore(config.max_concurrent)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._statuses: dict[int, int] = {}
        self._server = _Server((HOST, config.port if port is None else port), _Handler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """Anthropic clients take this; OpenAI clients take `openai_base_url`."""
        return f"http://{HOST}:{self.port}"

    @property
    def gemini_base_url(self) -> str:
        """Gemini CLI's GOOGLE_GEMINI_BASE_URL (@google/genai adds /v1beta itself)."""
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    def start(self) -> str:
        """Serve on a daemon thread; returns `base_url`."""
        self._serving = True
        self._thread = threading.Thread(target=self.serve, name="model-gateway", daemon=True)
        self._thread.start()
        return self.base_url

    def serve(self) -> None:
        """Serve on this thread until `stop()`."""
        self._serving = True
        self._server.serve_forever(poll_interval=0.1)  # how soon stop() is seen

    def stop(self, *, drain_s: float = 0.0) -> None:
        """Stop accepting, close the listener, and give the calls in flight up to
        `drain_s` to finish (what is still running after that is cut off)."""
        if self._serving:  # (shutdown() waits for serve_forever, which must have run)
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=drain_s)
        for upstream in self.upstreams.values():
            upstream.close()

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            statuses = {str(k): v for k, v in sorted(self._statuses.items())}
        return {
            "base_url": self.base_url,
            "responses": statuses,
            "upstreams": {
                u.spec.name: {
                    "kind": kind,
                    "base_url": u.spec.base_url,
                    "breaker": u.breaker.statistics(),
                }
                for kind, u in self.upstreams.items()
            },
            **self.store.statistics(),
        }

    def handle(self, exchange: Exchange) -> None:
        """Answer one request (on its connection's thread); never raises past ClientGone.
        The body is read (bounded) first, whatever the answer, so the connection stays in
        step for the client's next request."""
        route = ROUTES.get((exchange.method, exchange.path)) or gateway_gemini.route(
            exchange.method, exchange.path
        )
        kind = "anthropic" if exchange.path == "/v1/messages" else "openai"
        if gateway_gemini.is_gemini_path(exchange.path):
            kind = "gemini"
        if route is not None and route[0] == "openai" and exchange.header("anthropic-version"):
            route = ("anthropic", route[1])  # GET /v1/models from an Anthropic client
        try:
            body = exchange.read_body(self.config.max_body_bytes)
            if route is None:
                raise Refusal(404, "not_found", exchange.unknown_route())
            kind, metered = route
            if not self._slots.acquire(blocking=False):
                busy = f"the gateway serves {self.config.max_concurrent} requests at once already"
                raise Refusal(503, "overloaded", busy)
            with self._idle:
                self._active += 1
            try:
                self._count(self._answer(exchange, kind, metered, body))
            finally:
                self._slots.release()
                with self._idle:
                    self._active -= 1
                    self._idle.notify_all()
        except BodyTooLarge as exc:
            self._refuse(exchange, kind, Refusal(413, "request_too_large", str(exc)))
        except MalformedHttp as exc:
            self._refuse(exchange, kind, Refusal(400, "invalid_request", str(exc)))
        except Refusal as refusal:
            self._refuse(exchange, kind, refusal)
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill the connection silently
            service_report.report("model_gateway", "internal_error", error=repr(exc))
            self._refuse(exchange, kind, Refusal(500, "internal_error", repr(exc)))

    def _answer(self, exchange: Exchange, protocol: str, metered: bool, body: bytes) -> int:
        try:
            grant = self.store.grant(exchange.token())
        except UnknownToken as exc:
            hint = "ask for one with the gateway's `token` command, send it as the API key"
            raise Refusal(401, "authentication_error", f"{exc}; {hint}") from None
        kind = UPSTREAM_KIND[protocol]
        upstream = self.upstreams.get(kind)
        if upstream is None:
            raise Refusal(503, "no_upstream", f"this gateway has no {kind!r} upstream configured")
        headers = upstream.headers(exchange.headers())
        path = exchange.raw_path.removeprefix("/v1") if kind == "openai" else exchange.raw_path
        if kind == "gemini":  # the agent's token never goes on, nor into a URL
            path = gateway_gemini.without_key(path)
        if not metered:
            plain = Request(exchange.method, upstream.url(path), body, headers)
            return upstream.relay(plain, exchange)
        try:
            request = parse_request(protocol, body)
        except BadRequestBody as exc:
            raise Refusal(400, "invalid_request", str(exc)) from None
        if refusal := self.store.over_budget(grant.bead):
            raise Refusal(429, "budget_exceeded", refusal)
        asked = ask_openai_usage(request) if protocol == "openai" else None
        if asked is not None:
            body = orjson.dumps(asked)

        def settle(usage: CallUsage | None, aborted: bool) -> None:
            self.store.record(grant, usage or CallUsage(), aborted=aborted)

        call = Request("POST", upstream.url(path), body, headers)
        return upstream.relay(
            call, exchange, settle, protocol=protocol, hide_usage_chunk=asked is not None
        )

    def _refuse(self, exchange: Exchange, kind: str, refusal: Refusal) -> None:
        self._count(refusal.status)
        exchange.refuse(kind, refusal.status, refusal.type, refusal.message)

    def _count(self, status: int) -> None:
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1
