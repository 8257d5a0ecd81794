"""Spawn a child whose own exit is seen at once, whatever holds its pipes.

asyncio's Process.wait() (3.11) returns only once the child has exited AND its stdout and
stderr pipes have closed. A child the process left behind (`sleep 60 &`, an agent's
language server) keeps them open, so the exit went unseen: a dead agent looked alive until
a timeout, a finished command looked like it was still running.

The same leftovers kept asyncio's subprocess transport open after we were done with the
process, so it was closed by the garbage collector (ResourceWarning "unclosed transport")
or not at all. WatchedProcess.close() closes it on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


class WatchedProcess(asyncio.subprocess.Process):
    """asyncio's Process, plus `exited` (set when the process itself exits; its returncode
    is set by then) and `close()`."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _ExitProtocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, loop)
        self.exited = protocol.exited
        self._subprocess = transport

    async def close(self, *, timeout: float) -> None:
        """Close our ends of its pipes and its transport; call once it exited or was killed.

        Waits up to `timeout` s for its pipes to reach EOF (what it wrote before dying is
        still read), then closes them whatever still holds them open (a grandchild that left
        its process group). A process still running is SIGKILLed by the close.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), timeout)
        self._subprocess.close()
        await asyncio.sleep(0)  # the pipe transports close their fds on the next loop pass


async def spawn(program: str, *args: str, limit: int = 2**16, **kwargs: Any) -> WatchedProcess:
    """asyncio.create_subprocess_exec, returning a WatchedProcess."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitProtocol(limit, loop), program, *args, **kwargs
    )
    return WatchedProcess(transport, protocol, loop)


def signal_name(number: int) -> str:
    """SIGKILL, SIGRTMIN+6...: signal.Signals knows no real-time signal but the first/last."""
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
