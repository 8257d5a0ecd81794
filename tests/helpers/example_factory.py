"""systemd/factory.example.toml made runnable in a test: its paths pointed at a small
real project under `tmp` (a golden clone, an empty beads export, a loop config), its test
commands at this interpreter's pytest without the machine's plugins, and the loops'
agents at a scripted in-process stand-in given by `agent_turns` (MODULE:FACTORY).

    tree = runnable_example(tmp)          # .text for factoryd, .golden, .beads, .loop_toml
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from procs.demo.project import TEST_COMMAND, pointed_example
from tests.helpers.loop_repos import make_project


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
    text = pointed_example(
        golden, beads, loop_toml, who="tests/helpers/example_factory.py",
        changes=[('"--lander", "merge_queue",',
                  f'"--lander", "merge_queue", "--agent-turns", "{agent_turns}",')],
    )  # fmt: skip
    return RunnableExample(text, golden, beads, loop_toml)
