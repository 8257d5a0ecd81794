"""How `factoryctl top` draws a Snapshot (supervisor/ctl/top_sources.py) with rich.

Pure: a Snapshot in, renderables out, no I/O. `sections` gives the panels by name;
`screen` lays them out to fit a terminal (80x24 shows every panel, cropping the
longest), `stacked` prints them one under the other in full (`--once`). Plain colours
only (the 8 standard ones, bold, dim), no box drawing beyond what rich's ASCII-safe
boxes give, so it reads the same over ssh in any terminal.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.table import Table
from rich.text import Text

from supervisor.ctl.render import duration, size
from supervisor.ctl.top_sources import Snapshot, Source, swarm_of

STATE_STYLES = {"running": "green", "starting": "yellow", "stopping": "yellow",
                "stopped": "dim", "failed": "red", "restarting": "yellow"}  # fmt: skip
RESOURCES = ("loop", "mutator", "workspace", "gpu", "ram")


def header(snap: Snapshot, *, interval_s: float) -> Text:
    """The top line: factoryd's pid and uptime, or that it is gone and we keep trying."""
    clock = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    if snap.factoryd.ok:
        d = snap.factoryd.data.get("daemon") or {}
        text = Text(f"factory top  {clock}  factoryd pid {d.get('pid')} "
                    f"up {duration(d.get('uptime_s'))}", style="bold")  # fmt: skip
        text.append("   q: quit", style="dim")
        return text
    if snap.factoryd_gone:
        return Text(f"{clock}  factoryd is gone: {snap.factoryd.error}; retrying every "
                    f"{interval_s:g}s (q quits)", style="bold red")  # fmt: skip
    return Text(f"{clock}  factoryd: {snap.factoryd.error}; retrying", style="bold yellow")


def _table(title: str, *columns: str, right: int = 0, grow: int = 0) -> Table:
    """A borderless table as wide as its region; its last `right` columns are numbers
    (right-justified), and column `grow` takes the spare width (cut with an ellipsis
    when there is too little)."""
    table = Table(title=title, title_justify="left", title_style="bold cyan", box=None,
                  padding=(0, 1, 0, 0), show_edge=False, expand=True,
                  header_style="bold")  # fmt: skip
    for i, col in enumerate(columns):
        justify: Literal["left", "right"] = "right" if i >= len(columns) - right else "left"
        table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis",
                         min_width=max(len(col), 3) if i >= len(columns) - right else None,
                         ratio=1 if i == grow else None)  # fmt: skip
    return table


def _failed(title: str, source: Source) -> Text:
    return Text.assemble((title + "\n", "bold cyan"), (f"unavailable: {source.error}", "red"))


def tree_panel(snap: Snapshot, max_rows: int | None = None) -> RenderableType:
    """The tree under factoryd, one row per node; past `max_rows`, the largest
    supervisors are folded into one row each, counting their workers by state."""
    if not snap.factoryd.ok:
        return _failed("TREE", snap.factoryd)
    table = _table("TREE", "ID", "STATE", "RSS", "CPU", "RST", right=3)
    root = snap.factoryd.data.get("tree") or {}
    folded: set[int] = set()  # id() of the folded supervisors' nodes
    rows = _walk(root, -1, folded)[1:]  # the root is factoryd itself: the header
    while max_rows is not None and len(rows) > max_rows:
        candidates = [n for _, n in rows if n.get("children") and id(n) not in folded]
        if not candidates:
            break
        folded.add(id(max(candidates, key=lambda n: len(_walk(n, 0, set())))))
        rows = _walk(root, -1, folded)[1:]
    for depth, node in rows:
        state = str(node.get("state", "?"))
        if id(node) in folded:
            workers = Counter(str(n.get("state")) for _, n in _walk(node, 0, set())
                              if n.get("type") == "worker")  # fmt: skip
            state = " ".join(f"{n} {s}" for s, n in sorted(workers.items())) or state
        cpu = f"{node['cpu_s']:.1f}s" if node.get("cpu_s") is not None else "-"
        table.add_row(" " * depth + str(node.get("id")), Text(state, _state_style(state)),
                      size(node.get("rss_bytes")), cpu, str(node.get("restarts", 0)))  # fmt: skip
    return table


def _state_style(state: str) -> str:
    if state in STATE_STYLES:
        return STATE_STYLES[state]
    words = set(state.split())  # a folded supervisor: "9 running 1 failed"
    return "green" if words <= {"running"} | {w for w in words if w.isdigit()} else "yellow"


def _walk(node: dict[str, Any], depth: int, folded: set[int]) -> list[tuple[int, dict[str, Any]]]:
    rows = [(depth, node)] if node else []
    if id(node) in folded:
        return rows
    for child in node.get("children") or []:
        rows += _walk(child, depth + 1, folded)
    return rows


def resources_panel(snap: Snapshot) -> RenderableType:
    if not snap.factoryd.ok:
        return _failed("RESOURCES", snap.factoryd)
    res = snap.factoryd.data.get("resources")
    if not isinstance(res, dict) or "resources" not in res:
        why = (res or {}).get("error") if isinstance(res, dict) else None
        return _failed("RESOURCES", Source(error=why or "no ledger (no resource governor)"))
    table = _table("RESOURCES", "NAME", "USED", "LIMIT", "WAIT", right=3)
    for name in RESOURCES:
        r = res["resources"].get(name)
        if r is None or "in_use" not in r:
            continue
        label = {"gpu": "gpu tickets", "ram": "ram MB", "loop": "loop slots",
                 "mutator": "mutator slots", "workspace": "workspaces"}.get(name, name)  # fmt: skip
        table.add_row(label, str(r["in_use"]), str(r["limit"]), str(r["waiting"]))
    return table


def golden_panel(snap: Snapshot) -> RenderableType:
    if not snap.golden.ok:
        return _failed("GOLDEN", snap.golden)
    g = snap.golden.data
    state = str(g.get("state", "?"))
    since = f" {duration(snap.taken_at - g['since'])}" if g.get("since") else ""
    style = {"green": "bold green", "red": "bold red"}.get(state, "yellow")
    return Text.assemble(("GOLDEN ", "bold cyan"), (state.upper(), style),
                         f"{since} {str(g.get('hash') or '-')[:8]} "
                         f"{g.get('move_count', 0)} moves")  # fmt: skip


def queue_panel(snap: Snapshot) -> RenderableType:
    if not snap.queue.ok:
        return _failed("QUEUE", snap.queue)
    q = snap.queue.data
    entries = q.get("entries") or []
    counts = q.get("counts") or {}
    text = Text.assemble(("QUEUE ", "bold cyan"),
                         f"{len(entries)} queued {counts.get('accepted', 0)} landed "
                         f"{counts.get('rejected', 0)} rejected")  # fmt: skip
    for e in entries[:3]:
        text.append(f"\n {e.get('position')}. {e.get('patch_id')} {e.get('build', '?')} "
                    f"{e.get('key') or e.get('title') or ''}")  # fmt: skip
    recent = (q.get("recent") or [])[:1]
    for r in recent:
        what = "landed" if r.get("state") == "accepted" else f"rejected: {r.get('reason')}"
        text.append(f"\n last: {r.get('patch_id')} {r.get('key') or ''} {what}", style="dim")
    return text


def swarm_panel(snap: Snapshot) -> RenderableType:
    if not snap.factoryd.ok:
        return _failed("SWARM", snap.factoryd)
    children = swarm_of(snap.factoryd.data.get("tree"))
    res = snap.factoryd.data.get("resources") or {}
    slots = ((res.get("resources") or {}).get("mutator") or {}) if isinstance(res, dict) else {}
    used = f"  slots {slots.get('in_use')}/{slots.get('limit')}" if slots else ""
    if not children:
        return Text.assemble(("SWARM ", "bold cyan"), f"no mutators{used}")
    running = sum(1 for c in children if c.get("state") == "running")
    text = Text.assemble(("SWARM ", "bold cyan"), f"{running}/{len(children)} mutators{used}")
    for c in children[:4]:
        text.append(f"\n {c.get('id')} {c.get('state')} {c.get('status_text') or ''}")
    return text


def loops_panel(snap: Snapshot) -> RenderableType:
    if not snap.loops.ok:
        return _failed("LOOPS", snap.loops)
    loops = list(reversed(snap.loops.data))  # newest first: the ones cropping keeps
    table = _table(
        "LOOPS", "BEAD", "PHASE", "IT", "GRN", "COM", "REV", "COST", "AGE", right=6, grow=1
    )
    for loop in loops:
        cost = _cost(loop.get("cost"), loop.get("tokens"))
        table.add_row(str(loop.get("bead")), str(loop.get("phase")),
                      *(_n(loop.get(k)) for k in ("iteration", "greens", "commits", "reverts")),
                      cost, duration(loop.get("age_s")))  # fmt: skip
    if not loops:
        table.add_row("(no loops yet)", "", "", "", "", "", "", "")
    return table


def _cost(cost: object, tokens: object) -> str:
    """Dollars where the loop has a price, else the tokens the gateway counted."""
    if isinstance(cost, int | float):
        return f"${float(cost):.2f}"
    if isinstance(tokens, int):
        return f"{tokens / 1000:.1f}k tok" if tokens >= 1000 else f"{tokens} tok"
    return "-"


def _n(value: object) -> str:
    return "-" if value is None else str(value)


def signals_panel(snap: Snapshot) -> RenderableType:
    if not snap.signals.ok:
        return _failed("SIGNALS", snap.signals)
    table = _table("SIGNALS", "TIME", "TYPE", "SOURCE", "FIELDS", grow=3)
    for ts, type_, source, fields in reversed(snap.signals.data):  # newest first
        brief = " ".join(f"{k}={_short(v)}" for k, v in list(fields.items())[:3])
        table.add_row(time.strftime("%H:%M:%S", time.localtime(ts)), type_, source[:16], brief)
    return table


def _short(value: object) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= 16 else text[:15] + "~"


def sections(snap: Snapshot, *, tree_rows: int | None = None) -> dict[str, RenderableType]:
    """Every panel by name, in the order `stacked` prints them; the tree folded to fit
    `tree_rows` rows."""
    return {
        "tree": tree_panel(snap, tree_rows),
        "resources": resources_panel(snap),
        "golden": golden_panel(snap),
        "queue": queue_panel(snap),
        "swarm": swarm_panel(snap),
        "loops": loops_panel(snap),
        "signals": signals_panel(snap),
    }


def stacked(snap: Snapshot, *, interval_s: float) -> Group:
    """The whole frame, one panel under the other, nothing cropped (`--once`)."""
    parts: list[RenderableType] = [header(snap, interval_s=interval_s)]
    for panel in sections(snap).values():
        parts += [Text(""), panel]
    return Group(*parts)


def screen(snap: Snapshot, *, height: int, interval_s: float) -> Layout:
    """The frame laid out for a `height`-line terminal: the tree and its resources at
    the top (tree left; resources, golden, queue and swarm right), loops and signals
    below. The tree folds its largest supervisors to fit; any other region crops what
    does not fit; at 24 lines every panel keeps its title and first rows."""
    bottom = max(4, (height - 1) // 4)  # the loops and signals regions, each
    upper = max(3, height - 1 - 2 * bottom)
    panels = sections(snap, tree_rows=upper - 2)  # less its title and header
    layout = Layout()
    layout.split_column(
        Layout(header(snap, interval_s=interval_s), size=1),
        Layout(name="upper", ratio=1),
        Layout(panels["loops"], size=bottom),
        Layout(panels["signals"], size=bottom),
    )
    right = Group(panels["resources"], panels["golden"], panels["queue"], panels["swarm"])
    layout["upper"].split_row(Layout(panels["tree"], ratio=23), Layout(right, ratio=17))
    return layout
