"""Before READY=1 (fs-230, fs-231): the host has what the factory needs, and the golden
suite has run once.

    check_host(minimums, repo) -> {free_ram_mb, free_disk_mb, gpus}     or HostShort
    run_suite(workdir, test_command, timeout_s=...) -> SuiteVerdict    in the sandbox

The RAM figure is the governor's (ipc.ledger.check_free_ram: MemAvailable); disk is
shutil.disk_usage of the repository's filesystem; GPUs are counted with NVML (the
`pynvml` module of nvidia-ml-py) only when a minimum asks for one. The suite runs under
procs.sandbox with the work tree read-only (pytest's cache off, no bytecode written), so
a run leaves the golden tree as it was; a timeout is red.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipc.ledger import check_free_ram
from procs import sandbox

MAX_OUTPUT_CHARS = 64 * 1024


class HostShort(Exception):
    """The host lacks what a minimum asks for; the message says what and by how much."""


@dataclass(frozen=True)
class HostMinimums:
    free_ram_mb: int = 0
    free_disk_mb: int = 0
    gpus: int = 0


def count_gpus() -> tuple[int, str]:
    """GPUs NVML sees, and why none when it cannot tell (no module, no driver)."""
    try:
        import pynvml  # noqa: PLC0415 - optional: only where a GPU is asked for
    except ImportError:
        return 0, "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return 0, f"no NVIDIA driver: {exc}"
    try:
        return int(pynvml.nvmlDeviceGetCount()), ""
    except pynvml.NVMLError as exc:
        return 0, f"NVML cannot count devices: {exc}"
    finally:
        pynvml.nvmlShutdown()


def check_host(minimums: HostMinimums, repo: Path) -> dict[str, Any]:
    """Measure free RAM, disk (where `repo` lives) and GPUs; HostShort names each lack."""
    ram = check_free_ram()
    disk = shutil.disk_usage(repo).free // (1024 * 1024)
    found: dict[str, Any] = {"free_ram_mb": ram, "free_disk_mb": disk}
    short = []
    if ram < minimums.free_ram_mb:
        short.append(f"free RAM {ram} MB < the {minimums.free_ram_mb} MB required")
    if disk < minimums.free_disk_mb:
        short.append(f"free disk at {repo} {disk} MB < the {minimums.free_disk_mb} MB required")
    if minimums.gpus > 0:
        gpus, why = count_gpus()
        found["gpus"] = gpus
        if gpus < minimums.gpus:
            because = f" ({why})" if why else ""
            short.append(f"{gpus} GPU(s) < the {minimums.gpus} required{because}")
    if short:
        raise HostShort("; ".join(short))
    return found


@dataclass(frozen=True)
class SuiteVerdict:
    """One suite run: green only for exit 0 within the timeout."""

    green: bool
    exit_code: int
    timed_out: bool
    duration_ms: float
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {"green": self.green, "exit_code": self.exit_code, "timed_out": self.timed_out,
                "duration_ms": round(self.duration_ms, 1), "output": self.output}  # fmt: skip


def suite_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


def run_suite(workdir: Path, test_command: Sequence[str], *, timeout_s: float,
              readonly: bool = True, mode: str | None = None) -> SuiteVerdict:  # fmt: skip
    """Run `test_command` in `workdir` under the sandbox (read-only unless `readonly` is
    False). Blocks at most `timeout_s` (+ the sandbox's drain). Raises
    SandboxUnavailable when the sandbox cannot run (nothing was run)."""
    policy = sandbox.SandboxPolicy(
        workspace=workdir, readonly_paths=(workdir,) if readonly else (), timeout_s=timeout_s,
        mode=mode or sandbox.default_mode(),
    )  # fmt: skip
    began = time.monotonic()
    result = sandbox.run(list(test_command), policy, env=suite_env())
    output = (result.stdout + result.stderr).decode(errors="replace")[-MAX_OUTPUT_CHARS:]
    if result.timed_out:
        output += f"\n[the suite timed out after {timeout_s} s]"
    return SuiteVerdict(
        green=result.returncode == 0 and not result.timed_out, exit_code=result.returncode,
        timed_out=result.timed_out, duration_ms=(time.monotonic() - began) * 1000.0,
        output=output,
    )  # fmt: skip
