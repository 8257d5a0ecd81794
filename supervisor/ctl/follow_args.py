"""The --follow / --for pair that every following factoryctl command takes."""

from __future__ import annotations

import argparse
import math


def add_follow_arguments(parser: argparse.ArgumentParser, what: str, *flags: str) -> None:
    """`--follow` (plus `flags`, e.g. "-f") keeps printing new `what`; `--for SECONDS`
    bounds it (args.for_s, math.inf by default)."""
    parser.add_argument(*flags, "--follow", action="store_true", help=f"keep printing new {what}")
    parser.add_argument(
        "--for",
        dest="for_s",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="with --follow: stop after this long (default: until interrupted)",
    )
