"""The one explicit list of factoryctl commands (name -> module)."""

from __future__ import annotations

from types import ModuleType

COMMANDS: dict[str, ModuleType] = {}
