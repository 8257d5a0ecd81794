"""The receiving side of the bus (ipc.bus): decoded signals, bad ones counted and dropped."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable

import zmq

from ipc import signals
from ipc.bus._socket import (
    _NOBLOCK,
    _RCVMORE,
    DEFAULT_HWM,
    WELCOME,
    BusEndpoints,
    BusTimeout,
    _BusSocket,
    _endpoints,
    _poll_ms,
)
from ipc.signals import Envelope, MalformedSignal, UnknownSignal
from ipc.signals import batch as signal_batch


class Subscriber(_BusSocket):
    """Receives the signals of `types` (all when None), decoded; bad ones counted and dropped."""

    def __init__(
        self,
        where: BusEndpoints | str | os.PathLike[str],
        *,
        types: Iterable[str] | None = None,
        hwm: int = DEFAULT_HWM,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoints = _endpoints(where)
        wanted = None if types is None else sorted(set(types))
        for name in wanted or ():
            if name not in signals.SIGNAL_TYPES:
                raise ValueError(f"unknown signal type {name!r}")
        super().__init__(zmq.SUB, hwm=hwm, context=context)
        sock = self._sock
        self.types: set[str] | None = None if wanted is None else set(wanted)
        # the topics taken, checked again on receipt: ZeroMQ filters a message when it
        # reads it, and a poll reads one ahead, before a later unsubscribe
        self._topics: set[bytes] | None = None if wanted is None else {n.encode() for n in wanted}
        if wanted is None:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        else:
            sock.setsockopt(zmq.SUBSCRIBE, WELCOME)
            for name in wanted:
                sock.setsockopt(zmq.SUBSCRIBE, name.encode())
        sock.connect(self.endpoints.subscribe)
        self._pending: deque[Envelope] = deque()
        self.stats = {"received": 0, "malformed": 0, "unknown": 0, "welcomes": 0}

    def subscribe(self, type_name: str) -> None:
        """Also receive `type_name` from now on (fs-011). No-op when receiving all types."""
        if type_name not in signals.SIGNAL_TYPES:
            raise ValueError(f"unknown signal type {type_name!r}")
        if self.types is not None and type_name not in self.types:
            self.types.add(type_name)
            self._topics.add(type_name.encode())  # type: ignore[union-attr]
            self._sock.setsockopt(zmq.SUBSCRIBE, type_name.encode())

    def unsubscribe(self, type_name: str) -> None:
        """Stop receiving `type_name` (fs-013): filtered here at once, and at the broker.

        Signals of that type already queued here are dropped too. A subscriber of all
        types has to name its types to unsubscribe from one (ValueError otherwise).
        """
        if self.types is None:
            raise ValueError("this subscriber takes all types; create it with types=[...]")
        if type_name in self.types:
            self.types.discard(type_name)
            self._topics.discard(type_name.encode())  # type: ignore[union-attr]
            self._sock.setsockopt(zmq.UNSUBSCRIBE, type_name.encode())
            kept = [e for e in self._pending if e.type != type_name]
            self._pending.clear()  # in place: recv holds a reference to the queue
            self._pending.extend(kept)

    @property
    def socket(self) -> zmq.Socket:
        """For a zmq.Poller in a service's loop; then call `recv(timeout=0)` until None
        (or `recv_many` until []): a batch message brings many signals at once, and the
        ones not handed out yet wait in a queue this socket does not signal."""
        return self._sock

    def wait_connected(self, *, timeout: float) -> None:
        """Block until the broker welcomed us; signals arriving meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while self.stats["welcomes"] == 0:
            if (
                not self._take(deadline)
                and time.monotonic() >= deadline
                and self.stats["welcomes"] == 0
            ):
                raise BusTimeout(f"no broker at {self.endpoints.subscribe} after {timeout}s")

    def recv(self, *, timeout: float) -> Envelope | None:
        """The next valid signal, or None when `timeout` seconds pass without one."""
        pending = self._pending
        if pending:
            return pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            self._take(deadline)
            if pending:
                return pending.popleft()
            if time.monotonic() >= deadline:
                return None

    def recv_many(self, limit: int, *, timeout: float) -> list[Envelope]:
        """Up to `limit` signals: waits up to `timeout` for the first, then takes only
        what has already arrived, reading at most `limit` more messages (so a stream of
        bad ones cannot hold it). An empty list means the timeout passed."""
        if type(limit) is not int or limit < 1:
            raise ValueError(f"recv_many takes at least 1 signal, not {limit!r}")
        pending = self._pending
        if not pending:
            deadline = time.monotonic() + timeout
            while True:
                self._take(deadline)
                if pending or time.monotonic() >= deadline:
                    break
        for _ in range(limit):  # what is here already
            if len(pending) >= limit or not self._take(0.0):
                break
        n = min(limit, len(pending))
        return [pending.popleft() for _ in range(n)]

    def wait_for(
        self,
        type_name: str,
        predicate: Callable[[Envelope], bool] | None = None,
        *,
        timeout: float,
    ) -> Envelope:
        """The first signal of `type_name` that satisfies `predicate`; others are discarded.

        Raises BusTimeout after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            envelope = self.recv(timeout=max(deadline - time.monotonic(), 0.0))
            if envelope is None:
                raise BusTimeout(f"no {type_name} within {timeout}s")
            if envelope.type == type_name and (predicate is None or predicate(envelope)):
                return envelope

    def _take(self, deadline: float) -> bool:
        """Receive one message (waiting until `deadline`) and queue its valid signals.

        Returns False when nothing came before the deadline. The welcome and bad
        messages or elements are counted, never queued.
        """
        sock = self._sock
        try:
            frames = [sock.recv(_NOBLOCK)]
        except zmq.Again:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(_poll_ms(left), zmq.POLLIN):
                return False
            try:
                frames = [sock.recv(_NOBLOCK)]
            except zmq.Again:
                return False
        while sock.get(_RCVMORE):  # the rest of a message is already here
            frames.append(sock.recv(_NOBLOCK))
        stats = self.stats
        if len(frames) == 1 and frames[0] == WELCOME:
            stats["welcomes"] += 1
            return True
        topics = self._topics
        if topics is not None and frames[0] not in topics:  # read ahead, or a longer topic
            return True
        if signal_batch.is_batch(frames):
            try:
                good, bad = signal_batch.decode_batch(frames)
            except MalformedSignal:
                stats["malformed"] += 1
                return True
            for error in bad:
                stats["unknown" if isinstance(error, UnknownSignal) else "malformed"] += 1
            stats["received"] += len(good)
            self._pending.extend(good)
            return True
        try:
            envelope = signals.decode(frames)
        except UnknownSignal:
            stats["unknown"] += 1
            return True
        except MalformedSignal:
            stats["malformed"] += 1
            return True
        stats["received"] += 1
        self._pending.append(envelope)
        return True
