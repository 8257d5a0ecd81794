"""The [loop] agent's profile, as the agent service will use it, asked of procs.agent.

This process kind may not import procs.agent, so it asks it as a process (stdlib only,
~0.1 s), once per distinct question (cached for the life of this process):

    python3 -P <source>/procs/agent/profiles.py [--profiles FILE] (--name NAME | --command ARGV...)

What the loop needs of a profile: the command that starts the agent (when [loop]
agent_command is not given), the model protocol it speaks (which [loop.model] kind can
serve it, and which of the gateway's URLs it is handed) and the RAM to reserve while it
lives. The agent service reads the same profile itself when it starts the agent
(`--profile NAME [--profiles FILE]`), so both sides agree.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]
PROFILES_SCRIPT = SOURCE_ROOT / "procs" / "agent" / "profiles.py"
LOOKUP_TIMEOUT_S = 30.0
ANY_API = "any"  # the generic profile: it is handed the endpoint in every protocol's variables
# The protocol an agent speaks -> the kind of upstream (the gateway's, [loop.model]'s)
# that serves it: OpenAI's Responses go to an OpenAI-compatible server, as Chat does.
UPSTREAM_FOR_API = {
    "openai": "openai", "responses": "openai", "anthropic": "anthropic", "gemini": "gemini",
}  # fmt: skip
API_WORDS = {
    "openai": "OpenAI Chat Completions", "responses": "OpenAI Responses",
    "anthropic": "Anthropic Messages", "gemini": "the Gemini API",
}  # fmt: skip


class ProfileLookupError(ValueError):
    """The profile cannot be had; `key` is the [loop] key at fault ("agent",
    "profiles_file", or "agent_command"), the message says why."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class AgentProfileInfo:
    """What the loop uses of one agent profile."""

    name: str
    command: tuple[str, ...]
    model_api: str  # one of UPSTREAM_FOR_API, or ANY_API
    expected_rss_mb: int

    def api_for(self, upstream_kind: str) -> str:
        """The protocol this agent is told to speak to an upstream of `upstream_kind`;
        raises ProfileLookupError (key "model") when that upstream cannot serve it."""
        if self.model_api == ANY_API:
            return upstream_kind
        wanted = UPSTREAM_FOR_API.get(self.model_api)
        if wanted != upstream_kind:
            raise ProfileLookupError(
                "model",
                f"kind {upstream_kind!r} cannot serve the {self.name} agent: it speaks "
                f"{API_WORDS.get(self.model_api, self.model_api)}; set kind = {wanted!r} "
                "with a base_url that serves it",
            )
        return self.model_api


def lookup(
    name: str | None,
    command: Sequence[str] = (),
    profiles_file: Path | None = None,
    *,
    timeout_s: float = LOOKUP_TIMEOUT_S,
) -> AgentProfileInfo:
    """The profile named `name`, else the one the agent service picks for `command` (by
    its basename; "generic" when none matches), from the built-ins and `profiles_file`.
    Blocks at most `timeout_s`. Raises ProfileLookupError naming the [loop] key."""
    if name is None and not command:
        raise ProfileLookupError("agent", "name a profile or give agent_command")
    if profiles_file is not None:
        try:
            stat = profiles_file.stat()
        except OSError as exc:
            raise ProfileLookupError("profiles_file", f"cannot read {profiles_file}: {exc}"
                                     ) from None  # fmt: skip
        version: tuple[int, int] = (stat.st_mtime_ns, stat.st_size)
    else:
        version = (0, 0)
    # only the basename of the command picks a profile: one question per basename
    query = ("--name", name) if name is not None else ("--command", Path(command[0]).name)
    return _ask(query, str(profiles_file) if profiles_file else "", version, timeout_s)


@functools.lru_cache(maxsize=64)
def _ask(query: tuple[str, str], profiles_file: str, _version: tuple[int, int],
         timeout_s: float) -> AgentProfileInfo:  # fmt: skip
    argv = [sys.executable, "-P", str(PROFILES_SCRIPT)]
    if profiles_file:
        argv += ["--profiles", profiles_file]
    argv += list(query)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProfileLookupError("agent", f"could not read the agent profiles: {exc}") from None
    if done.returncode != 0:
        try:
            error = json.loads(done.stderr.strip().splitlines()[-1])
            key, message = str(error["key"]), str(error["message"])
        except (ValueError, KeyError, IndexError, TypeError):
            key, message = "agent", f"exit {done.returncode}: {done.stderr.strip()[-500:]}"
        raise ProfileLookupError(key, message)
    try:
        data = json.loads(done.stdout)
        return AgentProfileInfo(
            name=str(data["name"]), command=tuple(str(c) for c in data["command"]),
            model_api=str(data["model_api"]), expected_rss_mb=int(data["expected_rss_mb"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise ProfileLookupError("agent", f"the agent profiles answered {done.stdout!r:.200}: "
                                 f"{exc}") from None  # fmt: skip
