"""Show the merge queue: its entries in order with their speculative builds, the last
decisions (rejections with their reason and output tail).

CLI:  factoryctl queue [--json]
Wire (to merge_queue.sock): {"command": "queue", "args": {}}
   -> {golden: {hash, state}, k, speculative_heads: [hash],
       entries: [{patch_id, position, priority, key, bead_id, title, tip, proposed_at,
                  build (waiting|built|testing|passed|failed|conflict|empty|landing),
                  spec: {base, tip, detail}}],
       recent: [{patch_id, state, reason, detail, landed_hash, decided_at, output_tail}],
       counts}
"""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.render import duration, write_json

HELP = "show the merge queue: entries, speculative heads, last decisions"
ENDPOINT = "merge_queue"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


def request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "queue", {}


def _short(value: Any) -> str:
    return str(value or "-")[:12]


def render(result: dict[str, Any], args: argparse.Namespace, out: TextIO) -> ExitStatus:
    if args.json:
        write_json(result, out)
        return ExitStatus.SUCCESS
    golden, now = result.get("golden") or {}, time.time()
    out.write(f"golden {_short(golden.get('hash'))} ({golden.get('state', '?')}), "
              f"K={result.get('k')}\n")  # fmt: skip
    entries = result.get("entries") or []
    out.write(f"\nQUEUE ({len(entries)})\n")
    for e in entries:
        spec = e.get("spec") or {}
        age = duration(now - e["proposed_at"]) if e.get("proposed_at") else "-"
        out.write(
            f"  {e['position']:>3} {e['patch_id']:<8} P{e.get('priority', '?')} "
            f"{e.get('build', '?'):<9} on {_short(spec.get('base'))} -> "
            f"{_short(spec.get('tip'))}  {age:>6}  {e.get('key') or e.get('title') or ''}\n"
        )
    heads = result.get("speculative_heads") or []
    out.write(f"\nSPECULATIVE HEADS: {' '.join(_short(h) for h in heads) or '-'}\n")
    recent = result.get("recent") or []
    out.write(f"\nRECENT ({len(recent)})\n")
    for r in recent:
        what = r["state"] if r["state"] == "accepted" else f"rejected: {r.get('reason')}"
        landed = f" as {_short(r.get('landed_hash'))}" if r.get("landed_hash") else ""
        out.write(f"  {r['patch_id']:<8} {what}{landed}  {r.get('detail') or ''}\n")
        tail = (r.get("output_tail") or "").strip().splitlines()[-3:]
        for line in tail if r["state"] == "rejected" else []:
            out.write(f"      | {line}\n")
    return ExitStatus.SUCCESS
