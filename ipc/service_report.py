"""How a service speaks to factoryd: structured records on stderr, readiness by sd_notify.

factoryd tags every stderr line with the child id and keeps the last ones for
`factoryctl logs`. `ready()` logs the record and sends READY=1 (+ STATUS=) to the
NOTIFY_SOCKET factoryd gives each child, so a `ready = "notify"` child's siblings start
only once it can serve.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

from ipc.sd_notify import notify_ready


def report(service: str, event: str, **fields: Any) -> None:
    """One structured record per line on stderr (the supervisor's log)."""
    record = {"event": event, "service": service, "ts": time.time(), **fields}
    sys.stderr.write(orjson.dumps(record, default=str).decode() + "\n")
    sys.stderr.flush()


def ready(service: str, status: str = "ready", **fields: Any) -> None:
    """Log the ready record and tell factoryd (READY=1, STATUS=`status`)."""
    report(service, "ready", **fields)
    notify_ready(status)
