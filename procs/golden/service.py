"""The golden master service (the control API is in procs/golden/__init__.py).

One process owns the golden branch. Writes (advance, refresh) and the record run one at a
time in a worker thread under one lock, so the control socket stays responsive while git
or the suite runs; signals are published from the loop's thread once a write is done.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import control, paths, service_report
from ipc.bus import BusError, Publisher
from ipc.service import BadRequest, Call, Deferred, Ready, Service, ServiceLoop, serve
from ipc.service import StartFailed as ServiceStartFailed
from ipc.signals import Evolution, GitHash, GoldenMasterUpdated, InvalidValue
from procs.golden.history import GoldenHistory
from procs.golden.ramdisk import RamDiskGolden, RamDiskUnavailable, ramdisk_golden
from procs.golden.repo import (
    GitError,
    GoldenRepo,
    NotDescendant,
    RepoProblem,
    StaleHead,
    is_ancestor,
)
from procs.golden.startup import HostMinimums, HostShort, SuiteVerdict, check_host, run_suite
from procs.sandbox import SandboxUnavailable
from procs.suite_config import SuiteConfigError, add_suite_arguments, suite_from_args

SERVICE = "golden"
DB_NAME = "golden.sqlite3"
PUBLISH_TIMEOUT_S = 1.0
BUS_CONNECT_S = 5.0
DEFAULT_TEST_COMMAND = "python3 -m pytest -q -p no:cacheprovider"


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


@dataclass(frozen=True)
class GoldenConfig:
    repo: Path
    branch: str = "main"
    upstream: str = ""
    push: bool = False
    test_command: tuple[str, ...] = tuple(shlex.split(DEFAULT_TEST_COMMAND))
    suite_timeout_s: float = 600.0
    refresh_s: float = 0.0
    minimums: HostMinimums = field(default_factory=HostMinimums)
    publish: bool = True
    ramdisk: bool = False  # golden on the workspace manager's RAM disk, seeded from `repo`
    ramdisk_timeout_s: float = 600.0  # the seed's copy into RAM
    suite_source: str = "default"  # where test_command came from: a flag, loop.toml


@dataclass(frozen=True)
class Moved:
    """A move done in the worker, to be announced from the loop's thread."""

    hash: str
    previous: str
    reason: str


class GoldenMaster(Service):
    name = SERVICE
    workers = 2  # a write (advance/refresh) and a suite run may overlap
    max_queued = 64
    drain_s = 5.0

    def __init__(self, config: GoldenConfig, db_path: Path, runtime: Path) -> None:
        self.config = config
        self.db_path = db_path
        self.runtime = runtime
        self.lock = threading.Lock()  # the repository's branch and the record
        self.repo: GoldenRepo | None = None
        self.history: GoldenHistory | None = None
        self.loop: ServiceLoop | None = None
        self.publisher: Publisher | None = None
        self.host: dict[str, Any] = {}
        self.ramdisk: RamDiskGolden | None = None
        self.head = ""  # the branch's commit, kept here: this process is its only writer
        self.counts = {"advanced": 0, "refused": 0, "refreshed": 0, "suite_runs": 0,
                       "published": 0, "publish_failed": 0}  # fmt: skip
        self._suite_running = False

    # -- lifecycle ------------------------------------------------------------------------

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        try:
            self.repo = GoldenRepo.open(self._repo_path(), self.config.branch)
            for lock in self.repo.clear_stale_locks():
                report("stale_lock_removed", path=lock)
            self.host = check_host(self.config.minimums, self.repo.path)
        except (RepoProblem, HostShort, GitError) as exc:
            raise ServiceStartFailed(str(exc)) from None
        self.history = GoldenHistory(self.db_path)
        if self.ramdisk is not None and self.config.upstream:
            self._catch_up_with_upstream()
        head = self.head = self.repo.head()
        if self.history.color().hash != head:
            self.history.record_move(head, None, "start", patch_id="", now=time.time())
        try:
            verdict = self._suite(head)
        except (SandboxUnavailable, OSError, ValueError) as exc:
            raise ServiceStartFailed(f"the golden suite cannot run: {exc}") from None
        if self.config.publish:
            try:
                self.publisher = Publisher(self.runtime, source=SERVICE)
            except BusError as exc:
                raise ServiceStartFailed(str(exc)) from None
            try:  # a slow joiner's first signals would be lost: wait for the broker
                self.publisher.wait_connected(timeout=BUS_CONNECT_S)
            except BusError as exc:  # signals only say "look": serve without them for now
                report("bus_not_connected", reason=str(exc))
        if self.config.refresh_s > 0:
            loop.every(self.config.refresh_s, self._refresh_timer)
        state = "green" if verdict.green else "red"
        return Ready(
            f"golden {self.config.branch} at {head[:12]} is {state}", hash=head,
            state=state, repo=str(self.repo.path), suite_ms=round(verdict.duration_ms), **self.host,
        )  # fmt: skip

    def _repo_path(self) -> Path:
        """The configured repository, or with --ramdisk its copy on the RAM disk (made
        from it the first time). Raises ServiceStartFailed."""
        if not self.config.ramdisk:
            return self.config.repo
        try:
            disk = ramdisk_golden(self.runtime, self.config.repo,
                                  timeout_s=self.config.ramdisk_timeout_s)  # fmt: skip
        except RamDiskUnavailable as exc:
            raise ServiceStartFailed(str(exc)) from None
        if not disk.snapshots:
            report("ramdisk_without_snapshots", fstype=disk.fstype,
                   reason="workspaces of golden are reflinks, not snapshots")  # fmt: skip
        report("ramdisk_golden", path=str(disk.path), fstype=disk.fstype,
               seed=str(self.config.repo))  # fmt: skip
        self.ramdisk = disk
        return disk.path

    def _catch_up_with_upstream(self) -> None:
        """A RAM disk's golden seeded from a copy that lags (what landed before a reboot
        was pushed upstream, not to the seed) moves to upstream's branch before its
        suite runs. An upstream that cannot be reached or has diverged is reported and
        the golden serves as it is: the refresh timer tries again."""
        try:
            _, moved = self._refresh()
        except control.RequestRefused as exc:
            report("upstream_not_caught_up", upstream=self.config.upstream, reason=str(exc))
            return
        if moved is not None:
            report("moved", hash=moved.hash, previous=moved.previous, reason=moved.reason)

    def terminate(self, reason: str) -> None:
        if self.publisher is not None:
            self.publisher.close()
        idle = self.loop is None or self.loop.statistics()["calls_in_flight"] == 0
        if self.history is not None and idle:
            self.history.close()

    # -- the suite ------------------------------------------------------------------------

    def _suite(self, head: str, source: str = "golden") -> SuiteVerdict:
        """Run the suite at `head` (HEAD now) and record it. Blocks for the run."""
        assert self.repo is not None and self.history is not None
        with self.repo.work_tree(head) as tree:
            verdict = run_suite(tree, self.config.test_command,
                                timeout_s=self.config.suite_timeout_s)  # fmt: skip
        with self.lock:
            self.counts["suite_runs"] += 1
            if self.repo.head() == head:
                self.history.record_run(
                    head, verdict.green, verdict.output, source=source,
                    duration_ms=verdict.duration_ms, now=time.time(),
                )  # fmt: skip
        report("suite_run", hash=head, green=verdict.green, duration_ms=round(verdict.duration_ms))
        return verdict

    def _suite_in_background(self) -> None:
        if self._suite_running or self.loop is None or self.repo is None:
            return
        repo = self.repo
        try:
            deferred = self.loop.run_in_thread(lambda: self._suite(repo.head()))
        except control.RequestRefused:
            return
        self._suite_running = True

        def done(d: Deferred) -> None:
            self._suite_running = False
            try:
                d.result()
            except (SandboxUnavailable, OSError, ValueError, GitError) as exc:
                report("suite_failed_to_run", reason=str(exc))

        deferred.add_done_callback(done)

    # -- moves ----------------------------------------------------------------------------

    def _announce(self, moved: Moved) -> None:
        report("moved", hash=moved.hash, previous=moved.previous, reason=moved.reason)
        if self.publisher is None:
            return
        try:
            current = GitHash(moved.hash)
            self.publisher.publish(GoldenMasterUpdated(current, GitHash(moved.previous)),
                                   timeout=PUBLISH_TIMEOUT_S)  # fmt: skip
            self.publisher.publish(Evolution(current, moved.reason), timeout=PUBLISH_TIMEOUT_S)
            self.counts["published"] += 2
        except BusError as exc:  # the record is in SQLite; readers reconcile from get_hash
            self.counts["publish_failed"] += 1
            report("publish_failed", reason=str(exc))

    def _write(self, fn: Callable[[], tuple[Any, Moved | None]]) -> Deferred:
        """Run a write in the worker; announce its move (if any) before replying."""
        assert self.loop is not None
        outer = Deferred()
        inner = self.loop.run_in_thread(fn)

        def done(d: Deferred) -> None:
            try:
                result, moved = d.result()
            except BaseException as exc:  # noqa: BLE001 - the caller's error reply
                outer.fail(exc)
                return
            if moved is not None:
                self._announce(moved)
            outer.resolve(result)

        inner.add_done_callback(done)
        return outer

    # -- control --------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {
            "get_hash": self.do_get_hash,
            "advance": self.do_advance,
            "refresh": self.do_refresh,
            "record_run": self.do_record_run,
            "run_suite": self.do_run_suite,
            "status": self.do_status,
        }

    def do_get_hash(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.repo is not None and self.history is not None
        reply = {"hash": self.head, "branch": self.repo.branch, "repo": str(self.repo.path),
                 "state": self.history.color().state}  # fmt: skip
        if self.ramdisk is not None:  # where loops make their workspaces (snapshots)
            reply["workspace_source"] = str(self.repo.path)
        return reply

    def do_advance(self, args: dict[str, Any]) -> Deferred:
        assert self.repo is not None and self.history is not None
        to, expected = _hash_arg(args, "to"), _hash_arg(args, "expected_head")
        source = args.get("source") or ""
        if not isinstance(source, str):
            raise BadRequest("source must be a repository path (a string)")
        if args.get("green") is not True:
            self.counts["refused"] += 1
            raise control.RequestRefused(
                f"{to} was not tested green: only a tree tested green lands", "not_tested"
            )
        patch_id, output = str(args.get("patch_id") or ""), str(args.get("output") or "")
        reason = str(args.get("reason") or f"advance{': ' + patch_id if patch_id else ''}")
        repo, history = self.repo, self.history

        def advance() -> tuple[dict[str, Any], Moved | None]:
            with self.lock:
                try:
                    if source:
                        repo.fetch(source, to)
                    previous = repo.advance(to, expected)
                    self.head = to
                except StaleHead as exc:
                    self.counts["refused"] += 1
                    raise control.RequestRefused(str(exc), "stale_head") from None
                except NotDescendant as exc:
                    self.counts["refused"] += 1
                    raise control.RequestRefused(str(exc), "not_descendant") from None
                except GitError as exc:
                    raise control.RequestRefused(str(exc), "git_error") from None
                now = time.time()
                history.record_move(to, previous, reason, patch_id=patch_id, now=now)
                history.record_run(to, True, output, source=patch_id or "advance",
                                   duration_ms=0.0, now=now)  # fmt: skip
                self.counts["advanced"] += 1
            return {"hash": to, "previous": previous}, Moved(to, previous, reason)

        return self._write(advance)

    def do_refresh(self, args: dict[str, Any]) -> Deferred:
        deferred = self._write(self._refresh)
        deferred.add_done_callback(self._refreshed)
        return deferred

    def _refresh_timer(self) -> None:
        with contextlib.suppress(control.RequestRefused):  # busy: the next tick comes
            self.do_refresh({})

    def _refreshed(self, deferred: Deferred) -> None:
        try:
            result = deferred.result()
        except (control.RequestRefused, GitError) as exc:
            report("refresh_failed", reason=str(exc))
            return
        if result.get("moved"):
            self._suite_in_background()

    def _refresh(self) -> tuple[dict[str, Any], Moved | None]:
        """Fetch from upstream (fast-forward only); push what landed here. Worker."""
        assert self.repo is not None and self.history is not None
        repo, upstream = self.repo, self.config.upstream
        with self.lock:
            head = repo.head()
            result: dict[str, Any] = {"hash": head, "previous": head, "moved": False,
                                      "fetched": False, "pushed": False}  # fmt: skip
            if not upstream:
                return result, None
            try:
                theirs = repo.fetch_upstream(upstream)
                result["fetched"] = True
                moved = None
                if theirs != head and repo_is_ancestor(repo, head, theirs):
                    repo.advance(theirs, head)
                    self.head = theirs
                    self.history.record_move(theirs, head, "refresh", patch_id="", now=time.time())
                    self.counts["refreshed"] += 1
                    result.update(hash=theirs, moved=True)
                    moved = Moved(theirs, head, f"refreshed from {upstream}")
                elif theirs != head and not repo_is_ancestor(repo, theirs, head):
                    raise control.RequestRefused(
                        f"golden {head} and {upstream} {theirs} have diverged", "diverged"
                    )
                elif theirs != head and self.config.push:
                    repo.push_upstream(upstream)
                    result["pushed"] = True
            except (GitError, StaleHead, NotDescendant) as exc:
                raise control.RequestRefused(f"refresh: {exc}", "git_error") from None
        return result, moved

    def do_record_run(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.repo is not None and self.history is not None
        hash_ = _hash_arg(args, "hash")
        green = args.get("green")
        if not isinstance(green, bool):
            raise BadRequest("green must be true or false")
        with self.lock:
            if self.repo.head() != hash_:
                return {"ignored": True, "reason": "not HEAD", **self._color()}
            self.history.record_run(
                hash_,
                green,
                str(args.get("output") or ""),
                duration_ms=0.0,
                now=time.time(),
                source=str(args.get("source") or "record_run"),
            )
        return {"ignored": False, **self._color()}

    def do_run_suite(self, args: dict[str, Any]) -> Deferred:
        assert self.loop is not None and self.repo is not None
        repo = self.repo
        return self.loop.run_in_thread(lambda: self._suite(repo.head()).to_dict())

    def _color(self) -> dict[str, Any]:
        assert self.history is not None
        color = self.history.color()
        return {"state": color.state, "since": color.since}

    def do_status(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.repo is not None and self.history is not None
        return {
            "pid": os.getpid(), "hash": self.head, "branch": self.repo.branch,
            "repo": str(self.repo.path), **self._color(),
            "last_failure": self.history.last_failure(), "moves": self.history.moves(),
            "move_count": self.history.move_count(), "upstream": self.config.upstream or None,
            "push": self.config.push, "checks": self.host, "counts": dict(self.counts),
            "ramdisk": None if self.ramdisk is None else {
                "path": str(self.ramdisk.path), "fstype": self.ramdisk.fstype,
                "seed": str(self.config.repo)},
            "suite": {"command": list(self.config.test_command), "from": self.config.suite_source,
                      "timeout_s": self.config.suite_timeout_s, "running": self._suite_running},
        }  # fmt: skip


def repo_is_ancestor(repo: GoldenRepo, ancestor: str, descendant: str) -> bool:
    return is_ancestor(repo.path, ancestor, descendant)


def _hash_arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    try:
        return str(GitHash.parse(value if isinstance(value, str) else ""))
    except InvalidValue:
        raise BadRequest(f"{name} must be a 40-hex commit hash, got {value!r:.60}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description="the golden master service")
    p.add_argument("--runtime-dir", help="the control socket and the bus (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help=f"where {DB_NAME} lives (FACTORY_STATE_DIR)")
    p.add_argument("--repo", required=True, help="the golden repository")
    p.add_argument("--branch", default="main")
    p.add_argument("--upstream", default="", help="a remote to refresh from (none: local only)")
    p.add_argument("--push", action="store_true", help="push landed commits to --upstream")
    p.add_argument("--refresh-s", type=float, default=0.0, help="refresh this often (0: never)")
    add_suite_arguments(p, DEFAULT_TEST_COMMAND)
    p.add_argument("--min-free-ram-mb", type=int, default=0)
    p.add_argument("--min-free-disk-mb", type=int, default=0)
    p.add_argument("--min-gpus", type=int, default=0)
    p.add_argument("--no-bus", action="store_true", help="publish nothing (tests, by hand)")
    p.add_argument("--ramdisk", action="store_true",
                   help="work on a copy of --repo on the workspace manager's RAM disk "
                        "(btrfs: workspaces are snapshots), made at the first start")  # fmt: skip
    p.add_argument("--ramdisk-timeout-s", type=float, default=600.0,
                   help="how long the copy of --repo into RAM may take")  # fmt: skip
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    try:
        suite = suite_from_args(args, DEFAULT_TEST_COMMAND)
    except SuiteConfigError as exc:
        report("start_failed", reason=str(exc))
        return 2
    if args.refresh_s < 0 or not args.ramdisk_timeout_s > 0:
        report("start_failed", reason="--refresh-s must be >= 0, --ramdisk-timeout-s > 0")
        return 2
    if args.push and not args.upstream:
        report("start_failed", reason="--push needs --upstream")
        return 2
    try:
        paths.private_dir(state)
    except OSError as exc:
        report("start_failed", reason=str(exc))
        return 1
    config = GoldenConfig(
        repo=Path(args.repo), branch=args.branch, upstream=args.upstream, push=args.push,
        test_command=suite.command, suite_timeout_s=suite.timeout_s, refresh_s=args.refresh_s,
        suite_source=suite.source,
        minimums=HostMinimums(args.min_free_ram_mb, args.min_free_disk_mb, args.min_gpus),
        publish=not args.no_bus, ramdisk=args.ramdisk, ramdisk_timeout_s=args.ramdisk_timeout_s,
    )  # fmt: skip
    return serve(GoldenMaster(config, state / DB_NAME, runtime), runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
