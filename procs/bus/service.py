"""The signal bus broker as a supervised service (target = "procs.bus.service:main").

    python3 -m procs.bus.service [--runtime-dir DIR] [--hwm N]

Binds <runtime_dir>/bus-in.ipc (publishers) and <runtime_dir>/bus-out.ipc (subscribers)
and forwards between them until SIGTERM/SIGINT; answers `status` on
<runtime_dir>/bus.sock. Start it first: every other service publishes through it.
A crash loses only signals in flight; subscribers and publishers reconnect by themselves.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ipc import paths, service_report
from ipc.bus import DEFAULT_HWM, BusEndpoints, BusError
from ipc.bus.broker import run_broker

SERVICE = "bus"


def report(event: str, **fields: Any) -> None:
    """One structured record per line on stderr (the supervisor's log)."""
    service_report.report(SERVICE, event, **fields)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bus_broker", description=__doc__)
    parser.add_argument("--runtime-dir", help="where the ipc:// files go ($FACTORY_RUNTIME_DIR)")
    parser.add_argument(
        "--hwm", type=int, default=DEFAULT_HWM, help=f"queue limit per peer ({DEFAULT_HWM})"
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.hwm < 1:
        report("start_failed", reason=f"--hwm must be at least 1, got {args.hwm}")
        return 2
    runtime = paths.runtime_dir(args.runtime_dir)
    try:
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        endpoints = BusEndpoints.in_runtime_dir(runtime)
        return run_broker(
            endpoints,
            hwm=args.hwm,
            control_path=paths.control_socket(runtime, SERVICE),
            on_ready=lambda info: service_report.ready(SERVICE, "forwarding", **info),
        )
    except (BusError, OSError) as exc:
        report("failed", reason=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
