"""systemd/factory.example.toml made runnable in a test: its paths pointed at a small
real project under `tmp` (a golden clone, an empty beads export, a loop config), its test
commands at this interpreter's pytest without the machine's plugins, and the loops'
agents at a scripted in-process stand-in given by `agent_turns` (MODULE:FACTORY).

    tree = runnable_example(tmp)          # .text for factoryd, .golden, .beads, .loop_toml
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.loop_repos import make_project

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "factory.example.toml"
EXAMPLE_TEST_COMMAND = "python3 -m pytest -q -p no:cacheprovider"
TEST_COMMAND = (f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q "
                "-p no:cacheprovider")  # fmt: skip


@dataclass(frozen=True)
class RunnableExample:
    text: str
    golden: Path
    beads: Path
    loop_toml: Path


def runnable_example(tmp: Path, *, agent_turns: str = "tests.test_example_config:turns"
                     ) -> RunnableExample:  # fmt: skip
    golden = make_project(tmp / "golden")
    beads = tmp / "repo" / ".beads" / "issues.jsonl"
    beads.parent.mkdir(parents=True)
    beads.write_text("")
    loop_toml = tmp / "loop.toml"
    loop_toml.write_text(
        f"[loop]\ntest_command = {json.dumps(TEST_COMMAND.split())}\n"
        'agent_command = ["scripted-in-process"]\nreviewer = "agent"\n'
        "suite_timeout_s = 120\nturn_timeout_s = 60\n"
    )
    text = EXAMPLE.read_text()
    for old, new in [
        ("/var/lib/factory/golden", str(golden)),
        ("/srv/repo/.beads/issues.jsonl", str(beads)),
        ("/etc/factory/loop.toml", str(loop_toml)),
        (EXAMPLE_TEST_COMMAND, TEST_COMMAND),
        ('"--lander", "merge_queue",',
         f'"--lander", "merge_queue", "--agent-turns", "{agent_turns}",'),
        ('args = ["--port", "9464"]', 'args = ["--port", "0"]'),  # any free port
    ]:  # fmt: skip
        assert old in text, f"the example no longer has {old!r}: update this helper"
        text = text.replace(old, new)
    return RunnableExample(text, golden, beads, loop_toml)
