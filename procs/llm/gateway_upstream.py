"""One upstream model server behind the gateway: breaker, GPU ticket, bounded call, relay.

`Upstream.relay` sends one client request on and writes the answer into a `Sink` as it
comes, streamed events included, while a StreamMeter reads the usage out of it. Order:
the breaker admits (an open circuit is refused at once with 503, never buffered: the agent
has its own retries), a GPU ticket is held for local upstreams for the whole call (503 after
`ticket_wait_s`), then the call, bounded by `timeout_s` between bytes and `max_call_s` in
all (a call blocks at most max_call_s + timeout_s). A failure before the answer starts is a
Refusal (502 no upstream, 504 timeout); after it started, the stream ends with an error
event in the protocol's shape. A client that goes away ends the call at once (the upstream
connection is closed, the ticket freed) and the tokens seen so far are counted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from procs.llm.breaker import Admission, CircuitBreaker
from procs.llm.errors import CircuitOpen, TicketTimeout
from procs.llm.gateway_config import UpstreamSpec
from procs.llm.gateway_errors import error_event
from procs.llm.gateway_store import CallUsage
from procs.llm.gateway_usage import SseSplitter, StreamMeter, body_usage
from procs.llm.tickets import GpuTickets

MAX_ANSWER_BYTES = 64 * 1024 * 1024
PASSED_BACK = ("content-type", "retry-after", "request-id", "x-request-id")
PASSED_ON = ("accept", "anthropic-version", "anthropic-beta")


DRAIN_S = 5.0  # a departed client's stream is read this long more for its usage


class Refusal(Exception):
    """The gateway answers this error itself: HTTP status, error type, message."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message


class ClientGone(Exception):
    """The client closed its connection while the answer was being written."""


class Sink(Protocol):
    def start(self, status: int, headers: dict[str, str], *, length: int | None) -> None:
        """Send the status line and headers; `length` None means a chunked stream."""
        ...

    def write(self, data: bytes) -> None:
        """Send bytes of the body; raises ClientGone."""
        ...

    def finish(self) -> None:
        """End the body (the last chunk of a stream); raises ClientGone."""
        ...


@dataclass(frozen=True)
class Request:
    """What goes to the upstream: the client's body (maybe amended), our headers."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(repr=False)  # it carries the upstream's key


Settle = Callable[[CallUsage | None, bool], None]


class _Meter:
    """The stream meter of one call, and its settlement, made at most once."""

    def __init__(self, stream: StreamMeter, settle: Settle | None) -> None:
        self.stream = stream
        self._settle = settle

    def settle(self, usage: CallUsage | None, *, aborted: bool) -> None:
        if self._settle is not None:
            settle, self._settle = self._settle, None
            settle(usage, aborted)


class Upstream:
    """Thread-safe: one pooled httpx client and one breaker shared by all requests."""

    def __init__(self, spec: UpstreamSpec, tickets: GpuTickets | None) -> None:
        if spec.gpu_ticket and tickets is None:
            raise ValueError(f"upstream {spec.name!r} wants GPU tickets: pass tickets=")
        self.spec = spec
        self.tickets = tickets
        self.breaker = CircuitBreaker(
            spec.name, failure_threshold=spec.failure_threshold, reset_after_s=spec.reset_after_s
        )
        self._http = httpx.Client(trust_env=False, limits=httpx.Limits(max_connections=256))

    def url(self, path: str) -> str:
        """`path` is the client's path after /v1 for OpenAI, the whole path for Anthropic
        and Gemini (without a `key` query parameter)."""
        return self.spec.base_url + path

    def headers(self, client: dict[str, str]) -> dict[str, str]:
        """Headers for the upstream: a few of the client's, the upstream's own key."""
        out = {k: v for k, v in client.items() if k in PASSED_ON}
        out.update({"content-type": "application/json", "accept-encoding": "identity"})
        if self.spec.kind == "anthropic":
            out.setdefault("anthropic-version", "2023-06-01")
        if not self.spec.api_key_env:
            return out
        key = os.environ.get(self.spec.api_key_env, "")
        if not key:
            raise Refusal(
                503,
                "upstream_key_missing",
                f"upstream {self.spec.name!r} needs its API key in ${self.spec.api_key_env}, "
                "which is unset or empty in the gateway's environment",
            )
        if self.spec.kind == "anthropic":
            out["x-api-key"] = key
        elif self.spec.kind == "gemini":
            out["x-goog-api-key"] = key
        else:
            out["authorization"] = f"Bearer {key}"
        return out

    def relay(self, request: Request, sink: Sink, settle: Settle | None = None, *,
              protocol: str = "", hide_usage_chunk: bool = False) -> int:  # fmt: skip
        """Forward one request, write the answer to `sink`, return the upstream's status;
        raises Refusal before the answer started. A metered call (`settle` given) holds a
        GPU ticket for local upstreams, and `settle(usage, aborted)` is called once, before
        the end of the answer reaches the client, so a caller who reads the counts after
        its call sees it counted. `protocol` (default: the upstream's kind) says how usage
        and errors are written: "openai" (chat), "responses", "anthropic" or "gemini"."""
        stream = StreamMeter(protocol or self.spec.kind, hide_usage_chunk=hide_usage_chunk)
        meter = _Meter(stream, settle)
        admission = self._admit()
        try:
            with self._ticket(metered=settle is not None):
                return self._exchange(request, sink, meter, admission)
        except TicketTimeout as exc:
            self.breaker.record_neutral(admission)
            raise Refusal(
                503,
                "gpu_busy",
                f"no GPU ticket came free for upstream {self.spec.name!r} within "
                f"{self.spec.ticket_wait_s:g}s ({exc})",
            ) from None
        except Refusal:
            raise
        except BaseException:
            self.breaker.record_neutral(admission)
            raise

    def _admit(self) -> Admission:
        try:
            return self.breaker.admit(deadline=time.monotonic())
        except CircuitOpen:
            raise Refusal(
                503,
                "circuit_open",
                f"upstream {self.spec.name!r} at {self.spec.base_url} is failing: its "
                f"circuit breaker opened after {self.spec.failure_threshold} failures in a "
                f"row; one probe call is let through {self.spec.reset_after_s:g}s after",
            ) from None

    def _ticket(self, *, metered: bool) -> AbstractContextManager[object]:
        if not (metered and self.spec.gpu_ticket and self.tickets is not None):
            return contextlib.nullcontext()
        return self.tickets.acquire(deadline=time.monotonic() + self.spec.ticket_wait_s)

    def _exchange(self, call: Request, sink: Sink, meter: _Meter, admission: Admission) -> int:
        timeout = httpx.Timeout(self.spec.timeout_s, connect=min(self.spec.timeout_s, 5.0))
        deadline = time.monotonic() + self.spec.max_call_s
        request = self._http.build_request(
            call.method, call.url, content=call.body or None, headers=call.headers,
            timeout=timeout,
        )  # fmt: skip
        try:
            answer = self._http.send(request, stream=True)
        except httpx.TimeoutException:
            self.breaker.record_failure(admission)
            raise self._timeout_refusal() from None
        except httpx.TransportError as exc:
            self.breaker.record_failure(admission)
            raise Refusal(
                502,
                "upstream_unavailable",
                f"no answer from upstream {self.spec.name!r} at {self.spec.base_url} "
                f"({type(exc).__name__}: {exc}); is the model server running?",
            ) from None
        try:
            content_type = answer.headers.get("content-type", "")
            streamed = answer.status_code == 200 and content_type.startswith("text/event-stream")
            back = {k: v for k, v in answer.headers.items() if k in PASSED_BACK}
            try:
                if streamed:
                    broken = self._stream(answer, sink, meter, back, deadline)
                else:
                    broken = self._whole(answer, sink, meter, back, deadline)
            except Refusal:
                self.breaker.record_failure(admission)
                raise
            if broken or answer.status_code == 429 or answer.status_code >= 500:
                self.breaker.record_failure(admission)
            else:
                self.breaker.record_success(admission)
            return answer.status_code
        finally:
            answer.close()

    def _timeout_refusal(self) -> Refusal:
        return Refusal(
            504,
            "upstream_timeout",
            f"upstream {self.spec.name!r} at {self.spec.base_url} sent nothing for "
            f"{self.spec.timeout_s:g}s or ran past {self.spec.max_call_s:g}s",
        )

    def _whole(
        self, answer: httpx.Response, sink: Sink, meter: _Meter, back: dict[str, str],
        deadline: float,
    ) -> bool:  # fmt: skip
        """Relay an answer of known size; settled before it is sent. False: not broken."""
        data = bytearray()
        try:
            for chunk in answer.iter_bytes():
                data += chunk
                if len(data) > MAX_ANSWER_BYTES or time.monotonic() > deadline:
                    raise self._timeout_refusal()
        except httpx.TimeoutException:
            raise self._timeout_refusal() from None
        except httpx.TransportError as exc:
            raise Refusal(
                502,
                "upstream_broken",
                f"upstream {self.spec.name!r} cut its answer short ({type(exc).__name__}: {exc})",
            ) from None
        ok = answer.is_success
        meter.settle(body_usage(meter.stream.kind, bytes(data)) if ok else None, aborted=False)
        with contextlib.suppress(ClientGone):  # counted all the same: the upstream did it
            sink.start(answer.status_code, back, length=len(data))
            sink.write(bytes(data))
        return False

    def _stream(
        self, answer: httpx.Response, sink: Sink, meter: _Meter, back: dict[str, str],
        deadline: float,
    ) -> bool:  # fmt: skip
        """Relay an SSE answer event by event; settled before its last event is sent.
        True when the upstream broke the stream (an error event ends it)."""
        splitter = SseSplitter()
        chunks = answer.iter_bytes()  # one iterator: a drain after ClientGone goes on with it
        try:
            sink.start(200, back, length=None)
            try:
                for chunk in chunks:
                    out = b"".join(e for e in splitter.feed(chunk) if meter.stream.keep(e))
                    if meter.stream.done:
                        meter.settle(meter.stream.usage, aborted=False)
                    sink.write(out)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("max_call_s")
                meter.settle(meter.stream.usage, aborted=False)  # ended without a marker
                sink.write(splitter.rest())
            except httpx.HTTPError as exc:
                meter.settle(meter.stream.usage, aborted=True)
                timeout = isinstance(exc, httpx.TimeoutException)
                message = (
                    self._timeout_refusal().message
                    if timeout
                    else f"upstream {self.spec.name!r} broke the stream "
                    f"({type(exc).__name__}: {exc})"
                )
                status = 504 if timeout else 502
                sink.write(error_event(meter.stream.kind, "upstream_error", message, status=status))
                sink.finish()
                return True
            sink.finish()
        except ClientGone:
            self._drain(chunks, splitter, meter, min(deadline, time.monotonic() + DRAIN_S))
            meter.settle(meter.stream.usage, aborted=True)
        return False

    @staticmethod
    def _drain(chunks: Iterator[bytes], splitter: SseSplitter, meter: _Meter,
               deadline: float) -> None:  # fmt: skip
        """The client left mid-stream (an agent cancelling a side request): read on, a
        bounded while, to the usage event, so that tokens the upstream spent are counted
        (they were, by the upstream); then the connection is closed by the caller."""
        try:
            for chunk in chunks:
                for event in splitter.feed(chunk):
                    meter.stream.keep(event)
                if meter.stream.done or time.monotonic() > deadline:
                    return
        except httpx.HTTPError:
            return  # what was seen is what is counted

    def close(self) -> None:
        self._http.close()
