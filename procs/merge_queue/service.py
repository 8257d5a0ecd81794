"""The merge queue service (its contract is in procs/merge_queue/__init__.py).

The service owns the control socket, the store, the queue's repository and the bus; the
speculative pipeline itself is procs/merge_queue/dependent.py, on this loop's thread.
Fetching a proposed patch and checking a landing run in workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.bus import BusError, Publisher
from ipc.service import BadRequest, Call, Deferred, Ready, Service, ServiceLoop, serve
from ipc.service import StartFailed as ServiceStartFailed
from ipc.signals import GitHash, InvalidValue, PatchProposed, Signal
from procs import sandbox
from procs.merge_queue.dependent import (
    DEFAULT_TEST_COMMAND,
    GOLDEN_TIMEOUT_S,
    WITHDRAWN,
    DependentPipeline,
    Live,
    QueueConfig,
)
from procs.merge_queue.queue_repo import GitError, QueueRepo
from procs.merge_queue.store import Entry, PatchStore
from procs.suite_config import SuiteConfigError, add_suite_arguments, suite_from_args

SERVICE = "merge_queue"
DB_NAME = "merge_queue.sqlite3"
PUBLISH_TIMEOUT_S = 1.0
BUS_CONNECT_S = 5.0
MAX_WAIT_S = 3600.0


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


class MergeQueue(Service):
    name = SERVICE
    max_queued = 256
    drain_s = 2.0

    def __init__(self, config: QueueConfig, db_path: Path, work_dir: Path, runtime: Path) -> None:
        self.config = config
        self.workers = config.k + 2  # K test runs, a fetch and an advance
        self.db_path, self.work_dir, self.runtime = db_path, work_dir, runtime
        self.golden_socket = paths.control_socket(runtime, config.golden)
        self.suite_source = "default"  # where test_command came from: a flag, loop.toml
        self.loop: ServiceLoop | None = None
        self.store: PatchStore | None = None
        self.repo: QueueRepo | None = None
        self.publisher: Publisher | None = None
        self.pipeline: DependentPipeline | None = None

    @property
    def pipe(self) -> DependentPipeline:
        assert self.pipeline is not None, "used before init"
        return self.pipeline

    # -- lifecycle ------------------------------------------------------------------------

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        try:
            golden = control.call(self.golden_socket, "get_hash", {}, timeout=GOLDEN_TIMEOUT_S)
            sandbox.command_prefix(sandbox.SandboxPolicy(workspace=self.work_dir.parent))
        except control.ControlError as exc:
            raise ServiceStartFailed(f"the golden master does not answer: {exc}") from None
        except sandbox.SandboxUnavailable as exc:
            raise ServiceStartFailed(str(exc)) from None
        head = golden["hash"]
        slots = [self.work_dir / "slots" / str(i) for i in range(self.config.k)]
        try:
            self.repo = QueueRepo.open(self.work_dir / "repo.git", Path(golden["repo"]))
            for slot in slots:
                self.repo.add_slot(slot, head)
        except GitError as exc:
            raise ServiceStartFailed(f"the queue's repository: {exc}") from None
        self.store = PatchStore(self.db_path)
        if self.config.publish:
            try:
                self.publisher = Publisher(self.runtime, source=SERVICE)
            except BusError as exc:
                raise ServiceStartFailed(str(exc)) from None
            try:  # a slow joiner's first signals would be lost: wait for the broker
                self.publisher.wait_connected(timeout=BUS_CONNECT_S)
            except BusError as exc:  # signals only say "look": serve without them for now
                report("bus_not_connected", reason=str(exc))
        self.pipeline = DependentPipeline(
            self.config, loop, self.store, self.repo, slots, golden_socket=self.golden_socket,
            head=head, golden_state=golden.get("state", "unknown"), publish=self._publish,
        )  # fmt: skip
        loop.every(self.config.reconcile_s, self.pipeline.reconcile)
        loop.after(0.0, self.pipeline.pump)
        waiting = len(self.store.waiting())
        return Ready(f"merge queue on golden {head[:12]}, K={self.config.k}",
                     golden=head, k=self.config.k, waiting=waiting)  # fmt: skip

    def terminate(self, reason: str) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.store is not None:
            self.store.close()

    def _publish(self, signal: Signal) -> None:
        if self.publisher is None:
            return
        try:
            self.publisher.publish(signal, timeout=PUBLISH_TIMEOUT_S)
        except BusError as exc:  # the decision is in SQLite; a signal only says "look"
            report("publish_failed", reason=str(exc))

    # -- control --------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {"propose": self.do_propose, "wait": self.do_wait, "cancel": self.do_cancel,
                "landed": self.do_landed, "show": self.do_show, "queue": self.do_queue,
                "status": self.do_status}  # fmt: skip

    def do_propose(self, args: dict[str, Any]) -> Deferred:
        assert self.store is not None and self.repo is not None and self.loop is not None
        source, ref = _text(args, "source"), str(args.get("ref") or "HEAD")
        if not os.path.isabs(source) or not os.path.exists(source):
            raise BadRequest(f"source must be a local repository or bundle (an absolute path "
                             f"that exists), got {source!r:.200}")  # fmt: skip
        if ref.startswith("-"):
            raise BadRequest(f"ref must be a branch, HEAD or a commit, got {ref!r:.100}")
        base = args.get("base")
        if base is not None:
            base = _hash(base, "base")
        priority = args.get("priority", 2)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 4:
            raise BadRequest(f"priority must be an integer 0..4 (0 first), got {priority!r:.20}")
        key, bead_id = str(args.get("key") or ""), str(args.get("bead_id") or "")
        title, group = str(args.get("title") or "")[:200], str(args.get("group") or "")
        store, repo, head = self.store, self.repo, self.pipe.head
        patch_id = store.add(source=source, ref=ref, priority=priority, key=key,
                             bead_id=bead_id, title=title, now=time.time(),
                             group=group)  # fmt: skip

        def fetch() -> tuple[str, str, str]:
            tip = repo.fetch(source, ref, patch_id)
            found = base or repo.merge_base(tip, head)
            return tip, found, repo.diffstat(found, tip)

        outer = Deferred()

        def fetched(d: Deferred) -> None:
            try:
                tip, found_base, stat = d.result()
            except GitError as exc:
                store.drop(patch_id)
                outer.fail(control.RequestRefused(f"cannot take the patch: {exc}", "bad_patch"))
                return
            outer.resolve(self._enqueue(patch_id, key, tip, found_base, stat))

        self.loop.run_in_thread(fetch).add_done_callback(fetched)
        return outer

    def _enqueue(self, patch_id: str, key: str, tip: str, base: str, stat: str) -> dict[str, Any]:
        assert self.store is not None
        for older in self.store.by_key(key) if key else []:
            if older.patch_id == patch_id or older.state not in ("queued", "accepted"):
                continue
            if older.tip == tip:  # the same commits again (a loop restarted): that patch
                self.store.drop(patch_id)
                return older.to_dict()
            if older.state == "queued":
                self.pipe.decide(
                    older, "rejected", reason="stale", detail=f"superseded by {patch_id}"
                )
        self.store.fetched(patch_id, tip, base)
        self.pipe.counts["proposed"] += 1
        entry = self.store.get(patch_id)
        assert entry is not None
        report("proposed", patch_id=patch_id, key=key, tip=tip, base=base)
        self._publish(PatchProposed(patch_id, GitHash(base), stat, entry.source))
        self.pipe.pump()
        entry = self.store.get(patch_id)
        assert entry is not None
        return entry.to_dict()

    def _entry(self, args: dict[str, Any]) -> Entry:
        assert self.store is not None
        entry = self.store.get(_text(args, "patch_id"))
        if entry is None or entry.state == "fetching":
            raise control.RequestRefused(f"no patch {args.get('patch_id')!r}", "not_found")
        return entry

    def do_wait(self, args: dict[str, Any]) -> Any:
        assert self.loop is not None and self.store is not None
        entry = self._entry(args)
        timeout_s = args.get("timeout_s", 60.0)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not (0 <= timeout_s <= MAX_WAIT_S)
        ):
            raise BadRequest(f"timeout_s must be 0..{MAX_WAIT_S} seconds, got {timeout_s!r:.20}")
        if entry.decided or timeout_s == 0:
            return entry.to_dict()
        waiter = Deferred()
        self.pipe.waiters.setdefault(entry.patch_id, []).append(waiter)
        store, patch_id = self.store, entry.patch_id

        def timed_out() -> None:
            if not waiter.done:
                if waiter in self.pipe.waiters.get(patch_id, []):
                    self.pipe.waiters[patch_id].remove(waiter)
                now = store.get(patch_id)
                waiter.resolve(now.to_dict() if now is not None else entry.to_dict())

        self.loop.after(float(timeout_s), timed_out)
        return waiter

    def do_cancel(self, args: dict[str, Any]) -> Any:
        assert self.store is not None
        entry = self._entry(args)
        if self.pipe.landing == entry.patch_id:  # golden may be moving to it: the answer decides
            self.pipe.withdraw_after_landing.add(entry.patch_id)
            waiter = Deferred()
            self.pipe.waiters.setdefault(entry.patch_id, []).append(waiter)
            return waiter
        if not entry.decided:
            self.pipe.decide(entry, "rejected", reason="stale", detail=WITHDRAWN)
            self.pipe.pump()
        decided = self.store.get(entry.patch_id)
        assert decided is not None
        return decided.to_dict()

    def do_landed(self, args: dict[str, Any]) -> Any:
        assert self.loop is not None and self.repo is not None and self.store is not None
        if args.get("patch_id") is None and isinstance(args.get("key"), str):
            newest = self.store.by_key(args["key"])  # the loop's latest proposal
            if not newest:
                raise control.RequestRefused(f"no patch with key {args['key']!r}", "not_found")
            args = {"patch_id": newest[0].patch_id}
        entry, repo, socket = self._entry(args), self.repo, self.golden_socket
        if entry.state != "accepted":
            return {"patch_id": entry.patch_id, "landed_hash": "", "golden_head": self.pipe.head,
                    "landed": False, "state": entry.state}  # fmt: skip

        def check() -> dict[str, Any]:
            head = control.call(socket, "get_hash", {}, timeout=GOLDEN_TIMEOUT_S)["hash"]
            landed = repo.is_ancestor(entry.landed_hash, head)
            return {"patch_id": entry.patch_id, "landed_hash": entry.landed_hash,
                    "golden_head": head, "landed": landed, "state": entry.state}  # fmt: skip

        return self.loop.run_in_thread(check)

    def do_show(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._entry(args).to_dict(full_output=True)

    def do_queue(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        entries, heads, rows = self.pipe.ordered(), [], []
        for position, entry in enumerate(entries):
            live = self.pipe.live[entry.patch_id]
            spec = live.spec
            row = entry.to_dict()
            row.update(
                position=position, build=_build_state(live, self.pipe.landing == entry.patch_id)
            )
            if spec is not None:
                row["spec"] = {"base": spec.base, "tip": spec.tip, "detail": spec.detail}
                if spec.in_chain and live.green is not False:
                    heads.append(spec.tip)
            rows.append(row)
        stored = {f"db_{state}": n for state, n in self.store.counts().items()}
        pipe = self.pipe
        return {"golden": {"hash": pipe.head, "state": pipe.golden_state}, "k": self.config.k,
                "entries": rows, "speculative_heads": heads,
                "recent": [e.to_dict() for e in self.store.recent(10)],
                "counts": {**self.pipe.counts, **stored}}  # fmt: skip

    def do_status(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        pipe = self.pipe
        return {"pid": os.getpid(), "golden": pipe.head, "golden_state": pipe.golden_state,
                "k": self.config.k, "test_command": list(self.config.test_command),
                "suite_from": self.suite_source,
                "suite_timeout_s": self.config.suite_timeout_s, "counts": dict(self.pipe.counts),
                "waiting": len(self.store.waiting()), "free_slots": len(self.pipe.free_slots),
                "landing_ms": [round(ms, 1) for ms in self.pipe.landing_ms],
                "runs": list(self.pipe.run_log)}  # fmt: skip


def _build_state(live: Live, landing: bool) -> str:
    if landing:
        return "landing"
    if live.spec is None:
        return "waiting"
    if live.spec.tip is None:
        return "conflict"
    if live.spec.empty:
        return "empty"
    if live.run is not None:
        return "testing"
    return {None: "built", True: "passed", False: "failed"}[live.green]


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required (a non-empty string), got {value!r:.60}")
    return value


def _hash(value: Any, name: str) -> str:
    try:
        return str(GitHash.parse(value if isinstance(value, str) else ""))
    except InvalidValue:
        raise BadRequest(f"{name} must be a 40-hex commit hash, got {value!r:.60}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description="the merge queue service")
    p.add_argument("--runtime-dir", help="the control sockets and the bus (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"where {DB_NAME} and the queue's repo live")
    p.add_argument("--k", type=int, default=4, help="patches tested at once (speculative depth)")
    add_suite_arguments(p, DEFAULT_TEST_COMMAND)
    p.add_argument("--golden", default="golden", help="the golden master's control socket name")
    p.add_argument("--reconcile-s", type=float, default=5.0, help="read golden HEAD this often")
    p.add_argument(
        "--cheat-detection",
        action="store_true",
        help="after a green suite, the gauntlet's static cheat detection too",
    )
    p.add_argument("--no-bus", action="store_true", help="publish nothing (tests, by hand)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    try:
        suite = suite_from_args(args, DEFAULT_TEST_COMMAND)
    except SuiteConfigError as exc:
        report("start_failed", reason=str(exc))
        return 2
    if args.k < 1 or not args.reconcile_s > 0:
        report("start_failed", reason="--k >= 1, --reconcile-s > 0")
        return 2
    try:
        paths.private_dir(state)
        paths.private_dir(state / SERVICE)
    except OSError as exc:
        report("start_failed", reason=str(exc))
        return 1
    config = QueueConfig(k=args.k, test_command=suite.command, suite_timeout_s=suite.timeout_s,
                         golden=args.golden, reconcile_s=args.reconcile_s,
                         publish=not args.no_bus,
                         cheat_detection=args.cheat_detection)  # fmt: skip
    queue = MergeQueue(config, state / DB_NAME, state / SERVICE, runtime)
    queue.suite_source = suite.source
    return serve(queue, runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
