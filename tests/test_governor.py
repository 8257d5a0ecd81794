"""The resource governor as a real process: limits, exhaustion broadcasts, restarts."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ipc import bus, ledger, signals
from ipc.ledger import TicketLedger
from procs.governor import service as gov
from tests.helpers.bus import connected
from tests.helpers.governor import governor_status as status
from tests.helpers.governor import start_governor
from tests.helpers.processes import Processes
from tests.waiting import wait_until


def nvml_gpus() -> tuple[str, ...] | None:
    """The GPU names NVML gives when asked here directly, or None without a driver."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = [
            pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)
        ]
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.integration
def test_exhaustion_is_broadcast_with_resource_current_limit(
    procs: Processes, runtime: Path
) -> None:
    procs.broker(runtime)
    start_governor(procs, runtime, "--max-mutators", "1", "--min-free-ram-mb", "0")
    pub, sub = connected(runtime, types=["ResourceExhausted", "PatchRejected"])
    with pub, sub:
        bus.deliver(pub, sub, signals.PatchRejected(reason="sync"), timeout=10)  # our sub is in
        wait_until(lambda: status(runtime)["bus_subscriptions"] > 0, what="governor on the bus")
        led = TicketLedger.open(runtime)
        held = led.request_mutator_slot(label="m1")
        with pytest.raises(ledger.ResourceError):
            led.request_mutator_slot(label="m2")
        got = sub.wait_for("ResourceExhausted", timeout=10)
        assert got.signal == signals.ResourceExhausted(resource="mutator", current=1, limit=1)
        assert got.source == "resource_governor"
        assert status(runtime)["broadcasts"] == 1
        led.release(held)


@pytest.mark.integration
def test_status_shows_limits_gpu_fallback_and_holders(procs: Processes, runtime: Path) -> None:
    start_governor(procs, runtime, "--max-loops", "3", "--gpu-tickets", "2")
    led = TicketLedger.open(runtime)
    ticket = led.acquire({"loop": 1, "gpu": 1}, label="loop-9", timeout=1.0)
    st = status(runtime)
    assert st["limits"]["max_loops"] == 3 and st["limits"]["gpu_tickets"] == 2
    gpus = nvml_gpus()
    assert st["gpus"]["driver"] is (gpus is not None)
    if gpus is None:
        assert "configured gpu_tickets = 2 (no NVIDIA driver" in st["gpu_source"]
    else:
        assert st["gpu_source"] == "configured gpu_tickets = 2"
    assert st["free_ram_mb"] > 0
    snap = st["ledger"]
    assert snap["resources"]["loop"]["in_use"] == 1 and snap["resources"]["gpu"]["in_use"] == 1
    assert [h["label"] for h in snap["holders"]] == ["loop-9"]
    led.release(ticket)


@pytest.mark.integration
def test_a_sigkilled_governor_comes_back_with_the_tickets_still_held(
    procs: Processes, runtime: Path
) -> None:
    first = start_governor(procs, runtime, "--max-loops", "2")
    semid = status(runtime)["ledger"]["semid"]
    led = TicketLedger.open(runtime)
    ticket = led.request_loop_slot(label="kept")
    assert procs.kill(first) == -signal.SIGKILL
    start_governor(procs, runtime, "--max-loops", "4")
    snap = status(runtime)["ledger"]
    assert snap["semid"] == semid
    assert (snap["resources"]["loop"]["limit"], snap["resources"]["loop"]["in_use"]) == (4, 1)
    assert led.release(ticket)


@pytest.mark.integration
def test_sigterm_keeps_a_ledger_with_live_holders_and_removes_an_idle_one(
    procs: Processes, runtime: Path
) -> None:
    first = start_governor(procs, runtime)
    led = TicketLedger.open(runtime)
    ticket = led.request_loop_slot()
    assert procs.kill(first, signal.SIGTERM) == 0
    assert ledger.snapshot(runtime)["resources"]["loop"]["in_use"] == 1  # still there
    second = start_governor(procs, runtime)
    assert led.release(ticket)
    assert procs.kill(second, signal.SIGTERM) == 0
    with pytest.raises(ledger.LedgerMissing):
        ledger.snapshot(runtime)


@pytest.mark.integration
def test_a_governor_whose_ledger_is_removed_under_it_exits_1_for_a_restart(
    procs: Processes, runtime: Path
) -> None:
    proc = start_governor(procs, runtime)
    ledger.destroy(runtime)  # as `ipcrm` would: its exhaustion watch can no longer wait
    assert proc.wait(timeout=10) == 1  # not a governor that no longer broadcasts


def _args(*argv: str) -> argparse.Namespace:
    return gov.build_parser().parse_args(list(argv))


@pytest.mark.integration
def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "factory.toml"
    cfg.write_text("[resource_governor]\nmax_loops = 6\nmax_mutators = 8\ngpu_tickets = 0\n")
    config = gov.load_config(_args("--config", str(cfg), "--max-mutators", "2"))
    assert (config.max_loops, config.max_mutators, config.gpu_tickets) == (6, 2, 0)
    cfg.write_text("[resource_governor]\nmax_loopz = 6\n")
    with pytest.raises(gov.ConfigError, match=r"unknown key\(s\) \['max_loopz'\]"):
        gov.load_config(_args("--config", str(cfg)))
    cfg.write_text("[resource_governor]\nmax_loops = -1\n")
    with pytest.raises(gov.ConfigError, match="max_loops must be a non-negative integer"):
        gov.load_config(_args("--config", str(cfg)))
    argv = [sys.executable, "-m", "procs.governor.service", "--runtime-dir", str(tmp_path)]
    done = subprocess.run(
        [*argv, "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "max_loops must be a non-negative integer" in done.stderr


def test_gpu_tickets_come_from_nvml_or_the_config() -> None:
    no_driver = gov.GpuInfo(False, (), "NVMLError_LibraryNotFound: not found")
    two = gov.GpuInfo(True, ("H100", "H100"), None)
    config = gov.GovernorConfig(ram_budget_mb=1024)
    assert gov.resolve_limits(config, two)[0].gpu_tickets == 2
    limits, why = gov.resolve_limits(config, no_driver)
    assert limits.gpu_tickets == 1 and "no NVIDIA driver" in why
    limits, why = gov.resolve_limits(gov.GovernorConfig(gpu_tickets=3, ram_budget_mb=1), two)
    assert limits.gpu_tickets == 3 and why == "configured gpu_tickets = 3"


def test_gpu_detection_agrees_with_nvml_asked_directly() -> None:
    gpus, found = nvml_gpus(), gov.detect_gpus()  # never raises, with or without a driver
    if gpus is None:
        assert (found.driver, found.devices) == (False, ())
        assert found.error is not None and found.error.startswith("NVMLError")
    else:
        assert found == gov.GpuInfo(True, gpus, None)


@pytest.mark.integration
def test_without_gpu_tickets_the_governor_gives_one_ticket_per_gpu(
    procs: Processes, runtime: Path
) -> None:
    gpus = nvml_gpus()
    if not gpus:
        pytest.skip("no NVIDIA GPU here (NVML finds no driver or no device)")
    start_governor(procs, runtime, "--min-free-ram-mb", "0")
    st = status(runtime)
    assert st["gpus"]["devices"] == list(gpus)
    assert st["limits"]["gpu_tickets"] == len(gpus)
    assert st["gpu_source"] == f"one ticket per GPU found by NVML ({len(gpus)})"
    assert st["ledger"]["resources"]["gpu"]["limit"] == len(gpus)


def test_exhaustion_signals_scale_ram_units() -> None:
    def rec(kind: str, n: int, current: int, limit: int) -> ledger.Record:
        return ledger.Record(kind, limit, n, current, 0.0, 1)

    before = {"ram": rec("ram", 0, 0, 16), "gpu": rec("gpu", 2, 1, 1)}
    after = {"ram": rec("ram", 1, 15, 16), "gpu": rec("gpu", 2, 1, 1)}
    assert gov.exhaustion_signals(before, after, ram_unit_mb=64) == [
        signals.ResourceExhausted(resource="ram", current=960, limit=1024)
    ]
