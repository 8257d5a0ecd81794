"""The signal bus: an XSUB/XPUB broker, and the publisher and subscriber that use it.

    publishers (XPUB) --connect--> [XSUB  broker  XPUB] <--connect-- subscribers (SUB)
                               <runtime>/bus-in.ipc   <runtime>/bus-out.ipc

Frames are `[topic, orjson]` (see ipc.signals); the topic is the signal type. The
payload is one signal, or a JSON array of signals of that type (ipc.signal_batch):
`Publisher.publish_many` sends bursts that way, at a fraction of the cost per signal.

Slow joiners get handshakes, never sleeps:
- the broker subscribes its XSUB to everything, and XSUB replays its subscriptions to
  every publisher that connects: a Publisher's `wait_connected` returns once that first
  forwarded subscription arrives, i.e. once what it sends reaches the broker;
- the broker's XPUB sends WELCOME to every subscriber that connects (XPUB_WELCOME_MSG):
  a Subscriber's `wait_connected` returns once it got through, and `welcomes` counts
  reconnections. When the broker dies and comes back, ZeroMQ reconnects both sides and
  replays subscriptions; nobody re-creates a socket.
Every receive is a bounded poll. High-water marks default to DEFAULT_HWM (ZeroMQ's 1000
dropped 24-85% of a burst here). Undecodable or unknown messages are counted and
dropped, never raised. Pub/sub loses what is sent while a side is down: what must not be
lost lives in SQLite, and a signal only says "look".

For tests: `deliver(publisher, subscriber, signal, timeout=)` publishes until the
subscriber has it; `Subscriber.wait_for(type, predicate, timeout=)`.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import zmq

from ipc import signal_batch, signals
from ipc.signals import Envelope, MalformedSignal, Signal, UnknownSignal

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


class PartlyPublished(BusTimeout):
    """publish_many timed out part way: `sent` went, in order, and `unsent` did not
    (resend those, or give them up; resending `sent` would deliver them twice)."""

    def __init__(self, message: str, sent: list[Envelope], unsent: list[Envelope]) -> None:
        super().__init__(message)
        self.sent, self.unsent = sent, unsent


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


class Publisher(_BusSocket):
    """Sends signals to the broker. One per process; not thread-safe (no zmq socket is).

    `publish` never blocks longer than its timeout: with the broker's queue full it
    raises BusTimeout; with the broker down the signal is lost (nobody subscribed).
    """

    def __init__(
        self,
        where: BusEndpoints | str | os.PathLike[str],
        *,
        source: str,
        hwm: int = DEFAULT_HWM,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoints = _endpoints(where)
        self.source = source
        super().__init__(zmq.XPUB, hwm=hwm, context=context)
        sock = self._sock
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue is EAGAIN, not a silent drop
        sock.connect(self.endpoints.publish)
        self.stats = {"published": 0, "messages": 0, "subscriptions": 0, "unsubscriptions": 0}
        self._sndtimeo_ms = -1  # ZeroMQ's default: a blocking send waits for ever

    def wait_connected(self, *, timeout: float) -> None:
        """Block until the broker forwarded a subscription (so sends reach it).

        Returns at once once that happened, even if the broker has died since: ZeroMQ
        reconnects by itself, and `deliver` is how a caller learns a signal got through.
        """
        deadline = time.monotonic() + timeout
        self.drain_subscriptions()
        while self.stats["subscriptions"] == 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(_poll_ms(left), zmq.POLLIN):
                raise BusTimeout(f"no broker at {self.endpoints.publish} after {timeout}s")
            self.drain_subscriptions()

    def drain_subscriptions(self) -> int:
        """Read pending (un)subscription notices without blocking; returns how many.

        The broker forwards a topic's subscription when its first subscriber comes and
        its unsubscription when the last one goes, by unsubscribe or by dying.
        """
        n = 0
        while True:
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return n
            n += 1
            if msg[:1] == b"\x01":
                self.stats["subscriptions"] += 1
            elif msg[:1] == b"\x00":  # the last subscriber of a topic left (or died)
                self.stats["unsubscriptions"] += 1

    def publish(self, signal: Signal, *, timeout: float = 1.0) -> Envelope:
        """Envelope `signal` (new id, now, our source), send it, and return the envelope."""
        envelope = signals.envelop(signal, source=self.source)
        self._send(signals.encode(envelope), timeout, 1)
        return envelope

    def publish_many(self, batch: Iterable[Signal], *, timeout: float = 1.0) -> list[Envelope]:
        """Envelope `batch` and send it in order; returns the envelopes.

        Each run of consecutive signals of one type (up to MAX_BATCH) travels as one
        batch message (ipc.signal_batch), which costs the bus about what one signal
        does: the way to send a burst. Subscribers see the same signals in the same
        order as from `publish`. `timeout` bounds each message; when one times out,
        PartlyPublished (a BusTimeout) says which envelopes were sent and which not.
        """
        envelopes = signal_batch.envelop_many(batch, source=self.source)
        sent = 0
        for run in signal_batch.runs(envelopes):
            try:
                if len(run) == 1:
                    self._send(signals.encode(run[0]), timeout, 1)
                else:
                    self._send(signal_batch.encode_batch(run), timeout, len(run))
            except BusTimeout as exc:
                raise PartlyPublished(
                    f"{exc}: {sent} of {len(envelopes)} signals were sent",
                    envelopes[:sent],
                    envelopes[sent:],
                ) from None
            sent += len(run)
        return envelopes

    def send(self, envelope: Envelope, *, timeout: float = 1.0) -> None:
        """Send an envelope as is (resending one keeps its id)."""
        self._send(signals.encode(envelope), timeout, 1)

    def send_frames(self, frames: list[bytes], *, timeout: float = 1.0) -> None:
        """Send raw frames (tests send malformed ones through here)."""
        self._send(frames, timeout, 1)

    def _send(self, frames: list[bytes], timeout: float, signals_in: int) -> None:
        sock = self._sock
        last = len(frames) - 1
        try:
            sock.send(frames[0], _MORE_NOBLOCK if last else _NOBLOCK)
        except zmq.Again:
            self._send_waiting(frames[0], _MORE if last else 0, timeout)
        for i in range(1, last + 1):  # the rest of a message is never refused
            sock.send(frames[i], _MORE_NOBLOCK if i < last else _NOBLOCK)
        stats = self.stats
        stats["messages"] += 1
        stats["published"] += signals_in
        if not stats["messages"] & 0x3FF:  # keep the notice queue short
            self.drain_subscriptions()

    def _send_waiting(self, frame: bytes, flags: int, timeout: float) -> None:
        """A blocking send bounded by SNDTIMEO: with XPUB_NODROP, poll reports POLLOUT
        even while the queue is full, so only a blocking send waits for room."""
        if math.isnan(timeout):
            raise ValueError(f"timeout must be a number of seconds, got {timeout}")
        ms = -1 if timeout == math.inf else min(max(int(timeout * 1000), 0), _MAX_MS)
        if ms != self._sndtimeo_ms:
            self._sock.setsockopt(zmq.SNDTIMEO, ms)
            self._sndtimeo_ms = ms
        try:
            self._sock.send(frame, flags)
        except zmq.Again:
            raise BusTimeout(f"broker queue full for {timeout}s") from None


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
        topics = self._topics
        if topics is not None and frames[0] not in topics:  # read ahead, or a longer topic
            if len(frames) == 1 and frames[0] == WELCOME:
                stats["welcomes"] += 1
            return True
        if len(frames) == 2 and frames[1][:1] == b"[":
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
        if len(frames) == 1 and frames[0] == WELCOME:
            stats["welcomes"] += 1
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


def deliver(
    publisher: Publisher,
    subscriber: Subscriber,
    signal: Signal,
    *,
    timeout: float,
    retry_s: float = 0.05,
) -> Envelope:
    """Publish `signal` until `subscriber` has received it (same id); for tests and probes.

    Resends the same envelope every `retry_s` seconds, so it also works across a broker
    restart. Other signals the subscriber receives meanwhile are discarded. Raises
    BusTimeout after `timeout` seconds.
    """
    envelope = signals.envelop(signal, source=publisher.source)
    deadline = time.monotonic() + timeout
    while True:
        publisher.drain_subscriptions()
        publisher.send(envelope, timeout=max(deadline - time.monotonic(), 0.001))
        try_until = min(deadline, time.monotonic() + retry_s)
        while True:  # until the retry time, also while other signals keep coming
            got = subscriber.recv(timeout=max(try_until - time.monotonic(), 0.0))
            if got is not None and got.id == envelope.id:
                return got
            if time.monotonic() >= try_until:
                break
        if time.monotonic() >= deadline:
            raise BusTimeout(f"{envelope.type} {envelope.id} not delivered within {timeout}s")
