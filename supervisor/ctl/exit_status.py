"""factoryctl's exit codes, one enum (after httpie's status.py)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCESS = 0
    ERROR = 1  # the daemon refused or failed the request
    USAGE = 2  # bad command line (argparse's own code)
    NOT_RUNNING = 3  # nothing listens on the control socket
    TIMEOUT = 4  # the daemon did not answer in time
    NOT_FOUND = 5  # no such child / object
