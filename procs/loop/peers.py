"""Waiting, bounded, for a peer service that may be restarting.

A loop's start needs the merge queue (its lander), the workspace manager and the golden
master. Each is a supervised sibling that can be down for a few seconds: SIGKILLed and
being restarted, or still starting after a factoryd restart (golden runs its suite
before READY=1). A start that found one down gave up at once: with --lander
merge_queue as bad input (exit 2), for the workspace as a crash before READY=1, and
with --lander auto it fell back to fast-forward, writing golden's branch past the
golden master. Each is a failed start, which the dispatcher counts as a failed attempt
of the bead (bench/chaos.py lost attempts this way). So the start first waits for
whichever of them has a control socket in the runtime dir, at most PEER_WAIT_S each.
"""

from __future__ import annotations

import time
from pathlib import Path

from ipc import control

PEER_WAIT_S = 30.0  # a restart takes seconds; the loop's start_timeout is 120 s
_FIRST_PAUSE_S = 0.05
_MAX_PAUSE_S = 1.0


def await_peer(socket: Path, *, timeout: float) -> None:
    """Return once something answers on the control socket `socket` (any reply, an error
    reply included: it listens). Blocks at most about `timeout` seconds, retrying with a
    backoff from 50 ms to 1 s; then raises the last ControlError (DaemonNotRunning when
    nothing listens)."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE_S
    while True:
        remaining = deadline - time.monotonic()
        try:
            control.call(socket, "status", {}, timeout=max(remaining, 0.1))
            return
        except control.RemoteError:
            return  # an error reply is an answer: it listens
        except control.ControlError:
            if time.monotonic() + pause >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE_S)
