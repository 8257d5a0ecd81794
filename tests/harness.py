"""A real factoryd for tests: started as a process in its own group, driven over its
control socket, always torn down (SIGTERM, bounded wait, SIGKILL of the group)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ipc import control, paths
from supervisor.ctl import cli
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Journal:
    """Reads the "EVENT ID PID" lines children write (see tests/children.py)."""

    path: Path

    def events(self) -> list[tuple[str, str, int]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            event, cid, pid = line.split()
            out.append((event, cid, int(pid)))
        return out

    def count(self, event: str, cid: str) -> int:
        return sum(1 for e, c, _ in self.events() if e == event and c == cid)

    def wait_count(self, event: str, cid: str, n: int, timeout: float = 15.0) -> None:
        wait_until(
            lambda: self.count(event, cid) >= n,
            timeout=timeout,
            what=f"{n}x {event} of {cid} in {self.path}",
        )


@dataclass
class Factoryd:
    tmp: Path
    config_text: str
    env: dict[str, str] = field(default_factory=dict)
    name: str = "factoryd"
    module: str = "supervisor.daemon"  # what `python -m` runs: factoryd, or a test's wrap
    proc: subprocess.Popen[bytes] | None = None

    @property
    def runtime_dir(self) -> Path:
        return self.tmp / "run"

    @property
    def socket(self) -> Path:
        return paths.control_socket(self.runtime_dir)

    @property
    def log_path(self) -> Path:
        return self.tmp / f"{self.name}.log"

    def start(self, *, wait_ready: bool = True) -> Factoryd:
        cfg = self.tmp / f"{self.name}.toml"
        cfg.write_text(textwrap.dedent(self.config_text))
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        if "NOTIFY_SOCKET" not in self.env:
            env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "--config",
                str(cfg),
                "--runtime-dir",
                str(self.runtime_dir),
                "--state-dir",
                str(self.tmp / "state"),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_ready:
            wait_until(self._ready, timeout=20, what="factoryd to report ready")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"factoryd exited {self.proc.returncode}:\n{self.log()}")
        # factoryd's own record, not a child's ready line (those start with "[id] ")
        return any(
            line.startswith("factoryd {") and '"event":"ready"' in line
            for line in self.log().splitlines()
        )

    def records(self, event: str) -> list[dict[str, Any]]:
        """factoryd's own structured records of `event`, in the order it wrote them."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("factoryd {"):
                with contextlib.suppress(ValueError):
                    record = orjson.loads(line[len("factoryd ") :])
                    if record.get("event") == event:
                        out.append(record)
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(self, command: str, **args: Any) -> Any:
        return control.call(self.socket, command, args, timeout=30)

    def call_in_thread(self, results: dict[str, object], name: str, command: str,
                       **args: Any) -> threading.Thread:  # fmt: skip
        """`call` in a started thread (for a request that waits inside factoryd): its
        result, or the exception it raised, goes to results[name]."""

        def run() -> None:
            try:
                results[name] = self.call(command, **args)
            except Exception as exc:  # noqa: BLE001 - the caller's assertions report it
                results[name] = exc

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def ctl(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["--runtime-dir", str(self.runtime_dir), *argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def node(self, child_id: str) -> dict[str, Any]:
        def find(n: dict[str, Any]) -> dict[str, Any] | None:
            if n["id"] == child_id:
                return n
            for c in n.get("children", []):
                if (hit := find(c)) is not None:
                    return hit
            return None

        found = find(self.status()["tree"])
        assert found is not None, f"no {child_id} in the tree"
        return found

    def pid(self, child_id: str) -> int | None:
        """The pid of a running child: None while it is stopped, or still starting
        (factoryd answers status inside a start; a "starting" child may not serve yet)."""
        node = self.node(child_id)
        return node.get("pid") if node.get("state", "running") == "running" else None

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def target(name: str, *args: str) -> str:
    """TOML for a Python-target worker running tests.children:NAME with args."""
    quoted = ", ".join(f'"{a}"' for a in args)
    return f'target = "tests.children:{name}"\nargs = [{quoted}]'
