"""The loop process: one bead's loop under factoryd, a dynamic child of the `loops`
simple_one_for_one supervisor (restart = "transient", ready = "notify").

    factoryctl start loops -- --bead bd-7 [--beads FILE] [--attempt N] [--loop-id ID]

with the template's args naming what every loop shares: --repo GOLDEN (the golden
repository: the workspace's source, and where a fast-forward lands), --config
loop.toml (its [loop] table, as the one-shot runner reads it), --beads FILE (a beads
JSONL export). The other options:
--branch (default: golden's checked-out branch), --slot-timeout-s, --workspaces
{auto,manager,clone}, --workspace-strategy, --lander {auto,merge_queue,fast_forward}
(auto: the merge queue when one answers at start), --agent-turns MODULE:FACTORY,
--runtime-dir and --state-dir (default: what factoryd sets). It does the work of `python -m
procs.loop run` (cli.py), supervised:

Start, before READY=1 (so a failure is a failed start, which `factoryctl start` and the
dispatcher's start request report at once, naming it in the child's log):
 1. the inputs: the config, the golden repo (on a branch), the bead and its text, the
    sandbox, the agent command, the model endpoint, the LLM router when the reviewer
    goes through it ([loop] reviewer = "router", the default), and with a metered
    [loop.model] (the default when it is set) factoryd's model gateway: it must answer
    on `<runtime>/model_gateway.sock` and send [loop.model]'s kind to its base_url. No
    gateway is a failed start: a loop never runs its agents uncounted unless the
    operator said so ([loop.model] metered = false: they call base_url directly).
    Bad: exit 2, naming which.
 2. a loop slot from the governor's ledger (`request_loop_slot`), waiting at most
    --slot-timeout-s; none free: exit 75 (EX_TEMPFAIL) with the ledger's words. Taken
    with SEM_UNDO, so the kernel gives it back however this process ends. Without a
    governor (no ledger) loops are unlimited, and the ready record says so.
 3. the loop store, <state_dir>/loops.sqlite3, one file for every loop (LoopStore).
 4. the workspace: a restart finds the one the store recorded; a new loop finds or
    makes one through the workspace manager, else clones golden (workspace.py, which
    says why a SIGKILLed loop gets its own workspace back and not a reaped one).
 5. with a metered [loop.model], a token from the gateway for the bead and this loop,
    with [loop] budget_tokens (procs/loop/metering.py); the gateway not answering now
    is a crash (exit 1: restarted).
Then READY=1 and LoopDriver runs the loop with the bus as its publisher (LoopSpawned,
LoopComplete, LoopFailed), STATUS= naming the phase at every transition. Resume: the
driver resets the workspace to the stored phase's starting commit and goes on, so a
crash or SIGKILL in any phase costs that phase's work, never a commit or a history
entry. At Complete or Failed the workspace is freed and the process exits 0.

The agents: one kept agent per loop (procs.loop.kept_agent:from_config, or the factory
--agent-turns names, called as f(config, ledger) and, with [loop.model], also
model=AgentModel: the gateway's URL and the loop's token, or base_url when unmetered),
closed at the loop's end (then the token is revoked). With metering every turn is
attributed to its role and a bead over its budget fails with the gateway's reason.

Exit status: 0 the loop ended (Complete or Failed: transient, not restarted); 1 a crash
(restarted by the supervisor: it resumes); 2 bad input; 75 no loop slot in time;
128+N stopped by signal N (SIGTERM, SIGINT).

Why not the service base (ipc.service): this process serves no calls, and its work is
one blocking driver. SIGTERM goes to the whole process group, so the agent and the test
run die with it; if the driver went on, their deaths would be recorded as a failed turn
or a red suite. So the driver runs in the main thread and SIGTERM raises Stopped there,
before any code that could record what the signal broke: the stop is a crash that the
next start resumes from (the store holds the last whole transition).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import httpx

from ipc import control, ledger, paths, service_report
from ipc.bus import BusError, BusTimeout, Publisher
from ipc.sd_notify import Notifier
from ipc.signals import LoopComplete, LoopFailed, Signal, SignalTooLarge
from procs import sandbox
from procs.gauntlet import GauntletConfig, LoopGauntlet
from procs.loop import git, kept_agent, peers
from procs.loop import workspace as workspaces
from procs.loop.agent_service import AgentModel
from procs.loop.bead_text import BeadNotFound, read_bead
from procs.loop.config import LoopConfigError, RunnerConfig, load_config
from procs.loop.driver import LoopConfig, LoopDriver
from procs.loop.events import Aborted, LoopEvent
from procs.loop.lander import FastForwardLander, Lander, MergeQueueLander
from procs.loop.metering import ENDPOINT as GATEWAY_ENDPOINT
from procs.loop.metering import GatewayUnavailable, Meter, MeteredTurns
from procs.loop.reviewer import ROUTER_ENDPOINT, RoutedReviewer, router_answers
from procs.loop.state import FactoryLoopState, FactoryPhase
from procs.loop.store import LoopNotFound, LoopStore, state_path
from procs.loop.turns import AgentTurns

SERVICE = "loop"
EXIT_ENDED, EXIT_CRASH, EXIT_BAD_INPUT, EXIT_NO_SLOT = 0, 1, 2, 75
LANDERS = ("auto", "merge_queue", "fast_forward")
MERGE_QUEUE_ENDPOINT = "merge_queue"
MODEL_PROBE_TIMEOUT_S = 5.0
BUS_CONNECT_TIMEOUT_S = 2.0
PUBLISH_TIMEOUT_S = 1.0
LABEL_BYTES = 31  # the ledger table's label field

TurnsFactory = Callable[..., AgentTurns]  # f(config, ledger[, model=AgentModel])


class BadInput(ValueError):
    """An input the loop refuses before it changes anything; the message says which."""


class Stopped(BaseException):
    """SIGTERM or SIGINT: raised in the main thread by the handler (see the module doc)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def report(event: str, **fields: Any) -> None:
    service_report.report(SERVICE, event, **fields)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="procs.loop.service", description=__doc__.split("\n")[0])
    p.add_argument("--bead", required=True, help="the bead this loop turns into commits")
    p.add_argument("--beads", type=Path, required=True, help="beads JSONL file with the bead")
    p.add_argument("--repo", type=Path, required=True, help="the golden repository")
    p.add_argument("--branch", help="golden's branch to land on (default: its HEAD's)")
    p.add_argument("--config", type=Path, help="TOML file with the [loop] table")
    p.add_argument("--attempt", type=int, default=1, help="this bead's attempt (default 1)")
    p.add_argument("--loop-id", help="the loop's id (default: BEAD.ATTEMPT)")
    p.add_argument("--runtime-dir", help="sockets, the ledger (FACTORY_RUNTIME_DIR)")
    p.add_argument("--state-dir", help="loops.sqlite3, clones (FACTORY_STATE_DIR)")
    p.add_argument("--slot-timeout-s", type=_seconds, default=60.0,
                   help="how long to wait for a loop slot (default 60; inf: ever)")  # fmt: skip
    p.add_argument("--workspaces", choices=("auto", "manager", "clone"), default="auto",
                   help="auto: the workspace manager when it runs, else a clone")  # fmt: skip
    p.add_argument("--workspace-strategy", help="the manager's strategy (default: its own)")
    p.add_argument("--lander", choices=LANDERS, default="auto",
                   help="merge_queue: propose to the merge queue (the golden master stays "
                        "golden's only writer); fast_forward: move --repo's branch itself "
                        "(no golden master); auto: the queue if one answers at start")  # fmt: skip
    p.add_argument("--agent-turns", metavar="MODULE:FACTORY",
                   help="AgentTurns factory, called as f(config, ledger) and, with [loop.model], "
                   "model=AgentModel (default: procs.loop.kept_agent:from_config, one kept "
                   "[loop] agent per loop)")  # fmt: skip
    return p


@dataclass
class _Plan:
    """The checked inputs."""

    args: argparse.Namespace
    config: RunnerConfig
    requirements: str
    golden: Path
    branch: str
    loop_id: str
    runtime: Path
    state_dir: Path
    turns_factory: TurnsFactory
    lander: str  # "merge_queue" or "fast_forward" (--lander auto resolved at start)


def main(argv: list[str]) -> int:
    """The target: run one loop to its end (or to a stop); returns the exit status."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _main(argv)
    except Stopped as stop:
        report("stopped", signal=str(stop))
        return 128 + stop.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_stopped(signum: int, _frame: FrameType | None) -> NoReturn:
    raise Stopped(signum)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = _check(args)
    except BadInput as exc:
        report("bad_input", reason=str(exc))
        return EXIT_BAD_INPUT
    with _own_tmp(paths.loop_tmp(plan.state_dir, plan.loop_id)):
        return _started(plan, args)


@contextlib.contextmanager
def _own_tmp(path: Path) -> Iterator[None]:
    """This process's temp files (tempfile: the gauntlet's scratch trees) go in `path`,
    made fresh (a SIGKILLed predecessor's leftovers go) and removed however the loop
    ends. One that cannot be made leaves tempfile's default, reported."""
    try:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    except OSError as exc:
        report("loop_tmp_unavailable", path=str(path), reason=str(exc))
        yield
        return
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = None
        shutil.rmtree(path, ignore_errors=True)


def _started(plan: _Plan, args: argparse.Namespace) -> int:
    ticket_ledger = _open_ledger(plan.runtime)
    if ticket_ledger is not None:
        label = f"loop {plan.loop_id}".encode()[:LABEL_BYTES].decode(errors="ignore")
        try:
            ticket_ledger.request_loop_slot(label=label, timeout=args.slot_timeout_s)
        except ledger.ResourceError as exc:
            report("no_loop_slot", loop_id=plan.loop_id, reason=str(exc),
                   waited_s=args.slot_timeout_s)  # fmt: skip
            return EXIT_NO_SLOT
    notifier = Notifier()
    store = _ReportingStore(state_path(plan.state_dir), notifier)
    try:
        via = _workspace_source(plan)
        try:
            state, lease = _state_waiting(plan, store, via)
        except BadInput as exc:
            report("bad_input", reason=str(exc))
            return EXIT_BAD_INPUT
        except workspaces.WorkspaceUnavailable as exc:
            report("no_workspace", loop_id=plan.loop_id, reason=str(exc))
            return EXIT_CRASH
        slots = "unlimited (no governor)" if ticket_ledger is None else "1 loop slot held"
        with contextlib.ExitStack() as stack:  # the agents (and the token) end with the loop
            try:
                turns = _agent_turns(plan, ticket_ledger, stack)
            except GatewayUnavailable as exc:
                report("no_gateway_token", loop_id=plan.loop_id, reason=str(exc))
                return EXIT_CRASH
            if plan.config.reviewer == "router":  # the reviewer is a router call, not an agent
                turns = RoutedReviewer(turns, plan.runtime / ROUTER_ENDPOINT,
                                       timeout_s=plan.config.turn_timeout_s)  # fmt: skip
            return _run(plan, store, turns=turns, state=state, lease=lease, via=via,
                        slots=slots)  # fmt: skip
    finally:
        store.close()
        notifier.close()


def _agent_turns(plan: _Plan, held: ledger.TicketLedger | None,
                 stack: contextlib.ExitStack) -> AgentTurns:  # fmt: skip
    """The factory's AgentTurns, handed the agents' model (metered: a token from the
    gateway, wrapped in MeteredTurns); closed by `stack`. Raises GatewayUnavailable."""
    config, model_config = plan.config, plan.config.model
    if model_config is None:
        return _closed_by(stack, plan.turns_factory(config, held))
    if not model_config.metered:
        model = AgentModel(model_config.base_url, model_config.name, config.agent_api)
        return _closed_by(stack, plan.turns_factory(config, held, model=model))
    meter = Meter(plan.runtime / f"{GATEWAY_ENDPOINT}.sock")
    grant = meter.open(plan.args.bead, plan.loop_id, config.budget_tokens)
    model = AgentModel(grant.base_url(config.agent_api), model_config.name, config.agent_api,
                       grant.token)  # fmt: skip
    try:
        inner = plan.turns_factory(config, held, model=model)
    except BaseException:
        with contextlib.suppress(GatewayUnavailable):
            meter.call("revoke", {"token": grant.token})
        raise
    return stack.enter_context(MeteredTurns(inner, meter, grant))


def _closed_by(stack: contextlib.ExitStack, turns: AgentTurns) -> AgentTurns:
    close = getattr(turns, "close", None)
    if callable(close):
        stack.callback(close)
    return turns


def _run(plan: _Plan, store: LoopStore, *, turns: AgentTurns, state: FactoryLoopState,
         lease: workspaces.LoopWorkspace | None, via: workspaces.WorkspaceSource,
         slots: str) -> int:  # fmt: skip
    publisher = _publisher(plan)
    try:
        service_report.ready(
            SERVICE, f"{state.phase.value} (iteration {state.iteration})", loop_id=plan.loop_id,
            bead=plan.args.bead, workspace=state.workspace, phase=state.phase.value,
            loop_slots=slots, bus=publisher is not None, lander=plan.lander,
        )  # fmt: skip
        publish = _publish_to(publisher) if publisher is not None else None
        if lease is None:  # gone while the loop was down: nothing to resume in
            final = _ended_without_workspace(store, state, publish)
        else:
            driver = LoopDriver(
                store, turns, _loop_config(plan), _lander(plan), gauntlet=_gauntlet(plan),
                clock=time.time, publish=publish,
            )  # fmt: skip
            final = driver.run(state)
        report("ended", loop_id=final.loop_id, phase=final.phase.value, reason=final.reason,
               greens=final.greens, commits=final.commits, reverts=final.reverts)  # fmt: skip
        if lease is not None:
            try:
                workspaces.free(lease, via)
            except workspaces.WorkspaceUnavailable as exc:
                report("workspace_not_freed", path=str(lease.path), reason=str(exc))
        return EXIT_ENDED
    finally:
        if publisher is not None:
            publisher.close()


def _ended_without_workspace(
    store: LoopStore, state: FactoryLoopState, publish: Callable[[Signal], None] | None
) -> FactoryLoopState:
    """A loop whose workspace is gone: Failed with that reason unless it had ended (its
    workspace freed, then killed before it exited); its end is published again, as the
    driver does for an ended loop (signals only say "look")."""
    if not state.phase.terminal:
        why = (f"its workspace {state.workspace} is gone (removed while the loop was down); "
               "a new attempt starts from golden")  # fmt: skip
        state = store.advance(state, Aborted(why), time.time())
    if publish is not None:
        if state.phase is FactoryPhase.COMPLETE:
            duration_ms = max(0, round((time.time() - store.created_at(state.loop_id)) * 1000))
            publish(LoopComplete(commits=state.commits, reverts=state.reverts,
                                 duration_ms=duration_ms, loop_id=state.loop_id))  # fmt: skip
        else:
            publish(LoopFailed(loop_id=state.loop_id, reason=state.reason))
    return state


def _state_waiting(
    plan: _Plan, store: LoopStore, via: workspaces.WorkspaceSource
) -> tuple[FactoryLoopState, workspaces.LoopWorkspace | None]:
    """_state once the workspace manager and golden answer, and once more when the
    manager went down mid-call (killed between the wait and the call: bench/chaos.py).
    _state is safe to repeat: a workspace made by a call whose reply was lost is found
    again by its slug."""
    _await_workspace_peers(via)
    try:
        return _state(plan, store, via)
    except workspaces.WorkspaceUnavailable:
        if via.manager_socket is None:
            raise
        _await_workspace_peers(via)
        return _state(plan, store, via)


def _state(
    plan: _Plan, store: LoopStore, via: workspaces.WorkspaceSource
) -> tuple[FactoryLoopState, workspaces.LoopWorkspace | None]:
    """The stored loop and its workspace (None when it is gone), or a new loop in a new
    workspace. A loop id stored for another bead is bad input."""
    try:
        stored = store.load(plan.loop_id)
    except LoopNotFound:
        stored = None
    if stored is not None:
        if (stored.bead_id, stored.attempt) != (plan.args.bead, plan.args.attempt):
            raise BadInput(f"loop {plan.loop_id} is stored for bead {stored.bead_id} attempt "
                           f"{stored.attempt}")  # fmt: skip
        return stored, workspaces.find(Path(stored.workspace), via)
    lease = workspaces.find_or_make(plan.golden, plan.branch, plan.loop_id, via)
    state = FactoryLoopState(
        loop_id=plan.loop_id, bead_id=plan.args.bead, attempt=plan.args.attempt,
        workspace=str(lease.path), golden_hash=git.head(lease.path), limits=plan.config.limits,
    )  # fmt: skip
    return store.create(state, time.time()), lease


class _ReportingStore(LoopStore):
    """The store, telling factoryd (STATUS=) and the log each transition it persisted."""

    def __init__(self, path: Path, notifier: Notifier) -> None:
        super().__init__(path)
        self.notifier = notifier

    def advance(self, state: FactoryLoopState, event: LoopEvent, now: float) -> FactoryLoopState:
        new = super().advance(state, event, now)
        self.notifier.status(f"{new.phase.value} (iteration {new.iteration}, greens "
                             f"{new.greens}, commits {new.commits})")  # fmt: skip
        report("transition", loop_id=new.loop_id, seq=new.seq, on=type(event).__name__,
               phase=new.phase.value)  # fmt: skip
        return new


# -- inputs ----------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> _Plan:
    if args.attempt < 1:
        raise BadInput(f"--attempt must be >= 1, got {args.attempt}")
    try:
        config = load_config(args.config)
    except LoopConfigError as exc:
        raise BadInput(str(exc)) from None
    golden = args.repo.resolve()
    try:
        if args.branch:
            branch = args.branch
            git.resolve(golden, f"refs/heads/{branch}")
        else:
            ref = git.git(golden, "symbolic-ref", "-q", "HEAD").strip()
            branch = ref.removeprefix("refs/heads/")
    except git.GitError as exc:
        raise BadInput(f"repo {golden} is not a usable git repository on a branch: {exc}") from None
    try:
        bead = read_bead(args.beads, args.bead)
    except (OSError, ValueError, BeadNotFound) as exc:
        raise BadInput(str(exc)) from None
    if not bead.requirements.strip():
        raise BadInput(f"bead {args.bead} has no title or description to work from")
    if config.sandbox == "bwrap":
        try:
            sandbox.usable_bwrap()
        except sandbox.SandboxUnavailable as exc:
            raise BadInput(str(exc)) from None
    if not args.agent_turns and shutil.which(config.agent_command[0]) is None:
        raise BadInput(f"agent command {config.agent_command[0]!r} is not on PATH")
    runtime = paths.runtime_dir(args.runtime_dir)
    if config.model is not None:
        _check_model(config, runtime, agent_turns=args.agent_turns)
    if config.reviewer == "router" and (why := router_answers(runtime / ROUTER_ENDPOINT)):
        raise BadInput(f'{why}; run the llm_router in the tree, or set [loop] reviewer = "agent"')
    return _Plan(
        args=args, config=config, requirements=bead.requirements, golden=golden, branch=branch,
        loop_id=args.loop_id or f"{args.bead}.{args.attempt}",
        runtime=runtime, state_dir=paths.state_dir(args.state_dir),
        turns_factory=_turns_factory(args.agent_turns), lander=_choose_lander(args, runtime),
    )  # fmt: skip


def _check_model(config: RunnerConfig, runtime: Path, *, agent_turns: str | None) -> None:
    """[loop.model]: the agent can be configured for it, it answers, and (metered) the
    gateway answers and serves it. Raises BadInput naming the fix."""
    model = config.model
    assert model is not None  # its kind serves the agent's protocol: checked with the config
    try:
        httpx.get(f"{model.base_url.rstrip('/')}/models", timeout=MODEL_PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise BadInput(f"the model endpoint {model.base_url} does not answer: {exc}") from None
    if model.metered:
        try:
            Meter(runtime / f"{GATEWAY_ENDPOINT}.sock").check(model.kind, model.base_url)
        except GatewayUnavailable as exc:
            raise BadInput(f"{exc}; run factoryd's model_gateway serving [loop.model], or "
                           "set [loop.model] metered = false to let agents call it directly, "
                           "uncounted") from None  # fmt: skip


def _turns_factory(spec: str | None) -> TurnsFactory:
    """The AgentTurns factory --agent-turns names (module:function), else KeptAgentTurns'."""
    if not spec:
        return kept_agent.from_config
    module_name, _, name = spec.partition(":")
    try:
        factory: TurnsFactory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BadInput(f"--agent-turns {spec!r}: {exc}") from None
    return factory


def _open_ledger(runtime: Path) -> ledger.TicketLedger | None:
    try:
        return ledger.TicketLedger.open(runtime)
    except ledger.LedgerMissing:
        return None


def _workspace_source(plan: _Plan) -> workspaces.WorkspaceSource:
    socket = paths.control_socket(plan.runtime, workspaces.MANAGER)
    mode = plan.args.workspaces
    if mode == "manager" or (mode == "auto" and socket.exists()):
        manager: Path | None = socket
    else:
        manager = None
    return workspaces.WorkspaceSource(
        manager_socket=manager, clone_root=plan.state_dir / "loop-workspaces",
        owner_pid=os.getppid(), strategy=plan.args.workspace_strategy,
    )  # fmt: skip


def _await_workspace_peers(via: workspaces.WorkspaceSource) -> None:
    """Wait (bounded) for the workspace manager and the golden master it asks, when
    their sockets say they are in this tree: either may be restarting. One that does
    not answer in time fails the next step, which says so."""
    if via.manager_socket is None:
        return
    golden = paths.control_socket(via.manager_socket.parent, workspaces.GOLDEN)
    for socket in (via.manager_socket, golden):
        if socket.exists():
            with contextlib.suppress(control.ControlError):
                peers.await_peer(socket, timeout=peers.PEER_WAIT_S)


def _loop_config(plan: _Plan) -> LoopConfig:
    config = plan.config
    return LoopConfig(requirements=plan.requirements, test_command=config.test_command,
                      language=config.language, suite_timeout_s=config.suite_timeout_s,
                      sandbox_mode=config.sandbox)  # fmt: skip


def _lander(plan: _Plan) -> Lander:
    if plan.lander == "merge_queue":
        return MergeQueueLander(plan.runtime)
    return FastForwardLander(plan.golden, plan.branch)


def _choose_lander(args: argparse.Namespace, runtime: Path) -> str:
    """--lander, with auto resolved at start: the merge queue when its socket answers (a
    tree with a golden master, which alone may move golden's branch), else fast-forward.
    A merge queue that is restarting is waited for (peers.PEER_WAIT_S), never taken for
    absent. An explicit merge_queue that does not answer then is bad input (the loop
    would only find out at Pushing, after all its work)."""
    if args.lander == "fast_forward":
        return "fast_forward"
    socket = paths.control_socket(runtime, MERGE_QUEUE_ENDPOINT)
    if args.lander == "auto" and not socket.exists():
        return "fast_forward"  # no merge queue in this tree
    try:
        peers.await_peer(socket, timeout=peers.PEER_WAIT_S)
    except control.ControlError as exc:
        if args.lander == "merge_queue":
            raise BadInput(f"--lander merge_queue: no merge queue answers on {socket}: {exc}"
                           ) from None  # fmt: skip
        return "fast_forward"
    return "merge_queue"


def _gauntlet(plan: _Plan) -> LoopGauntlet:
    # Verifying (fs-168): the step 8 gauntlet, the project's tests as its unit stage.
    config = plan.config
    return LoopGauntlet(GauntletConfig(
        unit_command=config.test_command, timeout_s=config.suite_timeout_s,
        sandbox=config.sandbox, requirements=plan.requirements,
    ))  # fmt: skip


# -- the bus ---------------------------------------------------------------------------


def _publisher(plan: _Plan) -> Publisher | None:
    """A publisher once the broker forwarded our first subscription; None without a bus
    (no broker socket) or when the broker does not answer in BUS_CONNECT_TIMEOUT_S:
    signals only say "look", the loop goes on without them."""
    if not (plan.runtime / "bus-in.ipc").exists():
        return None
    try:
        publisher = Publisher(plan.runtime, source=f"loop:{plan.loop_id}")
    except BusError as exc:
        report("no_bus", reason=str(exc))
        return None
    try:
        publisher.wait_connected(timeout=BUS_CONNECT_TIMEOUT_S)
    except BusTimeout as exc:
        report("no_bus", reason=str(exc))
        publisher.close()
        return None
    return publisher


def _publish_to(publisher: Publisher) -> Callable[[Signal], None]:
    def publish(sig: Signal) -> None:
        try:
            publisher.publish(sig, timeout=PUBLISH_TIMEOUT_S)
        except (BusTimeout, SignalTooLarge) as exc:
            report("signal_lost", type=type(sig).__name__, reason=str(exc))

    return publish


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (or inf), got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
