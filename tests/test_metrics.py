"""The metrics service: a Prometheus endpoint gathered at scrape time. Scraped for real
over HTTP under the example factory and parsed with prometheus_client's own parser;
and, with nothing running, every source reads down while the scrape still answers."""

from __future__ import annotations

import json
import os
import signal
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
# The child block an operator adds to systemd/factory.example.toml (here on a free port).
METRICS_CHILD = """
[[supervisor.children]]
id = "metrics"
target = "procs.metrics.service:main"
ready = "notify"
args = ["--port", "0"]
shutdown_ms = 5000
"""


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


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        return str(reply.read().decode())


@pytest.mark.integration
def test_scraping_the_example_factory(factoryd: Any, tmp_path: Path) -> None:
    d = start_example_factory(factoryd, tmp_path, extra_toml=METRICS_CHILD)
    try:
        wait_until(lambda: json.loads(d.beads.read_text())["status"] == "closed", timeout=100,
                   what="bd-1 closed by the dispatcher")  # fmt: skip
        heartbeat = d.pid("heartbeat")
        assert heartbeat is not None
        os.kill(heartbeat, signal.SIGKILL)  # one restart for the metrics to count
        wait_until(lambda: d.node("heartbeat")["restarts"] == 1 and d.pid("heartbeat"),
                   timeout=20, what="heartbeat restarted")  # fmt: skip
        status = control.call(paths.control_socket(d.runtime_dir, "metrics"), "status", {},
                              timeout=10)  # fmt: skip
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
