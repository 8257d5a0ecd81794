"""FACTORY_ALLOWED_SKIPS: which skips a run may have and still pass.

A skip may only say what this machine lacks (a privilege, a tool, a device). Where a
run must mean what it says (CI), FACTORY_ALLOWED_SKIPS lists the reasons expected
there, separated by ";": a skip whose reason contains none of them fails the session
(tests/conftest.py), so a skip that hides a bug cannot pass for green. Unset, any skip
is allowed (a developer's machine may lack loop devices or root); set but empty, none is.
"""

from __future__ import annotations

import os

ENV = "FACTORY_ALLOWED_SKIPS"


def allowed_reasons(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str] | None:
    """The allowed reasons (substrings), or None where no policy is set."""
    value = environ.get(ENV)
    if value is None:
        return None
    return [part.strip() for part in value.split(";") if part.strip()]


def unexpected(skips: list[tuple[str, str]], allowed: list[str]) -> list[tuple[str, str]]:
    """The (test id, reason) pairs whose reason contains none of `allowed`."""
    return [(nodeid, why) for nodeid, why in skips if not any(a in why for a in allowed)]


def skip_reason(longrepr: object) -> str:
    """The reason of a skipped test report (its longrepr is (path, line, "Skipped: why"))."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
