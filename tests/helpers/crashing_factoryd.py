"""factoryd with its `logs` handler broken on purpose, for the test that a crashing
control handler is answered "internal" and takes nothing down. Nothing in factoryd
crashes on purpose, so the test breaks one handler here, in its own process:

    python -m tests.helpers.crashing_factoryd --config ... (factoryd's arguments)
"""

from __future__ import annotations

import sys
from typing import Any

from supervisor import daemon
from supervisor.control_api import ControlApi


def _broken_logs(self: ControlApi, args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("boom")


if __name__ == "__main__":
    ControlApi.cmd_logs = _broken_logs  # type: ignore[method-assign]
    sys.exit(daemon.main())
