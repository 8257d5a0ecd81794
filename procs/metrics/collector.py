"""The factory's Prometheus metrics, gathered on each scrape from the views that hold them.

`FactoryCollector.collect` asks, in turn and each bounded by `call_timeout_s`: factoryd
`status` (the tree: restarts, up, RSS, CPU), the ledger (ipc.ledger.snapshot: slots,
tickets, RAM reservations), the loops database (ipc/loop_records.py: phases and
counters), beads `list`/`status`, merge_queue `queue`, golden `status`, llm_router
`status` (tokens and cost per role, today), model_gateway `status` and `usage` per
bead of the loops database (tokens per role), workspace_manager `status`. A source that
fails gives `factory_source_up{source} 0` and none of its metrics; the scrape still
succeeds. Nothing is kept between scrapes: every value is what its owner says now.

A scrape blocks at most about (8 + GATEWAY_BEADS) x call_timeout_s, and the gateway's
per-bead calls stop at a deadline of 2 x call_timeout_s.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ipc import control, ledger, loop_records, paths

GATEWAY_BEADS = 200  # the newest beads whose gateway usage a scrape sums
LOOP_COUNTERS = ("greens", "commits", "reverts")
SWARM_SUPERVISOR = "mutators"  # factoryd's simple_one_for_one supervisor of mutators
BEAD_OPERATIONS = ("claimed", "closed", "failed", "released", "refused")


class SourceFailed(Exception):
    """A source did not answer; the message says why (in words, for the log)."""


class FactoryCollector(Collector):
    """A custom collector: everything is read at scrape time (`collect`)."""

    def __init__(self, runtime_dir: Path, state_dir: Path, *, call_timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir
        self.call_timeout_s = call_timeout_s
        self.clock = clock
        self.scrapes = 0
        self.failures: Counter[str] = Counter()  # source -> scrapes it failed
        self.last_errors: dict[str, str] = {}
        self.loop_beads: list[str] = []  # this scrape's beads, newest first (for the gateway)
        self.lock = threading.Lock()

    def statistics(self) -> dict[str, Any]:
        """Counters for `status`; never waits for a scrape in progress (each copy is
        one C-level dict copy under the GIL)."""
        return {"scrapes": self.scrapes, "failures": dict(self.failures),
                "last_errors": dict(self.last_errors)}  # fmt: skip

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now. Scrapes are served one at a time (the HTTP server
        runs each request in its own thread)."""
        with self.lock:
            return iter(list(self._collect()))

    def _collect(self) -> Iterator[Metric]:
        self.scrapes += 1
        self.loop_beads = []
        up = GaugeMetricFamily("factory_source_up", "1 when the source answered this scrape",
                               labels=["source"])  # fmt: skip
        for source, gather in (
            ("factoryd", self._tree),
            ("ledger", self._ledger),
            ("loops", self._loops),
            ("beads", self._beads),
            ("merge_queue", self._queue),
            ("golden", self._golden),
            ("llm_router", self._router),
            ("model_gateway", self._gateway),
            ("workspaces", self._workspaces),
        ):
            try:
                metrics = list(gather())
            except SourceFailed as exc:
                self.failures[source] += 1
                self.last_errors[source] = str(exc)
                up.add_metric([source], 0)
                continue
            self.last_errors.pop(source, None)
            up.add_metric([source], 1)
            yield from metrics
        yield up

    # -- sources: each returns its metrics or raises SourceFailed ------------------------

    def _call(self, endpoint: str, command: str, args: dict[str, Any] | None = None) -> Any:
        socket_path = paths.control_socket(self.runtime_dir, endpoint)
        try:
            return control.call(socket_path, command, args or {}, timeout=self.call_timeout_s)
        except control.ControlError as exc:
            raise SourceFailed(f"{endpoint} {command}: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise SourceFailed(f"{endpoint} {command}: {exc}") from None

    def _tree(self) -> Iterator[Metric]:
        status = self._call("factoryd", "status")
        restarts = CounterMetricFamily("factory_child_restarts",
                                       "restarts of each child since factoryd started",
                                       labels=["child", "type"])  # fmt: skip
        running = GaugeMetricFamily("factory_child_up", "1 while the child runs",
                                    labels=["child"])  # fmt: skip
        rss = GaugeMetricFamily("factory_child_rss_bytes",
                                "resident memory of a worker and its subprocesses",
                                labels=["child"])  # fmt: skip
        cpu = CounterMetricFamily("factory_child_cpu_seconds",
                                  "CPU time of a worker and its subprocesses",
                                  labels=["child"])  # fmt: skip
        for node in _walk(status.get("tree") or {}):
            child = str(node.get("id"))
            restarts.add_metric([child, str(node.get("type"))], float(node.get("restarts") or 0))
            if node.get("type") != "worker":
                continue
            running.add_metric([child], 1.0 if node.get("state") == "running" else 0.0)
            if node.get("rss_bytes") is not None:
                rss.add_metric([child], float(node["rss_bytes"]))
            if node.get("cpu_s") is not None:
                cpu.add_metric([child], float(node["cpu_s"]))
        mutators = sum(
            len(n.get("children") or [])
            for n in _walk(status.get("tree") or {})
            if n.get("type") == "supervisor" and n.get("id") == SWARM_SUPERVISOR
        )
        swarm = GaugeMetricFamily("factory_swarm_mutators",
                                  "live children of the `mutators` supervisor (the swarm)",
                                  value=float(mutators))  # fmt: skip
        daemon = status.get("daemon") or {}
        uptime = GaugeMetricFamily("factory_factoryd_uptime_seconds", "factoryd's uptime",
                                   value=float(daemon.get("uptime_s") or 0))  # fmt: skip
        return iter([restarts, running, rss, cpu, swarm, uptime])

    def _ledger(self) -> Iterator[Metric]:
        try:
            snap = ledger.snapshot(self.runtime_dir)
        except ledger.LedgerError as exc:
            raise SourceFailed(f"ledger: {exc}") from None
        families = {
            key: GaugeMetricFamily(f"factory_ledger_{key}", text, labels=["resource"])
            for key, text in (("in_use", "units held (ram: MB reserved)"),
                              ("limit", "units the governor allows (ram: MB)"),
                              ("waiting", "processes waiting for the resource"))
        }  # fmt: skip
        exhausted = CounterMetricFamily("factory_ledger_exhausted",
                                        "times a request found the resource exhausted",
                                        labels=["resource"])  # fmt: skip
        for name, r in (snap.get("resources") or {}).items():
            for key, family in families.items():
                if key in r:
                    family.add_metric([name], float(r[key]))
            exhausted.add_metric([name], float(r.get("exhausted") or 0))
        holders = GaugeMetricFamily("factory_ledger_holders", "ledger slots held",
                                    labels=["alive"])  # fmt: skip
        stale = sum(1 for h in snap.get("holders") or [] if not h.get("alive"))
        holders.add_metric(["true"], float(len(snap.get("holders") or []) - stale))
        holders.add_metric(["false"], float(stale))
        return iter([*families.values(), exhausted, holders])

    def _loops(self) -> Iterator[Metric]:
        try:
            with loop_records.LoopReader(loop_records.loops_path(self.state_dir)) as reader:
                summaries = reader.summaries(now=self.clock())
        except loop_records.LoopRecordsError as exc:
            raise SourceFailed(str(exc)) from None
        except sqlite3.Error as exc:
            raise SourceFailed(f"loops database: {exc}") from None
        self.loop_beads = list(dict.fromkeys(str(s["bead"]) for s in reversed(summaries)))
        phases = GaugeMetricFamily("factory_loops", "loops by phase (the loops database)",
                                   labels=["phase"])  # fmt: skip
        for phase, n in sorted(Counter(str(s["phase"]) for s in summaries).items()):
            phases.add_metric([phase], float(n))
        totals = GaugeMetricFamily("factory_loop_steps",
                                   "greens, commits and reverts summed over every loop",
                                   labels=["step"])  # fmt: skip
        for key in LOOP_COUNTERS:
            totals.add_metric([key], float(sum(int(s.get(key) or 0) for s in summaries)))
        return iter([phases, totals])

    def _beads(self) -> Iterator[Metric]:
        listing = self._call("beads", "list")
        status = self._call("beads", "status")
        by_state = GaugeMetricFamily("factory_beads", "beads by state (the beads service)",
                                     labels=["state"])  # fmt: skip
        for state in ("ready", "claimed", "blocked"):
            by_state.add_metric([state], float(len(listing.get(state) or [])))
        ops = CounterMetricFamily("factory_bead_operations",
                                  "bead claims, closes, failures, releases, refusals",
                                  labels=["operation"])  # fmt: skip
        counts = status.get("counts") or {}
        for op in BEAD_OPERATIONS:
            ops.add_metric([op], float(counts.get(op) or 0))
        unreadable = GaugeMetricFamily("factory_beads_store_error",
                                       "1 while the beads store cannot be read",
                                       value=1.0 if listing.get("error") else 0.0)  # fmt: skip
        return iter([by_state, ops, unreadable])

    def _queue(self) -> Iterator[Metric]:
        queue = self._call("merge_queue", "queue")
        counts = queue.get("counts") or {}
        depth = GaugeMetricFamily("factory_merge_queue_depth", "patches waiting in the queue",
                                  value=float(len(queue.get("entries") or [])))  # fmt: skip
        landings = CounterMetricFamily("factory_merge_queue_landings",
                                       "patches landed on golden",
                                       value=float(counts.get("accepted") or 0))  # fmt: skip
        rejections = CounterMetricFamily("factory_merge_queue_rejections",
                                         "patches rejected (red, conflict, cheat, ...)",
                                         value=float(counts.get("rejected") or 0))  # fmt: skip
        return iter([depth, landings, rejections])

    def _golden(self) -> Iterator[Metric]:
        golden = self._call("golden", "status")
        red = golden.get("state") == "red"
        since = golden.get("since")
        red_s = max(0.0, self.clock() - float(since)) if red and since else 0.0
        return iter([
            GaugeMetricFamily("factory_golden_red", "1 while golden's suite is red",
                              value=1.0 if red else 0.0),
            GaugeMetricFamily("factory_golden_red_seconds",
                              "how long golden has been red (0 while green)", value=red_s),
            CounterMetricFamily("factory_golden_moves", "moves of golden's branch",
                                value=float(golden.get("move_count") or 0)),
        ])  # fmt: skip

    def _router(self) -> Iterator[Metric]:
        status = self._call("llm_router", "status")
        tokens = GaugeMetricFamily("factory_llm_tokens_today",
                                   "router tokens per role today (UTC day)",
                                   labels=["role", "direction"])  # fmt: skip
        cost = GaugeMetricFamily("factory_llm_cost_usd_today", "router cost per role today",
                                 labels=["role"])  # fmt: skip
        for role, usage in (status.get("usage_today") or {}).items():
            tokens.add_metric([role, "input"], float(usage.get("input_tokens") or 0))
            tokens.add_metric([role, "output"], float(usage.get("output_tokens") or 0))
            cost.add_metric([role], float(usage.get("cost_usd") or 0))
        calls = CounterMetricFamily("factory_llm_calls", "router calls per role and outcome",
                                    labels=["role", "outcome"])  # fmt: skip
        for role, outcome in (status.get("calls") or {}).items():
            for name in ("answered", "failed"):
                calls.add_metric([role, name], float(outcome.get(name) or 0))
        return iter([tokens, cost, calls])

    def _gateway(self) -> Iterator[Metric]:
        status = self._call("model_gateway", "status")
        live = GaugeMetricFamily("factory_gateway_live_tokens", "agent tokens not revoked",
                                 value=float(status.get("live_tokens") or 0))  # fmt: skip
        tokens = GaugeMetricFamily("factory_gateway_tokens",
                                   "agent model tokens per role, summed over the loops' beads",
                                   labels=["role", "kind"])  # fmt: skip
        calls = GaugeMetricFamily("factory_gateway_calls", "agent model calls per role",
                                  labels=["role"])  # fmt: skip
        totals: Counter[tuple[str, str]] = Counter()
        deadline = time.monotonic() + 2 * self.call_timeout_s
        for bead in self.loop_beads[:GATEWAY_BEADS]:
            if time.monotonic() >= deadline:
                break
            usage = self._call("model_gateway", "usage", {"bead": bead})
            for role, u in (usage.get("roles") or {}).items():
                for kind in ("input_tokens", "output_tokens", "cached_tokens", "calls"):
                    totals[(role, kind)] += int(u.get(kind) or 0)
        for (role, kind), n in sorted(totals.items()):
            if kind == "calls":
                calls.add_metric([role], float(n))
            else:
                tokens.add_metric([role, kind.removesuffix("_tokens")], float(n))
        return iter([live, tokens, calls])

    def _workspaces(self) -> Iterator[Metric]:
        status = self._call("workspace_manager", "status")
        registry = status.get("registry") or {}
        count = GaugeMetricFamily("factory_workspaces", "live workspaces by state",
                                  labels=["state"])  # fmt: skip
        total = int(registry.get("workspaces") or 0)
        orphaned = int(registry.get("orphaned") or 0)
        detached = int(registry.get("detached") or 0)  # kept for a loop that will resume
        count.add_metric(["live"], float(total - orphaned - detached))
        count.add_metric(["orphaned"], float(orphaned))
        count.add_metric(["detached"], float(detached))
        made = CounterMetricFamily("factory_workspace_operations",
                                   "workspaces created, destroyed, failed",
                                   labels=["operation"])  # fmt: skip
        for op in ("created", "destroyed", "failed"):
            made.add_metric([op], float(registry.get(op) or 0))
        return iter([count, made])


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if node:
        yield node
    for child in node.get("children") or []:
        yield from _walk(child)
