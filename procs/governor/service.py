"""The resource governor: owns the ledger's limits and broadcasts ResourceExhausted.

    python3 -m procs.governor.service [--config FILE] [--max-loops N] [--gpu-tickets N] ...

Run by factoryd (target = "procs.governor.service:main") after the bus broker. At start
it creates the ledger (ipc/ledger.py) for its runtime dir with the configured limits, or
re-attaches to the one a crashed predecessor left, keeping every held ticket. Processes
then take and return slots themselves, in their own process, through
`TicketLedger.open(runtime_dir).request_loop_slot()` & co (fs-031..035): SEM_UNDO ties a
ticket to its holder, so the kernel returns it when the holder dies. The governor:

- waits on the ledger's exhaustion semaphore and publishes ResourceExhausted{resource,
  current, limit} on the bus for every refused or waiting request (fs-036);
- sweeps the table entries of dead holders;
- answers `status` on <runtime_dir>/resource_governor.sock: limits, GPUs, free RAM and
  the ledger snapshot (what `factoryctl status` shows).

Limits come from [resource_governor] in the TOML file given with --config, overridden by
flags: max_mutators, max_loops, max_workspaces, min_free_ram_mb, gpu_tickets,
ram_budget_mb. GPUs are counted with NVML (nvidia-ml-py's `pynvml`) when a driver is
there; without one the configured gpu_tickets stand, and `status` says why.
On SIGTERM it stops, removing the ledger only when no live process holds a ticket.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import psutil

from ipc import ledger, paths, service_report
from ipc.bus import BusTimeout, Publisher
from ipc.ledger import LedgerError, LedgerOwner, Limits
from ipc.service import Call, Ready, Service, ServiceLoop, serve
from ipc.signals import ResourceExhausted

SERVICE = "resource_governor"
SWEEP_EVERY_S = 1.0


def report(event: str, **fields: Any) -> None:
    """One structured record per line on stderr (the supervisor's log)."""
    service_report.report(SERVICE, event, **fields)


class ConfigError(ValueError):
    """A limit is missing its shape; the message names the key and the source."""


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    """fs-030's limits. None means: derive (GPUs found; total RAM minus the reserve)."""

    max_mutators: int = 32
    max_loops: int = 4
    max_workspaces: int = 64
    min_free_ram_mb: int = 1024
    gpu_tickets: int | None = None
    ram_budget_mb: int | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str) -> GovernorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{source}: {key} must be a non-negative integer, got {value!r}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class GpuInfo:
    driver: bool
    devices: tuple[str, ...]
    error: str | None


def detect_gpus() -> GpuInfo:
    """Ask NVML for the GPUs; without a driver NVML raises and we say so."""
    try:
        import pynvml  # noqa: PLC0415 - optional at run time: only where a driver may be

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_* and ImportError alike mean "none"
        return GpuInfo(False, (), f"{type(exc).__name__}: {exc}")
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for i in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return GpuInfo(True, tuple(names), None)
    except pynvml.NVMLError as exc:  # a driver that fails a query: as good as none
        return GpuInfo(False, (), f"{type(exc).__name__}: {exc}")
    finally:
        pynvml.nvmlShutdown()


def resolve_limits(config: GovernorConfig, gpus: GpuInfo) -> tuple[Limits, str]:
    """The ledger's limits and a sentence on where the GPU ticket count came from."""
    if config.gpu_tickets is not None:
        tickets = config.gpu_tickets
        why = f"configured gpu_tickets = {tickets}"
        if not gpus.driver:
            why += f" (no NVIDIA driver: {gpus.error})"
    elif gpus.driver:
        tickets = len(gpus.devices)
        why = f"one ticket per GPU found by NVML ({tickets})"
    else:
        tickets = 1
        why = f"no NVIDIA driver ({gpus.error}); gpu_tickets not configured, using 1"
    budget = config.ram_budget_mb
    if budget is None:
        total_mb = psutil.virtual_memory().total // (1024 * 1024)
        budget = max(total_mb - config.min_free_ram_mb, 0)
    limits = Limits(
        gpu_tickets=tickets,
        max_mutators=config.max_mutators,
        max_loops=config.max_loops,
        max_workspaces=config.max_workspaces,
        ram_budget_mb=budget,
        min_free_ram_mb=config.min_free_ram_mb,
    )
    return limits, why


def exhaustion_signals(
    before: dict[str, ledger.Record], after: dict[str, ledger.Record], ram_unit_mb: int
) -> list[ResourceExhausted]:
    """One signal per kind whose exhaustion count grew (pure: tested without processes)."""
    out = []
    for kind, record in after.items():
        if record.exhausted > before[kind].exhausted:
            scale = ram_unit_mb if kind == "ram" else 1
            out.append(
                ResourceExhausted(
                    resource=kind, current=record.last_current * scale, limit=record.limit * scale
                )
            )
    return out


class ExhaustionWatch(threading.Thread):
    """Waits on the ledger's event semaphore; owns the bus publisher (one thread per socket)."""

    def __init__(self, runtime: Path, led: LedgerOwner) -> None:
        super().__init__(name="exhaustion-watch", daemon=True)
        self._runtime = runtime
        self._ledger = led
        self._stopping = threading.Event()
        self.published = 0
        self.bus_subscriptions = 0

    def run(self) -> None:
        publisher = Publisher(self._runtime, source=SERVICE)
        seen = self._ledger.records()
        last_sweep = 0.0
        try:
            while not self._stopping.is_set():
                woke = self._ledger.wait_exhaustion(timeout=SWEEP_EVERY_S)
                publisher.drain_subscriptions()
                self.bus_subscriptions = publisher.statistics()["subscriptions"]
                if woke:
                    now = self._ledger.records()
                    for sig in exhaustion_signals(seen, now, self._ledger.ram_unit_mb):
                        report("exhausted", resource=sig.resource, current=sig.current)
                        try:
                            publisher.publish(sig)
                        except BusTimeout:  # the broker's queue is full: say so, go on
                            report("broadcast_dropped", resource=sig.resource)
                            continue
                        self.published += 1
                    seen = now
                if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
                    self._ledger.sweep_stale()
                    last_sweep = time.monotonic()
        except LedgerError as exc:
            report("watch_failed", reason=str(exc))
        finally:
            publisher.close()

    def stop(self) -> None:
        self._stopping.set()
        self._ledger.poke()
        self.join(timeout=5.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resource_governor", description=__doc__)
    parser.add_argument("--runtime-dir", help="ledger and sockets ($FACTORY_RUNTIME_DIR)")
    parser.add_argument("--config", type=Path, help="TOML file with a [resource_governor] table")
    for f in fields(GovernorConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, metavar="N")
    return parser


def load_config(args: argparse.Namespace) -> GovernorConfig:
    config = GovernorConfig()
    if args.config:
        try:
            data = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
        table = data.get(SERVICE, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{args.config}: [{SERVICE}] must be a table")
        config = GovernorConfig.from_mapping(table, f"{args.config} [{SERVICE}]")
    flags = {f.name: getattr(args, f.name) for f in fields(GovernorConfig)}
    flags = {k: v for k, v in flags.items() if v is not None}
    GovernorConfig.from_mapping(flags, "command line")
    return replace(config, **flags)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime = paths.runtime_dir(args.runtime_dir)
    try:
        config = load_config(args)
        gpus = detect_gpus()
        limits, gpu_source = resolve_limits(config, gpus)
    except (ConfigError, ValueError) as exc:
        report("start_failed", reason=str(exc))
        return 2
    try:
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        led = LedgerOwner.create(runtime, limits)
    except (LedgerError, OSError) as exc:
        report("start_failed", reason=str(exc))
        return 1
    info = {"config": asdict(config), "limits": asdict(limits), "gpu_source": gpu_source}
    info["gpus"] = {"driver": gpus.driver, "devices": list(gpus.devices), "error": gpus.error}
    return serve(Governor(runtime, led, info), runtime)


class Governor(Service):
    """Answers `status` and runs the exhaustion watch until SIGTERM/SIGINT."""

    name = SERVICE

    def __init__(self, runtime: Path, led: LedgerOwner, info: dict[str, Any]) -> None:
        self.runtime = runtime
        self.ledger = led
        self.info = info
        self.watch = ExhaustionWatch(runtime, led)

    def init(self, loop: ServiceLoop) -> Ready:
        self.watch.start()
        loop.every(SWEEP_EVERY_S, lambda: self._check(loop))
        return Ready("ledger ready", ledger=str(self.ledger.path), **self.info)

    def _check(self, loop: ServiceLoop) -> None:
        if not self.watch.is_alive():  # let it crash: the supervisor restarts a whole governor
            loop.stop(1, "the exhaustion watch thread ended")

    def calls(self) -> Mapping[str, Call]:
        return {"status": self.status}

    def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.info,
            "pid": os.getpid(),
            "free_ram_mb": ledger.check_free_ram(),
            "broadcasts": self.watch.published,
            "bus_subscriptions": self.watch.bus_subscriptions,
            "ledger": ledger.snapshot(self.runtime),
        }

    def terminate(self, reason: str) -> None:
        try:
            if self.watch.is_alive():
                self.watch.stop()
            if reason.startswith("start"):
                return
            if self.ledger.live_holders() == 0:
                self.ledger.destroy()
                report("stopped", ledger="removed", reason=reason)
            else:
                report("stopped", ledger="kept: tickets are held", reason=reason)
        finally:
            self.ledger.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
