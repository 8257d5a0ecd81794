"""`factoryctl status` wall time, end to end, against a running factoryd.

Method: run the console script (the `factoryctl` beside this interpreter, as pip
installed it: `#!python3` + `from supervisor.ctl.cli import main`; not a pyenv shim,
which adds a bash and a second exec) as a fresh process, stdout to /dev/null. Each run
is timed from spawn to exit with perf_counter (wall) and by the child's user+system
CPU time (wait4's rusage: what a loaded box inflates less). 3 warm-up
runs, then `--runs` (20) measured ones; median and p95 (nearest rank) are printed.
For comparison:

- `python3 -c pass`: the interpreter's own start-up, site and its .pth files included
  (an editable install adds a finder; a sandbox may add hooks of its own);
- `python3 -S -c pass`: the interpreter alone;
- `factoryctl status` under `python3 -S`, PYTHONPATH = the code measured and
  site-packages: no .pth file runs, as with a plain (non-editable) install;
- the status control call alone, in-process (connect, request, reply: factoryd's share).

Bytecode: an installed package has its .pyc files; a checkout run with
PYTHONDONTWRITEBYTECODE=1 has none and compiles every module on every run. So the
code measured is compiled first (compileall into its __pycache__, which git ignores);
`--no-compile` measures it as it is.

The code measured is whatever `import supervisor` finds: set PYTHONPATH to another
tree (e.g. `git archive OLD supervisor ipc procs | tar -x -C /tmp/old`) to measure
that one the same way.

    python3 bench/ctl_status.py --start [--runs 20]
    python3 bench/ctl_status.py --runtime-dir /run/factory
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import signal
import site
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import supervisor
from ipc import control, paths

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "systemd" / "factory.example.toml"
READY_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 30.0
# The tree `import supervisor` found: the code measured.
CODE = Path(supervisor.__file__).resolve().parent.parent


def percentile(samples: list[float], p: float) -> float:
    """The `p`-th percentile (0..100) of `samples`, nearest rank."""
    ordered = sorted(samples)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[rank - 1]


def time_process(argv: list[str], runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of `runs` runs of `argv` (after `warmup` untimed ones)."""
    walls, cpus = [], []
    for i in range(warmup + runs):
        wall, cpu = run_once(argv)
        if i >= warmup:
            walls.append(wall)
            cpus.append(cpu)
    return walls, cpus


def run_once(argv: list[str]) -> tuple[float, float]:
    """One run's wall and CPU seconds. Reaped by a blocking wait4, which returns at the
    exit (subprocess's wait with a timeout polls, in steps of up to 50 ms), bounded by a
    timer that kills the child after RUN_TIMEOUT_S."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    killer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
    killer.start()
    try:
        _, wait_status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return wall, usage.ru_utime + usage.ru_stime


def time_call(socket_path: Path, runs: int, warmup: int) -> list[float]:
    """Wall seconds of each in-process status control call."""
    samples = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        control.call(socket_path, "status", {}, timeout=10.0)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed)
    return samples


@contextlib.contextmanager
def example_factoryd() -> Iterator[Path]:
    """A factoryd on the example config in a temporary dir; yields its runtime dir."""
    with tempfile.TemporaryDirectory(prefix="ctl-status-") as tmp:
        runtime = Path(tmp) / "run"
        factoryd = Path(sys.executable).with_name("factoryd")
        argv = [str(factoryd), "--config", str(EXAMPLE_CONFIG)]
        argv += ["--runtime-dir", str(runtime), "--state-dir", str(Path(tmp) / "state")]
        with open(Path(tmp) / "factoryd.log", "wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_serving(runtime, time.monotonic() + READY_TIMEOUT_S)
            yield runtime
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


def wait_serving(runtime: Path, deadline: float) -> None:
    """Until factoryd answers status with every child running, or `deadline` passes."""
    sock = paths.control_socket(runtime, "factoryd")
    while True:
        with contextlib.suppress(control.ControlError):
            tree = control.call(sock, "status", {}, timeout=1.0)["tree"]
            if all(c["state"] == "running" for c in tree["children"]):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"factoryd at {runtime} did not start its children in time")
        time.sleep(0.1)  # a bench may poll; tests may not (STYLE rule 10)


def report(name: str, samples: tuple[list[float], list[float]] | list[float]) -> None:
    walls, cpus = samples if isinstance(samples, tuple) else (samples, None)
    line = f"{name:<40} wall median {statistics.median(walls) * 1e3:6.1f} ms"
    line += f"  p95 {percentile(walls, 95) * 1e3:6.1f} ms"
    line += f"  min {min(walls) * 1e3:6.1f} ms"
    if cpus is not None:
        line += f"  CPU median {statistics.median(cpus) * 1e3:6.1f} ms"
    print(f"{line}  (n={len(walls)})")


@contextlib.contextmanager
def pythonpath(*entries: str) -> Iterator[None]:
    """PYTHONPATH for the processes started in the block: `entries` after what it held."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*filter(None, [before]), *entries])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def measure(runtime: Path, runs: int, warmup: int) -> None:
    python = sys.executable
    status = ["--runtime-dir", str(runtime), "status"]
    report("python3 -c pass", time_process([python, "-c", "pass"], runs, warmup))
    report("python3 -S -c pass", time_process([python, "-S", "-c", "pass"], runs, warmup))
    script = Path(python).with_name("factoryctl")
    report("factoryctl status (console script)", time_process([str(script), *status], runs, warmup))
    main = "import sys; from supervisor.ctl.cli import main; sys.exit(main())"
    with pythonpath(str(CODE), *site.getsitepackages()):
        no_site = time_process([python, "-S", "-c", main, *status], runs, warmup)
    report("factoryctl status under python3 -S", no_site)
    socket_path = paths.control_socket(runtime, "factoryd")
    report("status control call alone (in-process)", time_call(socket_path, runs, warmup))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-dir", type=Path, help="a running factoryd's runtime dir")
    parser.add_argument("--start", action="store_true", help="start an example factoryd")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="measure without .pyc files")
    args = parser.parse_args()
    if args.start == (args.runtime_dir is not None):
        parser.error("give exactly one of --runtime-dir and --start")
    if not args.no_compile:
        for package in ("supervisor", "ipc", "procs"):
            compileall.compile_dir(CODE / package, quiet=1)
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}; code {CODE}")
    if args.start:
        with example_factoryd() as runtime:
            measure(runtime, args.runs, args.warmup)
    else:
        measure(args.runtime_dir, args.runs, args.warmup)


if __name__ == "__main__":
    main()
