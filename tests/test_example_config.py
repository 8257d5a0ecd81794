"""systemd/factory.example.toml is what operators start from: it must check, run every
service it lists, and stop cleanly."""

from __future__ import annotations

from pathlib import Path

from ipc import ledger
from tests.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "factory.example.toml"


def _workers(node: dict) -> list[dict]:  # type: ignore[type-arg]
    if node["type"] == "worker":
        return [node]
    return [w for c in node["children"] for w in _workers(c)]


def test_example_config_runs_every_service_and_stops_cleanly(factoryd) -> None:
    d = factoryd(EXAMPLE.read_text()).start()
    try:
        workers = _workers(d.status()["tree"])
        assert {w["id"] for w in workers} == {
            "bus", "signal_journal", "resource_governor", "workspaces", "llm_router",
            "model_gateway",
        }  # fmt: skip
        assert all(w["state"] == "running" for w in workers)
        wait_until(lambda: d.status()["resources"] is not None, timeout=20,
                   what="the governor's ledger")  # fmt: skip
        for command in (["llm"], ["workspaces"], ["status"]):
            code, _, err = d.ctl(*command)
            assert code == 0, (command, err)
        # no service died and came back while we looked
        assert all(w["restarts"] == 0 for w in _workers(d.status()["tree"]))
        d.stop()
        assert d.proc.returncode == 0
    finally:
        d.stop()
        ledger.destroy(d.runtime_dir)
