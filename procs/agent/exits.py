"""Spawn a child whose own exit is seen at once, whatever holds its pipes.

asyncio's Process.wait() (3.11) returns only once the child has exited AND its stdout and
stderr pipes have closed. A child the process left behind (`sleep 60 &`, an agent's
language server) keeps them open, so the exit went unseen: a dead agent looked alive until
a timeout, a finished command looked like it was still running.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def spawn(
    program: str, *args: str, limit: int = 2**16, **kwargs: Any
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    """asyncio.create_subprocess_exec, plus an event set when the process itself exits
    (its returncode is set by then)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitProtocol(limit, loop), program, *args, **kwargs
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def signal_name(number: int) -> str:
    """SIGKILL, SIGRTMIN+6...: signal.Signals knows no real-time signal but the first/last."""
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
