"""List, create and destroy workspaces, through the workspace manager's control socket.

CLI:
    factoryctl workspaces [list] [--json]
    factoryctl workspaces create SLUG SOURCE [--strategy auto] [--owner-pid PID] [--json]
    factoryctl workspaces destroy ID
    factoryctl workspaces reap            (deal with workspaces whose owner died, now)
    factoryctl workspaces choose SOURCE [--strategy S]   (which strategy, and why)

Wire (socket <runtime_dir>/workspace_manager.sock):
    {"command": "workspaces.list", "args": {}}
    {"command": "workspaces.create", "args": {"slug", "source", "strategy", "owner_pid"}}
    {"command": "workspaces.destroy", "args": {"id": "0123456789ab"}}
    {"command": "workspaces.reap", "args": {}}
    {"command": "workspaces.choose", "args": {"source", "strategy"}}

A workspace made here belongs to the shell that ran factoryctl (its parent pid) unless
--owner-pid says otherwise: when that process exits, the manager reaps the workspace.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, TextIO

import orjson

from supervisor.ctl.exit_status import ExitStatus

HELP = "list, create or destroy isolated workspaces (workspace manager)"
ENDPOINT = "workspace_manager"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the raw reply as JSON")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(action="list")
    actions = {
        "list": "list workspaces (the default)",
        "create": "create a workspace",
        "destroy": "destroy a workspace",
        "reap": "reap workspaces whose owner died",
        "choose": "say which strategy a create would use, and why",
    }
    subs = {name: sub.add_parser(name, help=text) for name, text in actions.items()}
    for p in subs.values():
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    subs["create"].add_argument("slug")
    subs["create"].add_argument("source", help="absolute path of the golden master (git repo)")
    subs["create"].add_argument("--strategy", default=None, help="auto (default) or a name")
    subs["create"].add_argument(
        "--owner-pid", type=int, default=None, help="whose exit frees it (default: parent)"
    )
    subs["destroy"].add_argument("id")
    subs["choose"].add_argument("source")
    subs["choose"].add_argument("--strategy", default=None)


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.action == "create":
        owner = args.owner_pid if args.owner_pid is not None else os.getppid()
        wire = {"slug": args.slug, "source": args.source, "owner_pid": owner}
        if args.strategy:
            wire["strategy"] = args.strategy
        return "workspaces.create", wire
    if args.action == "destroy":
        return "workspaces.destroy", {"id": args.id}
    if args.action == "choose":
        wire = {"source": args.source}
        if args.strategy:
            wire["strategy"] = args.strategy
        return "workspaces.choose", wire
    return f"workspaces.{args.action}", {}


def _age(created_at: float) -> str:
    seconds = max(0, int(time.time() - created_at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_table(workspaces: list[dict[str, Any]], out: TextIO) -> None:
    if not workspaces:
        print("no workspaces", file=out)
        return
    rows = [("ID", "SLUG", "STRATEGY", "OWNER", "STATE", "AGE", "PATH")]
    rows += [
        (
            w["id"],
            w["slug"],
            w["strategy"],
            str(w["owner_pid"]),
            w["state"],
            _age(w["created_at"]),
            w["path"],
        )
        for w in workspaces
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1], file=out
        )


def render(result: Any, args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), file=out)
        return ExitStatus.SUCCESS
    if args.action == "list":
        render_table(result["workspaces"], out)
        if (result.get("slots") or {}).get("ledger"):  # the governor's ledger: slots in use
            print(f"workspace slots: {result['slots']['summary']}", file=out)
    elif args.action == "create":
        ws, choice = result["workspace"], result["choice"]
        print(f"{ws['id']}  {ws['path']}", file=out)
        print(f"strategy {choice['strategy']}: {choice['reason']}", file=out)
    elif args.action == "destroy":
        print(f"destroyed {result['workspace']['id']} ({result['workspace']['path']})", file=out)
    elif args.action == "reap":
        for r in result["reports"]:
            print(f"{r['action']:8} {r['id']}  {r['path']}  ({r['reason']})", file=out)
        if not result["reports"]:
            print("no orphans", file=out)
    else:
        print(f"{result['strategy']}: {result['reason']}", file=out)
        for skipped in result["skipped"]:
            print(f"  not {skipped['strategy']}: {skipped['reason']}", file=out)
    return ExitStatus.SUCCESS
