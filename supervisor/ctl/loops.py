"""List the factory's loops, or show one loop's history.

CLI:  factoryctl loops [--json]          one line per loop: loop id, bead, phase, iteration,
                                         greens, commits, reverts, cost, age, workspace
      factoryctl loops ID [--json]       that loop (or bead ID's newest loop), then its
                                         history: one line per transition
Wire: none; reads <state_dir>/loops.sqlite3 (written by every loop process through
      procs/loop/store.py, schema in ipc/loop_records.py) read-only. --json prints
      {"loops": [summary, ...]} or the one loop's summary with "history": [...]; a
      summary is {loop_id, bead, attempt, phase, iteration, greens, commits, reverts,
      cost (null: no prices yet), tokens, workspace, reason, created_at, updated_at,
      age_s, dispatch}. `tokens` is what the model gateway counted for the loop's bead
      (every attempt, every role; `usage` on <runtime_dir>/model_gateway.sock, one
      bounded call per bead), null when no gateway answers. `dispatch` is the
      dispatcher's record of the loop ({state, outcome, reason} from
      <state_dir>/dispatcher.sqlite3, read-only; null without one): a loop that died and
      was given up (failed past its resumes, its claim gone) stays in the phase it died
      in, so the table shows it as OUTCOME:PHASE (failed:implementing), not as running.

Exit status: 0; 5 (not found) for an unknown loop or bead id, or when there is no
loops database yet (no loop has run with this state dir).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from supervisor.ctl.exit_status import ExitStatus

if TYPE_CHECKING:
    from supervisor.ctl.cli import CtlContext

READS_STATE_DIR = True  # its databases: factoryctl finds them (cli._state_dir)
HELP = "list the loops (bead, phase, counters, workspace) or show one loop's history"
CONTENT_CHARS = 100  # of a history entry's content, in the table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", nargs="?", help="a loop id (or a bead id: its newest loop)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(ctx: CtlContext, args: argparse.Namespace) -> ExitStatus:
    from ipc import loop_records  # noqa: PLC0415 - only this command needs it

    try:
        reader = loop_records.LoopReader(loop_records.loops_path(ctx.state_dir))
    except loop_records.LoopRecordsError as exc:
        ctx.err.write(f"factoryctl: {exc}\n")
        return ExitStatus.NOT_FOUND
    with reader:
        if args.id is None:
            loops = reader.summaries()
            _add_tokens(loops, ctx)
            _add_dispatch(loops, ctx)
            if args.json:
                _json({"loops": loops}, ctx.out)
            else:
                render_table(loops, ctx.out)
            return ExitStatus.SUCCESS
        try:
            loop = reader.loop(args.id)
        except loop_records.UnknownLoop as exc:
            ctx.err.write(f"factoryctl: {exc.args[0]}\n")
            return ExitStatus.NOT_FOUND
    _add_tokens([loop], ctx)
    _add_dispatch([loop], ctx)
    if args.json:
        _json(loop, ctx.out)
    else:
        render_loop(loop, ctx.out)
    return ExitStatus.SUCCESS


def _add_tokens(loops: list[dict[str, Any]], ctx: CtlContext) -> None:
    """Each loop's bead's token count from the model gateway (None where it cannot say):
    the gateway is the one place every agent token is counted."""
    from ipc import control, paths  # noqa: PLC0415 - only this command needs them

    socket = paths.control_socket(ctx.runtime_dir, "model_gateway")
    counted: dict[str, int | None] = {}
    for loop in loops:
        bead = loop["bead"]
        if bead not in counted:
            try:
                usage = control.call(socket, "usage", {"bead": bead},
                                     timeout=min(ctx.timeout_s, 5.0))  # fmt: skip
                used = usage.get("used_tokens") if isinstance(usage, dict) else None
                counted[bead] = used if isinstance(used, int) else None
            except control.ControlError:
                counted[bead] = None
            if counted[bead] is None and not socket.exists():
                counted.update({other["bead"]: None for other in loops})  # no gateway: stop
        loop["tokens"] = counted[bead]


DISPATCH_DB = "dispatcher.sqlite3"  # procs/dispatcher/records.py's, read-only here
_TERMINAL = ("complete", "failed")


def _add_dispatch(loops: list[dict[str, Any]], ctx: CtlContext) -> None:
    """Each loop's dispatcher record, or None (no dispatcher database, or unreadable: the
    loops' own records are still shown)."""
    import sqlite3  # noqa: PLC0415 - only this command needs it

    path = ctx.state_dir / DISPATCH_DB
    records: dict[str, dict[str, str]] = {}
    if path.is_file():
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
            try:
                for loop_id, state, outcome, reason in db.execute(
                    "SELECT loop_id, state, outcome, reason FROM dispatches"
                ):
                    records[str(loop_id)] = {"state": str(state), "outcome": str(outcome),
                                             "reason": str(reason)}  # fmt: skip
            finally:
                db.close()
        except sqlite3.Error as exc:
            ctx.err.write(f"factoryctl: cannot read {path}: {exc}\n")
    for loop in loops:
        loop["dispatch"] = records.get(loop["loop_id"])


def _phase(loop: dict[str, Any]) -> str:
    """The loop's phase; OUTCOME:PHASE for one the dispatcher ended while it was not done."""
    dispatch = loop.get("dispatch") or {}
    if dispatch.get("state") == "ended" and loop["phase"] not in _TERMINAL:
        return f"{dispatch.get('outcome') or 'ended'}:{loop['phase']}"
    return str(loop["phase"])


def render_table(loops: list[dict[str, Any]], out: TextIO) -> None:
    if not loops:
        out.write("no loops\n")
        return
    rows = [("LOOP", "BEAD", "PHASE", "ITER", "GREENS", "COMMITS", "REVERTS", "COST", "AGE",
             "WORKSPACE")]  # fmt: skip
    rows += [
        (loop["loop_id"], loop["bead"], _phase(loop), _text(loop["iteration"]),
         _text(loop["greens"]), _text(loop["commits"]), _text(loop["reverts"]),
         _cost(loop["cost"], loop.get("tokens")), _age(loop["age_s"]), _text(loop["workspace"]))
        for loop in loops
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]) + "\n")


def render_loop(loop: dict[str, Any], out: TextIO) -> None:
    dispatch = loop.get("dispatch") or {}
    reason = loop.get("reason") or (dispatch.get("reason") if _phase(loop) != loop["phase"]
                                    else "")  # fmt: skip
    outcome = _phase(loop) + (f": {reason}" if reason else "")
    out.write(f"loop {loop['loop_id']}  bead {loop['bead']} (attempt {loop['attempt']})  "
              f"{outcome}\n")  # fmt: skip
    out.write(f"iteration {_text(loop['iteration'])}, greens {_text(loop['greens'])}, "
              f"commits {_text(loop['commits'])}, reverts {_text(loop['reverts'])}, "
              f"cost {_cost(loop['cost'], loop.get('tokens'))}, "
              f"age {_age(loop['age_s'])}\n")  # fmt: skip
    out.write(f"workspace {_text(loop['workspace'])}\n")
    for entry in loop["history"]:
        lines = entry["content"].strip().splitlines()
        first = lines[0][:CONTENT_CHARS] if lines else ""
        stamp = time.strftime("%H:%M:%S", time.localtime(entry["ts"]))
        out.write(f"{entry['seq']:4} {stamp} it{entry['iteration']:<3} {entry['role']:<11} "
                  f"{entry['event']:<20} {entry['from']} -> {entry['to']}  {first}\n")  # fmt: skip


def _json(document: Any, out: TextIO) -> None:
    out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _cost(value: object, tokens: object = None) -> str:
    """Dollars when priced, else the bead's tokens (1.2k tok), else "-"."""
    if value is not None:
        return f"${float(value):.2f}"  # type: ignore[arg-type]
    if isinstance(tokens, int):
        return f"{tokens / 1000:.1f}k tok" if tokens >= 1000 else f"{tokens} tok"
    return "-"


def _age(seconds: float) -> str:
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"
