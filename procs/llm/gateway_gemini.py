"""The Gemini API (generativelanguage v1beta) as the gateway speaks it: routes, key, usage.

Gemini CLI (through @google/genai) is pointed at the gateway with
`GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:PORT` (the host: the SDK adds `/v1beta`) and the
gateway's token as `GEMINI_API_KEY`. It sends

    POST /v1beta/models/{model}:generateContent              metered, whole answer
    POST /v1beta/models/{model}:streamGenerateContent?alt=sse metered, SSE (`data:` lines)
    POST /v1beta/models/{model}:countTokens                  passed through, not metered
    GET  /v1beta/models[/{model}]                            passed through, not metered

with the key in `x-goog-api-key` (or `Authorization: Bearer` with
GEMINI_API_KEY_AUTH_MECHANISM=bearer; other clients put it in `?key=`). The key is taken
out of the query before the path goes upstream, where the upstream's own key travels in
`x-goog-api-key`, never in a URL. The POSTs are served under `/v1/` too
(GOOGLE_GENAI_API_VERSION=v1); `GET /v1/models` stays OpenAI's.

Usage is the answer's `usageMetadata`; streamed, every chunk carries the counts so far and
the last one wins. `promptTokenCount` includes `cachedContentTokenCount`, so input is the
uncached part (+ `toolUsePromptTokenCount`), cached the cached part, output
`candidatesTokenCount` + `thoughtsTokenCount`: the three add up to `totalTokenCount`.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from procs.llm.gateway_store import CallUsage

_ACTION = re.compile(r"^/v1(?:beta)?/models/[^/:?]+:([A-Za-z]+)$")
_MODELS = re.compile(r"^/v1beta/models(?:/[^/:?]+)?$")
METERED = {"generateContent": True, "streamGenerateContent": True, "countTokens": False}
# HTTP status -> google.rpc status name, as the API writes it in error.status
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# How long a refused budget stays refused, as Gemini CLI reads RetryInfo: a delay over
# its 300 s limit makes the refusal a TerminalQuotaError (no retries): the bead's budget
# only comes back when someone raises it.
BUDGET_RETRY_DELAY = "86400s"


def is_gemini_path(path: str) -> bool:
    """A path (no query) in the Gemini API's shape, routed or not."""
    return path.startswith("/v1beta/") or _ACTION.match(path) is not None


def route(method: str, path: str) -> tuple[str, bool] | None:
    """("gemini", metered) for a Gemini API request the gateway serves, else None."""
    if method == "GET" and _MODELS.match(path):
        return ("gemini", False)
    match = _ACTION.match(path) if method == "POST" else None
    if match is None or match.group(1) not in METERED:
        return None
    return ("gemini", METERED[match.group(1)])


def query_key(raw_path: str) -> str:
    """The `key` query parameter of a request target, "" when none."""
    query = raw_path.partition("?")[2]
    return next((v for k, v in parse_qsl(query) if k == "key"), "")


def without_key(raw_path: str) -> str:
    """The request target with any `key` query parameter taken out."""
    path, _, query = raw_path.partition("?")
    if not query:
        return path
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "key"]
    return f"{path}?{urlencode(kept)}" if kept else path


def check_request(obj: dict[str, Any]) -> str | None:
    """What is wrong with a generateContent body, None when nothing."""
    if not isinstance(obj.get("contents"), list):
        return "request body needs 'contents', a list"
    return None


def error_object(status: int, type_: str, message: str) -> dict[str, Any]:
    """An error as the Gemini API writes it; `details` names the gateway's reason (and, for
    a budget refusal, a retry delay that tells Gemini CLI not to retry)."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": type_.upper(),
            "domain": "model-gateway.factory",
        }
    ]
    if type_ == "budget_exceeded":
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo"}
        details.append({**retry, "retryDelay": BUDGET_RETRY_DELAY})
    status_name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": status_name,
                      "details": details}}  # fmt: skip


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage(obj: Any) -> CallUsage | None:
    """Usage of a generateContent answer (or a chunk, or the JSON array of chunks that
    streamGenerateContent sends without alt=sse: the last one with usage); None if none."""
    if isinstance(obj, list):
        found = [u for u in map(usage, obj) if u is not None]
        return found[-1] if found else None
    meta = obj.get("usageMetadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return None
    cached = _count(meta.get("cachedContentTokenCount"))
    prompt = max(_count(meta.get("promptTokenCount")) - cached, 0)
    return CallUsage(
        prompt + _count(meta.get("toolUsePromptTokenCount")),
        _count(meta.get("candidatesTokenCount")) + _count(meta.get("thoughtsTokenCount")),
        cached,
    )
