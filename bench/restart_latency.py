"""Restart latency: SIGKILL a supervised external child, time until its replacement runs.

Method: one child, supervised as an external command by each supervisor (factoryd,
the floor, supervisord, circus). The floor is the least a supervisor can do: a
blocking waitpid() and a posix_spawn() of the same command, in a loop. The child
writes CLOCK_MONOTONIC (system-wide on Linux) to a file as its first act; the bench
reads the current child's pid, takes CLOCK_MONOTONIC, SIGKILLs it, and waits for the
next record. Latency = the new child's own timestamp minus the kill time, so the
bench's polling does not count. 30 rounds after 3 warm-up rounds, every supervisor
running at once and each round killing each one's child in turn, so that load from
elsewhere drifting over the run weighs on all alike. Median and p95 are printed, and
factoryd's ratio to each of the others; to the floor it is factoryd's time over the
floor's, the goal being <= 1.25. `--baseline DIR` adds factoryd from another checkout
to the same rounds: a before/after on a machine whose load drifts.

The child is a tiny C program when a C compiler is present (measures the supervisor,
not interpreter start-up), else `python3 -S`. `--child python` forces the latter.
`--child target` (factoryd only) runs the child as a Python target forked from the
zygote, as factory's own services are: no exec, no interpreter start-up.

supervisord and circus are installed into a bench-only virtualenv (.bench/venv):
supervisord's import package is named `supervisor`, which would shadow ours.

    python3 bench/restart_latency.py [--rounds 30] [--child c|python] [--only factoryd]
                                     [--skip-others] [--baseline OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
VENV = BENCH_DIR / "venv"
OTHERS = {"supervisord": "supervisor==4.3.0", "circus": "circus==0.19.0"}

C_CHILD = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    FILE *f = fopen(argv[1], "a");
    fprintf(f, "%d %lld\n", getpid(), (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    fclose(f);
    for (;;) pause();
}
"""
PY_CHILD = """import os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()} {time.monotonic_ns()}\\n")
while True:
    time.sleep(3600)
"""


def child_command(work: Path, kind: str) -> list[str]:
    if kind == "target":
        return ["target"]
    compiler = shutil.which("cc") or shutil.which("gcc")
    if kind == "c" and compiler:
        src = work / "child.c"
        src.write_text(C_CHILD)
        subprocess.run(
            [compiler, "-O2", "-o", str(work / "child"), str(src)], check=True, timeout=60
        )
        return [str(work / "child")]
    script = work / "child.py"
    script.write_text(PY_CHILD)
    return [sys.executable, "-S", str(script)]


def records(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append((int(parts[0]), int(parts[1])))
    return out


def wait_records(path: Path, n: int, timeout: float) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = records(path)
        if len(rows) >= n:
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"no restart within {timeout}s ({len(rows)} of {n} records)")
        time.sleep(0.0002)


def measure(records_at: dict[str, Path], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Kill each supervisor's child in turn, round after round (the order alternating),
    so that the machine's load drifting over the run weighs on every supervisor alike."""
    rows = {name: wait_records(path, 1, 30) for name, path in records_at.items()}
    latencies: dict[str, list[float]] = {name: [] for name in records_at}
    names = list(records_at)
    for i in range(warmup + rounds):
        for name in names if i % 2 == 0 else reversed(names):
            pid = rows[name][-1][0]
            # let the supervisor settle (and leave any start-up grace period) before a kill
            time.sleep(0.05)
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            rows[name] = wait_records(records_at[name], len(rows[name]) + 1, 30)
            if i >= warmup:
                latencies[name].append((rows[name][-1][1] - t0) / 1e6)
    return latencies


@contextlib.contextmanager
def running(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    log = (cwd / "daemon.log").open("wb")
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


TARGET_CHILD = """import os, time


def main(args):
    with open(args[0], "a") as f:
        f.write(f"{os.getpid()} {time.monotonic_ns()}\\n")
    while True:
        time.sleep(3600)
"""


def run_factoryd(
    work: Path, cmd: list[str], record: Path, root: Path = ROOT
) -> AbstractContextManager[None]:
    if cmd == ["target"]:
        (work / "bench_child.py").write_text(TARGET_CHILD)
        start = f'target = "bench_child:main"\n        args = ["{record}"]'
    else:
        quoted = ", ".join(f'"{c}"' for c in [*cmd, str(record)])
        start = f"command = [{quoted}]"
    (work / "factory.toml").write_text(
        textwrap.dedent(f"""
        [supervisor]
        strategy = "one_for_one"
        intensity = 1000
        period = 1
        [[supervisor.children]]
        id = "child"
        {start}
        restart = "permanent"
        shutdown_ms = 1000
    """)
    )
    argv = [
        sys.executable,
        "-m",
        "supervisor.daemon",
        "--config",
        str(work / "factory.toml"),
        "--runtime-dir",
        str(work / "run"),
        "--state-dir",
        str(work / "state"),
    ]
    env = {**os.environ, "PYTHONPATH": f"{root}:{work}"}
    return running(argv, work, env)


FLOOR = """import os, sys
argv = sys.argv[1:]
while True:
    pid = os.posix_spawn(argv[0], argv, os.environ)
    os.waitpid(pid, 0)
"""


def run_floor(work: Path, cmd: list[str], record: Path) -> AbstractContextManager[None]:
    (work / "floor.py").write_text(FLOOR)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{work}"}  # the child's, as under factoryd
    return running([sys.executable, str(work / "floor.py"), *cmd, str(record)], work, env)


def run_supervisord(work: Path, cmd: list[str], record: Path) -> AbstractContextManager[None]:
    conf = work / "supervisord.conf"
    conf.write_text(
        textwrap.dedent(f"""
        [supervisord]
        nodaemon=true
        logfile={work}/supervisord.log
        pidfile={work}/supervisord.pid
        [unix_http_server]
        file={work}/supervisor.sock
        [program:child]
        command={" ".join([*cmd, str(record)])}
        autorestart=true
        startsecs=0
        startretries=1000
    """)
    )
    return running([str(VENV / "bin" / "supervisord"), "-c", str(conf)], work)


def run_circus(work: Path, cmd: list[str], record: Path) -> AbstractContextManager[None]:
    conf = work / "circus.ini"
    conf.write_text(
        textwrap.dedent(f"""
        [circus]
        endpoint = ipc://{work}/circus-ctl.sock
        pubsub_endpoint = ipc://{work}/circus-pub.sock
        statsd = false
        [watcher:child]
        cmd = {cmd[0]}
        args = {" ".join([*cmd[1:], str(record)])}
        numprocesses = 1
        respawn = true
        max_retry = -1
    """)
    )
    return running([str(VENV / "bin" / "circusd"), str(conf)], work)


def ensure_venv() -> bool:
    if (VENV / "bin" / "supervisord").exists() and (VENV / "bin" / "circusd").exists():
        return True
    print("installing supervisord and circus into .bench/venv (bench only) ...", flush=True)
    BENCH_DIR.mkdir(exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", *OTHERS.values()], check=True, timeout=600
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"cannot install the comparison supervisors: {exc}", file=sys.stderr)
        return False
    return True


def summary(name: str, values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    median = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"{name:<12} median {median:8.2f} ms   p95 {p95:8.2f} ms   "
        f"min {ordered[0]:7.2f}   max {ordered[-1]:8.2f}   (n={len(values)})",
        flush=True,
    )
    return median, p95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--child", choices=["c", "python", "target"], default="c")
    parser.add_argument("--only", choices=["factoryd", "floor", *OTHERS])
    parser.add_argument(
        "--skip-others", action="store_true", help="factoryd and the floor only (no venv)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run factoryd from this other checkout (say, main before a change: "
        "git archive REV | tar -x -C DIR), in the same rounds, as 'baseline'",
    )
    args = parser.parse_args()

    runners: dict[str, Callable[[Path, list[str], Path], AbstractContextManager[None]]] = {
        "factoryd": run_factoryd,
        "floor": run_floor,
        "supervisord": run_supervisord,
        "circus": run_circus,
    }
    wanted = [args.only] if args.only else list(runners)
    if args.skip_others:
        wanted = [n for n in wanted if n not in OTHERS]
    if args.child == "target":
        wanted = ["factoryd"]  # only factoryd forks Python targets from a zygote
    if any(n in OTHERS for n in wanted) and not ensure_venv():
        wanted = ["factoryd"]
    if args.baseline:
        runners["baseline"] = functools.partial(run_factoryd, root=args.baseline.resolve())
        wanted.append("baseline")
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp:
        cmd = child_command(Path(tmp), args.child)
        print(
            f"child: {' '.join(cmd)}  rounds: {args.rounds} (+{args.warmup} warm-up)  "
            f"cpus: {os.cpu_count()}",
            flush=True,
        )
        records_at = {name: Path(tmp) / name / "record" for name in wanted}
        with contextlib.ExitStack() as stack:
            for name in wanted:
                work = Path(tmp) / name
                work.mkdir()
                stack.enter_context(runners[name](work, cmd, records_at[name]))
            latencies = measure(records_at, args.rounds, args.warmup)
        for name in wanted:
            results[name] = summary(name, latencies[name])
    if "factoryd" in results:
        fm, fp = results["factoryd"]
        for name, (m, p) in results.items():
            if name in ("floor", "baseline"):
                goal = f" (goal <= 1.25: {'met' if fm / m <= 1.25 else 'MISSED'})"
                print(
                    f"factoryd / {name}: {fm / m:5.2f} at the median, {fp / p:5.2f} at p95"
                    + (goal if name == "floor" else "")
                )
                if name == "baseline" and "floor" in results:
                    bm, bp = results["floor"]
                    print(f"baseline / floor: {m / bm:5.2f} at the median, {p / bp:5.2f} at p95")
            elif name != "factoryd":
                print(
                    f"factoryd is {m / fm:6.1f}x faster than {name} at the median, "
                    f"{p / fp:6.1f}x at p95"
                )
        goal = fm <= 15.0
        print(f"goal median <= 15 ms: {'met' if goal else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
