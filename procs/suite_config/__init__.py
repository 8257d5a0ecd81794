"""The project's test command, set in one place: `[loop] test_command` (and
`suite_timeout_s`) of loop.toml, which the loops run. The golden master and the merge
queue run the same suite; given `--config loop.toml` they read it from there, and their
own `--test-command` / `--suite-timeout-s` still override it.

    suite = resolve_suite(config=Path("/etc/factory/loop.toml"), test_command=None,
                          timeout_s=None, default_command="python3 -m pytest -q")
    suite.command, suite.timeout_s, suite.source     # ("python3", ...), 300.0, "loop.toml"

Raises SuiteConfigError naming the file, the key and what is wrong. Reads one file; no
other side effects.
"""

from __future__ import annotations

import argparse
import math
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 600.0


class SuiteConfigError(ValueError):
    """The test command or its timeout cannot be had; the message says where and why."""


@dataclass(frozen=True)
class Suite:
    """The suite to run: argv, wall-clock limit, and where each came from (operators read
    it in `status`)."""

    command: tuple[str, ...]
    timeout_s: float
    source: str
    sandbox: str | None = None  # [loop] sandbox when loop.toml sets it


def _table(config: Path) -> dict[str, Any]:
    try:
        table = tomllib.loads(config.read_text()).get("loop", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SuiteConfigError(f"--config {config}: {exc}") from None
    if not isinstance(table, dict):
        raise SuiteConfigError(f"{config}: [loop] must be a table")
    return table


def resolve_suite(
    *,
    config: Path | None,
    test_command: str | None,
    timeout_s: float | None,
    default_command: str | None,
) -> Suite:
    """The command and timeout: each flag given wins, else loop.toml's [loop] key, else
    the default (`default_command`, DEFAULT_TIMEOUT_S); a None `default_command` makes
    the command required. Also [loop] sandbox, when set (no flag here: the caller's)."""
    table = _table(config) if config is not None else {}
    where = f"{config}: [loop]" if config is not None else ""
    if test_command is not None:
        command, source = tuple(shlex.split(test_command)), "--test-command"
    elif "test_command" in table:
        raw = table["test_command"]
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise SuiteConfigError(f"{where} test_command must be a list of strings, got {raw!r}")
        command, source = tuple(raw), str(config)
    elif default_command is not None:
        command, source = tuple(shlex.split(default_command)), "default"
    else:
        raise SuiteConfigError("no test command: give --test-command, or --config with "
                               "[loop] test_command = [...]")  # fmt: skip
    if not command or not command[0]:
        raise SuiteConfigError(f"the test command ({source}) is empty")
    if timeout_s is None:
        raw_timeout = table.get("suite_timeout_s", DEFAULT_TIMEOUT_S)
        if isinstance(raw_timeout, bool) or not isinstance(raw_timeout, int | float):
            raise SuiteConfigError(f"{where} suite_timeout_s must be a number of seconds")
        timeout_s = float(raw_timeout)
    if not 0 < timeout_s < math.inf:
        raise SuiteConfigError(f"the suite timeout must be a finite number of seconds > 0, "
                               f"got {timeout_s}")  # fmt: skip
    mode = table.get("sandbox")
    if mode is not None and not isinstance(mode, str):
        raise SuiteConfigError(f"{where} sandbox must be a string, got {mode!r}")
    return Suite(command, timeout_s, source, mode)


def add_suite_arguments(parser: argparse.ArgumentParser, default_command: str) -> None:
    """--config, --test-command and --suite-timeout-s, as every suite runner takes them
    (read back with `suite_from_args`)."""
    parser.add_argument(
        "--config",
        type=Path,
        help="loop.toml: the suite is its [loop] test_command and suite_timeout_s",
    )
    parser.add_argument(
        "--test-command",
        help=f"the suite (shell words; overrides --config's; default {default_command!r})",
    )
    parser.add_argument("--suite-timeout-s", type=float, help="overrides --config's (default 600)")


def suite_from_args(args: argparse.Namespace, default_command: str) -> Suite:
    """The suite from the options `add_suite_arguments` added. Raises SuiteConfigError."""
    return resolve_suite(config=args.config, test_command=args.test_command,
                         timeout_s=args.suite_timeout_s,
                         default_command=default_command)  # fmt: skip
