"""The bus broker's sockets: libzmq's steerable proxy between XSUB and XPUB.

The proxy runs in C on a thread of its own; the process around it (procs/bus) only
answers operator requests (`status`: message and byte counts from the proxy's
STATISTICS command) and stops. Nothing here outlives the process: a SIGKILLed broker
leaves only its ipc:// files, which the next one rebinds.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading

import zmq

from ipc import signals
from ipc.bus import DEFAULT_HWM, WELCOME, BusEndpoints, BusError

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
        # A frame past the bound disconnects the peer that sent it (it reconnects): no
        # process downstream ever holds a message larger than MAX_MESSAGE_BYTES.
        self.xsub.setsockopt(zmq.MAXMSGSIZE, signals.MAX_MESSAGE_BYTES)
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
                old_umask = os.umask(0o177)  # the ipc:// file is 0600, as control sockets
                try:
                    sock.bind(endpoint)
                finally:
                    os.umask(old_umask)
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


class BrokerProxy:
    """The bound sockets and libzmq's proxy on a thread of its own, in one context.

    `start()` binds and starts forwarding (raises BusError when an endpoint cannot be
    bound); `statistics()` asks the proxy for its counters (from the owning thread);
    `alive` turns False if the proxy failed; `close()` stops it, terminates the context
    and removes the ipc:// files. Nothing outlives the process.
    """

    def __init__(self, endpoints: BusEndpoints, hwm: int = DEFAULT_HWM) -> None:
        self.endpoints = endpoints
        self.hwm = hwm
        self.failure: BaseException | None = None
        self._context: zmq.Context | None = None
        self._sockets: BrokerSockets | None = None
        self._thread: threading.Thread | None = None
        self._bound = False

    def start(self) -> None:
        self._context = zmq.Context()
        self._sockets = BrokerSockets(self._context, self.endpoints, self.hwm)
        self._bound = True
        self._thread = threading.Thread(target=self._run, name="bus-proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._sockets is not None
        s = self._sockets
        try:
            zmq.proxy_steerable(s.xsub, s.xpub, None, s.steer)
        except zmq.ZMQError as exc:  # ETERM at shutdown is not a failure
            if exc.errno != zmq.ETERM:
                self.failure = exc

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def statistics(self) -> dict[str, int]:
        if self._sockets is None:
            raise BusError("the proxy is not running")
        return self._sockets.statistics()

    def close(self) -> None:
        if self._sockets is not None:
            if self.alive:
                self._sockets.steer_peer.send(b"TERMINATE")
                assert self._thread is not None
                self._thread.join(timeout=5.0)
            self._sockets.close()
            self._sockets = None
        if self._context is not None:
            self._context.term()
            self._context = None
        if self._bound:  # never another broker's files (a second one that failed to start)
            _unlink_ipc(self.endpoints.publish)
            _unlink_ipc(self.endpoints.subscribe)
            self._bound = False
