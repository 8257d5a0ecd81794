"""The metrics service: the factory's Prometheus text endpoint on 127.0.0.1.

    python3 -m procs.metrics.service [--runtime-dir DIR] [--state-dir DIR]
        [--host 127.0.0.1] [--port 9464] [--call-timeout-s 1]

Run by factoryd (target = "procs.metrics.service:main") after the services it reads.
GET http://HOST:PORT/metrics answers in the Prometheus text format (prometheus_client's
HTTP server, in its own thread, so a scrape never holds the service loop); every value
is gathered at scrape time by procs/metrics/collector.py (FactoryCollector) from the
owners' status calls, the loops database and the ledger, each call bounded by
--call-timeout-s. A source that is down reads `factory_source_up{source} 0`.

Control (<runtime_dir>/metrics.sock): `status` -> {url, host, port, scrapes, failures
(source -> scrapes it failed), last_errors (source -> reason)}. --port 0 takes a free
port (tests); the bound one is in `status` and in the ready record. SIGTERM stops the
HTTP server, then the service.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from ipc import paths
from ipc.service import Call, Ready, Service, ServiceLoop, StartFailed, serve
from procs.metrics.collector import FactoryCollector

SERVICE = "metrics"
DEFAULT_PORT = 9464  # the port Prometheus's exporter list gives generic exporters


class Metrics(Service):
    """Serves /metrics from a registry holding one FactoryCollector."""

    name = SERVICE

    def __init__(self, collector: FactoryCollector, *, host: str, port: int) -> None:
        self.collector = collector
        self.host = host
        self.port = port
        self.server: WSGIServer | None = None

    def init(self, loop: ServiceLoop) -> Ready:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        try:
            self.server, _thread = start_http_server(self.port, addr=self.host,
                                                     registry=registry)  # fmt: skip
        except OSError as exc:
            raise StartFailed(f"cannot listen on {self.host}:{self.port}: {exc}") from None
        self.port = int(self.server.server_port)
        return Ready("serving", url=self.url)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.status}

    def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url, "host": self.host, "port": self.port,
                **self.collector.statistics()}  # fmt: skip

    def terminate(self, reason: str) -> None:
        if self.server is not None:
            self.server.shutdown()  # waits for the serving thread's current request
            self.server.server_close()


def _loopback(text: str) -> str:
    """A loopback address: the endpoint is for this box (a scraper beside it, or ssh)."""
    try:
        if ipaddress.ip_address(text).is_loopback:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a loopback address: {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=SERVICE, description=__doc__.split("\n")[0])
    parser.add_argument("--runtime-dir", help="factoryd's runtime dir ($FACTORY_RUNTIME_DIR)")
    parser.add_argument("--state-dir", help="factoryd's state dir ($FACTORY_STATE_DIR)")
    parser.add_argument("--host", type=_loopback, default="127.0.0.1",
                        help="loopback address to listen on (127.0.0.1)")  # fmt: skip
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port ({DEFAULT_PORT}; 0: any free one)")  # fmt: skip
    parser.add_argument("--call-timeout-s", type=float, default=1.0,
                        help="seconds each status call of a scrape may take (1)")  # fmt: skip
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.call_timeout_s <= 60 or not 0 <= args.port < 65536:
        print("metrics: --call-timeout-s must be in (0, 60], --port in [0, 65535]",
              file=sys.stderr)  # fmt: skip
        return 2
    runtime = paths.runtime_dir(args.runtime_dir)
    collector = FactoryCollector(runtime, paths.state_dir(args.state_dir),
                                 call_timeout_s=args.call_timeout_s)  # fmt: skip
    return serve(Metrics(collector, host=args.host, port=args.port), runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
