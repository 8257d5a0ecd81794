"""The synapse: on a red golden, find the culprit, then a swarm of mutators races to fix it
(seed fs-300..304; the contract is in procs/synapse/__init__.py).

    python3 -m procs.synapse.service [--test-command 'python3 -m pytest -q']
        [--suite-timeout-s 600] [--sandbox bwrap|none] [--swarm-size 32]
        [--bisect-workers 4] [--max-suspects 64] [--mutator-ram-mb 512]
        [--mutators mutators] [--role mutator] [--reconcile-s 2] [--no-bus]
        [--runtime-dir DIR] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq

from ipc import paths, service_report
from ipc.bus import BusError, Subscriber
from ipc.service import BadRequest, Call, Deferred, Ready, Service, ServiceLoop, StartFailed, serve
from ipc.signals import Evolution, PatchAccepted, TestFailure, TestPassing
from procs import sandbox
from procs.suite_config import SuiteConfigError, add_suite_arguments, suite_from_args
from procs.synapse import again, git, peers, resume, workspace
from procs.synapse.culprit import BisectSettings, Cancelled
from procs.synapse.records import GenerationRecord
from procs.synapse.store import DB_NAME, StoreError, SynapseStore
from procs.synapse.swarm import CALL_TIMEOUT_S, Stale, Swarm, SynapseSettings

SERVICE = "synapse"
BUS_CONNECT_S = 5.0
KEEP_RECORDS = 20
DEFAULT_TEST_COMMAND = "python3 -m pytest -q"
MAX_GENERATIONS = 3  # per red commit: a swarm that ended with nothing landed goes again
MAX_ERROR_CHARS = 2_000
__all__ = ["Stale", "Synapse", "SynapseSettings", "main"]


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


class Synapse(Service):
    name = SERVICE
    workers = 6  # a bisection and its spawning, stops, lookups, the reconcile
    max_queued = 32
    drain_s = 1.0

    def __init__(self, settings: SynapseSettings, runtime: Path, state: Path) -> None:
        self.settings, self.runtime, self.state = settings, runtime, state
        self.factoryd = peers.FactorydPeer(runtime, supervisor=settings.mutators,
                                           timeout_s=CALL_TIMEOUT_S)  # fmt: skip
        self.swarm = Swarm(settings, runtime, state, self.factoryd, self._save)
        self.loop: ServiceLoop | None = None
        self.subscriber: Subscriber | None = None
        self.records: dict[str, GenerationRecord] = {}
        self.store: SynapseStore | None = None
        self.known_good: str | None = None
        self.counts = {"failures": 0, "generations": 0, "mutators": 0, "stopped": 0,
                       "landed": 0}  # fmt: skip
        self._serial = 0
        self._reconciling = False
        self._resuming = False  # until the live generations found at start are taken up

    # -- lifecycle ------------------------------------------------------------------------

    def init(self, loop: ServiceLoop) -> Ready:
        self.loop = loop
        workspace.remove_local(self.state)
        self._restore()
        try:
            golden = peers.golden_head(self.runtime, CALL_TIMEOUT_S)
        except peers.PeerError as exc:
            raise StartFailed(f"the golden master does not answer: {exc}") from None
        if golden.get("state") == "green":
            self.known_good = str(golden["hash"])
            self._remember_good()
        generations = self.state / SERVICE / "generations"
        self._serial = max([len(list(generations.glob("*.json"))) if generations.is_dir() else 0,
                            *(resume.serial_of(r.id) for r in self.records.values())])  # fmt: skip
        restored = [r.id for r in self._live()]
        if restored:  # a previous synapse's generations: adopt, resume or stop them
            self._resuming = True
            loop.after(0.0, lambda: self._resume(restored))
        loop.after(0.0, self.reconcile)  # a red we may have missed while down
        if self.settings.publish:
            types = ["TestFailure", "TestPassing", "PatchAccepted", "Evolution"]
            try:
                self.subscriber = Subscriber(self.runtime, types=types)
            except BusError as exc:
                raise StartFailed(str(exc)) from None
            try:
                self.subscriber.wait_connected(timeout=BUS_CONNECT_S)
            except BusError as exc:  # signals only say "look"; control calls still work
                report("bus_not_connected", reason=str(exc))
            loop.watch(self.subscriber.socket, zmq.POLLIN, self._on_signals)
        loop.every(self.settings.reconcile_s, self.reconcile)
        return Ready("watching for a red golden", known_good=self.known_good,
                     swarm_size=self.settings.swarm_size)  # fmt: skip

    def terminate(self, reason: str) -> None:
        for record in self.records.values():
            record.cancelled.set()
        if self.subscriber is not None:
            self.subscriber.close()
        if self.store is not None:
            self.store.close()

    # -- memory: procs/synapse/store.py -------------------------------------------------

    def _restore(self) -> None:
        """The generations, counts and last green commit a previous synapse wrote."""
        try:
            self.store = SynapseStore(self.state / SERVICE / DB_NAME)
            restored, unreadable = self.store.load(KEEP_RECORDS)
            self.store.forget(unreadable)
            counts = self.store.fact("counts") or {}
            self.known_good = self.store.fact("known_good")
        except StoreError as exc:
            raise StartFailed(str(exc)) from None
        for gen_id in unreadable:
            report("record_unreadable", generation=gen_id)
        self.records = {r.id: r for r in restored}
        if isinstance(counts, dict):
            self.counts.update({k: int(v) for k, v in counts.items()
                                if k in self.counts and isinstance(v, int)})  # fmt: skip

    def _save(self, record: GenerationRecord) -> None:
        """Write the record (and the counts) now; a failed write is reported, and the
        next change writes it whole again."""
        if self.store is None:
            return
        try:
            self.store.save(record, counts=dict(self.counts))
        except StoreError as exc:
            report("store_failed", generation=record.id, reason=str(exc))

    def _remember_good(self) -> None:
        """known_good, for a synapse restarted while golden is red (bisect from there)."""
        if self.store is not None:
            try:
                self.store.set_fact("known_good", self.known_good)
            except StoreError as exc:
                report("store_failed", reason=str(exc))

    def _resume(self, ids: list[str]) -> None:
        """At start, for each generation a previous synapse left live: adopt its mutators
        still running (found by their --generation in factoryd's tree, written or not),
        then go on where it was (never a second generation for the same red):
        stopping -> stop them; golden moved meanwhile -> stop them; bisecting (or no
        mutator started yet) -> bisect again; swarming -> watch them. A mutator of a
        generation that is done is stopped. Retried each --reconcile-s while a peer
        does not answer."""
        assert self.loop is not None
        loop = self.loop

        def look() -> tuple[str, dict[str, str]]:
            head = str(peers.golden_head(self.runtime, CALL_TIMEOUT_S)["hash"])
            return head, self.factoryd.running()

        def looked(d: Deferred) -> None:
            try:
                head, running = d.result()
            except peers.PeerError as exc:
                report("resume_failed", reason=str(exc))
                loop.after(self.settings.reconcile_s, lambda: self._resume(ids))
                return
            self._take_up(ids, head, running, time.monotonic())
            self._resuming = False

        loop.run_in_thread(look).add_done_callback(looked)

    def _take_up(self, ids: list[str], head: str, running: dict[str, str], now: float) -> None:
        """Carry out procs/synapse/resume.py's action for each generation in `ids`."""
        found = resume.mutators_by_generation(running)
        for record in [self.records[i] for i in ids if i in self.records]:
            if not record.live:
                continue  # stopped meanwhile (a signal came first)
            todo = resume.action(record, head, found)
            with record.lock:  # adopt what runs, written or not
                record.children += [c for c in found.get(record.id, []) if c not in record.children]
            record.resumed += 1
            report("resumed", generation=record.id, state=record.state, action=todo,
                   mutators=len(found.get(record.id, [])), children=record.child_ids())  # fmt: skip
            if todo == resume.FINISH_STOP:
                self._stop_children(record, record.ended or "stopped", now)
            elif todo == resume.STOP:
                self.stop(record, f"golden moved to {head[:12]} while the synapse was down", now)
            elif todo == resume.BISECT:
                record.state = "bisecting"
                self._launch(record)
            else:
                record.state, record.spawned = "swarming", True
            self._save(record)
        if strays := resume.strays(self.records, found):
            report("strays", mutators=strays)
            assert self.loop is not None
            self.loop.run_in_thread(lambda: [self.factoryd.stop(c) for c in strays])

    # -- signals --------------------------------------------------------------------------

    def _on_signals(self, _events: int) -> None:
        assert self.subscriber is not None
        for envelope in self.subscriber.recv_many(64, timeout=0):
            signal, now = envelope.signal, time.monotonic()
            if isinstance(signal, TestFailure):
                self.react(signal.file, signal.error, str(signal.context_hash))
            elif isinstance(signal, TestPassing):
                self.known_good = str(signal.hash)
                self._remember_good()
            elif isinstance(signal, Evolution):
                for record in self._live():
                    if record.context_hash != str(signal.hash):
                        self.stop(record, f"golden moved to {str(signal.hash)[:12]}", now)
            elif isinstance(signal, PatchAccepted) and signal.patch_id and self._live():
                self._lookup_patch(signal.patch_id, now)

    def _live(self) -> list[GenerationRecord]:
        return [r for r in self.records.values() if r.live]

    def _lookup_patch(self, patch_id: str, since: float) -> None:
        assert self.loop is not None
        runtime = self.runtime

        def looked_up(d: Deferred) -> None:
            try:
                group = d.result()
            except peers.PeerError as exc:
                report("patch_unknown", patch_id=patch_id, reason=str(exc))
                return
            for record in self._live():
                if record.group == group:
                    self.counts["landed"] += 1
                    self.stop(record, f"fix landed ({patch_id})", since)

        self.loop.run_in_thread(peers.patch_group, runtime, patch_id,
                                CALL_TIMEOUT_S).add_done_callback(looked_up)  # fmt: skip

    # -- a generation -----------------------------------------------------------------------

    def react(self, file: str, error: str, context_hash: str) -> GenerationRecord:
        """A red golden at `context_hash`: its live generation, or a new one."""
        assert self.loop is not None
        self.counts["failures"] += 1
        for record in self._live():
            if record.context_hash == context_hash:
                return record
        self._serial += 1
        record = GenerationRecord(f"{context_hash[:12]}-{self._serial}", file, error, context_hash)
        self.records[record.id] = record
        old = [r.id for r in sorted(self.records.values(), key=lambda r: r.started_at)
               [:-KEEP_RECORDS] if not r.live]  # fmt: skip
        for gen_id in old:
            del self.records[gen_id]
        self.counts["generations"] += 1
        self._save(record)
        if old and self.store is not None:
            try:
                self.store.forget(old)
            except StoreError as exc:
                report("store_failed", reason=str(exc))
        report("red", generation=record.id, file=file, context_hash=context_hash,
               known_good=self.known_good)  # fmt: skip
        self._launch(record)
        return record

    def _launch(self, record: GenerationRecord) -> None:
        """Bisect, then start the swarm, in a worker."""
        assert self.loop is not None
        self.loop.run_in_thread(self.swarm.bisect_and_swarm, record,
                                self.known_good).add_done_callback(
            lambda d: self._swarmed(record, d))  # fmt: skip

    def _swarmed(self, record: GenerationRecord, d: Deferred) -> None:
        try:
            started = d.result()
        except Cancelled:
            started = 0
        except Stale as exc:
            started = 0
            record.ended = f"stale: {exc}"
            report("stale", generation=record.id, reason=str(exc))
        except (peers.PeerError, git.GitFailed, OSError) as exc:
            report("swarm_failed", generation=record.id, reason=str(exc)[:500])
            started = len(record.child_ids())
            if record.state != "stopping":
                record.ended = f"failed: {exc}"[:300]
        self.counts["mutators"] += started
        record.spawned = True
        if started == 0 and record.live and record.state != "stopping":
            record.state, record.ended = "done", record.ended or "no mutator started"
        self._save(record)

    def stop(self, record: GenerationRecord, why: str, since: float) -> None:
        """Stop every mutator of the generation through factoryd (SIGTERM to all at once,
        then each stopped: its shutdown time, SIGKILL); their slots and workspaces come
        back as they die."""
        assert self.loop is not None
        if record.state in ("stopping", "done"):
            return
        with record.lock:
            record.state, record.ended = "stopping", why
            record.cancelled.set()
        self._stop_children(record, why, since)  # first: the write is not on that path
        self._save(record)
        report("stopping", generation=record.id, reason=why)

    def _stop_children(self, record: GenerationRecord, why: str, since: float) -> None:
        """In a worker: stop every mutator of a stopping generation; then it is done."""
        assert self.loop is not None

        def stopped(d: Deferred) -> None:
            try:
                n = d.result()
            except peers.PeerError as exc:
                report("stop_failed", generation=record.id, reason=str(exc))
                n = 0
            record.state, record.stop_ms = "done", (time.monotonic() - since) * 1000
            self.counts["stopped"] += n
            self._save(record)
            report("stopped", generation=record.id, reason=why, mutators_stopped=n,
                   stop_ms=round(record.stop_ms, 1))  # fmt: skip

        self.loop.run_in_thread(self.swarm.stop_mutators, record).add_done_callback(stopped)

    def reconcile(self) -> None:
        """Every --reconcile-s: a swarm whose mutators all ended by themselves is done (no
        fix, or its fix landed and the signal was missed: golden's Evolution stops it
        otherwise); then, by golden's state rather than its signals, a red golden HEAD
        with no live generation gets one (procs/synapse/again.py: a lost TestFailure, a
        failed or empty generation, a swarm whose fixes were all lost), at most
        MAX_GENERATIONS in a row, then one each --retry-red-s."""
        if self._reconciling or self._resuming or self.loop is None:
            return
        self._reconciling = True
        swarming = [r for r in self.records.values() if r.state == "swarming"]

        def look() -> tuple[dict[str, int | None], dict[str, Any] | None]:
            alive = self.factoryd.children() if swarming else {}
            try:
                return alive, peers.golden_status(self.runtime, CALL_TIMEOUT_S)
            except peers.PeerError as exc:
                report("golden_status_failed", reason=str(exc))
                return alive, None

        def done(d: Deferred) -> None:
            self._reconciling = False
            try:
                alive, golden = d.result()
            except peers.PeerError as exc:
                report("reconcile_failed", reason=str(exc))
                return
            for record in swarming:
                ids = record.child_ids()
                if record.state == "swarming" and record.spawned and not (set(ids) & set(alive)):
                    record.state, record.ended = "done", "every mutator ended"
                    self._save(record)
                    report("swarm_ended", generation=record.id, mutators=len(ids))
            if golden is not None:
                self._fix_red(golden, ended=[r for r in swarming if not r.live])

        self.loop.run_in_thread(look).add_done_callback(done)

    def _fix_red(self, golden: dict[str, Any], ended: list[GenerationRecord]) -> None:
        """A new generation if golden's state asks for one (procs/synapse/again.py). A
        green golden is the last commit known good (a missed TestPassing, or a green
        the heartbeat did not announce: the next bisection starts there)."""
        if golden.get("state") == "green" and golden.get("hash") not in (None, self.known_good):
            self.known_good = str(golden["hash"])
            self._remember_good()
            return
        why = again.new_generation(golden, self.records.values(), time.time(),
                                   retry_red_s=self.settings.retry_red_s,
                                   max_generations=MAX_GENERATIONS)  # fmt: skip
        head = str(golden.get("hash"))
        if why is None:
            if any(r.context_hash == head for r in ended) and golden.get("state") == "red":
                report("swarm_exhausted", context_hash=head, retry_in_s=self.settings.retry_red_s,
                       generations=sum(1 for r in self.records.values()
                                       if r.context_hash == head))  # fmt: skip
            return
        failure = golden.get("last_failure") or {}
        last = max((r for r in self.records.values() if r.context_hash == head),
                   key=lambda r: r.started_at, default=None)  # fmt: skip
        report("red_again" if last else "red_seen", context_hash=head, reason=why)
        self.react(last.file if last else "",
                   last.error if last else str(failure.get("output") or "")[-MAX_ERROR_CHARS:],
                   head)  # fmt: skip

    # -- control --------------------------------------------------------------------------

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.do_status, "react": self.do_react, "stop": self.do_stop}

    def do_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        return {"pid": os.getpid(), "known_good": self.known_good, "counts": dict(self.counts),
                "live": len(self._live()),
                "generations": [r.to_dict() for r in sorted(
                    self.records.values(), key=lambda r: r.started_at, reverse=True)],
                "settings": {"swarm_size": s.swarm_size, "bisect_workers": s.bisect.workers,
                             "max_suspects": s.bisect.max_suspects, "role": s.role,
                             "mutators": s.mutators, "test_command": list(s.bisect.test_command),
                             "suite_timeout_s": s.bisect.suite_timeout_s,
                             "sandbox": s.bisect.sandbox}}  # fmt: skip

    def do_react(self, args: dict[str, Any]) -> dict[str, Any]:
        context_hash = args.get("context_hash")
        if not isinstance(context_hash, str) or len(context_hash) != 40:
            raise BadRequest(f"context_hash must be a 40-hex commit, got {context_hash!r:.60}")
        return self.react(str(args.get("file", "")), str(args.get("error", "")),
                          context_hash).to_dict()  # fmt: skip

    def do_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        record = self.records.get(str(args.get("generation", "")))
        if record is None:
            raise BadRequest(f"no generation {args.get('generation')!r:.60}")
        self.stop(record, "stopped by request", time.monotonic())
        return record.to_dict()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=SERVICE, description=__doc__.split("\n")[0])
    add_suite_arguments(p, DEFAULT_TEST_COMMAND)
    p.add_argument("--sandbox", choices=sandbox.SANDBOX_MODES, help="default: $FACTORY_SANDBOX")
    p.add_argument("--swarm-size", type=int, default=32, help="mutators per red (at most)")
    p.add_argument("--bisect-workers", type=int, default=4, help="commits tested at once")
    p.add_argument("--max-suspects", type=int, default=64, help="commits bisected at most")
    p.add_argument("--mutator-ram-mb", type=int, default=512, help="RAM one mutator needs")
    p.add_argument("--mutators", default="mutators", help="factoryd's mutator supervisor")
    p.add_argument("--role", default="mutator", help="the router's role for fixes")
    p.add_argument("--reconcile-s", type=float, default=2.0, help="look for ended swarms")
    p.add_argument("--retry-red-s", type=float, default=600.0,
                   help=f"after {MAX_GENERATIONS} swarms in a row found no fix for a red, "
                   "one more this long after the last (default 600)")  # fmt: skip
    p.add_argument("--no-bus", action="store_true", help="control calls only (tests)")
    p.add_argument("--runtime-dir", help="sockets and the bus (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help="generations and bisect workspaces (FACTORY_STATE_DIR)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    try:
        suite = suite_from_args(args, DEFAULT_TEST_COMMAND)
    except SuiteConfigError as exc:
        report("start_failed", reason=str(exc))
        return 2
    mode = args.sandbox or suite.sandbox or sandbox.default_mode()
    if (args.swarm_size < 0 or args.bisect_workers < 1 or args.max_suspects < 1
            or not args.reconcile_s > 0 or not args.retry_red_s > 0
            or mode not in sandbox.SANDBOX_MODES):  # fmt: skip
        report("start_failed", reason="--swarm-size >= 0, --bisect-workers and "
               "--max-suspects >= 1, durations > 0, a known sandbox mode")  # fmt: skip
        return 2
    try:
        if mode == "bwrap":
            sandbox.usable_bwrap()
        paths.private_dir(state)
        paths.private_dir(state / SERVICE)
    except (sandbox.SandboxUnavailable, OSError) as exc:
        report("start_failed", reason=str(exc))
        return 1
    bisect = BisectSettings(args.bisect_workers, args.max_suspects, suite.command,
                            suite.timeout_s, mode)  # fmt: skip
    settings = SynapseSettings(bisect, args.swarm_size, args.mutator_ram_mb, args.mutators,
                               args.role, args.reconcile_s, not args.no_bus,
                               args.retry_red_s)  # fmt: skip
    return serve(Synapse(settings, runtime, state), runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
