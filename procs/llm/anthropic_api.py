"""Client for the Anthropic Messages API through the official `anthropic` SDK.

The key comes from an environment variable (ANTHROPIC_API_KEY by default) read at call
time, never logged nor put in an error message. `base_url` points the SDK elsewhere (tests
use a local test double). The SDK's own retries are off: the router retries, so that its
circuit breaker sees every failure.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from procs.llm.errors import EndpointTimeout, EndpointUnavailable, MissingAPIKey, UpstreamError
from procs.llm.types import LLMRequest, LLMResponse, Usage

if TYPE_CHECKING:
    import anthropic

DEFAULT_MODEL = "claude-sonnet-4-5"


def _sdk() -> Any:
    """The `anthropic` module, imported on first use: it takes ~2.7 s to import here,
    which every router start (and every test starting one) would otherwise pay."""
    import anthropic  # noqa: PLC0415 - deliberate lazy import, see docstring

    return anthropic


class AnthropicClient:
    kind = "anthropic"

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        api_key_env: str = "ANTHROPIC_API_KEY",
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self._sdk: anthropic.Anthropic | None = None
        self._sdk_key: str | None = None

    def _client(self) -> anthropic.Anthropic:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise MissingAPIKey(
                f"endpoint {self.name!r} needs an Anthropic API key: set ${self.api_key_env}"
            )
        if self._sdk is None or key != self._sdk_key:
            self._sdk = _sdk().Anthropic(api_key=key, base_url=self.base_url, max_retries=0)
            self._sdk_key = key
        return self._sdk

    def complete(self, request: LLMRequest, *, timeout: float) -> LLMResponse:
        """One Messages call; blocks at most `timeout` seconds."""
        client = self._client()
        sdk = _sdk()
        model = request.model or self.model
        try:
            message = client.messages.create(
                model=model,
                max_tokens=request.max_tokens,
                messages=[{"role": "user", "content": request.prompt}],
                # This SDK's signature has no `temperature`; the API still takes it.
                extra_body={"temperature": request.temperature},
                timeout=timeout,
            )
        except sdk.APITimeoutError as exc:
            raise EndpointTimeout(
                f"Anthropic endpoint {self.name!r} did not answer within {timeout:.1f}s"
            ) from exc
        except sdk.APIConnectionError as exc:
            raise EndpointUnavailable(
                f"cannot reach Anthropic endpoint {self.name!r} at "
                f"{self.base_url or 'api.anthropic.com'}: {exc}"
            ) from exc
        except sdk.APIStatusError as exc:
            raise UpstreamError(
                f"Anthropic endpoint {self.name!r} answered {exc.status_code}: "
                f"{_error_message(exc)}",
                exc.status_code,
            ) from exc
        text = "".join(block.text for block in message.content if block.type == "text")
        return LLMResponse(
            content=text,
            usage=Usage(message.usage.input_tokens, message.usage.output_tokens),
            endpoint=self.name,
            model=message.model,
            stop_reason=message.stop_reason or "",
        )

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message[:200]
    return str(exc)[:200]
