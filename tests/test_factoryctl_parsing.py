"""factoryctl builds only the chosen command's parser and imports only what that command
needs; what it parses is what the full parser (`factoryctl -h`'s) parses."""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys

import pytest

from supervisor.ctl import cli
from supervisor.ctl.commands import COMMANDS, RunCommand
from tests.harness import ROOT

ACCEPTED = [
    ["status"],
    ["--runtime-dir", "/r", "status", "--json"],
    ["status", "--runtime-dir", "/r"],
    ["--timeout", "5", "--state-dir", "/s", "logs", "bus", "-n", "3", "-f", "--for", "2"],
    ["start", "pool", "--", "--flag", "b"],
    ["kill", "w", "--signal", "TERM"],
    ["workspaces"],
    ["workspaces", "create", "slug", "/src", "--owner-pid", "7", "--json"],
    ["ramdisk", "create", "--size-mb", "64", "--fs", "xfs"],
    ["signals", "--type", "LoopFailed", "--type", "TestPassing", "-n", "0"],
    ["llm", "--json"],
]
REFUSED = [
    [],
    ["bogus"],
    ["--timeout", "0", "status"],
    ["logs"],
    ["status", "--state-dir", "/s"],  # global options other than --runtime-dir go first
    ["kill", "w", "--bogus"],
    ["ramdisk", "explode"],
]


def parsed_by_both(argv: list[str]) -> tuple[object, object]:
    """What each parser makes of `argv`: a namespace's dict, or the exit code."""
    results: list[object] = []
    for parse in (cli.parse_command_line, cli.build_parser().parse_args):
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                results.append(vars(parse(argv)))
            except SystemExit as exc:
                results.append(("exit", exc.code))
    return results[0], results[1]


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_the_chosen_command_parses_as_the_full_parser_does(argv: list[str]) -> None:
    fast, full = parsed_by_both(argv)
    assert isinstance(fast, dict)
    assert fast == full


@pytest.mark.parametrize("argv", REFUSED, ids=" ".join)
def test_a_bad_command_line_is_refused_with_usage_status(argv: list[str]) -> None:
    assert parsed_by_both(argv) == (("exit", 2), ("exit", 2))


def test_help_before_the_command_lists_every_command() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        cli.parse_command_line(["-h"])
    assert exc.value.code == 0
    words = " ".join(out.getvalue().split())
    for name, module in COMMANDS.items():
        assert f"{name} {module.HELP}" in words


def test_every_command_is_a_request_or_a_run_command() -> None:
    """mypy checks the same statically (COMMANDS is a dict[str, CtlCommand])."""
    for name, module in COMMANDS.items():
        assert isinstance(module.HELP, str) and callable(module.add_arguments), name
        if isinstance(module, RunCommand):
            assert not hasattr(module, "request"), name
        else:
            assert callable(module.request) and callable(module.render), name
            assert isinstance(module.ENDPOINT, str), name
        assert module.__doc__ and "CLI:" in module.__doc__, name


@pytest.mark.integration  # a fresh interpreter as a process
def test_the_console_entry_does_not_import_the_signal_codec() -> None:
    """~25 ms of factoryctl's start-up: only `factoryctl signals` needs it."""
    code = (
        "import sys; from supervisor.ctl import cli; "
        "cli.parse_command_line(['status']); "
        "print(sorted(m for m in sys.modules if m.startswith(('ipc.signals', 'ipc.journal', "
        "'msgspec', 'psutil', 'ipc.ledger'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_parse_command_line_takes_the_global_options_first() -> None:
    args = cli.parse_command_line(["--timeout", "2.5", "status"])
    assert isinstance(args, argparse.Namespace)
    assert (args.command, args.timeout, args.runtime_dir) == ("status", 2.5, None)
