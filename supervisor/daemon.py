"""factoryd: runs the supervision tree from a TOML config, under systemd or by hand.

    factoryd --config FILE [--runtime-dir DIR] [--state-dir DIR]

Start-up order matters: the config is checked in full, then the zygote is forked
(before any thread or socket exists), then the control socket is bound (a second
daemon on the same runtime dir is refused before it starts anything), then the tree
starts in order, then READY=1. A child that fails to start stops the already started
ones in reverse and factoryd exits non-zero: never half a tree.

One thread, one selector: the zygote channel (child exits), child log pipes, the
signal wakeup pipe (SIGTERM/SIGINT stop, SIGHUP reload request, SIGCHLD orphans)
and the control socket. A death is an event; nothing polls. While a supervisor waits
for a child to stop (bounded by its shutdown time) exits and logs keep flowing and
the watchdog keeps beating; control requests wait in the socket backlog, so commands
queue rather than being refused.

Exit codes (DaemonExit): 0 stopped, 1 the root supervisor gave up (restart
intensity), 2 bad config or usage, 3 the tree failed to start, 70 the zygote died.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import selectors
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

import orjson

from ipc import control, paths
from ipc.posix_signals import PosixSignalPipe
from ipc.sd_notify import Notifier
from supervisor import config as config_mod
from supervisor.child_logs import ChildLogs
from supervisor.child_notify import ChildNotify
from supervisor.control_api import ControlApi
from supervisor.control_listener import ControlListener
from supervisor.live_reload import ReloadRefused, reload_config
from supervisor.orphans import OrphanReaper
from supervisor.policy import (
    INTENSITY_EXCEEDED,
    ExitReason,
    reason_from_wait_status,
)
from supervisor.prctl import PR_SET_CHILD_SUBREAPER, prctl
from supervisor.process_host import ZygoteProcessHost, killpg
from supervisor.spec import NotifyAccess
from supervisor.tree import Registry, StartFailed, SupervisorNode
from supervisor.zygote import ZygoteClient, ZygoteGone

DAEMON_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


SANDBOX_ENV = "FACTORY_SANDBOX"  # read by procs.sandbox in every child


class DaemonExit(IntEnum):
    STOPPED = 0
    GAVE_UP = 1
    BAD_CONFIG = 2
    START_FAILED = 3
    ZYGOTE_DIED = 70


class Daemon:
    """The event loop the supervision tree runs in (its HostLoop)."""

    def __init__(
        self,
        cfg: config_mod.DaemonConfig,
        *,
        runtime_dir: Path,
        state_dir: Path,
        zygote: ZygoteClient,
        log: TextIO,
        notifier: Notifier | None = None,
    ) -> None:
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir
        self.zygote = zygote
        self.log = log
        self.notifier = notifier or Notifier()
        self.child_logs = ChildLogs(log)
        self.deferred: deque[Callable[[], None]] = deque()
        self.exit_code: DaemonExit | None = None
        self.stop_requested = False
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self._next_watchdog = math.inf
        self.selector = selectors.DefaultSelector()
        self.posix_signals = PosixSignalPipe(DAEMON_SIGNALS)
        self.control = control.ControlServer(paths.control_socket(runtime_dir))
        self.child_notify = ChildNotify(runtime_dir / "notify.sock", self._notify_sender)
        self.registry = Registry(
            on_root_exit=self._root_exited, on_register=self.child_notify.adopt
        )
        self.host = ZygoteProcessHost(
            zygote,
            self.child_logs,
            self.child_notify,
            self,
            runtime_dir=runtime_dir,
            state_dir=state_dir,
        )
        self.root = SupervisorNode(cfg.tree, self.host, self.registry)
        self.orphans = OrphanReaper(zygote.pid, on_zygote_exit=self.zygote_died, report=self.report)
        self.api = ControlApi(
            self.registry,
            self.root,
            self.child_logs,
            self.statistics,
            self._request_stop,
            self.reload,
            runtime_dir,
            self.report,
        )
        self.selector.register(self.zygote.fileno(), selectors.EVENT_READ, "zygote")
        self.selector.register(self.posix_signals, selectors.EVENT_READ, "posix_signal")
        self.control_listener = ControlListener(self.control, self.selector, self.api.handle)
        self.selector.register(self.child_notify, selectors.EVENT_READ, "notify")

    # ------------------------------------------------------------------ HostLoop

    def report(self, event: str, **fields: Any) -> None:
        """One structured record per event on the log stream (journald under systemd)."""
        record = {"ts": round(time.time(), 6), "event": event, **fields}
        with contextlib.suppress(OSError, ValueError):
            self.log.write("factoryd " + orjson.dumps(record).decode() + "\n")
            self.log.flush()

    def defer(self, call: Callable[[], None]) -> None:
        self.deferred.append(call)

    def pump_nested(self, timeout: float) -> None:
        """One turn of the loop inside a wait: only control requests that change no tree
        are answered (control_listener.NESTED_COMMANDS); the others wait for the main
        turn."""
        self._pump(timeout, serve_control=False)

    def watch_log(self, read_fd: int) -> None:
        self.selector.register(read_fd, selectors.EVENT_READ, "log")

    @property
    def zygote_dead(self) -> bool:
        return self.exit_code is DaemonExit.ZYGOTE_DIED

    # ------------------------------------------------------------------ loop

    def run(self) -> DaemonExit:
        self.posix_signals.install()
        try:
            try:
                self.root.start()
            except StartFailed as exc:
                if self.stop_requested:  # asked to stop while starting: a clean stop
                    self.report("stopped_during_start", child=exc.child_id)
                    return DaemonExit.STOPPED
                self.report("start_failed", child=exc.child_id, reason=exc.reason)
                self.log.write(f"factoryd: {exc}; nothing is left running\n")
                return self.exit_code or DaemonExit.START_FAILED  # ZYGOTE_DIED if that was why
            except ZygoteGone:
                return DaemonExit.ZYGOTE_DIED
            count = sum(1 for _ in self.registry.by_pid)
            self.report("ready", children=count, runtime_dir=str(self.runtime_dir))
            self.notifier.ready(f"running {count} children")
            if self.notifier.watchdog_s:
                self._next_watchdog = time.monotonic()
            while self.exit_code is None:
                self._dispatch()
                if self.exit_code is not None:
                    break
                if self.stop_requested:
                    self.exit_code = DaemonExit.STOPPED
                    break
                self._pump(self._timeout(), serve_control=True)
            return self.exit_code
        finally:
            self._stop()
            self.posix_signals.restore_handlers()

    def _dispatch(self) -> None:
        """Handle queued exits and deferred work in order, until none is left. Once a
        stop is requested nothing is restarted: the shutdown takes the exits."""
        while (
            self.exit_code is None
            and not self.stop_requested
            and (self.zygote.exits or self.deferred)
        ):
            if self.zygote.exits:
                event = self.zygote.exits.popleft()
                self.child_notify.forget(event.pid)
                owner = self.registry.by_pid.pop(event.pid, None)
                if owner is None:
                    continue
                node, child_id = owner
                killpg(event.pid, signal.SIGKILL)  # take its subprocesses with it
                node.child_exited(child_id, reason_from_wait_status(event.exit_code))
            else:
                self.deferred.popleft()()

    def _timeout(self) -> float:
        if self.zygote.exits or self.deferred or self.stop_requested:
            return 0.0
        return max(0.0, min(self._next_watchdog - time.monotonic(), 5.0))

    def _pump(self, timeout: float, *, serve_control: bool) -> None:
        self._beat()
        self.control_listener.listen(serve_control)
        for key, mask in self.selector.select(timeout):
            if self.selector.get_map().get(key.fd) is not key:
                continue  # a nested wait since select() unregistered it (a closed log pipe)
            kind = key.data
            if isinstance(kind, tuple):  # a control fd (in a nested wait: NESTED_COMMANDS)
                self.control_listener.dispatch(kind, mask)
            elif kind == "zygote":
                try:
                    self.zygote.read_nowait()
                except ZygoteGone:
                    self.zygote_died()
            elif kind == "log":
                if not self.child_logs.read(key.fd):
                    self.selector.unregister(key.fd)
            elif kind == "posix_signal":
                self._on_signals()
            elif kind == "notify":
                self.child_notify.read()
        self.control_listener.close_idle()
        self._beat()

    def _notify_sender(
        self, pid: int, leader: int | None
    ) -> tuple[SupervisorNode, str, int] | None:
        """Whom a datagram speaks for: a worker itself, or (notify_access = "all") the
        worker leading the sender's process group."""
        owner = self.registry.by_pid.get(pid)
        if owner is not None:
            return (*owner, pid)
        if leader is None:  # gone before we read its datagram
            return None
        owner = self.registry.by_pid.get(leader)
        if owner is None or owner[0].notify_access(owner[1]) is not NotifyAccess.ALL:
            return None
        return (*owner, leader)

    def _beat(self) -> None:
        now = time.monotonic()
        if now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + (self.notifier.watchdog_s or math.inf) / 2

    def _on_signals(self) -> None:
        for signum in self.posix_signals.read_nowait():
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stop_requested:
                    self.report("stop_requested", signal=signal.Signals(signum).name)
                self.stop_requested = True
            elif signum == signal.SIGHUP:  # from the main loop: this may be a nested wait
                self.defer(self._reload_on_signal)
            elif signum == signal.SIGCHLD:
                self.orphans.reap_nowait()

    def zygote_died(self) -> None:
        if self.exit_code is None:
            self.report(
                "zygote_died", detail="every child died with it; exiting for a clean restart"
            )
            for pid in list(self.registry.by_pid):
                killpg(pid, signal.SIGKILL)
            self.registry.by_pid.clear()
            self.exit_code = DaemonExit.ZYGOTE_DIED

    def reload(self) -> dict[str, Any]:
        """Re-read the config file and apply the difference to the running tree.

        A config that cannot be loaded, checked or diffed changes nothing (raises
        ReloadRefused, reported). Children whose spec did not change keep running;
        `[factory]` settings apply at the next start only.
        """
        self.cfg, result = reload_config(self.cfg, self.root)
        self.notifier.status(f"reloaded; running {len(self.registry.by_pid)} workers")
        return result

    def _reload_on_signal(self) -> None:
        with contextlib.suppress(ReloadRefused):  # reported by reload_config()
            self.reload()

    def _request_stop(self) -> None:
        self.stop_requested = True

    def _root_exited(self, reason: ExitReason) -> None:
        self.report("root_exited", reason=str(reason))
        gave_up = reason == INTENSITY_EXCEEDED
        self.exit_code = DaemonExit.GAVE_UP if gave_up else DaemonExit.STOPPED

    def _stop(self) -> None:
        self.notifier.stopping("stopping children in reverse order")
        self.report("stopping")
        if self.exit_code is not DaemonExit.ZYGOTE_DIED:
            with contextlib.suppress(ZygoteGone):
                self.root.shutdown()
        self.control_listener.close()
        self.child_notify.close()
        self.zygote.close()
        self.orphans.kill_all(self.pump_nested)
        self.child_logs.close()
        self.posix_signals.close()
        self.report("stopped", exit_code=int(self.exit_code or 0))
        self.notifier.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_mono, 3),
            "started_at": self.started_wall,
            "config": self.cfg.source,
            "runtime_dir": str(self.runtime_dir),
            "state_dir": str(self.state_dir),
            "orphans_reaped": self.orphans.reaped + self.zygote.orphans_reaped,
            "zygote": self.zygote.statistics(),
            "control": self.control_listener.statistics(),
            "watchdog_s": self.notifier.watchdog_s,
            "sandbox": sandbox_status(self.cfg.sandbox),
        }


def sandbox_status(mode: str) -> dict[str, Any]:
    """What the operator chose for agent-written code and whether it can hold here:
    {"mode", "bwrap" (its path or None), "ok", "detail"}. Each process that runs such
    code checks for itself (procs.sandbox) and refuses where this says it cannot."""
    bwrap = shutil.which("bwrap")
    if mode == "none":
        detail = 'agent-written code runs WITHOUT isolation (sandbox = "none")'
        return {"mode": mode, "bwrap": bwrap, "ok": True, "detail": detail}
    if bwrap is None:
        detail = (
            "bwrap is not installed: agent-written code will not run (apt-get install bubblewrap)"
        )
        return {"mode": mode, "bwrap": None, "ok": False, "detail": detail}
    return {"mode": mode, "bwrap": bwrap, "ok": True, "detail": f"bubblewrap ({bwrap})"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factoryd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="TOML config file")
    parser.add_argument(
        "--runtime-dir", help="sockets (default: $FACTORY_RUNTIME_DIR, /run/factory)"
    )
    parser.add_argument(
        "--state-dir", help="databases (default: $FACTORY_STATE_DIR, /var/lib/factory)"
    )
    parser.add_argument("--check", action="store_true", help="check the config and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Owner-only, whatever umask we were started with: every file and socket factoryd,
    # the zygote and the children they fork create (databases, images, sockets).
    os.umask(0o077)
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"factoryd: bad config: {exc}", file=sys.stderr)
        return DaemonExit.BAD_CONFIG
    if args.check:
        print(f"factoryd: {args.config}: ok")
        return DaemonExit.STOPPED
    runtime = paths.runtime_dir(args.runtime_dir or cfg.runtime_dir)
    state = paths.state_dir(args.state_dir or cfg.state_dir)
    tightened: list[str] = []
    for directory in (runtime, state):
        try:
            if note := paths.private_dir(directory):
                tightened.append(note)
        except paths.NotPrivate as exc:
            print(f"factoryd: refusing {directory}: {exc}", file=sys.stderr)
            return DaemonExit.START_FAILED
        except OSError as exc:
            print(f"factoryd: cannot create {directory}: {exc.strerror or exc}", file=sys.stderr)
            return DaemonExit.START_FAILED
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    os.environ[SANDBOX_ENV] = cfg.sandbox  # every child inherits the operator's choice
    zygote = ZygoteClient.start(cfg.preload)
    try:
        daemon = Daemon(cfg, runtime_dir=runtime, state_dir=state, zygote=zygote, log=sys.stderr)
    except control.ControlError as exc:
        zygote.close()
        print(f"factoryd: {exc}", file=sys.stderr)
        return DaemonExit.START_FAILED
    except OSError as exc:  # e.g. a socket path too long for AF_UNIX
        zygote.close()
        why = exc.strerror or exc
        print(f"factoryd: cannot open its sockets in {runtime}: {why}", file=sys.stderr)
        return DaemonExit.START_FAILED
    for note in tightened:
        daemon.report("dir_tightened", detail=note)
    return int(daemon.run())


if __name__ == "__main__":
    sys.exit(main())
