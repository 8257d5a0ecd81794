"""A mutator: one attempt at fixing a red golden commit (seed fs-302, fs-303).

    python3 -m procs.synapse.mutator --generation PATH --variant I
        [--runtime-dir DIR] [--state-dir DIR] [--slot-timeout-s 10] [--llm-timeout-s 120]
        [--decision-timeout-s 600]

A dynamic child of factoryd's `mutators` supervisor (simple_one_for_one, restart
temporary), started by the synapse with these arguments. In order, it:
  1. takes a mutator slot from the governor's ledger (none free in --slot-timeout-s:
     it exits);
  2. makes its own workspace (procs/synapse/workspace.py, owner: itself) at the
     failure's context hash;
  3. asks the router (`route`, the generation's role) for a surgical fix: the prompt
     of procs/synapse/prompt.py with its variant, so no two mutators ask the same;
  4. takes the reply only if it is one unified diff that touches no test, applies it,
     and runs the failing test file (a pytest command) and then the whole suite in the
     sandbox, each with the generation's timeout;
  5. green: commits the fix and proposes it to the merge queue in the generation's
     group, then waits for the decision (the first fix of a group to land wins).
Any step that fails ends it with exit 0 and a `gave_up` record naming the step: a
mutator that finds no fix is an outcome, never a crash. Records are JSON lines on
stderr (factoryd's log of the child).

SIGTERM (the synapse stopping the generation through factoryd, once a fix landed or
golden moved; fs-304) kills it at once, whatever it was doing: its sandboxed run dies
with its process group, the kernel gives its slot back (SEM_UNDO) and the workspace
manager reaps its workspace (it is the owner). `finally` gives both back on every
other way out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ipc import control, ledger, paths, service_report
from procs.synapse import git, workspace
from procs.synapse.generation import Generation
from procs.synapse.prompt import NotADiff, extract_diff, fix_request, touches_tests
from procs.synapse.trial import TrialUnavailable, failing_first, run_suite

NAME = "mutator"
ROUTER = "llm_router"
QUEUE = "merge_queue"
CALL_MARGIN_S = 5.0
WAIT_STEP_S = 30.0
QUEUE_WAIT_S = 30.0  # for a merge queue being restarted (SIGKILLed, or the tree restarting)


class GaveUp(Exception):
    """This mutator has no fix to offer; `step` says where it stopped."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


def report(event: str, **fields: Any) -> None:
    service_report.report(NAME, event, **fields)


def take_slot(runtime: Path, label: str, timeout_s: float
              ) -> tuple[ledger.TicketLedger, ledger.Ticket] | None:  # fmt: skip
    """A mutator slot, or None when no governor runs (no ledger: no limit)."""
    try:
        book = ledger.TicketLedger.open(runtime)
    except ledger.LedgerMissing:
        return None
    except (ledger.LedgerError, OSError) as exc:
        raise GaveUp("slot", f"the ledger: {exc}") from None
    try:
        return book, book.request_mutator_slot(label=label, timeout=timeout_s)
    except (ledger.ResourceError, ledger.LedgerError) as exc:
        book.close()
        raise GaveUp("slot", str(exc)) from None


def ask_for_fix(runtime: Path, gen: Generation, variant: int, timeout_s: float) -> str:
    request = fix_request(gen.failure, variant, gen.size)
    try:
        reply = control.call(paths.control_socket(runtime, ROUTER), "route",
                             {"role": gen.role, "timeout_s": timeout_s, "request": request},
                             timeout=timeout_s + CALL_MARGIN_S)  # fmt: skip
    except control.ControlError as exc:
        raise GaveUp("model", str(exc)) from None
    content = reply.get("content") if isinstance(reply, dict) else None
    if not isinstance(content, str):
        raise GaveUp("model", f"the router's reply has no content: {reply!r:.200}")
    try:
        diff = extract_diff(content)
    except NotADiff as exc:
        raise GaveUp("format", str(exc)) from None
    if touches_tests(diff):
        raise GaveUp("format", "the fix changes a test or the harness")
    return diff


def propose(runtime: Path, gen: Generation, variant: int, ws: Path, tip: str, *,
            decision_timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """Propose the fix in the generation's group; return the queue's decided entry (or
    the entry as it is at the timeout). A merge queue that is down (restarting) is
    waited for, QUEUE_WAIT_S at a time: a green fix given up then was the generation's
    only one, and golden stayed red (bench/chaos.py)."""
    queue = paths.control_socket(runtime, QUEUE)
    what = gen.failure.file or gen.failure.context_hash[:12]
    title = f"synapse fix of {what} (variant {variant})"
    try:
        control.await_answer(queue, timeout=QUEUE_WAIT_S)
        entry = control.call(queue, "propose", {
            "source": str(ws), "ref": tip, "base": gen.failure.context_hash, "priority": 0,
            "key": f"{gen.group}-{variant}", "group": gen.group, "title": title,
        }, timeout=120.0)  # fmt: skip
        report("proposed", generation=gen.id, variant=variant, patch_id=entry["patch_id"], tip=tip)
        deadline = time.monotonic() + decision_timeout_s
        while entry.get("state") == "queued" and time.monotonic() < deadline:
            step = min(WAIT_STEP_S, max(0.0, deadline - time.monotonic()))
            try:
                entry = control.call(queue, "wait",
                                     {"patch_id": entry["patch_id"], "timeout_s": step},
                                     timeout=step + CALL_MARGIN_S)  # fmt: skip
            except (control.DaemonNotRunning, control.PeerGone):  # restarting: it kept the entry
                control.await_answer(queue, timeout=QUEUE_WAIT_S)
    except control.ControlError as exc:
        raise GaveUp("propose", str(exc)) from None
    return dict(entry)


def attempt(runtime: Path, state: Path, gen: Generation, variant: int,
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    held = take_slot(runtime, f"mutator {gen.id}/{variant}", args.slot_timeout_s)
    lease: workspace.Lease | None = None
    try:
        try:
            lease = workspace.make(runtime, state, f"mutator-{gen.id}-{variant}",
                                   Path(gen.repo), os.getpid())  # fmt: skip
            git.checkout(lease.path, gen.failure.context_hash)
        except (workspace.WorkspaceUnavailable, git.GitFailed) as exc:
            raise GaveUp("workspace", str(exc)) from None
        report("asking", generation=gen.id, variant=variant, workspace=str(lease.path))
        diff = ask_for_fix(runtime, gen, variant, args.llm_timeout_s)
        try:
            git.apply(lease.path, diff)
        except git.GitFailed as exc:
            raise GaveUp("apply", str(exc)) from None
        first = failing_first(gen.test_command, lease.path, gen.failure.file)
        for step, command in (("failing", first), ("suite", gen.test_command)):
            if command is None:
                continue
            try:
                trial = run_suite(lease.path, command, timeout_s=gen.suite_timeout_s,
                                  mode=gen.sandbox)  # fmt: skip
            except TrialUnavailable as exc:
                raise GaveUp(step, str(exc)) from None
            if not trial.green:
                raise GaveUp(step, f"still red with the fix: {trial.output[-300:]}")
        try:
            message = f"synapse: fix {gen.failure.file or 'golden'} ({gen.id}, variant {variant})"
            tip = git.commit_all(lease.path, message)
        except git.GitFailed as exc:
            raise GaveUp("commit", str(exc)) from None
        return propose(
            runtime, gen, variant, lease.path, tip, decision_timeout_s=args.decision_timeout_s
        )
    finally:
        if lease is not None:
            try:
                workspace.free(runtime, lease)
            except workspace.WorkspaceUnavailable as exc:  # the manager reaps it at our exit
                report("workspace_not_freed", reason=str(exc))
        if held is not None:
            book, ticket = held
            book.release(ticket)
            book.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=NAME, description=__doc__.split("\n")[0])
    p.add_argument("--generation", type=Path, required=True, help="the generation's JSON")
    p.add_argument("--variant", type=int, required=True, help="0 .. size-1")
    p.add_argument("--runtime-dir", help="sockets, the ledger (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help="local workspaces when no manager runs")
    p.add_argument("--slot-timeout-s", type=float, default=10.0)
    p.add_argument("--llm-timeout-s", type=float, default=120.0)
    p.add_argument("--decision-timeout-s", type=float, default=600.0)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runtime, state = paths.runtime_dir(args.runtime_dir), paths.state_dir(args.state_dir)
    try:
        gen = Generation.read(args.generation)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report("start_failed", reason=f"--generation {args.generation}: {exc}")
        return 2
    if not 0 <= args.variant < gen.size:
        report("start_failed", reason=f"--variant must be 0..{gen.size - 1}")
        return 2
    started = time.monotonic()
    try:
        entry = attempt(runtime, state, gen, args.variant, args)
    except GaveUp as exc:
        ms = round((time.monotonic() - started) * 1000)
        report("gave_up", generation=gen.id, variant=args.variant, step=exc.step,
               reason=exc.reason[:500], duration_ms=ms)  # fmt: skip
        return 0
    report("decided", generation=gen.id, variant=args.variant, patch_id=entry.get("patch_id"),
           state=entry.get("state"), reason=entry.get("reason"),
           landed_hash=entry.get("landed_hash"),
           duration_ms=round((time.monotonic() - started) * 1000))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
