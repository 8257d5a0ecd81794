"""factoryctl's own errors, with no factoryd to talk to: a runtime dir it cannot reach,
a --timeout it cannot wait. Each is an exit status and words, never a traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus


@pytest.mark.integration  # connects AF_UNIX sockets
def test_factoryctl_explains_a_socket_it_cannot_reach(tmp_path: Path) -> None:
    """connect() errors other than ENOENT/ECONNREFUSED escaped as a traceback."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--runtime-dir", str(not_a_dir), "status"], out=out, err=err)
    assert code == ExitStatus.NOT_RUNNING
    assert "factoryd is not running" in err.getvalue()

    too_long = tmp_path / ("d" * 120)
    err = io.StringIO()
    code = cli.main(["--runtime-dir", str(too_long), "status"], out=out, err=err)
    assert code == ExitStatus.ERROR
    assert f"cannot connect to {too_long}" in err.getvalue()


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5", "soon"])
def test_factoryctl_refuses_a_timeout_it_cannot_wait(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--timeout nan / inf crashed in socket.settimeout with a traceback."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--timeout", value, "--runtime-dir", "/nonexistent", "status"])
    assert exit_.value.code == ExitStatus.USAGE
    assert "--timeout" in capsys.readouterr().err
