"""The LLM router service (procs.llm.service) as a real process, for tests that call it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ipc import paths
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def router_process(
    tmp_path: Path, config_toml: str, *, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start the router with `config_toml`, runtime dir tmp_path/run and state dir
    tmp_path/state; yield (process, control socket) once the socket exists; SIGKILL its
    group at the end."""
    config = tmp_path / "router.toml"
    config.write_text(config_toml)
    runtime = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.llm.service", "--config", str(config),
         "--runtime-dir", str(runtime), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, process_group=0, stderr=subprocess.PIPE,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip
    sock = paths.control_socket(runtime, "llm_router")
    try:
        wait_until(lambda: sock.exists() or proc.poll() is not None, what="router socket")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield proc, sock
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
