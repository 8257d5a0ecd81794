"""Agent profiles: what differs between ACP agent kinds, as data (profiles.toml).

A profile says how to start one kind offline against the model gateway (its command,
its environment and config files in a private HOME, telemetry and auto-update off),
which fs capabilities to advertise, which session modes it may run a turn in (the ones
that ask permission for every edit and command: procs.agent.modes pins one), the model
protocol it speaks, and the RAM it is expected to take. The built-in kinds are opencode,
claude, codex, gemini and generic (procs/agent/profiles.toml); an operator adds a kind,
or replaces one whole, with a TOML file of the same form ($FACTORY_AGENT_PROFILES, or
the agent service's --profiles). Profiles are checked once, when read: every error names
the profile and the key (ProfileError). Reading has no side effects; writing a profile's
files is model_setup's business.

Other process kinds (the loop) may not import this module; they ask it as a process,
which prints the profile the agent service would use, as JSON (describe()):

    python3 -P procs/agent/profiles.py [--profiles FILE] (--name NAME | --command ARGV...)

(run as a script, it imports only the standard library: ~0.1 s, where `-m` would import
the whole ACP client package first.)

Exit 0 with the profile on stdout; 2 with {"key", "message"} on stderr for a bad file
("profiles_file"), an unknown name ("agent") or a bad command line ("usage").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

BUILTIN_FILE = Path(__file__).with_name("profiles.toml")
PROFILES_ENV = "FACTORY_AGENT_PROFILES"
# The protocols the gateway speaks; a model URL of one family serves every protocol in it
# (OpenAI's /v1 base serves Chat and Responses; Anthropic and Gemini take the root).
MODEL_APIS = ("openai", "responses", "anthropic", "gemini")
URL_FAMILY = {"openai": "openai", "responses": "openai", "anthropic": "root", "gemini": "root"}
ANY_API = "any"
PLACEHOLDERS = ("{home}", "{model_url}", "{model_name}", "{model_key}")
_KEYS = frozenset({
    "command", "match", "model_api", "read_text_file", "missing_file_reads_empty",
    "ask_modes", "require_mode", "expected_rss_mb", "env", "files", "inherit_env",
})  # fmt: skip


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the profile and the key."""


@dataclass(frozen=True)
class AgentProfile:
    """One agent kind (see profiles.toml for what each field means)."""

    name: str
    command: tuple[str, ...]
    model_api: str
    match: tuple[str, ...] = ()
    read_text_file: bool = True
    missing_file_reads_empty: bool = False
    ask_modes: tuple[str, ...] = ()
    require_mode: bool = False
    expected_rss_mb: int = 800
    inherit_env: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    def speaks(self, api: str) -> bool:
        """Whether a model URL of kind `api` serves this agent's protocol."""
        if self.model_api == ANY_API:
            return api in MODEL_APIS
        return URL_FAMILY.get(api) == URL_FAMILY[self.model_api]


def _profile(name: str, raw: object) -> AgentProfile:
    def bad(key: str, why: str) -> ProfileError:
        return ProfileError(f"agent profile {name!r}: {key} {why}")

    if not isinstance(raw, dict):
        raise bad("", "must be a table")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise bad(str(unknown), f"unknown (known: {sorted(_KEYS)})")

    def strings(key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        value = raw.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad(key, f"must be a list of non-empty strings, got {value!r:.80}")
        return tuple(value)

    def flag(key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise bad(key, f"must be true or false, got {value!r:.40}")
        return value

    def table(key: str) -> dict[str, str]:
        value = raw.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise bad(key, "must be a table of strings")
        return dict(value)

    api = raw.get("model_api")
    if api not in (*MODEL_APIS, ANY_API):
        raise bad("model_api", f"must be one of {[*MODEL_APIS, ANY_API]}, got {api!r:.40}")
    rss = raw.get("expected_rss_mb", 800)
    if isinstance(rss, bool) or not isinstance(rss, int) or rss < 1:
        raise bad("expected_rss_mb", f"must be an integer >= 1, got {rss!r:.40}")
    files = table("files")
    for path in files:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise bad("files", f"path {path!r} must be relative to the HOME, without '..'")
        if "{model_key}" in files[path]:
            raise bad("files", f"{path!r} names {{model_key}}: the key goes in env only")
    require = flag("require_mode", False)
    ask_modes = strings("ask_modes")
    if require and not ask_modes:
        raise bad("require_mode", "needs ask_modes")
    return AgentProfile(
        name=name, command=strings("command"), model_api=str(api), match=strings("match"),
        read_text_file=flag("read_text_file", True),
        missing_file_reads_empty=flag("missing_file_reads_empty", False),
        ask_modes=ask_modes, require_mode=require, expected_rss_mb=rss,
        inherit_env=flag("inherit_env", False), env=table("env"), files=files,
    )  # fmt: skip


def parse_profiles(text: str, *, source: str) -> dict[str, AgentProfile]:
    """The profiles of one TOML document; raises ProfileError naming `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not TOML: {exc}") from None
    try:
        return {name: _profile(name, raw) for name, raw in data.items()}
    except ProfileError as exc:
        raise ProfileError(f"{source}: {exc}") from None


def load_profiles(extra: Path | None = None) -> dict[str, AgentProfile]:
    """The built-in profiles, then those of `extra` (default: $FACTORY_AGENT_PROFILES, if
    set), which add kinds or replace them whole. Raises ProfileError, OSError."""
    profiles = parse_profiles(BUILTIN_FILE.read_text(), source=str(BUILTIN_FILE))
    if extra is None and os.environ.get(PROFILES_ENV):
        extra = Path(os.environ[PROFILES_ENV])
    if extra is not None:
        profiles.update(parse_profiles(extra.read_text(), source=str(extra)))
    return profiles


def profile_for(command: Sequence[str], profiles: Mapping[str, AgentProfile]) -> AgentProfile:
    """The profile whose `match` names the command's basename; else "generic"."""
    if command:
        base = Path(command[0]).name
        for profile in profiles.values():
            if base in profile.match:
                return profile
    return profiles["generic"]


def expand(template: str, values: Mapping[str, str]) -> str:
    """`template` with each {placeholder} of `values` replaced (nothing else touched:
    JSON and TOML braces stay)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def describe(profile: AgentProfile) -> dict[str, Any]:
    """What status shows of a profile (no env values: they may hold the key)."""
    return {
        "name": profile.name, "command": list(profile.command), "match": list(profile.match),
        "model_api": profile.model_api, "ask_modes": list(profile.ask_modes),
        "require_mode": profile.require_mode, "read_text_file": profile.read_text_file,
        "missing_file_reads_empty": profile.missing_file_reads_empty,
        "expected_rss_mb": profile.expected_rss_mb, "env_keys": sorted(profile.env),
        "files": sorted(profile.files),
    }  # fmt: skip


def main(argv: list[str]) -> int:
    """The CLI of the module docstring: the profile by --name, else by --command."""
    parser = argparse.ArgumentParser(prog="procs.agent.profiles", add_help=False)
    parser.add_argument("--profiles", type=Path)
    parser.add_argument("--name")
    parser.add_argument("--command", nargs=argparse.REMAINDER, default=[])

    def fail(key: str, message: str) -> int:
        sys.stderr.write(json.dumps({"key": key, "message": message}) + "\n")
        return 2

    try:
        args = parser.parse_args(argv)
    except SystemExit:  # argparse has written why
        return fail("usage", f"bad arguments {argv!r}")
    if (args.name is None) == (not args.command):
        return fail("usage", "give one of --name NAME or --command ARGV...")
    try:
        profiles = load_profiles(args.profiles)
    except (ProfileError, OSError, UnicodeDecodeError) as exc:
        return fail("profiles_file", str(exc))
    if args.name is not None and args.name not in profiles:
        return fail("agent", f"unknown agent profile {args.name!r}; known: {sorted(profiles)}")
    profile = profiles[args.name] if args.name is not None else profile_for(args.command, profiles)
    sys.stdout.write(json.dumps(describe(profile)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
