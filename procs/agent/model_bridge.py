"""The host's end of a sandboxed agent's way out: a unix socket relayed to its model's port.

An agent in its own network namespace (procs.agent.agent_sandbox) reaches nothing of the
host's. Its relay (procs.agent.net_relay, inside the sandbox) hands each connection to
the unix socket of a ModelBridge, which this process holds: a private directory (0700,
under $TMPDIR, or /tmp where that path is too long for AF_UNIX) with `model.sock` in it,
bound into the sandbox read-only at SANDBOX_DIR. Every connection to it is relayed to
the model's TCP address on the host (the model gateway's 127.0.0.1:PORT), and nothing
else: so the agent reaches its model and only its model. A fresh TCP connection per
agent connection, so a gateway restarted on the same port is reached again.

Why here and not a unix socket of the gateway's own, bound in: any loopback model
endpoint (the gateway, or an unmetered local llama-server) is isolated the same way with
nothing new threaded from the loop to the agent (the model URL is all it takes); a
restarted gateway's new socket file would not be seen through a bind of the old one; and
the cost is one relay hop, ~0.3-0.5 ms a call (bench/gateway.py).

    bridge = ModelBridge.open("127.0.0.1", 4000)   # relaying on a daemon thread
    bridge.socket_path                             # bind its directory into the sandbox
    bridge.close()                                 # resets connections, removes the dir

The relay (net_relay.Relay) runs on one daemon thread; close() wakes it through a pipe
and waits for it at most `timeout_s`. A crash of ours leaves the directory in $TMPDIR
(the thread dies with us).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from procs.agent import net_relay

SANDBOX_DIR = "/tmp/.factory-model"  # where the sandbox sees the bridge's directory
SOCKET_NAME = "model.sock"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with its NUL


class ModelBridge:
    """A unix socket whose connections are relayed to (host, port) on a thread."""

    def __init__(self, directory: Path, relay: net_relay.Relay, host: str, port: int) -> None:
        self.directory = directory
        self.host, self.port = host, port
        self._relay = relay
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        relay.add_reader(self._wake_r, lambda _fd: None)
        self._thread = threading.Thread(
            target=relay.run, kwargs={"stop": lambda: self._stopping}, name="model-bridge",
            daemon=True,
        )  # fmt: skip
        self._closed = False

    @property
    def socket_path(self) -> Path:
        return self.directory / SOCKET_NAME

    @classmethod
    def open(cls, host: str, port: int, *, idle_s: float = net_relay.IDLE_S) -> ModelBridge:
        """Listen on a new private directory's socket and relay to `host`:`port`, an IP
        address. Raises ValueError (a bad host, port or idle_s), OSError (the directory
        or the socket cannot be made)."""
        if not 0 < port < 65536:
            raise ValueError(f"the model's port must be 1-65535, got {port}")
        family, sockaddr = net_relay.parse_address(f"[{host}]:{port}" if ":" in host
                                                   else f"{host}:{port}")  # fmt: skip
        directory = Path(tempfile.mkdtemp(prefix="factory-net-"))  # 0700
        if len(str(directory / SOCKET_NAME)) > MAX_SOCKET_PATH:  # a long $TMPDIR
            directory.rmdir()
            directory = Path(tempfile.mkdtemp(prefix="factory-net-", dir="/tmp"))
        try:
            path = directory / SOCKET_NAME
            listener = net_relay.listen((socket.AF_UNIX, str(path)))
            relay = net_relay.Relay([listener], (family, sockaddr), idle_s=idle_s)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        bridge = cls(directory, relay, host, port)
        bridge._thread.start()
        return bridge

    def statistics(self) -> dict[str, Any]:
        """Connections relayed so far (read without a lock: a snapshot, maybe stale)."""
        return {"target": f"{self.host}:{self.port}", **self._relay.statistics()}

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Stop relaying (connections in flight are reset), remove the directory.
        Blocks up to `timeout_s` for the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout_s)
        if not self._thread.is_alive():  # (one still running keeps what it uses)
            self._relay.close()
            os.close(self._wake_r)
        os.close(self._wake_w)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ModelBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
