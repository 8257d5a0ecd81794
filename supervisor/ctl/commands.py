"""The one explicit list of factoryctl commands (name -> module)."""

from __future__ import annotations

from types import ModuleType

from supervisor.ctl import (
    kill,
    logs,
    ramdisk,
    restart,
    shutdown,
    signals,
    start,
    status,
    stop,
    workspaces,
)

COMMANDS: dict[str, ModuleType] = {
    "status": status,
    "kill": kill,
    "stop": stop,
    "start": start,
    "restart": restart,
    "logs": logs,
    "shutdown": shutdown,
    "workspaces": workspaces,
    "ramdisk": ramdisk,
    "signals": signals,
}
