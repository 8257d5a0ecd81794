"""The publishing side of the bus (ipc.bus): one signal a message, or a burst as batches."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable

import zmq

from ipc import signals
from ipc.bus._socket import (
    _MAX_MS,
    _MORE,
    _MORE_NOBLOCK,
    _NOBLOCK,
    DEFAULT_HWM,
    BusEndpoints,
    BusTimeout,
    _BusSocket,
    _endpoints,
    _poll_ms,
)
from ipc.signals import Envelope, Signal
from ipc.signals import batch as signal_batch


class PartlyPublished(BusTimeout):
    """publish_many timed out part way: `sent` went, in order, and `unsent` did not
    (resend those, or give them up; resending `sent` would deliver them twice)."""

    def __init__(self, message: str, sent: list[Envelope], unsent: list[Envelope]) -> None:
        super().__init__(message)
        self.sent, self.unsent = sent, unsent


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
        """Envelope `signal` (new id, now, our source), send it, and return the envelope.
        Raises SignalTooLarge (nothing sent) past MAX_SIGNAL_BYTES."""
        envelope = signals.envelop(signal, source=self.source)
        self._send(self._encode_one(envelope), timeout, 1)
        return envelope

    def _encode_one(self, envelope: Envelope) -> list[bytes]:
        frames = signals.encode(envelope)
        if len(frames[1]) > signals.MAX_SIGNAL_BYTES:
            self.stats["too_large"] = self.stats.get("too_large", 0) + 1
            raise signals.SignalTooLarge(
                f"{envelope.type} {envelope.id} is {len(frames[1])} bytes, more than "
                f"{signals.MAX_SIGNAL_BYTES}: a signal says 'look', the data lives in SQLite"
            )
        return frames

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
                frames = signal_batch.encode_batch(run) if len(run) > 1 else []
                if frames and len(frames[1]) <= signals.MAX_MESSAGE_BYTES:
                    self._send(frames, timeout, len(run))
                    sent += len(run)
                    continue
                for envelope in run:  # one by one, each within its own bound
                    self._send(self._encode_one(envelope), timeout, 1)
                    sent += 1
            except BusTimeout as exc:
                raise PartlyPublished(
                    f"{exc}: {sent} of {len(envelopes)} signals were sent",
                    envelopes[:sent],
                    envelopes[sent:],
                ) from None
        return envelopes

    def send(self, envelope: Envelope, *, timeout: float = 1.0) -> None:
        """Send an envelope as is (resending one keeps its id)."""
        self._send(self._encode_one(envelope), timeout, 1)

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
