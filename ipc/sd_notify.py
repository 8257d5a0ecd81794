"""sd_notify, written directly: one datagram to $NOTIFY_SOCKET per message.

factoryd uses it towards systemd; services use it towards factoryd, which gives every
child a NOTIFY_SOCKET of its own and, for `ready = "notify"` children, starts the next
sibling only after READY=1 (OTP: start_link returns once init is done). `STATUS=` text
shows in `factoryctl status`.

No libsystemd needed. An `@` prefix names an abstract socket. Without NOTIFY_SOCKET
every call is a no-op. The watchdog interval comes from WATCHDOG_USEC, honoured only
when WATCHDOG_PID is unset or names this process.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._sock: socket.socket | None = None
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; returns whether it was sent."""
        if self.address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            self.failed += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        return self.notify(*fields, f"STATUS={status}") if status else self.notify(*fields)

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def notify_ready(status: str = "") -> bool:
    """READY=1 (and STATUS=) to $NOTIFY_SOCKET, if any: the one call a service needs."""
    notifier = Notifier()
    try:
        return notifier.ready(status)
    finally:
        notifier.close()
