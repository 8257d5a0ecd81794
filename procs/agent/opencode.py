"""Running opencode (npm `opencode-ai`) as our ACP agent: config, command, isolated env.

What opencode 1.18 does with a client's capabilities (read from its bundled source): it
never calls fs/read_text_file nor terminal/*; it reads, writes and runs shell commands
itself. Its only use of the client's fs is fs/write_text_file, sent (without waiting for
the answer) when we allow an "edit" permission, carrying the file's new content, just
before opencode writes the file itself. So the enforcement that binds opencode is the
permission decision: with every permission set to "ask" below, each edit, shell command
and access outside the project comes to `session/request_permission`, where the role's
rules allow or refuse it; a refusal fails the tool call, and the model reads opencode's
fixed text "The user rejected permission to use this specific tool call." (ACP carries no
reason with a refusal; our reason is kept in the turn's record).
Our fs/write_text_file handler enforces the same rules for agents that write through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROVIDER_ID = "factory"


def opencode_config(base_url: str, model: str, *, api_key: str = "unused") -> dict[str, Any]:
    """An opencode.json whose only model is `model` at the OpenAI-compatible `base_url`."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Factory endpoint",
                "options": {"baseURL": base_url, "apiKey": api_key},
                "models": {model: {"name": model, "tool_call": True}},
            }
        },
        "model": f"{PROVIDER_ID}/{model}",
        "small_model": f"{PROVIDER_ID}/{model}",
        "permission": {
            "edit": "ask",
            "bash": "ask",
            "webfetch": "ask",
            "external_directory": "ask",
        },
        # A refused tool call goes back to the model as a failed tool result and the turn
        # goes on (opencode's default is to end the turn at the first refusal).
        "experimental": {"continue_loop_on_deny": True},
        # No session titles: opencode asks the model for one at every session's first
        # prompt, a model call (and tokens) per turn that nobody reads in a factory.
        "agent": {"title": {"disable": True}},
        # No snapshots (a shadow git repo of the workspace, taken at every step so that
        # opencode can undo): the loop reverts with git itself, and they cost time at
        # every turn's start and disk per workspace.
        "snapshot": False,
        "autoupdate": False,
        "share": "disabled",
    }


def opencode_env(home: Path, config_file: Path) -> dict[str, str]:
    """An environment that keeps opencode's state under `home` and off the network."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
        "OPENCODE_CONFIG": str(config_file),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    for key in ("LANG", "TMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def write_opencode_setup(home: Path, base_url: str, model: str) -> dict[str, str]:
    """Write `home/opencode.json` and return the env to start opencode with."""
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "opencode.json"
    config_file.write_text(json.dumps(opencode_config(base_url, model), indent=2))
    return opencode_env(home, config_file)


def opencode_command(binary: str = "opencode") -> list[str]:
    return [binary, "acp", "--pure"]
