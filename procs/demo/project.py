"""What the demo writes before factoryd starts: the project, its beads, the configs.

The factory config is systemd/factory.example.toml, read from the repository this
package lives in, with the substitutions tests/test_example_config.py makes (its paths
pointed at the demo's golden clone, beads file and loop.toml; this interpreter's pytest
without the machine's plugins; the scripted agents named with --agent-turns when they
are used) and, where bubblewrap cannot run here, sandbox = "none". For the red golden
episode (procs/demo/episode.py) golden gets an upstream (a bare clone beside it: it
pushes what lands there and refreshes from it every second), the router's `mutator` role
points at the recorded fix model (procs/demo/fix_model.py) and the swarm is 4 mutators.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs.demo.recorded import BEADS, PROJECT

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository: procs/demo/ is in it
EXAMPLE = ROOT / "systemd" / "factory.example.toml"
TEST_COMMAND = (
    f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
)
REPLAY = "procs.demo.agents:replay"
OPENCODE = ["opencode", "acp", "--pure"]
BWRAP_PROBE = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-net",
               "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp", "true"]  # fmt: skip
GIT_USER = ["-c", "user.name=factory demo", "-c", "user.email=demo@factory.invalid"]


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Agents:
    """Who does the agents' turns: the recorded session, or opencode on a model."""

    scripted: bool
    why: str  # one line for the operator: why these agents
    model_url: str = ""
    model_name: str = ""
    command: tuple[str, ...] = tuple(OPENCODE)  # the agent's command (not scripted)
    recorded_model: bool = False  # real opencode, its model the recorded session


def choose_agents(env: dict[str, str]) -> Agents:
    """The replay unless FACTORY_DEMO_MODEL_URL names a model and opencode is on PATH."""
    url = env.get("FACTORY_DEMO_MODEL_URL", "").strip()
    if not url:
        hint = ""
        if env.get("ANTHROPIC_API_KEY"):
            hint = (" (ANTHROPIC_API_KEY is set, but the demo's agent is opencode on an "
                    "OpenAI-compatible URL: set FACTORY_DEMO_MODEL_URL)")  # fmt: skip
        return Agents(True, "no model is configured (FACTORY_DEMO_MODEL_URL is not set)" + hint)
    if not url.startswith(("http://", "https://")):
        return Agents(True, f"FACTORY_DEMO_MODEL_URL={url!r} is not an http(s) URL")
    if shutil.which(OPENCODE[0]) is None:
        return Agents(True, "FACTORY_DEMO_MODEL_URL is set but opencode is not on PATH "
                            "(npm install -g opencode-ai)")  # fmt: skip
    name = env.get("FACTORY_DEMO_MODEL", "").strip() or "default"
    return Agents(False, f"opencode ({' '.join(OPENCODE)}) on {url}, model {name!r}",
                  model_url=url, model_name=name)  # fmt: skip


def check_pytest() -> None:
    """The demo's project is tested with this interpreter's pytest (TEST_COMMAND). Raises
    DemoError, saying how to get it, when it is missing."""
    if importlib.util.find_spec("pytest") is None:
        raise DemoError(f"pytest is not installed for {sys.executable}: the demo's project "
                        "is tested with it (pip install -e . installs it; or pip install "
                        "pytest)")  # fmt: skip


def bwrap_problem() -> str | None:
    """None when bubblewrap can make the sandbox's namespaces here; else why not."""
    found = shutil.which("bwrap")
    if found is None:
        return "bwrap is not on PATH (apt-get install bubblewrap)"
    try:
        done = subprocess.run([found, *BWRAP_PROBE], capture_output=True, timeout=10,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found} did not run: {exc}"
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[:200] or "no message"
        return f"{found} cannot create namespaces here (exit {done.returncode}: {message})"
    return None


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *GIT_USER, *args], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    if done.returncode != 0:
        raise DemoError(f"git {' '.join(args)} in {repo}: {done.stderr.strip()}")
    return done.stdout


def make_golden(path: Path) -> str:
    """The project, committed on main; returns the commit."""
    for relpath, text in PROJECT.items():
        file = path / relpath
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "textstats: the package and its first test")
    return git(path, "rev-parse", "HEAD").strip()


def make_upstream(golden: Path, upstream: Path) -> None:
    """golden's upstream: a bare clone of it (what a team pushes to and golden refreshes
    from)."""
    git(golden.parent, "clone", "-q", "--bare", str(golden), str(upstream))


def router_toml(fix_model_url: str) -> str:
    """The router's config: its default routes (procs/llm/config.py default_config), but
    the `mutator` role on the recorded fix model."""
    return (
        '[roles]\nauditor = "local"\nimplementer = "local"\narchitect = "local"\n'
        'reviewer = "anthropic_fast"\njudge = "anthropic_fast"\nmutator = "recorded"\n'
        'architectural_review = "anthropic_strong"\n\n'
        '[endpoints.local]\nkind = "llama_cpp"\ngpu_ticket = true\n\n'
        "[endpoints.recorded]  # SCRIPTED: procs/demo/fix_model.py, not a model\n"
        f'kind = "llama_cpp"\nbase_url = {json.dumps(fix_model_url)}\nretries = 0\n'
        "timeout_s = 30\n\n"
        '[endpoints.anthropic_fast]\nkind = "anthropic"\nmodel = "claude-haiku-4-5"\n'
        "input_per_mtok = 1.0\noutput_per_mtok = 5.0\n\n"
        '[endpoints.anthropic_strong]\nkind = "anthropic"\nmodel = "claude-opus-4-5"\n'
        "input_per_mtok = 5.0\noutput_per_mtok = 25.0\n"
    )


def beads_jsonl() -> str:
    """The three beads as a beads JSONL export (ts-3 blocked by ts-1)."""
    lines = []
    for bead in BEADS:
        record: dict[str, Any] = {
            "id": bead["id"], "title": bead["title"], "description": bead["description"],
            "status": "open", "priority": bead["priority"], "issue_type": "task",
            "created_at": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        if bead.get("blocked_by"):
            record["dependencies"] = [{"issue_id": bead["id"], "depends_on_id":
                                       bead["blocked_by"], "type": "blocks"}]  # fmt: skip
        lines.append(json.dumps(record) + "\n")
    return "".join(lines)


def loop_toml(agents: Agents, sandbox: str) -> str:
    agent = ["scripted-in-process"] if agents.scripted else list(agents.command)
    turn_timeout = 60 if agents.scripted else 900
    text = (f"[loop]\ntest_command = {json.dumps(TEST_COMMAND.split())}\n"
            f"agent_command = {json.dumps(agent)}\n"
            f'reviewer = "agent"\nsandbox = "{sandbox}"\n'
            f"suite_timeout_s = 120\nturn_timeout_s = {turn_timeout}\n")  # fmt: skip
    if not agents.scripted:
        # The agents call the model directly (metered = false): the demo gives the
        # model gateway no upstream config. See systemd/loop.example.toml for metering.
        text += (f'\n[loop.model]\nkind = "openai"\nbase_url = {json.dumps(agents.model_url)}\n'
                 f"model = {json.dumps(agents.model_name)}\nmetered = false\n")  # fmt: skip
    return text


def pointed_example(golden: Path, beads: Path, loop_config: Path, *,
                    changes: Sequence[tuple[str, str]] = (), sandbox: str = "bwrap",
                    who: str = "procs/demo/project.py") -> str:  # fmt: skip
    """systemd/factory.example.toml pointed at a small real project: golden, the beads
    file, the loop config (its test_command is every suite's), the metrics on any free
    port, sandbox "none" if asked, and each of `changes` (old, new). Raises
    DemoError naming `who` when the file is missing or no longer has a line to change:
    the demo, the tests and the benches all run the example itself, so it cannot drift."""
    if not EXAMPLE.is_file():
        raise DemoError(f"{EXAMPLE} is missing: the demo runs the repository's example "
                        "config, so run it from a clone (git clone; pip install -e .)")  # fmt: skip
    text = EXAMPLE.read_text()
    every = [
        ("/var/lib/factory/golden", str(golden)),
        ("/srv/repo/.beads/issues.jsonl", str(beads)),
        ("/etc/factory/loop.toml", str(loop_config)),
        ('args = ["--port", "9464"]', 'args = ["--port", "0"]'),  # metrics: any free port
        *changes,
    ]
    if sandbox == "none":
        every.append(('sandbox = "bwrap"', 'sandbox = "none"'))
    for old, new in every:
        if old not in text:
            raise DemoError(f"{EXAMPLE} no longer has {old!r}: {who} must follow it")
        text = text.replace(old, new)
    return text


def factory_toml(golden: Path, beads: Path, loop_config: Path, *, upstream: Path,
                 router_config: Path, scripted: bool, sandbox: str) -> str:  # fmt: skip
    """The example pointed at the demo (pointed_example); raises DemoError."""
    turns = f'"--agent-turns", "{REPLAY}",' if scripted else ""
    changes = [
        # worktree, not the manager's auto choice: a worktree is checked out from golden
        # once, where an overlay on each new golden commit pays a full export first.
        (
            '"--lander", "merge_queue",',
            f'"--lander", "merge_queue", {turns} "--workspace-strategy", "worktree",',
        ),
        # golden pushes what lands to its upstream and refreshes from it: the way a
        # teammate's commits reach it (the red golden episode)
        (
            '"--branch", "main",',
            f'"--branch", "main", "--upstream", {json.dumps(str(upstream))}, '
            '"--push", "--refresh-s", "1",',
        ),
        (
            'target = "procs.llm.service:main"\n',
            f'target = "procs.llm.service:main"\nargs = ["--config", '
            f"{json.dumps(str(router_config))}]\n",
        ),
        ('"--swarm-size", "32"', '"--swarm-size", "4"'),  # 2 cores: 4 mutators race
        ('"--mutator-ram-mb", "512"', '"--mutator-ram-mb", "128"'),  # textstats' are small
    ]
    return pointed_example(golden, beads, loop_config, changes=changes, sandbox=sandbox)


def daemon_env(env: dict[str, str]) -> dict[str, str]:
    """factoryd's environment: this repository first on PYTHONPATH (the loop imports
    procs.demo.agents), no systemd notify socket of ours."""
    out = dict(env)
    out.pop("NOTIFY_SOCKET", None)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return out
