"""python -m procs.gauntlet --workspace WS --base REV [--stage NAME]... [--all] [--json]
                          [--config FACTORY_TOML] [--requirements TEXT | @FILE]

Judges the change from REV to WS's HEAD plus uncommitted work. Exit 0: pass, 1:
rejected, 2: usage or setup error (bad arguments, not a git work tree, unknown REV, a bad
config). --json prints one object:
    {"verdict": "pass"|"reject", "stages": [{"name", "verdict": "pass"|"reject"|"skipped",
     "reason", "findings": [{"class", "path", "line", "message"}], "duration_ms"}]}
Without --json, one line per stage and one per finding.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from pathlib import Path
from typing import TextIO

from procs.gauntlet._change import ChangeError
from procs.gauntlet._config import STAGE_NAMES, GauntletConfigError
from procs.gauntlet._model import GauntletResult, Verdict
from procs.gauntlet._runner import check_workspace


class ExitStatus(enum.IntEnum):
    PASS = 0
    REJECTED = 1
    USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m procs.gauntlet", description="Judge a change: pass or reject, and why."
    )
    parser.add_argument("--workspace", required=True, type=Path, help="a git work tree")
    parser.add_argument("--base", required=True, help="REV: the change is REV..HEAD + work")
    parser.add_argument(
        "--stage",
        action="append",
        default=[],
        choices=STAGE_NAMES,
        help="run only this stage (repeatable; default: all)",
    )
    parser.add_argument("--all", action="store_true", help="do not stop at the first reject")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--config", type=Path, help="the operator's TOML ([gauntlet] table)")
    parser.add_argument("--requirements", help="what the change must build (text or @FILE)")
    return parser


def render(result: GauntletResult, out: TextIO) -> None:
    for stage in result.stages:
        outcome = stage.outcome
        out.write(f"{stage.name:22} {outcome.verdict.value:8} {stage.duration_ms:8.0f} ms  "
                  f"{outcome.reason}\n")  # fmt: skip
        for finding in outcome.findings:
            out.write(f"    {finding.feedback()}\n")
    out.write(f"verdict: {result.verdict.value}\n")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr
         ) -> int:  # fmt: skip
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for usage, 0 for --help
        return int(exc.code or 0)
    requirements = args.requirements
    if requirements is not None and requirements.startswith("@"):
        try:
            requirements = Path(requirements[1:]).read_text()
        except OSError as exc:
            err.write(f"gauntlet: --requirements {args.requirements}: {exc}\n")
            return ExitStatus.USAGE
    try:
        result = check_workspace(args.workspace, args.base, config_file=args.config,
                                 stages=args.stage, run_all=args.all,
                                 requirements=requirements)  # fmt: skip
    except (ChangeError, GauntletConfigError, ValueError) as exc:
        err.write(f"gauntlet: {exc}\n")
        return ExitStatus.USAGE
    if args.json:
        out.write(json.dumps(result.to_dict()) + "\n")
    else:
        render(result, out)
    return ExitStatus.PASS if result.verdict is Verdict.PASS else ExitStatus.REJECTED


if __name__ == "__main__":
    raise SystemExit(main())
