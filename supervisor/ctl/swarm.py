"""Show the synapse's swarms: each red golden commit, its culprit, its mutators, how it ended.

CLI:  factoryctl swarm [--json]
Wire (to synapse.sock): {"command": "status", "args": {}}
   -> {pid, known_good, counts {failures, generations, mutators, stopped, landed}, live,
       generations: [{id, group, state (bisecting|swarming|stopping|done), file, error,
       context_hash, suspects, culprit, bisect {rounds, runs, workers, ms, error}, size,
       children, ended, stop_ms, resumed}] (newest first), settings}
Exit status 1 while a generation is live (golden is red and the swarm is at work).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, write_json

HELP = "show the synapse's swarms: culprit, bisect rounds, mutators, how each ended"
ENDPOINT = "synapse"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "status", {}


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    status = ExitStatus.ERROR if result.get("live") else ExitStatus.SUCCESS
    if args.json:
        write_json(result, out)
        return status
    counts, settings = result.get("counts") or {}, result.get("settings") or {}
    good = str(result.get("known_good") or "-")[:12]
    out.write(f"synapse: swarm size {settings.get('swarm_size')}, "
              f"{settings.get('bisect_workers')} bisect workers, last green {good}\n")  # fmt: skip
    out.write(f"reds {counts.get('failures', 0)}  generations {counts.get('generations', 0)}  "
              f"mutators {counts.get('mutators', 0)}  stopped {counts.get('stopped', 0)}  "
              f"landed {counts.get('landed', 0)}\n")  # fmt: skip
    generations = result.get("generations") or []
    if not generations:
        out.write("no red golden seen\n")
    now = time.time()
    for gen in generations:
        bis = gen.get("bisect") or {}
        culprit = str(gen.get("culprit") or "unknown")[:12]
        age = duration(now - gen["started_at"]) if gen.get("started_at") else "-"
        red = str(gen.get("context_hash"))[:12]
        out.write(f"\n{gen.get('id')}  {str(gen.get('state')).upper()}  {age} ago  "
                  f"red {red}  {gen.get('file') or ''}\n")  # fmt: skip
        out.write(f"  culprit {culprit} of {gen.get('suspects')} suspects: "
                  f"{bis.get('rounds')} rounds, {bis.get('runs')} runs on "
                  f"{bis.get('workers')} workers, {bis.get('ms')} ms\n")  # fmt: skip
        if bis.get("error"):
            out.write(f"  bisect failed: {bis['error']}\n")
        children = gen.get("children") or []
        out.write(f"  mutators {len(children)}/{gen.get('size')}: {' '.join(children)}\n")
        if gen.get("resumed"):
            out.write(f"  taken up again by {gen['resumed']} restarted synapse(s)\n")
        if gen.get("ended"):
            stop = f" (stopped in {gen['stop_ms']} ms)" if gen.get("stop_ms") is not None else ""
            out.write(f"  ended: {gen['ended']}{stop}\n")
    return status
