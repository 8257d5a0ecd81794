"""factoryd's side of the control protocol: one handler per wire command.

Handlers see the tree (through its registry), the child logs and two callables, not
the daemon. The wire forms are documented in each factoryctl command module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ipc import ledger
from ipc.control import RequestRefused
from supervisor.child_logs import ChildLogs
from supervisor.live_reload import ReloadRefused
from supervisor.tree import NoSuchChild, NotAllowed, Registry, StartFailed, SupervisorNode
from supervisor.zygote import ZygoteGone


@dataclass
class ControlApi:
    registry: Registry
    root: SupervisorNode
    child_logs: ChildLogs
    statistics: Callable[[], dict[str, Any]]
    request_stop: Callable[[], None]
    reload: Callable[[], dict[str, Any]]
    runtime_dir: Path
    report: Callable[..., None] = lambda event, **fields: None

    def handle(self, command: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, f"cmd_{command}", None)
        if handler is None:
            known = ", ".join(self.commands())
            raise RequestRefused(
                f"unknown command {command!r} (factoryd knows: {known})", "unknown_command"
            )
        try:
            return handler(args)
        except NoSuchChild as exc:
            raise RequestRefused(f"no child {exc.args[0]!r} in the tree", "not_found") from None
        except NotAllowed as exc:
            raise RequestRefused(str(exc), "not_allowed") from None
        except StartFailed as exc:
            raise RequestRefused(str(exc), "start_failed") from None
        except ZygoteGone as exc:
            raise RequestRefused(f"the zygote is gone: {exc}", "internal") from None
        except RequestRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with traceback, answered
            # A bug in one handler must not take the whole tree down with factoryd:
            # report it with its traceback, answer "internal", keep supervising.
            self.report(
                "control_handler_crashed",
                command=command,
                reason=repr(exc),
                traceback=traceback.format_exc(),
            )
            raise RequestRefused(
                f"internal error in {command!r}: {exc!r} (details in factoryd's log)", "internal"
            ) from None

    @classmethod
    def commands(cls) -> list[str]:
        """The wire commands factoryd answers, sorted."""
        return sorted(name.removeprefix("cmd_") for name in dir(cls) if name.startswith("cmd_"))

    # -- lookups

    def _owner(self, args: dict[str, Any]) -> tuple[SupervisorNode, str]:
        child_id = args.get("id")
        if not isinstance(child_id, str) or not child_id:
            raise RequestRefused("args.id must be a child id", "bad_request")
        node = self.registry.by_id.get(child_id)
        if node is None:
            raise NoSuchChild(child_id)
        return node, child_id

    # -- commands

    def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        tree = self.root.describe()
        _add_usage(tree, time.time())
        return {"daemon": self.statistics(), "tree": tree, "resources": self._resources()}

    def _resources(self) -> dict[str, Any] | None:
        """The resource ledger, read without locking or changing it; None if none exists."""
        try:
            return ledger.snapshot(self.runtime_dir)
        except ledger.LedgerMissing:
            return None
        except (ledger.LedgerError, OSError, ValueError) as exc:  # torn/foreign: say so
            return {"error": f"cannot read the ledger: {exc}"}

    def cmd_kill(self, args: dict[str, Any]) -> dict[str, Any]:
        node, child_id = self._owner(args)
        name = str(args.get("signal", "SIGKILL")).upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            sig = signal.Signals[name]
        except KeyError:
            raise RequestRefused(f"unknown signal {args.get('signal')!r}", "bad_request") from None
        if child_id == node.id or child_id in node.subs:
            raise NotAllowed(f"{child_id} is a supervisor; kill its workers, or stop/restart it")
        pid = node.worker_pid(child_id)
        if pid is None:
            raise NotAllowed(f"{child_id} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        return {"id": child_id, "pid": pid, "signal": sig.name}

    def cmd_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        node, child_id = self._owner(args)
        if node is self.root and child_id == self.root.id:
            raise NotAllowed("stop the root with `factoryctl shutdown`")
        if child_id == node.id:  # a nested supervisor: its parent owns the child entry
            node = node.parent or node
        node.terminate_child(child_id)
        return {"id": child_id, "state": "stopped"}

    def cmd_start(self, args: dict[str, Any]) -> dict[str, Any]:
        node, child_id = self._owner(args)
        extra = args.get("args", [])
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            raise RequestRefused("args.args must be a list of strings", "bad_request")
        if child_id == node.id and node.template is not None:
            new_id, pid = node.start_child(tuple(extra))
            return {"id": new_id, "pid": pid, "state": "running"}
        if child_id == node.id:
            node = node.parent or node
        if extra:
            raise NotAllowed("extra args only go to a simple_one_for_one supervisor")
        node.restart_child(child_id)
        return {"id": child_id, "pid": node.worker_pid(child_id), "state": "running"}

    def cmd_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        node, child_id = self._owner(args)
        if child_id == node.id:
            if node.parent is None:
                raise NotAllowed("restart the root by restarting the service")
            node = node.parent
        if node.template is not None:
            raise NotAllowed(f"{child_id} is a dynamic child: stop it and start a new one")
        if node.state.child(child_id).running:
            node.terminate_child(child_id, forget=False)
        node.restart_child(child_id)
        return {"id": child_id, "pid": node.worker_pid(child_id), "state": "running"}

    def cmd_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        child_id = args.get("id")
        if not isinstance(child_id, str) or not child_id:
            raise RequestRefused("args.id must be a child id", "bad_request")
        if child_id not in self.child_logs.rings:
            raise NoSuchChild(child_id)
        lines = _count(args, "lines", 50)
        ring = self.child_logs.rings[child_id]
        if args.get("after") is None:  # the last `lines`; `seq` is where a follower goes on
            tail = self.child_logs.tail(child_id, lines)
            return {"id": child_id, "lines": tail, "seq": ring.last_seq, "dropped": 0}
        taken, seq, dropped = ring.after(_count(args, "after", 0), lines)
        return {"id": child_id, "lines": taken, "seq": seq, "dropped": dropped}

    def cmd_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.reload()
        except ReloadRefused as exc:
            raise RequestRefused(f"config not reloaded: {exc}", "bad_config") from None

    def cmd_shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        self.request_stop()
        return {"stopping": True, "pid": os.getpid()}


def _add_usage(node: dict[str, Any], now: float) -> None:
    """Fill uptime, RSS and CPU time of each running worker and its subprocesses; a
    worker whose usage cannot be read (see `_usage`) gets no usage fields."""
    if node.get("started_at"):
        node["uptime_s"] = round(now - node["started_at"], 3)
    if node["type"] == "worker" and node.get("pid"):
        node.update(_usage(node["pid"]) or {})
    for child in node.get("children", []):
        _add_usage(child, now)


def _usage(pid: int) -> dict[str, Any] | None:
    """RSS, CPU time and process count of `pid` and its subprocesses, or None when they
    cannot be read: the worker exited while we looked, or factoryd is out of file
    descriptors (psutil reads /proc; EMFILE and ENFILE reach us as a bare OSError, not
    a psutil.Error). A subprocess that exits meanwhile is left out."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except (psutil.Error, OSError):
        return None
    rss = cpu = 0.0
    for p in procs:
        try:
            memory, times = p.memory_info(), p.cpu_times()
        except psutil.Error:  # gone, or not ours to read
            continue
        except OSError:  # no descriptor to read it with: no figures, not wrong ones
            return None
        rss += memory.rss
        cpu += times.user + times.system
    return {"rss_bytes": int(rss), "cpu_s": round(cpu, 3), "processes": len(procs)}


def _count(args: dict[str, Any], key: str, default: int) -> int:
    """args[key] as an integer >= 0, or RequestRefused naming it."""
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestRefused(f"args.{key} must be an integer >= 0", "bad_request")
    return value
