"""The heartbeat: the golden suite on golden HEAD, TestFailure when golden goes red (or
red with a new error), TestPassing when it is green again. Code only: no model, ever.

    python3 -m procs.heartbeat.service (--test-command 'python3 -m pytest -q' | --config
        factory.toml) [--repo GOLDEN] [--branch main] [--golden auto|service|git]
        [--interval-s 300] [--rerun-s 3600] [--timeout-s 600] [--sandbox bwrap|none]
        [--no-bus] [--runtime-dir DIR] [--state-dir DIR]

Run by factoryd (target = "procs.heartbeat.service:main", after the bus and the golden
master). Golden HEAD comes from the golden master's `get_hash` when its socket exists,
else from --repo's --branch (golden.py); the heartbeat only reads golden. A check runs
at start, at once on GoldenMasterUpdated, and every --interval-s; it runs the suite when
HEAD is not the commit last tested (a missed signal), or that run is older than
--rerun-s (flakes, a changed machine), so an idle factory costs a `get_hash` or a
`git rev-parse` per interval. The suite (suite.py) runs on an export of HEAD in the
sandbox with a --timeout-s wall clock; a timeout is red. The test command is
--test-command, else the [loop] table's test_command (and sandbox, suite_timeout_s) of
--config. Each verdict goes to <state_dir>/heartbeat.sqlite3 and, when the golden master
runs, to its `record_run`. What is announced (verdicts.py) is recorded once published,
so a restart does not announce the same red again. A check that cannot run (golden
unreadable, no sandbox) is reported and retried after 1, 2, 4 ... s, at most
--interval-s: no verdict, never green.

Control (<runtime_dir>/heartbeat.sock):
    status {}  -> runs, the last run, what was announced, the last error, settings
    check  {}  -> {requested: true}: check (and run if HEAD moved) now
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from ipc import control, paths, service_report
from ipc.bus import BusError, BusTimeout, Publisher, Subscriber
from ipc.service import Call, Deferred, Ready, Service, ServiceLoop, StartFailed, Timer, serve
from ipc.signals import Signal, SignalTooLarge
from procs import sandbox
from procs.heartbeat.golden import GoldenSource, GoldenUnknown
from procs.heartbeat.suite import SuiteUnavailable, Verdict, remove_leftovers, run_on
from procs.heartbeat.verdicts import DB_NAME, Announced, VerdictStore, announce, state_after
from procs.suite_config import SuiteConfigError, resolve_suite

SERVICE = "heartbeat"
PUBLISH_TIMEOUT_S = 1.0
BUS_RETRY_S = 0.5
BUS_RETRY_MAX_S = 30.0
FIRST_RETRY_S = 1.0
SCRATCH = "heartbeat-runs"


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


@dataclass(frozen=True)
class SuiteSettings:
    test_command: tuple[str, ...]
    timeout_s: float
    sandbox: str
    interval_s: float
    rerun_s: float


class Heartbeat(Service):
    name = SERVICE
    workers = 1  # one suite run at a time
    max_queued = 2
    drain_s = 2.0

    def __init__(self, golden: GoldenSource, store: VerdictStore, settings: SuiteSettings,
                 runtime: Path, scratch: Path, *, publish: bool) -> None:  # fmt: skip
        self.golden = golden
        self.store = store
        self.settings = settings
        self.runtime = runtime
        self.scratch = scratch
        self.publish_enabled = publish
        self.loop: ServiceLoop | None = None
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.pending: tuple[Signal, Announced] | None = None
        self.checks = 0
        self.errors_in_a_row = 0
        self.last_error: str | None = None
        self.published: dict[str, int] = {"TestFailure": 0, "TestPassing": 0}
        self._running = False
        self._again = False
        self._retry: Timer | None = None
        self._bus_retry: Timer | None = None
        self._bus_tries = 0

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        remove_leftovers(self.scratch)
        if self.publish_enabled:
            try:
                self.publisher = Publisher(self.runtime, source=SERVICE)
                self.subscriber = Subscriber(self.runtime, types=["GoldenMasterUpdated"])
            except BusError as exc:
                raise StartFailed(str(exc)) from None
            loop.watch(self.subscriber.socket, zmq.POLLIN, self._on_updated)
        loop.every(self.settings.interval_s, self.request_check)
        loop.after(0.0, self.request_check)
        return Ready("watching golden", verdicts=str(self.store.path),
                     interval_s=self.settings.interval_s)  # fmt: skip

    def terminate(self, reason: str) -> None:
        for sock in (self.publisher, self.subscriber):
            if sock is not None:
                sock.close()
        report("stopped", reason=reason, checks=self.checks, published=self.published)

    # -- checks ---------------------------------------------------------------------------

    def _on_updated(self, _events: int) -> None:
        assert self.subscriber is not None
        if self.subscriber.recv_many(64, timeout=0):
            self.request_check()

    def request_check(self) -> None:
        if self._running:
            self._again = True
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        assert self.loop is not None
        try:
            deferred = self.loop.run_in_thread(self._check)
        except control.RequestRefused:  # busy: the timer comes back
            return
        self._running = True
        deferred.add_done_callback(self._checked)

    def _check(self) -> Verdict | None:
        """In the worker: HEAD, and the suite on it when it needs a run."""
        repo, head = self.golden.head()
        last = self.store.last_run()
        fresh = last is not None and time.time() - float(last["at"]) < self.settings.rerun_s
        if last is not None and last["hash"] == head and fresh:
            return None
        s = self.settings
        verdict = run_on(repo, head, s.test_command, self.scratch, timeout_s=s.timeout_s,
                         mode=s.sandbox)  # fmt: skip
        self.store.record(verdict)
        self.golden.record(head, verdict.green, verdict.output)
        return verdict

    def _checked(self, deferred: Deferred) -> None:
        self._running = False
        self.checks += 1
        try:
            verdict: Verdict | None = deferred.result()
        except (GoldenUnknown, SuiteUnavailable, sqlite3.Error, OSError) as exc:
            self._check_failed(exc)
        else:
            self.errors_in_a_row, self.last_error = 0, None
            if verdict is not None:
                report("verdict", hash=verdict.hash, green=verdict.green, file=verdict.file,
                       error=verdict.error, duration_ms=round(verdict.duration_ms))  # fmt: skip
                self._announce(verdict)
        if self._again:
            self._again = False
            self.request_check()

    def _check_failed(self, exc: BaseException) -> None:
        self.errors_in_a_row += 1
        self.last_error = str(exc)
        delay = min(self.settings.interval_s,
                    FIRST_RETRY_S * 2 ** min(self.errors_in_a_row - 1, 20))  # fmt: skip
        report("no_verdict", reason=str(exc), in_a_row=self.errors_in_a_row, retry_in_s=delay)
        if self.loop is not None:
            self._retry = self.loop.after(delay, self.request_check)

    # -- announcing -------------------------------------------------------------------------

    def _announce(self, verdict: Verdict) -> None:
        after = state_after(verdict, time.time())
        signal = announce(self.store.announced(), verdict)
        if signal is None:
            self.store.set_announced(after, "")
            self.pending = None
            return
        self.pending = (signal, after)
        if self._bus_retry is None:  # else the retry due sends this one
            self._publish_pending()

    def _publish_pending(self) -> None:
        """Publish the pending signal once the broker is there; retried after 0.5, 1, 2 ...
        s (at most BUS_RETRY_MAX_S) while the bus is away. Recorded as announced only
        once sent."""
        self._bus_retry = None
        if self.pending is None:
            return
        signal, after = self.pending
        if self.publisher is not None:
            self.publisher.drain_subscriptions()
            problem = ""
            if self.publisher.statistics()["subscriptions"] == 0:
                problem = "no broker yet"
            else:
                try:
                    self.publisher.publish(signal, timeout=PUBLISH_TIMEOUT_S)
                except (BusTimeout, SignalTooLarge) as exc:
                    problem = str(exc)
            if problem:
                self._bus_tries += 1
                delay = min(BUS_RETRY_MAX_S, BUS_RETRY_S * 2 ** min(self._bus_tries - 1, 10))
                report("announce_delayed", reason=problem, type=signal.type_name(),
                       retry_in_s=delay)  # fmt: skip
                assert self.loop is not None
                self._bus_retry = self.loop.after(delay, self._publish_pending)
                return
        self._bus_tries = 0
        name = signal.type_name()
        self.published[name] = self.published.get(name, 0) + 1
        self.store.set_announced(after, name)
        self.pending = None
        report("announced", type=name, fields=signal.fields_dict())

    # -- control ----------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.do_status, "check": self.do_check}

    def do_check(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.request_check()
        return {"requested": True}

    def do_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        announced = self.store.announced()
        return {
            "pid": os.getpid(), "checks": self.checks, "running": self._running,
            "last_run": self.store.last_run(), "counts": self.store.statistics(),
            "announced": None if announced is None else vars(announced),
            "pending": None if self.pending is None else self.pending[0].type_name(),
            "published": dict(self.published), "last_error": self.last_error,
            "test_command": list(self.settings.test_command),
            "interval_s": self.settings.interval_s, "rerun_s": self.settings.rerun_s,
            "timeout_s": self.settings.timeout_s, "sandbox": self.settings.sandbox,
        }  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description=__doc__.split("\n")[0])
    p.add_argument("--test-command", help="the suite, one shell-quoted string")
    p.add_argument("--config", type=Path, help="TOML whose [loop] table names test_command")
    p.add_argument("--repo", type=Path, help="the golden repository (read only)")
    p.add_argument("--branch", default="main", help="golden's branch (default main)")
    p.add_argument("--golden", choices=("auto", "service", "git"), default="auto",
                   help="HEAD from the golden master's socket, or --repo (auto: the socket "
                   "when it exists)")  # fmt: skip
    p.add_argument("--interval-s", type=float, default=300.0, help="check HEAD this often")
    p.add_argument("--rerun-s", type=float, default=3600.0, help="rerun an unchanged HEAD")
    p.add_argument("--timeout-s", type=float, help="the suite's wall clock (default 600)")
    p.add_argument("--sandbox", choices=sandbox.SANDBOX_MODES, help="default: $FACTORY_SANDBOX")
    p.add_argument("--no-bus", action="store_true", help="publish nothing (tests)")
    p.add_argument("--runtime-dir", help="sockets and the bus (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"{DB_NAME} and the runs (FACTORY_STATE_DIR)")
    return p


def settings_from(args: argparse.Namespace) -> SuiteSettings:
    """The suite's settings from the flags and --config's [loop] (procs.suite_config, as
    the golden master and the merge queue read it); raises ValueError."""
    try:
        suite = resolve_suite(config=args.config, test_command=args.test_command,
                              timeout_s=args.timeout_s, default_command=None)  # fmt: skip
    except SuiteConfigError as exc:
        raise ValueError(str(exc)) from None
    mode = args.sandbox or suite.sandbox or sandbox.default_mode()
    if not args.interval_s > 0 or not args.rerun_s > 0:
        raise ValueError("--interval-s and --rerun-s must be > 0")
    if mode not in sandbox.SANDBOX_MODES:
        raise ValueError(f"sandbox must be one of {sandbox.SANDBOX_MODES}, got {mode!r}")
    return SuiteSettings(suite.command, suite.timeout_s, mode, args.interval_s, args.rerun_s)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime = paths.runtime_dir(args.runtime_dir)
    state = paths.state_dir(args.state_dir)
    try:
        settings = settings_from(args)
        golden = GoldenSource(runtime, repo=args.repo.resolve() if args.repo else None,
                              branch=args.branch, via=args.golden)  # fmt: skip
        if settings.sandbox == "bwrap":
            sandbox.usable_bwrap()
    except (ValueError, sandbox.SandboxUnavailable) as exc:
        report("start_failed", reason=str(exc))
        return 2
    try:
        paths.private_dir(state)
        store = VerdictStore(state / DB_NAME)
    except (OSError, sqlite3.Error) as exc:
        report("start_failed", reason=str(exc))
        return 1
    service = Heartbeat(golden, store, settings, runtime, state / SCRATCH,
                        publish=not args.no_bus)  # fmt: skip
    try:
        return serve(service, runtime)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
