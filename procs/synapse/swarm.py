"""A generation's work, in one of the synapse's worker threads: the culprit, then the
mutators (`bisect_and_swarm`); and the end of them (`stop_mutators`).

The service (procs/synapse/service.py) calls these off its loop and keeps the
decisions; these do the blocking part (git, the sandboxed bisection, factoryd calls,
each bounded by its peer's timeout) and write the record as it changes through
`save`, so a synapse killed in the middle finds what was done (procs/synapse/store.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ipc import service_report
from procs.synapse import git, peers, workspace
from procs.synapse.culprit import BisectSettings, Cancelled, find_culprit
from procs.synapse.generation import Generation, swarm_size
from procs.synapse.prompt import Failure
from procs.synapse.records import GenerationRecord
from procs.synapse.trial import TrialUnavailable

SERVICE = "synapse"
CALL_TIMEOUT_S = 30.0
MAX_DIFF_CHARS = 12_000


class Stale(Exception):
    """The red commit is not golden HEAD any more: nothing to fix there."""


@dataclass(frozen=True)
class SynapseSettings:
    bisect: BisectSettings
    swarm_size: int
    mutator_ram_mb: int
    mutators: str  # factoryd's simple_one_for_one supervisor of mutators
    role: str
    reconcile_s: float
    publish: bool  # subscribe to the bus (False: control calls only)
    retry_red_s: float = 600.0  # after MAX_GENERATIONS in a row: one more this much later


@dataclass(frozen=True)
class Swarm:
    """What the work needs of the service."""

    settings: SynapseSettings
    runtime: Path
    state: Path
    factoryd: peers.FactorydPeer
    save: Callable[[GenerationRecord], None]  # write the record now (never raises)

    def bisect_and_swarm(self, record: GenerationRecord, good: str | None) -> int:
        """The culprit, then the mutators. Returns how many started. Raises Stale,
        Cancelled (stopped meanwhile), peers.PeerError, git.GitFailed, OSError."""
        golden = peers.golden_head(self.runtime, CALL_TIMEOUT_S)
        if golden["hash"] != record.context_hash:  # a fix or a refresh got there first
            raise Stale(f"golden is at {str(golden['hash'])[:12]} now")
        repo, s = Path(golden["repo"]), self.settings
        diff = ""
        try:
            found = find_culprit(repo, record.context_hash, good, s.bisect, runtime=self.runtime,
                                 state=self.state, name=record.id, owner_pid=os.getpid(),
                                 cancelled=record.cancelled)  # fmt: skip
            record.culprit, record.suspects = found.culprit, found.suspects
            record.bisect_rounds, record.bisect_runs = found.rounds, found.runs
            record.bisect_workers, record.bisect_ms = found.workers, found.duration_ms
            record.bisect_error = found.note
            diff = git.show(repo, found.culprit, MAX_DIFF_CHARS) if found.culprit else ""
            report("culprit", generation=record.id, culprit=found.culprit,
                   suspects=found.suspects, rounds=found.rounds, runs=found.runs,
                   workers=found.workers, ms=round(found.duration_ms),
                   note=found.note)  # fmt: skip
            self.save(record)
        except (git.GitFailed, workspace.WorkspaceUnavailable, TrialUnavailable) as exc:
            record.bisect_error = str(exc)[:500]  # the swarm still runs, told it is unknown
            report("bisect_failed", generation=record.id, reason=str(exc)[:500])
        if record.cancelled.is_set():
            raise Cancelled()
        slots, ram_mb = peers.capacity(self.runtime)
        size = swarm_size(s.swarm_size, slots, ram_mb, s.mutator_ram_mb)
        failure = Failure(record.file, record.error, record.context_hash, record.culprit, diff)
        gen = Generation(record.id, failure, str(repo), s.bisect.test_command,
                         s.bisect.suite_timeout_s, s.bisect.sandbox, size, s.role)  # fmt: skip
        path = gen.write(self.state / SERVICE / "generations")
        with record.lock:  # a stop that came first keeps its "stopping"
            if record.cancelled.is_set():
                raise Cancelled()
            record.size, record.state = size, "swarming"
        self.save(record)
        report("swarm", generation=record.id, size=size, free_slots=slots, free_ram_mb=ram_mb)
        started = 0
        for variant in range(size):
            if record.cancelled.is_set():
                break
            child, _pid = self.factoryd.start(["--generation", str(path),
                                               "--variant", str(variant)])  # fmt: skip
            started += 1
            kept = record.add_child(child)
            self.save(record)  # before the next: a restart adopts what is written (and
            if not kept:  # finds the rest by their --generation)
                self.factoryd.stop(child)
        return started

    def stop_mutators(self, record: GenerationRecord) -> int:
        """SIGTERM to every mutator of the generation at once (factoryd's `kill` does not
        wait), so they die together; then `stop` each (factoryd waits for the exit,
        SIGKILLs a straggler after its shutdown time, and forgets the child). Returns how
        many were signalled. Raises peers.PeerError."""
        children = record.child_ids()
        signalled = [child for child in children if self.factoryd.kill(child)]
        for child in children:
            self.factoryd.stop(child)
        return len(signalled)


def report(event: str, **fields: object) -> None:
    service_report.report(SERVICE, event, **fields)
