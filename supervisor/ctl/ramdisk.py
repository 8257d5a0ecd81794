"""Provision, inspect or tear down the workspace RAM disk (btrfs/XFS image in /dev/shm).

CLI:
    factoryctl ramdisk status [--name factory] [--json]
    factoryctl ramdisk create [--name N] [--size-mb 2048] [--fs btrfs|xfs] [--golden REPO]
    factoryctl ramdisk destroy [--name N] [--force]

Wire (socket <runtime_dir>/workspace_manager.sock):
    {"command": "ramdisk.create", "args": {"name", "size_mb", "fs", "golden"}}
    {"command": "ramdisk.status", "args": {"name"}}
    {"command": "ramdisk.destroy", "args": {"name", "force"}}

Destroy removes the RAM disk's workspaces first, then unmounts it; afterwards no mount
and no loop device remains. Without a running manager, use
`python3 -m procs.workspaces.ramdisk create|status|destroy` (same options).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

import orjson

from supervisor.ctl.exit_status import ExitStatus

HELP = "create, show or destroy the workspace RAM disk (workspace manager)"
ENDPOINT = "workspace_manager"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=("status", "create", "destroy"), nargs="?", default="status"
    )
    parser.add_argument("--name", help="RAM disk name (default: the manager's)")
    parser.add_argument("--size-mb", type=int, help="image size for create")
    parser.add_argument("--fs", choices=("btrfs", "xfs"), help="filesystem for create")
    parser.add_argument("--golden", help="git repo to import as the golden master")
    parser.add_argument("--force", action="store_true", help="destroy: detach busy mounts")
    parser.add_argument("--json", action="store_true", help="print the raw reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    wire: dict[str, Any] = {}
    if args.name:
        wire["name"] = args.name
    if args.action == "create":
        if args.size_mb is not None:
            wire["size_mb"] = args.size_mb
        if args.fs:
            wire["fs"] = args.fs
        if args.golden:
            wire["golden"] = os.path.abspath(args.golden)
    if args.action == "destroy":
        wire["force"] = args.force
    return f"ramdisk.{args.action}", wire


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def render(result: Any, args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), file=out)
        return ExitStatus.SUCCESS
    status = result["status"] if args.action == "destroy" else result
    if args.action == "destroy":
        for ws in result["destroyed"]:
            print(f"destroyed workspace {ws['id']} ({ws['path']})", file=out)
    state = "mounted" if status["mounted"] else "not mounted"
    print(f"ramdisk {status['name']}: {state} at {status['mountpoint']}", file=out)
    print(
        f"  image    {status['image']} ({'present' if status['image_exists'] else 'absent'})",
        file=out,
    )
    print(f"  loop     {', '.join(status['loop_devices']) or 'none'}", file=out)
    if status["mounted"]:
        print(f"  golden   {status['golden'] or 'none'}", file=out)
        print(
            f"  RAM used {_mib(status.get('ram_bytes'))} of {_mib(status.get('size_bytes'))}",
            file=out,
        )
    return ExitStatus.SUCCESS
