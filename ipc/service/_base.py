"""The service base (after OTP's gen_server): a process kind supplies its calls, fds and
timers; the base owns everything else.

    class Governor(Service):
        name = "resource_governor"             # <runtime_dir>/<name>.sock, log records
        def init(self, loop) -> Ready:         # open what it needs, watch fds, set timers
            loop.every(1.0, self.check)
            return Ready("ledger ready", ledger=str(path))
        def calls(self) -> dict[str, Call]:    # command -> handler(args) -> result
            return {"status": self.status}
        def terminate(self, reason) -> None:   # close what init opened (always called)
            ...

    sys.exit(serve(Governor(...), runtime_dir))

The base owns: SIGTERM/SIGINT (a stop request, through ipc.posix_signals), the control
socket and its connections (non-blocking and bounded: ipc.service._connections), the
poller, READY=1 (sent once `init` returned), the teardown, and one error shape: an
unknown command gets `unknown_command` naming the known ones, bad arguments
`bad_request` (raise BadRequest), anything else a handler raises an `internal` error
reply. A handler may return a Deferred (`loop.run_in_thread`) for a long call.
Exit status: 0 after a stop signal, what `loop.stop(code)` said, 1 when `init` fails.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.posix_signals import StopSignals
from ipc.service._connections import ControlConnections, unknown_command
from ipc.service._loop import ServiceLoop

Call = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Ready:
    """What `init` says once the service can serve: STATUS= text and log fields."""

    status: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __init__(self, status: str, **fields: Any) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "fields", fields)


class StartFailed(Exception):
    """Raised by `init` when the service cannot start; the message says why."""


class Service:
    """Subclass and supply `name`, `init`, `calls` and (if needed) `terminate`."""

    name: str = "service"
    workers: int = 0  # threads for run_in_thread (0: none)
    max_queued: int = 0  # calls that may wait for a worker before `busy`
    drain_s: float = 0.0  # on stop, how long calls in flight may finish

    def init(self, loop: ServiceLoop) -> Ready:
        raise NotImplementedError

    def calls(self) -> Mapping[str, Call]:
        return {}

    def terminate(self, reason: str) -> None:
        """Close what `init` opened. Called once, whatever happened."""

    def report(self, event: str, **fields: Any) -> None:
        """One structured record on stderr (factoryd's log for this child)."""
        service_report.report(self.name, event, **fields)


def serve(service: Service, runtime_dir: Path) -> int:
    """Run `service` until a stop signal or `loop.stop`; returns the exit status."""
    loop = ServiceLoop(workers=service.workers, max_queued=service.max_queued)
    stop = StopSignals().install()
    conns: ControlConnections | None = None
    reason = "start failed"
    try:
        try:
            server = control.ControlServer(paths.control_socket(runtime_dir, service.name))
            calls = service.calls()
            conns = ControlConnections(server, loop, _dispatcher(calls))
            ready = service.init(loop)
        except (StartFailed, control.ControlError, OSError) as exc:
            service.report("start_failed", reason=str(exc))
            return 1
        loop.add_deadline_source(conns.next_deadline)
        loop.on_each_turn(conns.expire)
        loop.watch(stop, 1, lambda _events: _on_stop(stop, loop))
        service_report.ready(service.name, ready.status, socket=str(server.path), **ready.fields)
        code = loop.run()
        reason = loop.stop_reason or "stopped"
        service.report("stopping", reason=reason, signal=stop.first, exit_code=code)
        return code
    finally:
        if conns is not None:
            conns.close()
        try:
            service.terminate(reason)
        finally:
            loop.close(drain_s=service.drain_s)
            stop.restore()


def _on_stop(stop: StopSignals, loop: ServiceLoop) -> None:
    stop.drain()
    if stop.requested:
        name = signal.Signals(stop.first).name if stop.first else "signal"
        loop.stop(0, f"{name} received")


def _dispatcher(calls: Mapping[str, Call]) -> Callable[[str, dict[str, Any]], Any]:
    def dispatch(command: str, args: dict[str, Any]) -> Any:
        handler = calls.get(command)
        if handler is None:
            raise unknown_command(command, list(calls))
        return handler(args)

    return dispatch
