"""What the bus's publisher and subscriber share: endpoints, errors, constants and the
socket base (own context, linger 0, HWM, reconnect interval). Public through ipc.bus."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import zmq

WELCOME = b"\x00factory.bus.welcome"
DEFAULT_HWM = 100_000
RECONNECT_IVL_MS = 50
_IPC_PATH_MAX = 107  # sun_path
# Plain ints: pyzmq's send_multipart/recv_multipart spend ~3 µs a message on enum flag
# arithmetic, half of what a signal costs on this path.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_MORE = int(zmq.SNDMORE)
_MAX_MS = 2**31 - 1  # SNDTIMEO is a C int
_RCVMORE = int(zmq.RCVMORE)


class BusError(Exception):
    """A bus endpoint is unusable (bad path, bind failure)."""


class BusTimeout(BusError):
    """A bounded bus wait ended before its condition held."""


@dataclass(frozen=True, slots=True)
class BusEndpoints:
    """Where publishers connect (`publish`, the broker's XSUB) and subscribers (`subscribe`)."""

    publish: str
    subscribe: str

    @classmethod
    def in_runtime_dir(cls, runtime_dir: str | os.PathLike[str]) -> BusEndpoints:
        """ipc:// endpoints in the runtime dir; raises BusError if a path is too long."""
        base = Path(runtime_dir)
        ends = []
        for name in ("bus-in.ipc", "bus-out.ipc"):
            path = str(base / name)
            if len(path.encode()) > _IPC_PATH_MAX:
                raise BusError(f"ipc path {path!r} exceeds {_IPC_PATH_MAX} bytes")
            ends.append(f"ipc://{path}")
        return cls(*ends)


def _poll_ms(left: float) -> int:
    """zmq's poll timeout for `left` seconds (> 0): milliseconds rounded up, -1 for
    math.inf (for ever), at most what a C int holds."""
    return -1 if left == math.inf else min(int(left * 1000) + 1, _MAX_MS)


def _endpoints(where: BusEndpoints | str | os.PathLike[str]) -> BusEndpoints:
    return where if isinstance(where, BusEndpoints) else BusEndpoints.in_runtime_dir(where)


class _BusSocket:
    """What a publisher and a subscriber share: a zmq socket on their own (or a given)
    context, with linger 0, the receive HWM and the reconnect interval set."""

    def __init__(self, kind: int, *, hwm: int, context: zmq.Context | None) -> None:
        self._own_context = context is None
        self._context = context or zmq.Context()
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self._sock = sock
        self.stats: dict[str, int] = {}

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    def close(self) -> None:
        self._sock.close(linger=0)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
