"""The bus broker loop: libzmq's steerable proxy between XSUB and XPUB.

The proxy runs in C on a thread of its own; the main thread only waits for SIGTERM/
SIGINT and for operator requests on the broker's control socket (`status`: message
and byte counts from the proxy's STATISTICS command). Nothing here outlives the
process: a SIGKILLed broker leaves only its ipc:// files, which the next one rebinds.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from ipc import control
from ipc.bus import DEFAULT_HWM, WELCOME, BusEndpoints, BusError
from ipc.posix_signals import StopSignals

_CONTROL = "inproc://broker-steer"
_STAT_NAMES = (
    "in_frames",
    "in_bytes",
    "in_sent_frames",
    "in_sent_bytes",
    "out_frames",
    "out_bytes",
    "out_sent_frames",
    "out_sent_bytes",
)


def _unlink_ipc(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(endpoint[len("ipc://") :])


class BrokerSockets:
    """The two bound sockets and the steering pair; created and closed by run_broker."""

    def __init__(self, context: zmq.Context, endpoints: BusEndpoints, hwm: int) -> None:
        self.xsub = context.socket(zmq.XSUB)
        self.xpub = context.socket(zmq.XPUB)
        self.steer = context.socket(zmq.PAIR)
        self.steer_peer = context.socket(zmq.PAIR)
        for sock in (self.xsub, self.xpub, self.steer, self.steer_peer):
            sock.setsockopt(zmq.LINGER, 0)
        for sock in (self.xsub, self.xpub):
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.RCVHWM, hwm)
        self.xpub.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
        try:
            for sock, endpoint in (
                (self.xsub, endpoints.publish),
                (self.xpub, endpoints.subscribe),
            ):
                _unlink_ipc(endpoint)  # a SIGKILLed broker's leftover file
                sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise BusError(f"cannot bind the bus: {exc}") from exc
        # Subscribe to everything upstream: XSUB replays this to every publisher that
        # connects, which is the handshake Publisher.wait_connected waits for.
        self.xsub.send(b"\x01")
        self.steer.bind(_CONTROL)
        self.steer_peer.connect(_CONTROL)

    def statistics(self) -> dict[str, int]:
        """Ask the proxy for its counters (only from the main thread)."""
        self.steer_peer.send(b"STATISTICS")
        if not self.steer_peer.poll(2000):
            raise BusError("proxy did not answer STATISTICS")
        frames = self.steer_peer.recv_multipart()
        values = [struct.unpack("=Q", f)[0] for f in frames]
        return dict(zip(_STAT_NAMES, values, strict=False))

    def close(self) -> None:
        for sock in (self.xsub, self.xpub, self.steer, self.steer_peer):
            sock.close(linger=0)


def run_broker(
    endpoints: BusEndpoints,
    *,
    hwm: int = DEFAULT_HWM,
    control_path: Path | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Run the broker until SIGTERM/SIGINT; returns 0 on a clean stop.

    Raises BusError when an endpoint cannot be bound. `on_ready` gets a small dict once
    the sockets are bound (the process reports it).
    """
    context = zmq.Context()
    try:
        sockets = BrokerSockets(context, endpoints, hwm)
    except BaseException:
        context.term()
        raise
    failure: list[BaseException] = []

    def proxy() -> None:
        try:
            zmq.proxy_steerable(sockets.xsub, sockets.xpub, None, sockets.steer)
        except zmq.ZMQError as exc:  # ETERM at shutdown is not a failure
            if exc.errno != zmq.ETERM:
                failure.append(exc)

    thread = threading.Thread(target=proxy, name="bus-proxy", daemon=True)
    stop = StopSignals().install()
    server = control.ControlServer(control_path) if control_path else None
    started = time.time()

    def handle(command: str, _args: dict[str, Any]) -> Any:
        if command != "status":
            raise control.RequestRefused(f"unknown command {command!r}", "not_found")
        return {
            "endpoints": {"publish": endpoints.publish, "subscribe": endpoints.subscribe},
            "hwm": hwm,
            "pid": os.getpid(),
            "started_ts": started,
            "proxy": sockets.statistics(),
        }

    selector = selectors.DefaultSelector()
    try:
        thread.start()
        selector.register(stop, selectors.EVENT_READ, "wake")
        if server:
            selector.register(server.fileno(), selectors.EVENT_READ, "control")
        if on_ready:
            on_ready({"publish": endpoints.publish, "subscribe": endpoints.subscribe})
        while not stop.requested and thread.is_alive():
            for key, _ in selector.select(timeout=1.0):
                if key.data == "control" and server:
                    while server.serve_one(handle, timeout=5.0):
                        pass
                else:
                    stop.drain()
    finally:
        if thread.is_alive():
            sockets.steer_peer.send(b"TERMINATE")
            thread.join(timeout=5.0)
        selector.close()
        if server:
            server.close()
        stop.restore()
        sockets.close()
        context.term()
        _unlink_ipc(endpoints.publish)
        _unlink_ipc(endpoints.subscribe)
    if failure:
        raise BusError(f"proxy failed: {failure[0]}")
    return 0
