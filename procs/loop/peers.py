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

from pathlib import Path

from ipc import control

PEER_WAIT_S = 30.0  # a restart takes seconds; the loop's start_timeout is 120 s


def await_peer(socket: Path, *, timeout: float) -> None:
    """control.await_answer: return once `socket` answers; raise the last ControlError
    after about `timeout` seconds."""
    control.await_answer(socket, timeout=timeout)
