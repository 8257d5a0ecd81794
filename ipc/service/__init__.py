"""The service base every process kind is built on (after OTP's gen_server).

- `Service`, `serve`, `Ready`, `StartFailed`: a process kind's shape and its runner.
- `ServiceLoop`: the poller, timers and worker pool a service's `init` registers with.
- `ControlConnections`: non-blocking, bounded control connections (factoryd uses them
  in its own loop too), `BadRequest` and `unknown_command`: the uniform errors.
- `Deferred`: a reply that comes later.
"""

from ipc.service._base import Call, Ready, Service, StartFailed, serve
from ipc.service._connections import (
    READ,
    WRITE,
    BadRequest,
    ControlConnections,
    FdWatcher,
    unknown_command,
)
from ipc.service._deferred import Deferred
from ipc.service._loop import ServiceLoop, Timer

__all__ = [
    "READ",
    "WRITE",
    "BadRequest",
    "Call",
    "ControlConnections",
    "Deferred",
    "FdWatcher",
    "Ready",
    "Service",
    "ServiceLoop",
    "StartFailed",
    "Timer",
    "serve",
    "unknown_command",
]
