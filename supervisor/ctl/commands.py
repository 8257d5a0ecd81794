"""The one explicit list of factoryctl commands (name -> module)."""

from __future__ import annotations

from types import ModuleType

from supervisor.ctl import (
    kill,
    llm,
    logs,
    ramdisk,
    reload,
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
    "reload": reload,
    "shutdown": shutdown,
    "workspaces": workspaces,
    "ramdisk": ramdisk,
    "signals": signals,
    "llm": llm,
}
