"""Show the supervision tree: id, state, pid, uptime, restarts, RSS, CPU.

CLI:  factoryctl status [--json]
Wire: {"command": "status", "args": {}}
   -> {"daemon": {pid, uptime_s, config, zygote, ...},
       "tree": {id, type: "supervisor", strategy, state, children: [...]}}
      a worker: {id, type: "worker", state, pid, uptime_s, restarts, last_exit, status_text,
                 rss_bytes, cpu_s, processes}   (RSS/CPU include its subprocesses)
      a worker's state: "running", "starting" (spawned, no READY=1 yet: factoryd answers
      status inside that wait) or "stopped"
       "resources": the resource ledger (ipc.ledger.snapshot) or null when none exists}
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, size, write_json

HELP = "show the supervision tree"
ENDPOINT = "factoryd"


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
    out.write(header + f"{'RSS':>9} {'CPU':>7}  STATUS / LAST EXIT\n")
    _rows(result["tree"], 0, out)
    _resources(result.get("resources"), out)
    sandbox = d.get("sandbox")
    if sandbox:
        mark = "" if sandbox["ok"] else "  <- NOT OK"
        out.write(f"\nsandbox: {sandbox['mode']}: {sandbox['detail']}{mark}\n")
    return ExitStatus.SUCCESS


def _resources(res: dict[str, Any] | None, out: TextIO) -> None:
    if res is None:
        out.write("\nresources: no ledger (the resource governor is not running)\n")
        return
    if "error" in res:
        out.write(f"\nresources: {res['error']}\n")
        return
    out.write(f"\n{'RESOURCE':<12} {'IN USE':>8} {'LIMIT':>8} {'FREE':>8} {'WAITING':>8} "
              f"{'EXHAUSTED':>9}\n")  # fmt: skip
    for name, r in res["resources"].items():
        if "in_use" not in r:  # free_ram: a threshold, not a pool
            out.write(f"{name:<12} {'-':>8} {r['limit']:>8} {'-':>8} {'-':>8} "
                      f"{r['exhausted']:>9}\n")  # fmt: skip
            continue
        out.write(
            f"{name:<12} {r['in_use']:>8} {r['limit']:>8} {r['available']:>8} "
            f"{r['waiting']:>8} {r['exhausted']:>9}\n"
        )
    holders = res.get("holders", [])
    if holders:
        out.write(f"holders: {len(holders)} ({res.get('stale', 0)} stale)\n")
        for h in holders:  # each reservation and who holds it (a loop's agent RAM, a slot)
            held = ", ".join(f"{k} {v} MB" if k == "ram" else f"{k} {v}"
                             for k, v in sorted(h.get("resources", {}).items()))  # fmt: skip
            stale = "" if h.get("alive", True) else "  (stale: holder gone)"
            out.write(f"  pid {h.get('pid')} {h.get('label') or '-'}: {held}{stale}\n")


def _note(node: dict[str, Any]) -> str:
    """The child's own STATUS= text while it runs, else how it last ended."""
    if node.get("status_text"):
        return str(node["status_text"])
    return f"last: {node['last_exit']}" if node.get("last_exit") else ""


def _rows(node: dict[str, Any], depth: int, out: TextIO) -> None:
    name = "  " * depth + node["id"]
    if node["type"] == "supervisor":
        name += f" ({node['strategy']})"
    cpu = f"{node['cpu_s']:.2f}s" if node.get("cpu_s") is not None else "-"
    out.write(
        f"{name:<32} {node['state']:<8} {node.get('pid') or '-':>7} "
        f"{duration(node.get('uptime_s')):>8} {node.get('restarts', 0):>8} "
        f"{size(node.get('rss_bytes')):>9} {cpu:>7}  {_note(node)}\n"
    )
    for child in node.get("children", []):
        _rows(child, depth + 1, out)
