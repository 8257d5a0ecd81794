"""Notifications from the agent, checked before the acp library dispatches them.

The library answers a malformed request with an error, but a malformed notification
(session/update whose params are not ACP, a method we do not serve) has nobody to answer:
the library logs each with a full traceback (logging.exception), so an agent sending
garbage in a loop filled our stderr (10,000 bad lines, 16.5 MB). The transport asks
`problem()` about every notification and drops, counts and samples the bad ones itself;
`BadNotifications` keeps that count and bounds what is logged: one line per bad
notification, at most `log_limit` lines, then a single line saying the rest are only
counted. Checking costs one pydantic validation of session/update params (about 2 µs).
"""

from __future__ import annotations

import logging
from typing import Any

from acp.schema import SessionNotification
from pydantic import ValidationError

LOG_LIMIT = 10
MAX_PROBLEM_CHARS = 200
log = logging.getLogger(__name__)


def problem(message: dict[str, Any]) -> str | None:
    """Why the library could not dispatch this notification; None when it can."""
    method = message.get("method")
    if not isinstance(method, str):
        return f"its method is not a string: {method!r:.80}"
    if method.startswith("_"):  # an extension: ext_notification takes any params
        return None
    if method == "session/update":
        try:
            SessionNotification.model_validate(message.get("params"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "params"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            return f"session/update params are not ACP: {where}: {first['msg']}{more}"
        return None
    return f"no such notification {method!r:.80}"  # elicitation/complete too: unstable, off


class BadNotifications:
    """The count of malformed notifications, and a log of at most `log_limit` lines."""

    def __init__(self, *, log_limit: int = LOG_LIMIT) -> None:
        self.count = 0
        self.log_limit = log_limit

    def add(self, why: str) -> str:
        """Count one; log it while under the limit. Returns the sample line to keep."""
        self.count += 1
        line = f"agent sent a malformed notification, dropped: {why}"[:MAX_PROBLEM_CHARS]
        if self.count <= self.log_limit:
            log.warning("%s", line)
        if self.count == self.log_limit:
            log.warning("further malformed notifications are counted, not logged")
        return line
