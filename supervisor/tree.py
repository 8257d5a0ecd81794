"""The supervision tree at run time: carries out `policy` decisions on real processes.

Each `SupervisorNode` is one OTP supervisor. Supervisors live inside factoryd (like
systemd's units, they are bookkeeping, not processes); every worker is an OS process
forked by the zygote. Escalation is OTP's: a supervisor that exceeds its restart
intensity terminates its children in reverse order and ends with reason `shutdown`,
and its parent handles that like any child exit. The root ending ends factoryd.

The node never waits on its own: the `ProcessHost` it is given spawns and terminates
(SIGTERM to the process group, bounded wait, SIGKILL), and every wait there is bounded
(supervisor/process_host.py). A config reload is applied to nodes by live_reload.py.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor import policy
from supervisor.policy import (
    ChildState,
    ExitKind,
    ExitReason,
    Remove,
    Restart,
    Shutdown,
    SupervisorState,
)
from supervisor.process_host import ProcessHost
from supervisor.spec import (
    ChildSpec,
    NotifyAccess,
    Readiness,
    RestartType,
    Strategy,
    SupervisorSpec,
)
from supervisor.zygote import SpawnError


class StartFailed(Exception):
    """A child could not be started; the tree (or subtree) did not start."""

    def __init__(self, child_id: str, reason: str) -> None:
        super().__init__(f"child {child_id!r} failed to start: {reason}")
        self.child_id = child_id
        self.reason = reason


class NoSuchChild(KeyError):
    """No child with this id in the tree."""


class NotAllowed(Exception):
    """The operation does not apply to this child (e.g. start_child on one_for_one)."""


@dataclass
class WorkerRecord:
    spec: ChildSpec
    pid: int | None = None
    started_at: float | None = None  # wall clock, for display
    restarts: int = 0
    last_exit: str | None = None
    status_text: str | None = None  # the child's last sd_notify STATUS=
    starting: bool = False  # being (re)started: spawning, no READY=1 yet, or a retry due


@dataclass
class Registry:
    """Which node owns which pid and which id; the root's end is reported here."""

    by_pid: dict[int, tuple[SupervisorNode, str]] = field(default_factory=dict)
    by_id: dict[str, SupervisorNode] = field(default_factory=dict)
    on_root_exit: Callable[[ExitReason], None] = lambda reason: None
    on_register: Callable[[int], None] = lambda pid: None

    def register(self, pid: int, node: SupervisorNode, child_id: str) -> None:
        """`pid` is now `child_id` of `node` (what it said before this is applied)."""
        self.by_pid[pid] = (node, child_id)
        self.on_register(pid)

    def forget_subtree(self, top: SupervisorNode) -> None:
        """Drop the ids `top` and the nodes under it own (the subtree is being forgotten)."""
        nodes = [top]
        while nodes:
            node = nodes.pop()
            for wid in node.workers:
                if self.by_id.get(wid) is node:
                    del self.by_id[wid]
            if self.by_id.get(node.id) is node:
                del self.by_id[node.id]
            nodes.extend(node.subs.values())


class SupervisorNode:
    def __init__(
        self,
        spec: SupervisorSpec,
        host: ProcessHost,
        registry: Registry,
        parent: SupervisorNode | None = None,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.host = host
        self.registry = registry
        self.parent = parent
        self.running = False
        self.started_at: float | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self._dynamic_seq = 0
        self.workers: dict[str, WorkerRecord] = {}
        self.subs: dict[str, SupervisorNode] = {}
        self.template: ChildSpec | None = None
        children: list[ChildState] = []
        registry.by_id[self.id] = self
        if spec.flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            template = spec.children[0]
            assert isinstance(template, ChildSpec)
            self.template = template
        else:
            for child in spec.children:
                children.append(ChildState(child.id, child.restart, child.significant))
                registry.by_id[child.id] = self
                if isinstance(child, SupervisorSpec):
                    self.subs[child.id] = SupervisorNode(child, host, registry, self)
                else:
                    self.workers[child.id] = WorkerRecord(child)
        self.state = SupervisorState(flags=spec.flags, children=tuple(children))

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Start every child in order; on a failure stop the started ones and raise."""
        self.state = replace(self.state, restarts=())
        self.started_at = time.time()
        started: list[str] = []
        for child in self.state.children:
            try:
                self._start_child(child.id)
            except StartFailed:
                for cid in reversed(started):
                    self._terminate_child(cid)
                raise
            started.append(child.id)
        self.running = True

    def shutdown(self) -> None:
        """Terminate all running children, in reverse start order (dynamic: all at once)."""
        if self.spec.flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            self._terminate_many([c.id for c in self.state.children if c.running])
            for cid in [c.id for c in self.state.children]:
                self._forget(cid)
        else:
            for child in reversed(self.state.children):
                if child.running:
                    self._terminate_child(child.id)
        self.running = False

    def _start_child(self, cid: str) -> None:
        if cid in self.subs:
            self.subs[cid].start()
        else:
            record = self.workers[cid]
            record.starting = True  # status, answered in the waits below, says so
            try:
                self._start_worker(cid, record)
            finally:
                record.starting = False
        self.state = policy.set_running(self.state, cid, True)

    def _start_worker(self, cid: str, record: WorkerRecord) -> None:
        try:
            pid = self.host.spawn(cid, record.spec.start)
        except SpawnError as exc:
            record.last_exit = f"failed to start: {exc}"
            self.host.report("start_failed", supervisor=self.id, child=cid, reason=str(exc))
            raise StartFailed(cid, str(exc)) from exc
        record.pid = pid
        record.started_at = time.time()
        record.status_text = None
        self.registry.register(pid, self, cid)
        if record.spec.ready is Readiness.NOTIFY:
            self._await_ready(cid, record, pid)
        self.host.report("child_started", supervisor=self.id, child=cid, pid=pid)

    def _await_ready(self, cid: str, record: WorkerRecord, pid: int) -> None:
        """A `ready = "notify"` child is started once it says READY=1 (OTP: once init
        returned); one that exits first or stays silent past its start timeout failed."""
        problem = self.host.wait_ready(pid, record.spec.start_timeout_s)
        if problem is None:
            return
        self.host.terminate([pid], 0.0)
        self.registry.by_pid.pop(pid, None)
        record.pid = None
        record.last_exit = f"failed to start: {problem}"
        self.host.report("start_failed", supervisor=self.id, child=cid, reason=problem)
        raise StartFailed(cid, problem)

    def notify_access(self, cid: str) -> NotifyAccess:
        record = self.workers.get(cid)
        return record.spec.notify_access if record else NotifyAccess.MAIN

    def set_status_text(self, cid: str, text: str) -> None:
        if cid in self.workers:
            self.workers[cid].status_text = text

    def _terminate_child(self, cid: str) -> None:
        if cid in self.subs:
            self.subs[cid].shutdown()
            self.subs[cid].last_exit = str(policy.SHUTDOWN)
        else:
            self._terminate_many([cid])
        self.state = policy.set_running(self.state, cid, False)

    def _terminate_many(self, cids: list[str]) -> None:
        pids = {}
        for cid in cids:
            record = self.workers[cid]
            if record.pid is not None:
                pids[record.pid] = cid
        if not pids:
            return
        shutdown_s = max(self.workers[c].spec.shutdown_s for c in pids.values())
        reasons = self.host.terminate(list(pids), shutdown_s)
        for pid, cid in pids.items():
            record = self.workers[cid]
            self.registry.by_pid.pop(pid, None)
            record.pid = None
            record.last_exit = str(reasons.get(pid, policy.SHUTDOWN))
            self.state = policy.set_running(self.state, cid, False)
            self.host.report(
                "child_terminated", supervisor=self.id, child=cid, pid=pid, reason=record.last_exit
            )

    def _forget(self, cid: str) -> None:
        self.state = policy.without_child(self.state, cid)
        self.workers.pop(cid, None)
        sub = self.subs.pop(cid, None)
        if sub is not None:
            self.registry.forget_subtree(sub)
        if self.registry.by_id.get(cid) is self:
            del self.registry.by_id[cid]

    # ------------------------------------------------------------------ exits

    def child_exited(self, cid: str, reason: ExitReason) -> None:
        """A child ended on its own (or a nested supervisor gave up): apply the policy."""
        if cid not in self.workers and cid not in self.subs:
            return
        if cid in self.workers:
            record = self.workers[cid]
            record.pid = None
            record.last_exit = str(reason)
        else:
            self.subs[cid].last_exit = str(reason)
        self.host.report("child_exited", supervisor=self.id, child=cid, reason=str(reason))
        self.state, actions = policy.decide_exit(self.state, cid, reason, self.host.now())
        self._execute(actions)

    def _execute(self, actions: list[policy.Action]) -> None:
        for action in actions:
            if isinstance(action, Restart):
                self._restart(action)
            elif isinstance(action, Remove):
                self._forget(action.child_id)
            elif isinstance(action, Shutdown):
                self._give_up(action.reason)
                return

    def _restart(self, plan: Restart) -> None:
        for cid in plan.terminate:
            self._terminate_child(cid)
        for cid in plan.start:
            self._count_restart(cid)
            try:
                self._start_child(cid)
            except StartFailed as exc:
                # OTP's try_again_restart: re-queue, counted against the intensity.
                # The rest of plan.start is not started here: the retry's own plan starts
                # it (one_for_all and rest_for_one restart the failed child's siblings).
                failure = ExitReason(ExitKind.ABNORMAL, f"failed to start: {exc.reason}")
                if cid in self.workers:  # still being restarted: status says "starting"
                    self.workers[cid].starting = True
                self.host.defer(functools.partial(self._try_again, cid, failure))
                return

    def _count_restart(self, cid: str) -> None:
        if cid in self.workers:
            self.workers[cid].restarts += 1
        elif cid in self.subs:
            self.subs[cid].restarts += 1

    def _try_again(self, cid: str, failure: ExitReason) -> None:
        if cid in self.workers:
            self.workers[cid].starting = False
        if self.running and any(c.id == cid and not c.running for c in self.state.children):
            self.child_exited(cid, failure)

    def _give_up(self, reason: ExitReason) -> None:
        self.host.report("supervisor_shutdown", supervisor=self.id, reason=str(reason))
        self.shutdown()
        if self.parent is not None:
            self.parent.child_exited(self.id, reason)
        else:
            self.registry.on_root_exit(reason)

    # ------------------------------------------------------------------ operator API

    def start_child(self, extra_args: tuple[str, ...]) -> tuple[str, int]:
        """simple_one_for_one: start a new dynamic child from the template."""
        if self.template is None:
            raise NotAllowed(f"{self.id} is not a simple_one_for_one supervisor")
        if not self.running:
            raise NotAllowed(f"supervisor {self.id} is not running")
        cid = ""
        while not cid or cid in self.registry.by_id:  # a static child may be named SUP.N
            self._dynamic_seq += 1
            cid = f"{self.id}.{self._dynamic_seq}"
        spec = replace(self.template, id=cid, start=self.template.start.with_extra_args(extra_args))
        self.workers[cid] = WorkerRecord(spec)
        self.state = policy.add_child(self.state, ChildState(cid, spec.restart, spec.significant))
        self.registry.by_id[cid] = self
        try:
            self._start_child(cid)
        except StartFailed:
            self._forget(cid)
            raise
        pid = self.workers[cid].pid
        assert pid is not None
        return cid, pid

    def terminate_child(self, cid: str, *, forget: bool = True) -> None:
        """OTP terminate_child: stop it; temporary and dynamic children are forgotten
        (unless `forget` is False: an operator's restart starts it again at once)."""
        child = self._child_state(cid)
        if child.running:
            self._terminate_child(cid)
        if forget and (child.restart is RestartType.TEMPORARY or self.template is not None):
            self._forget(cid)

    def restart_child(self, cid: str) -> None:
        """OTP restart_child: start a stopped child (again, or for the first time after
        `add_child`). Raises NoSuchChild, NotAllowed, or StartFailed (it stays stopped)."""
        if self._child_state(cid).running:
            raise NotAllowed(f"{cid} is already running")
        if not self.running:  # it would run untracked by the supervisor's next start
            raise NotAllowed(f"supervisor {self.id} is not running: start it instead")
        self._start_child(cid)

    # ------------------------------------------------------------------ child specs (reload)

    def add_child(self, spec: ChildSpec | SupervisorSpec) -> None:
        """Add a child spec last, stopped (OTP's start_child, less the start: a reload
        starts it with `restart_child` once the new order is in place)."""
        self.registry.by_id[spec.id] = self
        if isinstance(spec, SupervisorSpec):
            self.subs[spec.id] = SupervisorNode(spec, self.host, self.registry, self)
        else:
            self.workers[spec.id] = WorkerRecord(spec)
        self.state = policy.add_child(
            self.state, ChildState(spec.id, spec.restart, spec.significant)
        )

    def remove_child(self, cid: str) -> None:
        """OTP's terminate_child then delete_child: stop the child if it runs (bounded by
        its shutdown time) and forget its spec. A child that is already gone (a temporary
        one that ended) is no error."""
        if any(c.id == cid and c.running for c in self.state.children):
            self._terminate_child(cid)
        self._forget(cid)

    def replace_child(self, spec: ChildSpec | SupervisorSpec) -> None:
        """`remove_child` of the old child with this id, then `add_child` of `spec`."""
        self.remove_child(spec.id)
        self.add_child(spec)

    def _child_state(self, cid: str) -> ChildState:
        try:
            return self.state.child(cid)
        except KeyError:
            raise NoSuchChild(cid) from None

    def worker_pid(self, cid: str) -> int | None:
        record = self.workers.get(cid)
        return record.pid if record else None

    def describe(self) -> dict[str, Any]:
        """The subtree as data, for `factoryctl status`."""
        children: list[dict[str, Any]] = []
        for child in self.state.children:
            if child.id in self.subs:
                children.append(self.subs[child.id].describe())
                continue
            record = self.workers[child.id]
            children.append(
                {
                    "id": child.id,
                    "type": "worker",
                    "state": _worker_state(child.running, record.starting),
                    "pid": record.pid,
                    "started_at": record.started_at if child.running else None,
                    "restarts": record.restarts,
                    "restart": record.spec.restart.value,
                    "last_exit": record.last_exit,
                    "status_text": record.status_text if child.running else None,
                    "start": record.spec.start.describe(),
                }
            )
        return {
            "id": self.id,
            "type": "supervisor",
            "strategy": self.spec.flags.strategy.value,
            "intensity": self.spec.flags.intensity,
            "period_s": self.spec.flags.period_s,
            "state": "running" if self.running else "stopped",
            "started_at": self.started_at if self.running else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "children": children,
        }


def _worker_state(running: bool, starting: bool) -> str:
    """A worker's state for `status`: "starting" while it is spawned and not yet ready
    (factoryd answers status inside that wait: a reader must not take it for stopped
    and start it a second time)."""
    if running:
        return "running"
    return "starting" if starting else "stopped"
