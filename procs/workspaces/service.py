"""The workspace manager service: isolated workspaces on request, over its control socket.

Run by factoryd as a supervised child (target = "procs.workspaces.service:main"), or by hand:

    python3 -m procs.workspaces.service --ramdisk --golden /path/to/repo [--strategy auto]

At start it provisions the configured RAM disk (idempotent: a crash-restart finds it
mounted), reaps orphans (workspaces whose owner died while it was down, and creates or
destroys it was interrupted in), then answers on <runtime_dir>/workspace_manager.sock:

    workspaces.create   {slug, source, strategy?, owner_pid, owner_loop?}
                                                              -> {workspace, choice}
    workspaces.adopt    {id, owner_pid}                       -> {workspace}
    workspaces.destroy  {id}                                  -> {workspace}
    workspaces.list     {}                                    -> {workspaces: [...], slots}
    workspaces.reap     {}                                    -> {reports: [...]}
    workspaces.choose   {source, strategy?}                   -> {strategy, reason, skipped}
    ramdisk.create      {name?, size_mb?, fs?, golden?}       -> RAM disk status
    ramdisk.status      {name?}                               -> RAM disk status
    ramdisk.destroy     {name?, force?}                       -> {status, destroyed: [...]}
    status              {}                                    -> statistics (slots included)

Between requests it keeps --snapshot-pool snapshots of each btrfs golden master taken
ahead (handed out only while the golden is unchanged), so a snapshot create is one rename.
Requests are served one at a time: a copy/worktree/reflink create of a large repo holds
the others back for its duration (a snapshot takes about a millisecond, an overlay a
few, once its commit is exported: the first overlay on a commit checks it out).

When the resource governor runs (its ledger exists in the runtime dir), every workspace
holds one workspace slot of the ledger (max_workspaces): a create takes one before it
touches the disk, waiting at most --slot-timeout-s, and is refused ("workspace exhausted:
2/2 in use") when none is free; destroying or reaping gives it back. This process holds
the tickets, so the kernel returns them if it dies, and at start it takes one again for
every workspace it keeps (more kept workspaces than slots: reported, and creates refused
until enough are destroyed). Without a ledger there is no limit; `status` says so.

Each owner is watched through a pidfd, so a workspace whose owner dies is reaped (removed
or kept, per --orphans) as the death happens, with no polling. A workspace made for a
loop (`owner_loop`: a loop id) is not reaped while that loop may resume: with --claims
beads (the default) its owner's death makes it `detached` while the beads service says
the loop holds its bead's claim, or cannot be asked (it starts after this service); the
resumed loop takes it back with `workspaces.adopt`. Detached workspaces are looked at
again every --reconcile-s and reaped once their loop holds no claim (procs/workspaces/
_claims.py). So a factoryd restart, whose zygote (every loop workspace's owner) is new,
loses no loop's workspace. Reports go to stderr as one
JSON record per line. SIGTERM/SIGINT stop it cleanly; workspaces and the RAM disk stay.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.service import READ, Call, Ready, Service, ServiceLoop, Timer, serve
from ipc.service import BadRequest as ServiceBadRequest
from procs.workspaces import (
    AUTO_ORDER,
    STRATEGY_CHOICES,
    BadRequest,
    OrphanReport,
    Workspace,
    WorkspaceError,
    WorkspaceRegistry,
    WorkspaceSlots,
)
from procs.workspaces import ramdisk as ramdisks
from procs.workspaces._claims import BeadsClaims

SERVICE = "workspace_manager"
DB_NAME = "workspaces.sqlite3"


def report(event: str, **fields: Any) -> None:
    """One structured record per line on stderr (the supervisor's log)."""
    service_report.report(SERVICE, event, **fields)


class OwnerWatch:
    """pidfds of workspace owners in the service loop: an owner's death wakes it and
    calls `on_exit(pid)`."""

    def __init__(self, loop: ServiceLoop, on_exit: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._by_pid: dict[int, tuple[int, set[str]]] = {}

    def watch(self, ws: Workspace) -> bool:
        """Watch `ws.owner_pid`; returns False when the owner is gone already."""
        if ws.owner_pid in self._by_pid:
            self._by_pid[ws.owner_pid][1].add(ws.id)
            return True
        try:
            fd = os.pidfd_open(ws.owner_pid)
        except ProcessLookupError:
            return False
        self._by_pid[ws.owner_pid] = (fd, {ws.id})
        pid = ws.owner_pid
        self._loop.watch(fd, READ, lambda _events: self._on_exit(pid))
        return True

    def died(self, pid: int) -> set[str]:
        """Stop watching `pid`; returns the workspace ids it owned."""
        fd, ids = self._by_pid.pop(pid, (-1, set()))
        if fd >= 0:
            self._loop.unwatch(fd)
            os.close(fd)
        return ids

    def close(self) -> None:
        for pid in list(self._by_pid):
            self.died(pid)


class WorkspaceService(Service):
    """Maps control requests onto the registry and the RAM disk; holds no other state."""

    name = SERVICE

    def __init__(
        self,
        registry: WorkspaceRegistry,
        ramdisk_spec: ramdisks.RamDiskSpec | None,
        runtime: Path,
        *,
        reconcile_s: float = 30.0,
    ) -> None:
        self.registry = registry
        self.reconcile_s = reconcile_s
        self.ramdisk_spec = ramdisk_spec
        self.runtime = runtime
        self.owners: OwnerWatch | None = None
        self.loop: ServiceLoop | None = None
        self.last_reap: list[dict[str, Any]] = []
        self._refill: Timer | None = None

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        self.owners = OwnerWatch(loop, self.on_owner_exit)
        self.reap()
        slots = self.sync_slots()
        self.watch_all()
        self.refill()
        if self.reconcile_s > 0 and self.registry.claims is not None:
            loop.every(self.reconcile_s, self.reconcile_detached)
        return Ready(
            f"serving; workspace slots: {slots['summary']}",
            root=str(self.registry.root),
            slots=slots,
        )

    def terminate(self, reason: str) -> None:
        if self.owners is not None:
            self.owners.close()
        self.registry.close()
        report("stopped", reason=reason)

    def calls(self) -> Mapping[str, Call]:
        commands = {
            "workspaces.create": self.do_workspaces_create,
            "workspaces.destroy": self.do_workspaces_destroy,
            "workspaces.adopt": self.do_workspaces_adopt,
            "workspaces.list": self.do_workspaces_list,
            "workspaces.reap": self.do_workspaces_reap,
            "workspaces.choose": self.do_workspaces_choose,
            "ramdisk.create": self.do_ramdisk_create,
            "ramdisk.status": self.do_ramdisk_status,
            "ramdisk.destroy": self.do_ramdisk_destroy,
            "status": self.do_status,
        }
        return {name: self._guarded(name, fn) for name, fn in commands.items()}

    def _guarded(self, command: str, fn: Call) -> Call:
        """Every failure of a request is an error reply; the pools are topped up after."""

        def call(args: dict[str, Any]) -> Any:
            try:
                return fn(args)
            except WorkspaceError as exc:
                raise control.RequestRefused(str(exc), exc.kind) from exc
            except (ValueError, TypeError) as exc:  # a NUL byte in a path, a wrong type
                raise ServiceBadRequest(f"{command}: {exc}") from exc
            except OSError as exc:
                raise control.RequestRefused(f"{command}: {exc}", "failed") from exc
            finally:
                if command != "status" and self.loop is not None and self._refill is None:
                    self._refill = self.loop.after(0.0, self.refill)

        return call

    def do_workspaces_create(self, args: dict[str, Any]) -> dict[str, Any]:
        if "owner_pid" not in args:
            raise BadRequest("owner_pid is required: the process whose death frees the workspace")
        ws, choice = self.registry.create_workspace_explained(
            args.get("slug"),  # type: ignore[arg-type]  # checked inside
            args.get("source"),  # type: ignore[arg-type]
            args.get("strategy"),
            owner_pid=args["owner_pid"],
            owner_loop=args.get("owner_loop"),
        )
        report("workspace_created", workspace=ws.to_dict(), choice=choice.to_dict())
        assert self.owners is not None
        if not self.owners.watch(ws):
            self._owner_died(ws.owner_pid, {ws.id})
        return {"workspace": ws.to_dict(), "choice": choice.to_dict()}

    def do_workspaces_destroy(self, args: dict[str, Any]) -> dict[str, Any]:
        ws = self.registry.destroy_workspace(args.get("id"))  # type: ignore[arg-type]
        report("workspace_destroyed", workspace=ws.to_dict())
        return {"workspace": ws.to_dict()}

    def do_workspaces_adopt(self, args: dict[str, Any]) -> dict[str, Any]:
        if "owner_pid" not in args:
            raise BadRequest("owner_pid is required: the process whose death frees the workspace")
        ws = self.registry.adopt_workspace(args.get("id"), args["owner_pid"])  # type: ignore[arg-type]
        report("workspace_adopted", workspace=ws.to_dict())
        assert self.owners is not None
        if not self.owners.watch(ws):
            self._owner_died(ws.owner_pid, {ws.id})
        return {"workspace": ws.to_dict()}

    def do_workspaces_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "workspaces": [ws.to_dict() for ws in self.registry.list_workspaces()],
            "slots": self.registry.slots.statistics(),
        }

    def do_workspaces_reap(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"reports": [r.to_dict() for r in self.reap()]}

    def do_workspaces_choose(self, args: dict[str, Any]) -> dict[str, Any]:
        source = args.get("source")
        return self.registry.choose_strategy(source, args.get("strategy")).to_dict()  # type: ignore[arg-type]

    def _spec(self, args: dict[str, Any]) -> ramdisks.RamDiskSpec:
        base = self.ramdisk_spec or ramdisks.RamDiskSpec(runtime_dir=self.runtime)
        return ramdisks.RamDiskSpec(
            name=args.get("name", base.name),
            size_mb=args.get("size_mb", base.size_mb),
            fstype=args.get("fs", base.fstype),
            runtime_dir=base.runtime_dir,
            image_dir=base.image_dir,
        )

    def do_ramdisk_create(self, args: dict[str, Any]) -> dict[str, Any]:
        golden = args.get("golden")
        if golden is not None and not isinstance(golden, str):
            raise BadRequest(f"golden must be a path, got {golden!r}")
        result = ramdisks.create(self._spec(args), Path(golden) if golden else None)
        if result.get("golden"):  # the golden master's copy: pool its snapshots from now
            self.registry.pool.sources.add(Path(result["golden"]).resolve())
        report("ramdisk_created", status=result)
        return result

    def do_ramdisk_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return ramdisks.status(self._spec(args))

    def do_ramdisk_destroy(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec(args)
        destroyed = []
        for ws in self.registry.list_workspaces():
            if spec.mountpoint in ws.path.parents:
                self.registry.destroy_workspace(ws.id)
                destroyed.append(ws.to_dict())
        result = ramdisks.destroy(spec, force=bool(args.get("force", False)))
        report("ramdisk_destroyed", status=result, workspaces=destroyed)
        return {"status": result, "destroyed": destroyed}

    def do_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "root": str(self.registry.root),
            "scratch": str(self.registry.scratch),
            "default_strategy": self.registry.default_strategy,
            "orphans": self.registry.orphans,
            "registry": self.registry.statistics(),
            "slots": self.registry.slots.statistics(),
            "last_reap": self.last_reap,
            "ramdisk": ramdisks.status(self.ramdisk_spec) if self.ramdisk_spec else None,
        }

    # -- orphans -----------------------------------------------------------------------

    def reap(self) -> list[OrphanReport]:
        reports = self.registry.reap_orphans()
        for r in reports:
            report("workspace_orphan", **r.to_dict())
        self.last_reap = [r.to_dict() for r in reports]
        return reports

    def reconcile_detached(self) -> None:
        """Ask again about the workspaces kept for loops that may resume (a timer)."""
        if self.registry.detached():
            self.reap()

    def _owner_died(self, pid: int, ids: set[str]) -> None:
        for id_ in sorted(ids):
            r = self.registry.reap_if_orphaned(id_)
            if r is not None:
                report("workspace_orphan", **r.to_dict())

    def on_owner_exit(self, pid: int) -> None:
        assert self.owners is not None
        self._owner_died(pid, self.owners.died(pid))

    def refill(self) -> None:
        """Top up the snapshot pools between requests; a failure costs speed, not service."""
        self._refill = None
        try:
            self.registry.refill_pools()
        except (WorkspaceError, OSError) as exc:
            report("pool_refill_failed", reason=str(exc))

    def sync_slots(self) -> dict[str, Any]:
        """Take a slot again for every kept workspace (the kernel returned a dead
        predecessor's); kept workspaces beyond the limit are reported, never deleted."""
        slots = self.registry.sync_slots()
        if slots["uncovered"]:
            report("slots_over_limit", **slots)
        return slots

    def watch_all(self) -> None:
        assert self.owners is not None
        for ws in self.registry.list_workspaces():
            if ws.state == "ready" and not self.owners.watch(ws):
                self._owner_died(ws.owner_pid, {ws.id})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description=__doc__.split("\n")[0])
    p.add_argument("--runtime-dir", help="sockets and RAM disk mounts (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"where {DB_NAME} lives (FACTORY_STATE_DIR)")
    p.add_argument("--root", type=Path, help="workspace root (default: the RAM disk's)")
    p.add_argument(
        "--scratch",
        type=Path,
        help="overlay upper/work layers (default: overlay/ in the runtime dir, owner only)",
    )
    p.add_argument("--strategy", choices=STRATEGY_CHOICES, default="auto")
    p.add_argument(
        "--auto-order",
        default=",".join(AUTO_ORDER),
        help="strategies auto tries, first usable wins (default: %(default)s)",
    )
    p.add_argument("--orphans", choices=("remove", "keep"), default="remove")
    p.add_argument(
        "--claims",
        choices=("beads", "none"),
        default="beads",
        help="whose claims keep a dead owner's loop workspace for the loop to resume "
        "(beads: the beads service's; none: reaped like any other)",
    )
    p.add_argument(
        "--reconcile-s",
        type=_seconds,
        default=30.0,
        help="how often workspaces kept for loops are looked at again (0: only at start "
        "and on an owner's death)",
    )
    p.add_argument(
        "--snapshot-pool",
        type=int,
        default=2,
        help="btrfs snapshots per golden taken ahead, between requests (0: off; default 2)",
    )
    p.add_argument("--timeout-s", type=float, default=300.0, help="per cp/git/jj command")
    p.add_argument(
        "--slot-timeout-s",
        type=_seconds,
        default=0.0,
        help="how long a create waits for a free workspace slot of the governor's ledger "
        "(default 0: refuse at once; this process holds the slots and serves one request "
        "at a time, so only other holders or a raised limit can free one meanwhile)",
    )
    p.add_argument("--ramdisk", action="store_true", help="provision a RAM disk at start")
    p.add_argument("--ramdisk-name", default="factory")
    p.add_argument("--ramdisk-fs", choices=tuple(ramdisks.MKFS), default="btrfs")
    p.add_argument("--ramdisk-size-mb", type=int, default=2048)
    p.add_argument("--golden", type=Path, help="git repo imported as the RAM disk's golden")
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime = paths.runtime_dir(args.runtime_dir)
    state = paths.state_dir(args.state_dir)
    spec = None
    try:
        if args.ramdisk:
            spec = ramdisks.RamDiskSpec(
                name=args.ramdisk_name,
                size_mb=args.ramdisk_size_mb,
                fstype=args.ramdisk_fs,
                runtime_dir=runtime,
            )
            report("ramdisk_ready", status=ramdisks.create(spec, args.golden))
        root = args.root or (spec.workspaces if spec else state / "workspaces")
        registry = WorkspaceRegistry(
            root,
            state / DB_NAME,
            scratch=args.scratch or runtime / "overlay",
            default_strategy=args.strategy,
            orphans=args.orphans,
            timeout_s=args.timeout_s,
            auto_order=tuple(name.strip() for name in args.auto_order.split(",")),
            snapshot_pool=args.snapshot_pool,
            slots=WorkspaceSlots(runtime, timeout_s=args.slot_timeout_s),
            claims=BeadsClaims(runtime) if args.claims == "beads" else None,
        )
        if spec is not None and spec.golden.is_dir():
            registry.pool.sources.add(spec.golden.resolve())
    except (WorkspaceError, OSError) as exc:
        report("start_failed", reason=str(exc))
        return 1
    return serve(WorkspaceService(registry, spec, runtime, reconcile_s=args.reconcile_s), runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
