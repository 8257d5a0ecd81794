"""A two-minute tour: start factoryd on a small tree, break things, watch OTP fix them.

    python3 -m supervisor.demo [--keep]

Writes a config to a temporary directory, starts factoryd on it, then, through the
same control socket `factoryctl` uses: shows the tree, SIGKILLs a worker (one_for_one
restarts it), kills a worker of a rest_for_one group (it and the workers started after
it restart), starts two dynamic children of a simple_one_for_one pool, and shuts
everything down in reverse order. `--keep` leaves the daemon running and prints the
factoryctl commands to poke at it yourself.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from ipc import control, paths
from supervisor.ctl import cli

TICKER = """import os, time
while True:
    print("tick from", os.getpid(), flush=True)
    time.sleep(1)
"""


def config(work: Path) -> str:
    py = sys.executable
    ticker = work / "ticker.py"
    ticker.write_text(TICKER)
    return textwrap.dedent(f"""
        [supervisor]
        strategy = "one_for_one"
        intensity = 5
        period = 30

        [[supervisor.children]]
        id = "ticker"
        command = ["{py}", "-u", "{ticker}"]
        restart = "permanent"
        shutdown_ms = 2000

        [[supervisor.children]]
        id = "pipeline"
        strategy = "rest_for_one"
        intensity = 3
        period = 10
        [[supervisor.children.children]]
        id = "fetch"
        command = ["sleep", "infinity"]
        [[supervisor.children.children]]
        id = "build"
        command = ["sleep", "infinity"]
        [[supervisor.children.children]]
        id = "publish"
        command = ["sleep", "infinity"]

        [[supervisor.children]]
        id = "pool"
        strategy = "simple_one_for_one"
        intensity = 10
        period = 10
        [[supervisor.children.children]]
        id = "job"
        command = ["sleep"]
        restart = "temporary"
    """)


def ctl(runtime: Path, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    cli.main(["--runtime-dir", str(runtime), *argv], out=out, err=err)
    return out.getvalue() + err.getvalue()


def step(title: str, runtime: Path, *argv: str) -> None:
    print(f"\n$ factoryctl {' '.join(argv)}    # {title}")
    print(ctl(runtime, *argv), end="")


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the demo daemon did not get there in time")
        time.sleep(0.02)


def child_pid(runtime: Path, child_id: str) -> int | None:
    def find(node: dict[str, Any]) -> int | None:
        if node["id"] == child_id:
            return node.get("pid")
        for c in node.get("children", []):
            if (pid := find(c)) is not None:
                return pid
        return None

    return find(control.call(paths.control_socket(runtime), "status", {}, timeout=10)["tree"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m supervisor.demo")
    parser.add_argument("--keep", action="store_true", help="leave the daemon running")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="factory-demo-"))
    runtime = work / "run"
    cfg = work / "factory.toml"
    cfg.write_text(config(work))
    print(f"config: {cfg}\n{cfg.read_text()}")
    log = (work / "factoryd.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "supervisor.daemon", "--config", str(cfg),
         "--runtime-dir", str(runtime), "--state-dir", str(work / "state")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=not args.keep,
    )  # fmt: skip
    try:
        wait_for(lambda: paths.control_socket(runtime).exists() and child_pid(runtime, "ticker"))
        step("the tree, as started", runtime, "status")

        old = child_pid(runtime, "ticker")
        step("crash a worker: one_for_one restarts just it", runtime, "kill", "ticker")
        wait_for(lambda: child_pid(runtime, "ticker") not in (None, old))

        old_publish = child_pid(runtime, "publish")
        step("crash 'build': rest_for_one restarts build and publish", runtime, "kill", "build")
        wait_for(lambda: child_pid(runtime, "publish") not in (None, old_publish))

        step("a dynamic child of the pool", runtime, "start", "pool", "--", "300")
        step("and another", runtime, "start", "pool", "--", "600")
        step("restarts counted, fetch untouched", runtime, "status")
        step("the ticker's output, kept by factoryd", runtime, "logs", "ticker", "-n", "3")
        if args.keep:
            print(f"\nfactoryd is running (pid {daemon.pid}). Try:\n"
                  f"  factoryctl --runtime-dir {runtime} status\n"
                  f"  factoryctl --runtime-dir {runtime} shutdown --wait")  # fmt: skip
            return 0
        step("stop everything in reverse order", runtime, "shutdown", "--wait")
        code = daemon.wait(timeout=30)
        print(f"\nfactoryd exited {code}; its log is {work / 'factoryd.log'}")
        return 0 if code == 0 else 1
    finally:
        if not args.keep and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
