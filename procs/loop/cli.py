"""The one-shot runner: one bead's loop in the foreground, no factoryd.

    python -m procs.loop run --repo REPO --beads FILE --bead ID [--config factory.toml]
                             [--state-dir DIR] [--json]

Checks every input before it changes anything: the config's [loop] table (a test command
is required), the repo (a git repository, its work tree clean, on a branch), the bead (in
FILE, with requirements), the sandbox (bwrap usable, unless sandbox = "none"), the agent
command (on PATH), when [loop.model] names one, the model endpoint (answers within
MODEL_PROBE_TIMEOUT_S) and, with the reviewer on the router (the default), that an LLM
router answers on its socket (`<runtime_dir>/llm_router.sock`). Then it clones REPO
into STATE/workspaces/LOOP_ID, runs the loop (agents through KeptAgentTurns: one agent
per loop, a session per turn; the reviewer through the router; landing on REPO's branch
by fast-forward) and prints the outcome, the history and, when metered, the gateway's
token counts per role. Run again with the same bead, it resumes the stored loop.

Agents' model ([loop.model], procs/loop/metering.py): metered (the default), their calls
go through a model gateway that counts them per role and holds the bead to [loop]
budget_tokens. factoryd's gateway (`<runtime_dir>/model_gateway.sock`) when it answers
(it must send [loop.model]'s kind to base_url); else the runner starts its own
(procs/loop/gateway_process.py: STATE/gateway, its only upstream [loop.model]), says so
on stderr and stops it at the end. `metered = false`: agents call base_url directly.

Exit status: 0 the loop completed, 1 it failed (the reason is printed), 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

from ipc import paths
from procs import sandbox
from procs.gauntlet import GauntletConfig, LoopGauntlet
from procs.loop import git
from procs.loop.agent_service import AgentModel
from procs.loop.bead_text import BeadNotFound, read_bead
from procs.loop.config import LoopConfigError, RunnerConfig, load_config
from procs.loop.driver import LoopConfig, LoopDriver
from procs.loop.gateway_process import GatewayProcess
from procs.loop.kept_agent import KeptAgentTurns
from procs.loop.lander import FastForwardLander
from procs.loop.metering import ENDPOINT as GATEWAY_ENDPOINT
from procs.loop.metering import (
    GatewayNotAnswering,
    GatewayUnavailable,
    Meter,
    MeteredTurns,
    MeterGrant,
)
from procs.loop.reviewer import ROUTER_ENDPOINT, RoutedReviewer, router_answers
from procs.loop.state import FactoryLoopState, FactoryPhase
from procs.loop.store import LoopStore, state_path
from procs.loop.turns import AgentTurns

EXIT_COMPLETE, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MODEL_PROBE_TIMEOUT_S = 5.0


class BadInput(ValueError):
    """An input the runner refuses before changing anything; the message says which."""


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m procs.loop", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one bead's loop in the foreground")
    run.add_argument("--repo", type=Path, required=True)
    run.add_argument("--beads", type=Path, required=True)
    run.add_argument("--bead", required=True)
    run.add_argument("--config", type=Path)
    run.add_argument("--state-dir", type=Path, default=_default_state_dir())
    run.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        plan = _check(args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        final, store, usage = _run(plan)
    except GatewayUnavailable as exc:  # no gateway or no token: nothing stored or cloned
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        _report(final, store, out, as_json=args.json, usage=usage)
    finally:
        store.close()
    return EXIT_COMPLETE if final.phase is FactoryPhase.COMPLETE else EXIT_FAILED


class _Plan:
    def __init__(self, args: argparse.Namespace, config: RunnerConfig, requirements: str,
                 branch: str, golden: str) -> None:  # fmt: skip
        self.args, self.config, self.requirements = args, config, requirements
        self.branch, self.golden = branch, golden
        self.loop_id = f"oneshot-{args.bead}"
        self.gateway: Path | None = None  # factoryd's, when metered and it answers


def _check(args: argparse.Namespace) -> _Plan:
    try:
        config = load_config(args.config)
    except LoopConfigError as exc:
        raise BadInput(str(exc)) from None
    repo = args.repo.resolve()
    try:
        golden = git.head(repo)
        bare = git.git(repo, "rev-parse", "--is-bare-repository").strip() == "true"
        if not bare and not git.is_clean(repo):
            raise BadInput(f"repo {repo} has uncommitted changes; commit or stash them first")
        ref = git.git(repo, "symbolic-ref", "-q", "HEAD").strip()
    except git.GitError as exc:
        raise BadInput(f"repo {repo} is not a usable git repository on a branch: {exc}") from None
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
    if shutil.which(config.agent_command[0]) is None:
        raise BadInput(f"agent command {config.agent_command[0]!r} is not on PATH")
    gateway = None
    if config.model is not None:  # its kind serves the agent's protocol: checked already
        _probe_model(config.model.base_url)
        gateway = _factoryd_gateway(config) if config.model.metered else None
    if config.reviewer == "router":
        why = router_answers(_router_socket())
        if why is not None:
            raise BadInput(f'{why}; start factoryd with its llm_router, or set [loop] '
                           f'reviewer = "agent"')  # fmt: skip
    plan = _Plan(args, config, bead.requirements, ref.removeprefix("refs/heads/"), golden)
    plan.gateway = gateway
    return plan


def _factoryd_gateway(config: RunnerConfig) -> Path | None:
    """factoryd's gateway socket when one answers (it must serve [loop.model]); None when
    none answers (the runner then starts its own)."""
    assert config.model is not None
    socket = _router_socket().with_name(f"{GATEWAY_ENDPOINT}.sock")
    if not socket.exists():
        return None
    try:
        Meter(socket).check(config.model.kind, config.model.base_url)
    except GatewayNotAnswering:
        return None  # a stale socket: nobody serves it
    except GatewayUnavailable as exc:
        raise BadInput(f"{exc}; fix the gateway's config or [loop.model]") from None
    return socket


def _probe_model(base_url: str) -> None:
    try:
        httpx.get(f"{base_url.rstrip('/')}/models", timeout=MODEL_PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise BadInput(f"the model endpoint {base_url} does not answer: {exc}") from None


def _run(plan: _Plan) -> tuple[FactoryLoopState, LoopStore, dict[str, Any] | None]:
    """Run the loop; the final state, the store and the gateway's last usage (metered).
    Raises GatewayUnavailable, before the loop is stored or cloned, when the runner's own
    gateway does not start or no token can be had."""
    config, args = plan.config, plan.args
    state_dir = args.state_dir.resolve()
    with contextlib.ExitStack() as stack:
        meter, grant, model = _model_for_agents(plan, state_dir, stack)
        store = LoopStore(state_path(state_dir))
        workspace = state_dir / "workspaces" / plan.loop_id
        if not workspace.exists():
            workspace.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            git.git(state_dir, "clone", "-q", "--branch", plan.branch,
                    str(args.repo.resolve()), str(workspace), timeout_s=600.0)  # fmt: skip
        state = FactoryLoopState(loop_id=plan.loop_id, bead_id=args.bead, attempt=1,
                                 workspace=str(workspace), golden_hash=plan.golden,
                                 limits=config.limits)  # fmt: skip
        agents = stack.enter_context(KeptAgentTurns(
            config.agent_command, timeout_s=config.turn_timeout_s,
            sandbox_mode=config.sandbox, model=model, sandbox_agent=config.sandbox_agent,
            profile=config.agent, profiles_file=config.profiles_file,
            agent_ram_mb=config.agent_ram_mb,
        ))  # fmt: skip
        metered = None
        if meter is not None and grant is not None:
            metered = stack.enter_context(MeteredTurns(agents, meter, grant))
        final = _drive(plan, store, state, metered or agents)
        if metered is not None:
            with contextlib.suppress(GatewayUnavailable):
                metered.refresh()  # the last turn's calls are all in by now
        return final, store, metered.usage if metered is not None else None
    raise AssertionError("unreachable")  # pragma: no cover (mypy: ExitStack may swallow)


def _model_for_agents(
    plan: _Plan, state_dir: Path, stack: contextlib.ExitStack
) -> tuple[Meter | None, MeterGrant | None, AgentModel | None]:
    """The gateway (factoryd's, else the runner's own, stopped by `stack`), the loop's
    token, and the model the agents are handed; Nones without [loop.model]."""
    config = plan.config
    if config.model is None:
        return None, None, None
    if not config.model.metered:
        return None, None, AgentModel(config.model.base_url, config.model.name,
                                      config.agent_api)  # fmt: skip
    socket = plan.gateway
    if socket is None:
        own = GatewayProcess.start(config.model, state_dir / "gateway")
        stack.callback(_stop_gateway, own)
        print(f"started the runner's own model gateway (pid {own.process.pid}, "
              f"{own.base_url}, log {own.log}); it stops at the end", file=sys.stderr)  # fmt: skip
        socket = own.socket
    meter = Meter(socket)
    grant = meter.open(plan.args.bead, plan.loop_id, config.budget_tokens)
    model = AgentModel(grant.base_url(config.agent_api), config.model.name,
                       config.agent_api, grant.token)  # fmt: skip
    return meter, grant, model


def _stop_gateway(gateway: GatewayProcess) -> None:
    status = gateway.stop()
    print(f"stopped the runner's model gateway (exit {status})", file=sys.stderr)


def _drive(plan: _Plan, store: LoopStore, state: FactoryLoopState,
           turns: AgentTurns) -> FactoryLoopState:  # fmt: skip
    config = plan.config
    if config.reviewer == "router":
        turns = RoutedReviewer(turns, _router_socket(), timeout_s=config.turn_timeout_s)
    loop_config = LoopConfig(requirements=plan.requirements, test_command=config.test_command,
                             language=config.language, suite_timeout_s=config.suite_timeout_s,
                             sandbox_mode=config.sandbox)  # fmt: skip
    lander = FastForwardLander(plan.args.repo.resolve(), plan.branch)
    # Verifying (fs-168): the step 8 gauntlet on the change, with the project's tests as
    # its unit stage; its findings go back to the implementer as feedback.
    gauntlet = LoopGauntlet(GauntletConfig(
        unit_command=config.test_command, timeout_s=config.suite_timeout_s,
        sandbox=config.sandbox, requirements=plan.requirements,
    ))  # fmt: skip
    driver = LoopDriver(store, turns, loop_config, lander, gauntlet=gauntlet, clock=time.time)
    return driver.run(state)


def _report(final: FactoryLoopState, store: LoopStore, out: TextIO, *, as_json: bool,
            usage: dict[str, Any] | None = None) -> None:  # fmt: skip
    history = store.history(final.loop_id)
    if as_json:
        document: dict[str, Any] = {
            "loop_id": final.loop_id, "bead": final.bead_id, "phase": final.phase.value,
            "reason": final.reason, "iteration": final.iteration, "greens": final.greens,
            "commits": final.commits, "reverts": final.reverts, "model_usage": usage,
            "history": [{"seq": h.seq, "iteration": h.iteration, "role": h.role,
                         "event": h.event, "from": h.phase_from.value, "to": h.phase_to.value,
                         "content": h.content, "ts": h.ts} for h in history],
        }  # fmt: skip
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for h in history:
        first = h.content.strip().splitlines()[0][:100] if h.content.strip() else ""
        out.write(f"{h.seq:4} it{h.iteration:<3} {h.role:<11} {h.event:<20} "
                  f"{h.phase_from.value} -> {h.phase_to.value}  {first}\n")  # fmt: skip
    if usage is not None:
        budget = usage.get("budget_tokens")
        roles = ", ".join(f"{role} {counts.get('calls', 0)} calls"
                          for role, counts in sorted((usage.get("roles") or {}).items())
                          )  # fmt: skip
        out.write(f"model tokens: {usage.get('used_tokens')}"
                  f"{f' of {budget}' if budget is not None else ''} ({roles})\n")  # fmt: skip
    outcome = final.phase.value + (f": {final.reason}" if final.reason else "")
    out.write(f"{final.loop_id} {outcome} (greens {final.greens}, commits {final.commits}, "
              f"reverts {final.reverts})\n")  # fmt: skip


def _router_socket() -> Path:
    return paths.runtime_dir() / ROUTER_ENDPOINT


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "factory" / "oneshot"
