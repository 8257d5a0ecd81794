"""The one-shot runner's own model gateway, for a box with no factoryd.

    python -m procs.llm.gateway_service --config STATE/gateway/gateway.toml \
        --runtime-dir STATE/gateway/run --state-dir STATE/gateway --drain-s 2

started by the runner (procs/loop/cli.py) when [loop.model] is metered and no gateway
answers at `<runtime>/model_gateway.sock`. Its only upstream is [loop.model] (kind,
base_url). Its counts stay in STATE/gateway/model_gateway.sqlite, so a second run of the
same bead goes on counting from them. Readiness is the gateway's "ready" record on its
stderr (the rest of which goes to STATE/gateway/gateway.log), waited for at most
`timeout_s`; `stop()` is SIGTERM (it drains for 2 s), then SIGKILL. It runs in the
runner's process group, so a signal to the group (Ctrl-C) reaches it too. A runtime dir
whose socket path would pass the AF_UNIX limit is a private temp dir instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

import orjson

from procs.loop.config import ModelUpstream
from procs.loop.metering import ENDPOINT, GatewayUnavailable

SOURCE_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


class GatewayProcess:
    """A running gateway child; `socket` is its control socket."""

    def __init__(self, process: subprocess.Popen[bytes], runtime: Path, log: Path,
                 temp_runtime: bool) -> None:  # fmt: skip
        self.process = process
        self.runtime = runtime
        self.log = log
        self.base_url = ""
        self._temp_runtime = temp_runtime
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def socket(self) -> Path:
        return self.runtime / f"{ENDPOINT}.sock"

    @classmethod
    def start(cls, upstream: ModelUpstream, base: Path, *,
              timeout_s: float = START_TIMEOUT_S) -> GatewayProcess:  # fmt: skip
        """Start it under `base` and wait for its ready record. Raises GatewayUnavailable
        (it exited, or was not ready in time: then it is stopped) naming why and its log."""
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = base / "gateway.toml"
        config.write_text(
            f"[upstreams.loop]\nkind = {json.dumps(upstream.kind)}\n"
            f"base_url = {json.dumps(upstream.base_url)}\n"
        )
        runtime, temp_runtime = base / "run", False
        if len(str(runtime / f"{ENDPOINT}.sock")) > MAX_SOCKET_PATH:
            runtime, temp_runtime = Path(tempfile.mkdtemp(prefix="factory-gw-")), True
        runtime.mkdir(exist_ok=True, mode=0o700)
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # not factoryd's
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        argv = [sys.executable, "-m", "procs.llm.gateway_service", "--config", str(config),
                "--runtime-dir", str(runtime), "--state-dir", str(base),
                "--drain-s", "2"]  # fmt: skip
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=env)  # fmt: skip
        gateway = cls(process, runtime, base / "gateway.log", temp_runtime)
        assert process.stderr is not None
        gateway._reader = threading.Thread(target=gateway._read, args=(process.stderr,),
                                           name="gateway-log", daemon=True)  # fmt: skip
        gateway._reader.start()
        gateway._ended.wait(timeout_s)  # set by the ready record, or at EOF
        if not gateway._ready.is_set():
            gateway.stop()
            why = "exited" if process.returncode is not None else f"was not ready in {timeout_s} s"
            raise GatewayUnavailable(
                f"the runner's model gateway {why} (exit {process.returncode}); see {gateway.log}"
            )
        return gateway

    def _read(self, stderr: IO[bytes]) -> None:
        """Copy the gateway's records to its log; note the ready one."""
        with open(self.log, "ab") as log:
            for line in stderr:
                log.write(line)
                log.flush()
                if not self._ready.is_set() and b'"ready"' in line:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        record = orjson.loads(line)
                        if isinstance(record, dict) and record.get("event") == "ready":
                            self.base_url = str(record.get("base_url", ""))
                            self._ready.set()
                            self._ended.set()
        self._ended.set()

    def stop(self, *, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait `timeout_s`, then SIGKILL; blocks at most timeout_s + 5 s.
        Idempotent. Returns its exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        if self._reader is not None:
            self._reader.join(5.0)
        if self.process.stderr is not None:
            self.process.stderr.close()
        if self._temp_runtime:
            shutil.rmtree(self.runtime, ignore_errors=True)
        return self.process.returncode
