"""Start overhead of the sandbox: `true` bare, under prlimit only (sandbox "none"), and
under bubblewrap (procs.sandbox.run), N runs each, interleaved; prints median and p95.

    python bench/sandbox.py [--runs 200]

Each run is one subprocess started and reaped from Python; the bare figure is what any
command costs, the difference is what the sandbox adds to every test run and terminal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procs.sandbox import SandboxPolicy, run, sandbox_status  # noqa: E402


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000.0


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name:<22} median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    true = shutil.which("true") or "/bin/true"
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    status = sandbox_status("bwrap")
    print(f"sandbox: {status}")
    with tempfile.TemporaryDirectory(prefix="factory-bench-sandbox-") as tmp:
        ws = Path(tmp)
        policies = {"prlimit only (none)": SandboxPolicy(ws, timeout_s=60, mode="none")}
        if status["available"]:
            policies["bwrap (sandbox)"] = SandboxPolicy(ws, timeout_s=60)
        samples: dict[str, list[float]] = {"bare": [], **{name: [] for name in policies}}
        for _ in range(args.runs):
            samples["bare"].append(timed(lambda: subprocess.run([true], env=env, check=True)))
            for name, policy in policies.items():
                began = time.perf_counter()
                code = run([true], policy, env=env).returncode
                samples[name].append((time.perf_counter() - began) * 1000.0)
                assert code == 0, f"{name}: exit {code}"
    print(f"{args.runs} runs of `true` each, {os.cpu_count()} CPUs")
    for name, values in samples.items():
        print(summary(name, values))
    if "bwrap (sandbox)" in samples:
        added = statistics.median(samples["bwrap (sandbox)"]) - statistics.median(samples["bare"])
        print(f"bwrap adds {added:.2f} ms (median) per command start")


if __name__ == "__main__":
    main()
