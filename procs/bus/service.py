"""The signal bus broker as a supervised service (target = "procs.bus.service:main").

    python3 -m procs.bus.service [--runtime-dir DIR] [--hwm N]

Binds <runtime_dir>/bus-in.ipc (publishers) and <runtime_dir>/bus-out.ipc (subscribers)
and forwards between them until SIGTERM/SIGINT; answers `status` on
<runtime_dir>/bus.sock. Start it first: every other service publishes through it.
A crash loses only signals in flight; subscribers and publishers reconnect by themselves.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipc import paths, service_report
from ipc.bus import DEFAULT_HWM, BusEndpoints, BusError
from ipc.bus.broker import BrokerProxy
from ipc.service import Call, Ready, Service, ServiceLoop, StartFailed, serve

SERVICE = "bus"
LIVENESS_PERIOD_S = 1.0  # how often the proxy thread is checked


class BusBroker(Service):
    name = SERVICE

    def __init__(self, endpoints: BusEndpoints, hwm: int) -> None:
        self.proxy = BrokerProxy(endpoints, hwm)
        self.started = time.time()

    def init(self, loop: ServiceLoop) -> Ready:
        try:
            self.proxy.start()
        except BusError as exc:
            raise StartFailed(str(exc)) from None
        loop.every(LIVENESS_PERIOD_S, lambda: self._check(loop))
        e = self.proxy.endpoints
        return Ready("forwarding", publish=e.publish, subscribe=e.subscribe)

    def _check(self, loop: ServiceLoop) -> None:
        if not self.proxy.alive:  # let it crash: the supervisor restarts a whole broker
            loop.stop(1, f"proxy failed: {self.proxy.failure}")

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.status}

    def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        e = self.proxy.endpoints
        return {
            "endpoints": {"publish": e.publish, "subscribe": e.subscribe},
            "hwm": self.proxy.hwm,
            "pid": os.getpid(),
            "started_ts": self.started,
            "proxy": self.proxy.statistics(),
        }

    def terminate(self, reason: str) -> None:
        self.proxy.close()
        self.report("stopped", reason=reason)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procs.bus.service", description=__doc__)
    parser.add_argument("--runtime-dir", help="where the ipc:// files go ($FACTORY_RUNTIME_DIR)")
    parser.add_argument(
        "--hwm", type=int, default=DEFAULT_HWM, help=f"queue limit per peer ({DEFAULT_HWM})"
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.hwm < 1:
        service_report.report(
            SERVICE, "start_failed", reason=f"--hwm must be at least 1, got {args.hwm}"
        )
        return 2
    runtime: Path = paths.runtime_dir(args.runtime_dir)
    try:
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        endpoints = BusEndpoints.in_runtime_dir(runtime)
    except (BusError, OSError) as exc:
        service_report.report(SERVICE, "start_failed", reason=str(exc))
        return 1
    return serve(BusBroker(endpoints, args.hwm), runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
