"""Run one agent turn as its own process, or keep an agent for many: `procs.agent.service:main`.

With --serve (procs.agent.serve): start the agent once, then read one JSON turn request
per line on stdin (role, prompt, timeout) and write one JSON result per line on stdout,
a new session per turn under the role's policy:

    python -m procs.agent.service --serve --workspace WS [--idle-timeout-s 3600] ... \
        -- opencode acp --pure

Without, one turn:

    python -m procs.agent.service --workspace WS --role implementer --prompt-file P \
        [--timeout-s 600] [--may-execute] [--result-file R] [--cancel-grace-s 5] \
        [--max-turn-updates N] [--max-turn-update-bytes N] [--max-terminals N] \
        [--sandbox bwrap|none] -- opencode acp --pure

Spawns the agent command in WS (its own process group), opens a session, sends the prompt,
and writes the TurnResult as JSON (stop reason, message, tool calls, permissions, file
writes, protocol violations, how many updates the record's limits dropped) to
--result-file or stdout. The agent inherits this process's environment, unless the
model is given (both forms):

    --model-url URL --model NAME [--model-api openai|responses|anthropic|gemini]
    [--profile opencode|claude|codex|gemini|generic|...] [--profiles FILE]

with the key in $FACTORY_MODEL_TOKEN (never on argv): then the agent's model config is
written for its profile (procs.agent.model_setup: config files and environment in a
private HOME removed at exit; the profile defaults to the command's basename:
procs.agent.profiles). The profile also says which fs capabilities the agent is
offered and which session mode every turn runs in (procs.agent.modes: one that asks
permission for every edit and command; none such, a failed turn). With
--may-execute, the agent's terminal/* commands run under bubblewrap (procs.sandbox) with
the role's paths read-only; without a usable bwrap they are refused unless --sandbox none.
With --sandbox-role ROLE the agent process itself runs under bubblewrap with that role's
locks (procs.agent.agent_sandbox: workspace rw, the rest ro, the role's paths ro, a
network of its own where only --model-url's endpoint is reachable); a --serve agent
then serves that role only.
SIGTERM/SIGINT, and --timeout-s, cancel the turn (session/cancel) and wait up to
--cancel-grace-s for it to end; then the agent's group is closed (exit 0 after a signal,
the result says timed_out after the timeout). Exit status: 0 the turn ended (any stop
reason), 2 bad usage, 3 the agent died, timed out, ignored the cancel or broke the
protocol (the reason is on stderr as JSON). Logging goes to stderr one line per record,
at most 100 lines (procs.agent.log_lines); malformed notifications from the agent are
counted in the result, a few logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import orjson

from procs.agent import AcpAgent, AgentError, RolePolicy, TurnResult
from procs.agent.log_lines import install as install_log_lines
from procs.agent.model_setup import (
    MODEL_TOKEN_ENV,
    NO_KEY,
    AgentModel,
    ModelSetupError,
    agent_environment,
    check,
)
from procs.agent.profiles import MODEL_APIS, ProfileError, load_profiles, profile_for
from procs.agent.record import DEFAULT_MAX_UPDATE_BYTES, DEFAULT_MAX_UPDATES, RecordLimits
from procs.agent.serve import serve
from procs.agent.terminals import DEFAULT_MAX_TERMINALS
from procs.sandbox import SANDBOX_MODES, default_mode

EXIT_AGENT_FAILED = 3


async def run_turn(args: argparse.Namespace, prompt: str) -> TurnResult:
    """Start the agent, run one prompt, close the agent.

    The turn is cancelled on SIGTERM/SIGINT or at --timeout-s; either way the agent has
    --cancel-grace-s to end it (AcpAgent.prompt).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    policy = RolePolicy.for_role(args.role, may_execute=args.may_execute)
    limits = RecordLimits(
        max_updates=args.max_turn_updates, max_update_bytes=args.max_turn_update_bytes
    )
    agent = await AcpAgent.start(
        args.command, workspace=args.workspace, policy=policy, timeout=args.start_timeout_s,
        env=getattr(args, "agent_env", None), record_limits=limits,
        max_terminals=args.max_terminals, sandbox_mode=args.sandbox,
        profile=getattr(args, "profile", None), sandbox_role=sandbox_policy(args),
        model_url=args.model_url,
    )  # fmt: skip
    try:
        await agent.new_session(timeout=args.start_timeout_s)
        return await agent.prompt(
            prompt, timeout=args.timeout_s, cancel_grace_s=args.cancel_grace_s, stop=stop
        )
    finally:
        await agent.close()


def sandbox_policy(args: argparse.Namespace) -> RolePolicy | None:
    """The role whose sandbox the agent process runs in (--sandbox-role), or None."""
    role = getattr(args, "sandbox_role", None)
    return None if role is None else RolePolicy.for_role(role, may_execute=args.may_execute)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--serve", action="store_true", help="keep the agent: turns on stdin")
    parser.add_argument("--role", help="the turn's role (without --serve)")
    parser.add_argument(
        "--sandbox-role",
        help="run the agent process itself under bwrap with this role's locks "
        "(procs.agent.agent_sandbox); --serve then serves this role only",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prompt")
    group.add_argument("--prompt-file", type=Path)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument(
        "--idle-timeout-s", type=float, default=3600.0,
        help="--serve: exit (0) after this long without a request",
    )  # fmt: skip
    parser.add_argument("--start-timeout-s", type=float, default=90.0)
    parser.add_argument("--may-execute", action="store_true")
    parser.add_argument("--result-file", type=Path)
    parser.add_argument("--cancel-grace-s", type=float, default=5.0)
    parser.add_argument("--max-turn-updates", type=positive_int, default=DEFAULT_MAX_UPDATES)
    parser.add_argument(
        "--max-turn-update-bytes", type=positive_int, default=DEFAULT_MAX_UPDATE_BYTES
    )
    parser.add_argument("--max-terminals", type=positive_int, default=DEFAULT_MAX_TERMINALS)
    parser.add_argument(
        "--sandbox", choices=SANDBOX_MODES, default=default_mode(),
        help='how --may-execute commands run; "none" runs them without isolation',
    )  # fmt: skip
    parser.add_argument("--model-url", help="the agent's model endpoint (key: $"
                        f"{MODEL_TOKEN_ENV})")  # fmt: skip
    parser.add_argument("--model", default="default", help="the model's name (with --model-url)")
    parser.add_argument("--model-api", choices=MODEL_APIS, default="openai")
    parser.add_argument(
        "--profile",
        help="the agent's profile: opencode, claude, codex, gemini, generic or the "
        "operator's (default: by command)",
    )
    parser.add_argument(
        "--profiles", type=Path,
        help="a TOML file of agent profiles besides the built-ins (default: "
        "$FACTORY_AGENT_PROFILES)",
    )  # fmt: skip
    parser.add_argument("command", nargs="+", help="the agent command, after --")
    args = parser.parse_args(argv)
    model = _model(args, parser)
    with contextlib.ExitStack() as stack:  # the agent's HOME, if any, is removed at exit
        try:
            setup = agent_environment(args.profile, model, args.workspace)
            args.agent_env = stack.enter_context(setup)
        except ModelSetupError as exc:  # raised before anything is written
            parser.error(str(exc))
        except OSError as exc:
            parser.error(f"cannot write the agent's model config: {exc}")
        return _main(args, parser)


def _model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AgentModel | None:
    """The --model-url settings, checked (None without --model-url); `args.profile`
    becomes the AgentProfile (its modes and fs capabilities apply with or without)."""
    try:
        profiles = load_profiles(args.profiles)
    except (ProfileError, OSError) as exc:
        parser.error(f"agent profiles: {exc}")
    if args.profile is None:
        args.profile = profile_for(args.command, profiles)
    elif args.profile in profiles:
        args.profile = profiles[args.profile]
    else:
        parser.error(f"unknown agent profile {args.profile!r}; known: {sorted(profiles)}")
    if args.model_url is None:
        return None
    key = os.environ.get(MODEL_TOKEN_ENV) or NO_KEY
    model = AgentModel(args.model_url, args.model, args.model_api, key)
    try:
        check(args.profile, model)
    except ModelSetupError as exc:
        parser.error(str(exc))
    return model


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.serve:
        if args.role or args.prompt is not None or args.prompt_file:
            parser.error("--serve takes the role and prompt per request, on stdin")
        if args.sandbox_role is not None:
            try:
                RolePolicy.for_role(args.sandbox_role)
            except ValueError as exc:
                parser.error(str(exc))
        if not args.idle_timeout_s > 0:
            parser.error(f"--idle-timeout-s must be > 0, got {args.idle_timeout_s}")
        install_log_lines(sys.stderr)
        return asyncio.run(serve(args))
    if args.sandbox_role is not None and args.sandbox_role != args.role:
        parser.error("--sandbox-role must be the turn's --role")
    if args.role is None or (args.prompt is None and args.prompt_file is None):
        parser.error("one turn needs --role and --prompt or --prompt-file (or use --serve)")
    try:
        RolePolicy.for_role(args.role)
    except ValueError as exc:
        parser.error(str(exc))
    prompt = args.prompt if args.prompt is not None else args.prompt_file.read_text()
    install_log_lines(sys.stderr)
    try:
        result = asyncio.run(run_turn(args, prompt))
    except (AgentError, OSError) as exc:
        report = {"event": "agent_failed", "reason": type(exc).__name__, "message": str(exc)}
        sys.stderr.write(orjson.dumps(report).decode() + "\n")
        return EXIT_AGENT_FAILED
    data = orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2)
    if args.result_file:
        args.result_file.write_bytes(data)
    else:
        sys.stdout.write(data.decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
