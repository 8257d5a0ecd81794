"""Named failures of the LLM router; each message says what to fix or wait for."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every router failure. `retryable` says whether another try may succeed."""

    retryable = False


class EndpointUnavailable(LLMError):
    """Nothing answers at the endpoint (connection refused, DNS, reset)."""

    retryable = True


class EndpointTimeout(LLMError):
    """The endpoint did not answer within the call's timeout."""

    retryable = True


class UpstreamError(LLMError):
    """The endpoint answered with an error status; 429 and 5xx are worth retrying."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status == 429 or status >= 500


class MissingAPIKey(LLMError):
    """A remote endpoint needs a key and its environment variable is unset or empty."""


class CircuitOpen(LLMError):
    """The endpoint's breaker stayed open until the request's deadline."""


class BudgetExceeded(LLMError):
    """Today's spend for the role (or in total) has reached its daily budget."""


class TicketTimeout(LLMError):
    """No GPU ticket became free before the request's deadline."""


class UnknownRole(LLMError):
    """The role has no route in the router's config."""
