"""Show the supervision tree: id, state, pid, uptime, restarts, RSS, CPU.

CLI:  factoryctl status [--json]
Wire: {"command": "status", "args": {}}
   -> {"daemon": {pid, uptime_s, config, zygote, ...},
       "tree": {id, type: "supervisor", strategy, state, children: [...]}}
      a worker: {id, type: "worker", state, pid, uptime_s, restarts, last_exit,
                 rss_bytes, cpu_s, processes}   (RSS/CPU include its subprocesses)
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, size, write_json

HELP = "show the supervision tree"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "status", {}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
        return ExitStatus.SUCCESS
    d = result["daemon"]
    out.write(f"factoryd pid {d['pid']}  up {duration(d['uptime_s'])}  config {d['config']}\n")
    header = f"{'ID':<32} {'STATE':<8} {'PID':>7} {'UPTIME':>8} {'RESTARTS':>8} "
    out.write(header + f"{'RSS':>9} {'CPU':>7}  LAST EXIT\n")
    _rows(result["tree"], 0, out)
    return ExitStatus.SUCCESS


def _rows(node: dict[str, Any], depth: int, out: TextIO) -> None:
    name = "  " * depth + node["id"]
    if node["type"] == "supervisor":
        name += f" ({node['strategy']})"
    cpu = f"{node['cpu_s']:.2f}s" if node.get("cpu_s") is not None else "-"
    out.write(
        f"{name:<32} {node['state']:<8} {node.get('pid') or '-':>7} "
        f"{duration(node.get('uptime_s')):>8} {node.get('restarts', 0):>8} "
        f"{size(node.get('rss_bytes')):>9} {cpu:>7}  {node.get('last_exit') or ''}\n"
    )
    for child in node.get("children", []):
        _rows(child, depth + 1, out)
