"""The metrics service: a Prometheus endpoint gathered at scrape time. Scraped for real
over HTTP under the example factory and parsed with prometheus_client's own parser;
and, with nothing running, every source reads down while the scrape still answers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ipc import control, ledger, paths
from procs.metrics.collector import FactoryCollector
from tests.test_ctl_top import start_example_factory
from tests.waiting import wait_until

SOURCES = {"factoryd", "ledger", "loops", "beads", "merge_queue", "golden", "llm_router",
           "model_gateway", "workspaces"}  # fmt: skip


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition, as Prometheus reads it."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict[Any, float], name: str, **labels: str) -> float:
    return parsed[(name, tuple(sorted(labels.items())))]


def test_with_nothing_running_every_source_reads_down_and_the_scrape_answers(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry(auto_describe=False)
    collector = FactoryCollector(tmp_path, tmp_path, call_timeout_s=0.5)
    registry.register(collector)
    parsed = samples(generate_latest(registry).decode())
    assert {value(parsed, "factory_source_up", source=s) for s in SOURCES} == {0.0}
    assert collector.statistics()["failures"] == dict.fromkeys(SOURCES, 1)
    assert "no loops database" in collector.statistics()["last_errors"]["loops"]


NOW = 1_800_000_000.0
REPLIES: dict[tuple[str, str], Any] = {
    ("factoryd", "status"): {"daemon": {"uptime_s": 12.0}, "tree": {
        "id": "root", "type": "supervisor", "restarts": 0, "children": [
            {"id": "bus", "type": "worker", "state": "running", "restarts": 2,
             "rss_bytes": 1000, "cpu_s": 1.5},
            {"id": "mutators", "type": "supervisor", "restarts": 0, "children": [
                {"id": "mutators.1", "type": "worker", "state": "running", "restarts": 0},
                {"id": "mutators.2", "type": "worker", "state": "starting", "restarts": 0}]}]}},
    ("beads", "list"): {"ready": [{}, {}], "claimed": [{}], "blocked": [], "error": None},
    ("beads", "status"): {"counts": {"claimed": 3, "closed": 2, "failed": 1}},
    ("merge_queue", "queue"): {"entries": [{}, {}, {}], "counts": {"accepted": 5,
                                                                   "rejected": 2}},
    ("golden", "status"): {"state": "red", "since": NOW - 42.5, "move_count": 7},
    ("llm_router", "status"): {"usage_today": {"judge": {"input_tokens": 100,
        "output_tokens": 20, "cost_usd": 0.5, "calls": 2}},
        "calls": {"judge": {"answered": 2, "failed": 1}}},
    ("model_gateway", "status"): {"live_tokens": 1},
    ("model_gateway", "usage"): {"roles": {"implementer": {"calls": 3, "input_tokens": 300,
                                                           "output_tokens": 30,
                                                           "cached_tokens": 10}}},
    ("workspace_manager", "status"): {"registry": {"workspaces": 4, "orphaned": 1,
                                                   "detached": 1, "created": 9,
                                                   "destroyed": 6}},
}  # fmt: skip
LEDGER = {"resources": {"loop": {"limit": 4, "in_use": 2, "waiting": 1, "exhausted": 3},
                        "ram": {"limit": 2048, "in_use": 512, "waiting": 0, "exhausted": 0}},
          "holders": [{"alive": True}, {"alive": False}]}  # fmt: skip


def loops_db(state: Path) -> None:
    from ipc import loop_records

    db = sqlite3.connect(loop_records.loops_path(state))
    db.executescript(loop_records.SCHEMA)
    for loop_id, bead, phase, commits in (("bd-1.1", "bd-1", "complete", 2),
                                          ("bd-2.1", "bd-2", "green", 1),
                                          ("bd-3.1", "bd-3", "green", 0)):  # fmt: skip
        db.execute("INSERT INTO loops VALUES (?, ?, 1, ?, 1, ?, ?, ?)",
                   (loop_id, bead, phase, json.dumps({"commits": commits, "greens": 1}),
                    NOW - 60, NOW))  # fmt: skip
    db.commit()
    db.close()


def test_a_scrape_reads_every_source_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:  # fmt: skip
    asked: list[tuple[str, str, dict[str, Any]]] = []

    def call(socket: Path, command: str, args: dict[str, Any], *, timeout: float) -> Any:
        assert timeout == 0.5  # every call bounded by --call-timeout-s
        endpoint = socket.name.removesuffix(".sock")
        asked.append((endpoint, command, args))
        return REPLIES[(endpoint, command)]

    monkeypatch.setattr(control, "call", call)
    monkeypatch.setattr(ledger, "snapshot", lambda runtime: LEDGER)
    loops_db(tmp_path)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FactoryCollector(tmp_path, tmp_path, call_timeout_s=0.5,
                                       clock=lambda: NOW))  # fmt: skip
    parsed = samples(generate_latest(registry).decode())

    assert {value(parsed, "factory_source_up", source=s) for s in SOURCES} == {1.0}
    assert value(parsed, "factory_child_restarts_total", child="bus", type="worker") == 2
    assert value(parsed, "factory_child_cpu_seconds_total", child="bus") == 1.5
    assert value(parsed, "factory_swarm_mutators") == 2
    assert value(parsed, "factory_loops", phase="green") == 2
    assert value(parsed, "factory_loops", phase="complete") == 1
    assert value(parsed, "factory_loop_steps", step="commits") == 3
    assert value(parsed, "factory_beads", state="ready") == 2
    assert value(parsed, "factory_bead_operations_total", operation="failed") == 1
    assert value(parsed, "factory_merge_queue_depth") == 3
    assert value(parsed, "factory_merge_queue_landings_total") == 5
    assert value(parsed, "factory_merge_queue_rejections_total") == 2
    assert value(parsed, "factory_golden_red") == 1
    assert value(parsed, "factory_golden_red_seconds") == 42.5
    assert value(parsed, "factory_llm_tokens_today", role="judge", direction="input") == 100
    assert value(parsed, "factory_llm_cost_usd_today", role="judge") == 0.5
    assert value(parsed, "factory_llm_calls_total", role="judge", outcome="failed") == 1
    # the gateway asked once per bead of the loops database, the roles summed
    assert sorted(a["bead"] for e, c, a in asked if c == "usage") == ["bd-1", "bd-2", "bd-3"]
    assert value(parsed, "factory_gateway_tokens", role="implementer", kind="input") == 900
    assert value(parsed, "factory_gateway_calls", role="implementer") == 9
    assert value(parsed, "factory_ledger_in_use", resource="loop") == 2
    assert value(parsed, "factory_ledger_limit", resource="ram") == 2048
    assert value(parsed, "factory_ledger_exhausted_total", resource="loop") == 3
    assert value(parsed, "factory_ledger_holders", alive="false") == 1
    assert value(parsed, "factory_workspaces", state="live") == 2
    assert value(parsed, "factory_workspaces", state="detached") == 1
    assert value(parsed, "factory_workspace_operations_total", operation="destroyed") == 6


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        return str(reply.read().decode())


@pytest.mark.integration
def _metrics_status(runtime: Path) -> dict[str, Any] | None:
    try:
        return dict(control.call(paths.control_socket(runtime, "metrics"), "status", {},
                                 timeout=10))  # fmt: skip
    except control.ControlError:
        return None


def test_scraping_the_example_factory(factoryd: Any, tmp_path: Path) -> None:
    d = start_example_factory(factoryd, tmp_path)  # the example runs metrics (any port)
    try:
        wait_until(lambda: json.loads(d.beads.read_text())["status"] == "closed", timeout=100,
                   what="bd-1 closed by the dispatcher")  # fmt: skip
        heartbeat = d.pid("heartbeat")
        assert heartbeat is not None
        os.kill(heartbeat, signal.SIGKILL)  # one restart for the metrics to count
        wait_until(lambda: d.node("heartbeat")["restarts"] == 1 and d.pid("heartbeat"),
                   timeout=20, what="heartbeat restarted")  # fmt: skip
        # the services after it restart too (rest_for_one), the metrics service among them:
        # factoryd answers status while it starts them, so wait for the metrics' answer
        status = wait_until(lambda: _metrics_status(d.runtime_dir), timeout=30,
                            what="the metrics service restarted after the heartbeat")  # fmt: skip
        assert status["host"] == "127.0.0.1" and status["port"] > 0

        parsed = samples(scrape(status["url"]))
        down = {s for s in SOURCES if value(parsed, "factory_source_up", source=s) != 1.0}
        assert not down, (down, control.call(paths.control_socket(d.runtime_dir, "metrics"),
                                             "status", {}, timeout=10))  # fmt: skip
        assert value(parsed, "factory_child_restarts_total", child="heartbeat", type="worker") == 1
        assert value(parsed, "factory_child_restarts_total", child="bus", type="worker") == 0
        assert value(parsed, "factory_child_up", child="golden") == 1
        assert value(parsed, "factory_loops", phase="complete") == 1
        assert value(parsed, "factory_loop_steps", step="commits") >= 1
        assert value(parsed, "factory_beads", state="ready") == 0
        assert value(parsed, "factory_bead_operations_total", operation="closed") == 1
        assert value(parsed, "factory_merge_queue_depth") == 0
        assert value(parsed, "factory_merge_queue_landings_total") == 1
        assert value(parsed, "factory_merge_queue_rejections_total") == 0
        assert value(parsed, "factory_golden_red") == 0
        assert value(parsed, "factory_golden_red_seconds") == 0
        assert value(parsed, "factory_ledger_limit", resource="loop") == 4
        assert value(parsed, "factory_ledger_in_use", resource="loop") == 0  # the loop is done
        assert value(parsed, "factory_workspace_operations_total", operation="created") >= 1
        assert ("factory_workspaces", (("state", "live"),)) in parsed
        assert value(parsed, "factory_gateway_live_tokens") >= 0
        assert any(name == "factory_llm_calls_total" for name, _ in parsed)  # per role
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)
