"""Show the LLM router: circuit breakers per endpoint, today's usage per role, calls.

CLI:  factoryctl llm [--json]
Wire (to llm_router.sock): {"command": "status", "args": {}}
   -> {calls: {role: {...}}, breakers: {endpoint: {state, consecutive_failures, waiting,
       ...}}, usage_today: {role: {calls, input_tokens, output_tokens, cost_usd}},
       gpu_tickets_from}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import write_json

HELP = "show the LLM router's breakers and today's usage per role"
ENDPOINT = "llm_router"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "status", {}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
        return ExitStatus.SUCCESS
    out.write(f"{'ENDPOINT':<16} {'BREAKER':<10} {'FAILURES':>8} {'WAITING':>8}\n")
    for name, b in sorted(result.get("breakers", {}).items()):
        out.write(
            f"{name:<16} {b.get('state', '?'):<10} {b.get('consecutive_failures', 0):>8} "
            f"{b.get('waiting', 0):>8}\n"
        )
    out.write(f"\n{'ROLE':<14} {'CALLS':>6} {'TOKENS IN':>10} {'TOKENS OUT':>10} {'COST':>9}\n")
    for role, u in sorted(result.get("usage_today", {}).items()):
        out.write(
            f"{role:<14} {u['calls']:>6} {u['input_tokens']:>10} {u['output_tokens']:>10} "
            f"${u['cost_usd']:>8.4f}\n"
        )
    out.write(f"\nGPU tickets from: {result.get('gpu_tickets_from', '?')}\n")
    return ExitStatus.SUCCESS
