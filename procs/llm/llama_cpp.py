"""Client for a llama.cpp server's native `/completion` endpoint (default 127.0.0.1:8080).

One synchronous POST per call, bounded by `timeout`; connection failures become
EndpointUnavailable, timeouts EndpointTimeout, error statuses UpstreamError. The GPU
ticket is taken by the router around this call, not here.
"""

from __future__ import annotations

from typing import Any

import httpx

from procs.llm.errors import EndpointTimeout, EndpointUnavailable, UpstreamError
from procs.llm.types import LLMRequest, LLMRequestInvalid, LLMResponse, Usage

DEFAULT_BASE_URL = "http://127.0.0.1:8080"


class LlamaCppClient:
    """Completion calls to one llama.cpp server; `model` is informational (one model per server)."""

    kind = "llama_cpp"

    def __init__(self, name: str, base_url: str = DEFAULT_BASE_URL, model: str = "") -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._http = httpx.Client(base_url=self.base_url, trust_env=False)

    def complete(self, request: LLMRequest, *, timeout: float) -> LLMResponse:
        """POST /completion and return the text; blocks at most `timeout` seconds."""
        body = {
            "prompt": request.prompt,
            "n_predict": request.max_tokens,
            "temperature": request.temperature,
            "stream": False,
            "cache_prompt": True,
        }
        limit = httpx.Timeout(timeout, connect=min(timeout, 2.0))
        try:
            reply = self._http.post("/completion", json=body, timeout=limit)
        except httpx.TimeoutException as exc:
            raise EndpointTimeout(
                f"llama.cpp at {self.base_url} did not answer within {timeout:.1f}s"
            ) from exc
        except httpx.TransportError as exc:
            raise EndpointUnavailable(
                f"no llama.cpp server at {self.base_url} ({type(exc).__name__}: {exc}); "
                "start llama-server or fix the endpoint's base_url"
            ) from exc
        if reply.status_code != 200:
            raise UpstreamError(
                f"llama.cpp at {self.base_url} answered {reply.status_code}: {reply.text[:200]}",
                reply.status_code,
            )
        return self._parse(reply)

    def _parse(self, reply: httpx.Response) -> LLMResponse:
        try:
            data: Any = reply.json()
        except ValueError as exc:
            raise UpstreamError(f"llama.cpp at {self.base_url} sent non-JSON", 502) from exc
        if not isinstance(data, dict) or not isinstance(data.get("content"), str):
            raise UpstreamError(f"llama.cpp at {self.base_url} sent no 'content' string", 502)
        try:
            usage = Usage(
                input_tokens=int(data.get("tokens_evaluated", 0)),
                output_tokens=int(data.get("tokens_predicted", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise LLMRequestInvalid(f"llama.cpp token counts are not integers: {exc}") from exc
        return LLMResponse(
            content=data["content"],
            usage=usage,
            endpoint=self.name,
            model=str(data.get("model") or self.model),
            stop_reason=str(data.get("stop_type", "")),
        )

    def close(self) -> None:
        self._http.close()
