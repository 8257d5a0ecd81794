"""The zygote's spare, as a test waits for it."""

from __future__ import annotations

from supervisor.zygote import ZygoteClient
from tests.waiting import wait_until


def wait_spare(zygote: ZygoteClient, *, other_than: int | None = None) -> int:
    """The pid of the zygote's spare once the zygote announced one (and not
    `other_than`); reads the channel, so exits and replies read meanwhile are queued."""

    def spare() -> int | None:
        zygote.read_nowait()
        return zygote.spare_pid if zygote.spare_pid != other_than else None

    return wait_until(spare, what="the zygote's spare")
