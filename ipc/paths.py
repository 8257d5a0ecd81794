"""Where the runtime files (sockets, shared memory names) and the state (SQLite) live.

Resolution order, the same for factoryd, factoryctl and every service: an explicit
argument, then $FACTORY_RUNTIME_DIR / $FACTORY_STATE_DIR (factoryd sets both for its
children), then the systemd-style defaults (/run/factory, /var/lib/factory for root;
$XDG_RUNTIME_DIR/factory and ~/.local/state/factory otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path


def runtime_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("FACTORY_RUNTIME_DIR"):
        return Path(env)
    if os.getuid() == 0:
        return Path("/run/factory")
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/factory-{os.getuid()}"
    return Path(base) / "factory"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("FACTORY_STATE_DIR"):
        return Path(env)
    if os.getuid() == 0:
        return Path("/var/lib/factory")
    return Path.home() / ".local" / "state" / "factory"


def control_socket(runtime: Path, endpoint: str = "factoryd") -> Path:
    """The control socket of `endpoint` (factoryd, or a service answering operators)."""
    return runtime / f"{endpoint}.sock"
