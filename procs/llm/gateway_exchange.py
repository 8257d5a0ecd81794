"""One HTTP exchange of the gateway, over the stdlib handler: request in, answer out.

It reads the request bounded (a Content-Length or chunked body of at most the limit,
under the connection's socket timeout), finds the client's token, and is the Sink the
upstream's answer is written into: a known length as is, a stream as HTTP/1.1 chunks,
so the connection can be kept alive either way. Any failed write means the client went
away: ClientGone, and the connection is closed.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from procs.llm import gateway_gemini
from procs.llm.gateway_errors import error_body
from procs.llm.gateway_store import UnknownToken
from procs.llm.gateway_upstream import ClientGone

DRAIN_BYTES = 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class BodyTooLarge(ValueError):
    """The request body is over the gateway's limit; the message gives both sizes."""


class MalformedHttp(ValueError):
    """The request's framing is broken (a bad Content-Length or chunk size)."""


class Exchange:
    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler
        self.method = handler.command
        self.raw_path = handler.path
        self.path = handler.path.split("?", 1)[0]
        self._started = False
        self._chunked = False

    def header(self, name: str) -> str:
        return str(self._handler.headers.get(name, ""))

    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self._handler.headers.items()}

    def token(self) -> str:
        """The client's token (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key` or a
        `?key=` query parameter); raises UnknownToken."""
        bearer = self.header("authorization")
        if bearer.lower().startswith("bearer ") and bearer[7:].strip():
            return bearer[7:].strip()
        for name in ("x-api-key", "x-goog-api-key"):
            if key := self.header(name).strip():
                return key
        if key := gateway_gemini.query_key(self.raw_path).strip():
            return key
        raise UnknownToken(
            "no token: send the gateway's token as `Authorization: Bearer <token>` "
            "(OpenAI), `x-api-key: <token>` (Anthropic) or `x-goog-api-key: <token>` (Gemini)"
        )

    def unknown_route(self) -> str:
        return (
            f"no route {self.method} {self.path}: the gateway serves POST /v1/chat/completions, "
            "POST /v1/responses, POST /v1/messages (and /count_tokens), GET /v1/models and "
            "POST /v1beta/models/{model}:generateContent (:streamGenerateContent, :countTokens)"
        )

    def read_body(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes; raises BodyTooLarge or MalformedHttp.

        A body over the limit by at most DRAIN_BYTES is read and dropped, so the refusal
        reaches the client (closing on unread bytes resets the connection, and the client
        may lose the answer); a larger one closes the connection after the refusal."""
        if "chunked" in self.header("transfer-encoding").lower():
            return self._read_chunked(limit)
        raw = self.header("content-length").strip() or "0"
        if not raw.isdigit():
            self._handler.close_connection = True
            raise MalformedHttp(f"Content-Length is not a number: {raw[:40]!r}")
        length = int(raw)
        if length > limit:
            if length <= limit + DRAIN_BYTES:
                self._read(length)
            else:
                self._handler.close_connection = True
            raise BodyTooLarge(f"request body of {length} bytes is over the limit of {limit}")
        return self._read(length)

    def _read(self, length: int) -> bytes:
        try:
            data = self._handler.rfile.read(length)
        except OSError as exc:
            self._handler.close_connection = True
            raise MalformedHttp(f"request body could not be read: {exc}") from None
        if len(data) < length:
            self._handler.close_connection = True
            raise MalformedHttp(f"request body ended after {len(data)} of {length} bytes")
        return data

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        total = 0
        while (size := self._chunk_size()) > 0:
            total += size
            if total > limit + DRAIN_BYTES:
                self._handler.close_connection = True
                raise BodyTooLarge(f"chunked request body is over the limit of {limit} bytes")
            data = self._read(size + 2)  # the chunk and its CRLF
            if total <= limit:
                body += data[:-2]
        while self._handler.rfile.readline(8192).strip():
            pass  # trailers
        if total > limit:
            raise BodyTooLarge(
                f"chunked request body of {total} bytes is over the limit of {limit}"
            )
        return bytes(body)

    def _chunk_size(self) -> int:
        line = self._handler.rfile.readline(80).split(b";", 1)[0].strip()
        try:
            return int(line, 16)
        except ValueError:
            self._handler.close_connection = True
            raise MalformedHttp(f"bad chunk size line {line[:20]!r}") from None

    # ----------------------------------------------------------------- the Sink

    def start(self, status: int, headers: dict[str, str], *, length: int | None) -> None:
        self._started = True
        self._chunked = length is None
        try:
            self._handler.send_response(status)
            for key, value in headers.items():
                if key.lower() not in HOP_BY_HOP:
                    self._handler.send_header(key, value)
            if length is None:
                self._handler.send_header("Transfer-Encoding", "chunked")
                self._handler.send_header("Cache-Control", "no-cache")
            else:
                self._handler.send_header("Content-Length", str(length))
            self._handler.end_headers()
        except OSError as exc:
            self._gone(exc)

    def write(self, data: bytes) -> None:
        if not data:
            return  # an empty chunk would end the stream
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        try:
            self._handler.wfile.write(data)
        except OSError as exc:
            self._gone(exc)

    def finish(self) -> None:
        if self._chunked:
            try:
                self._handler.wfile.write(b"0\r\n\r\n")
            except OSError as exc:
                self._gone(exc)

    def _gone(self, exc: OSError) -> None:
        self._handler.close_connection = True
        raise ClientGone(str(exc)) from None

    def refuse(self, kind: str, status: int, type_: str, message: str) -> None:
        """Answer an error of the gateway's own; after an answer started, just hang up."""
        if self._started:
            self._handler.close_connection = True
            return
        body = error_body(kind, status, type_, message)
        try:
            self.start(status, {"content-type": "application/json"}, length=len(body))
            self.write(body)
        except ClientGone:
            return
