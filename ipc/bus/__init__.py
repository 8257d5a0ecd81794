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

This module is the public face; the parts live in _bus_socket (endpoints, errors, the
socket base), _bus_publisher and _bus_subscriber.
"""

from __future__ import annotations

import time

from ipc import signals
from ipc.bus._publisher import PartlyPublished, Publisher
from ipc.bus._socket import (
    DEFAULT_HWM,
    RECONNECT_IVL_MS,
    WELCOME,
    BusEndpoints,
    BusError,
    BusTimeout,
)
from ipc.bus._subscriber import Subscriber
from ipc.signals import Envelope, Signal

__all__ = [
    "DEFAULT_HWM",
    "RECONNECT_IVL_MS",
    "WELCOME",
    "BusEndpoints",
    "BusError",
    "BusTimeout",
    "PartlyPublished",
    "Publisher",
    "Subscriber",
    "deliver",
]


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
