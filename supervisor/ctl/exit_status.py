"""factoryctl's exit codes, one enum (after httpie's status.py)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCESS = 0
    ERROR = 1  # the daemon refused or failed the request
    USAGE = 2  # a bad command line (argparse), or a command/args the service refuses
    NOT_RUNNING = 3  # nothing listens on the control socket
    TIMEOUT = 4  # the daemon did not answer in time
    NOT_FOUND = 5  # no such child / object
    READER_GONE = 141  # stdout's reader went away (128 + SIGPIPE): ended quietly
