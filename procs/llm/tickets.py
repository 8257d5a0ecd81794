"""GPU tickets held around local inference: an injectable interface and a local fallback.

`LedgerTickets` takes them from the shared ledger (ipc/ledger.py: SysV semaphores with
SEM_UNDO, created by the resource governor), so the router shares the GPU with every
other holder on the box. Where no ledger exists (no governor running: tests, a router run
alone), `FlockTickets` gives the same guarantees to router processes only, with `flock(2)`
on N slot files: at most N holders, a wait bounded by a deadline, and the kernel frees a
slot when its holder dies. Any object with `acquire(*, deadline) -> context manager`
raising TicketTimeout plugs into LLMRouter(tickets=...).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from ipc.ledger import ResourceError, TicketLedger
from procs.llm.errors import TicketTimeout


class GpuTickets(Protocol):
    def acquire(self, *, deadline: float) -> AbstractContextManager[object]:
        """Hold one GPU ticket for the `with` block; raise TicketTimeout at `deadline`."""
        ...


class FlockTickets:
    """`count` tickets as flock'd files `<directory>/gpu-ticket-<i>.lock`."""

    def __init__(self, directory: Path, count: int) -> None:
        if count < 1:
            raise ValueError(f"GPU ticket count must be >= 1, got {count}")
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"gpu-ticket-{i}.lock" for i in range(count)]
        self.acquired = 0
        self.timeouts = 0

    def _try_once(self) -> int | None:
        for path in self.paths:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def acquire_nowait(self) -> int:
        """Take a free ticket now or raise TicketTimeout; returns the held descriptor."""
        fd = self._try_once()
        if fd is None:
            raise TicketTimeout(f"all {len(self.paths)} GPU tickets are held")
        return fd

    @contextlib.contextmanager
    def acquire(self, *, deadline: float) -> Iterator[object]:
        pause = 0.001
        began = time.monotonic()
        while (fd := self._try_once()) is None:
            now = time.monotonic()
            if now >= deadline:
                self.timeouts += 1
                raise TicketTimeout(
                    f"no GPU ticket free out of {len(self.paths)} after {now - began:.2f}s"
                )
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.05)
        self.acquired += 1
        try:
            yield fd
        finally:
            os.close(fd)

    def statistics(self) -> dict[str, int]:
        return {"tickets": len(self.paths), "acquired": self.acquired, "timeouts": self.timeouts}


class LedgerTickets:
    """GPU tickets from the resource ledger; each is released when the call ends."""

    def __init__(self, ledger: TicketLedger, *, label: str = "llm_router") -> None:
        self.ledger = ledger
        self.label = label

    @contextlib.contextmanager
    def acquire(self, *, deadline: float) -> Iterator[object]:
        try:
            ticket = self.ledger.request_gpu_ticket(label=self.label, deadline=deadline)
        except ResourceError as exc:
            raise TicketTimeout(f"no GPU ticket from the ledger: {exc}") from exc
        try:
            yield ticket
        finally:
            self.ledger.release(ticket)

    def statistics(self) -> dict[str, int]:
        return self.ledger.statistics()
