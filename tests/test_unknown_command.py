"""An unknown command or bad arguments are the caller's mistake: factoryd answers
"unknown_command" (naming the commands it knows) or "bad_request", and factoryctl exits
with USAGE (2) and the remote message, keeping NOT_FOUND (5) for a missing child."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from ipc import control, paths
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from tests.helpers.control_server import serving

pytestmark = pytest.mark.integration  # real processes and sockets


def test_factoryd_names_its_commands_for_an_unknown_one(factoryd) -> None:
    d = factoryd('[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["sleep", "600"]\n')
    d.start()
    with pytest.raises(control.RemoteError) as info:
        d.call("frobnicate")
    assert info.value.type == "unknown_command"
    assert "unknown command 'frobnicate'" in str(info.value)
    for known in ("kill", "logs", "reload", "restart", "shutdown", "start", "status", "stop"):
        assert known in str(info.value)
    for bad in ({"id": 5}, {"id": "w", "lines": -1}, {"id": "w", "after": "x"}):
        with pytest.raises(control.RemoteError) as info:
            d.call("logs", **bad)
        assert info.value.type == "bad_request", bad
    with pytest.raises(control.RemoteError) as info:
        d.call("logs", id="nobody")
    assert info.value.type == "not_found"


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("unknown_command", ExitStatus.USAGE),
        ("bad_request", ExitStatus.USAGE),
        ("not_found", ExitStatus.NOT_FOUND),
        ("refused", ExitStatus.ERROR),
    ],
)
def test_factoryctl_exit_status_follows_the_services_error_type(
    tmp_path: Path, error_type: str, status: ExitStatus
) -> None:
    runtime = tmp_path / "run"
    message = f"the service says {error_type}"

    def refuse(command: str, args: dict[str, Any]) -> Any:
        raise control.RequestRefused(message, error_type)

    # `factoryctl llm` asks the LLM router, a service on the common service base
    with serving(paths.control_socket(runtime, "llm_router"), refuse):
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["--runtime-dir", str(runtime), "llm"], out=out, err=err)
    assert code == status
    assert err.getvalue() == f"factoryctl: {message}\n"
    assert out.getvalue() == ""
