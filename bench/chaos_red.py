"""A red golden in the middle of the chaos soak, so that mutators run (and get killed).

The demo's red session (procs/demo/red_session.py) on the soak's project: golden starts
with textstats.counts (words, word_count) and its test; golden gets an upstream (a bare
clone), pushes what lands there and refreshes from it every second. At --red-at of the
soak a teammate pushes the demo's culprit (words() splits on single spaces): golden
refreshes, the heartbeat says TestFailure, the synapse bisects and starts its mutators,
each asks the router's `mutator` role: the demo's recorded fix model (SCRIPTED, not a
model), here answering after `delay_s` so the mutators live long enough to be killed.
The first right fix lands through the merge queue and golden is green again.

The culprit is red by construction and came from outside the factory: the golden check
leaves it out, and says whether a fix followed it (RedGolden.outcome).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from procs.demo import project
from procs.demo.fix_model import RecordedFixModel
from procs.demo.red_session import COUNTS_PATH, TEAMMATE

CULPRIT_MESSAGE, CULPRIT_FILES = TEAMMATE[1]
BROKEN_COUNTS = CULPRIT_FILES[COUNTS_PATH]
GOOD_COUNTS = BROKEN_COUNTS.replace('.split(" ")', ".split()")
TEST_COUNTS = (  # the culprit makes "the quick  brown fox" 5 words: red
    "def test_words_are_runs_of_non_whitespace():\n"
    "    from textstats.counts import word_count\n\n"
    '    assert word_count("the quick  brown fox") == 4\n'
    '    assert word_count("well-known") == 2\n'
)


def prepare_golden(golden: Path, upstream: Path) -> str:
    """textstats.counts and its test on golden (a commit), then golden's upstream (a
    bare clone). Returns golden's new HEAD."""
    assert GOOD_COUNTS != BROKEN_COUNTS, "procs/demo/red_session.py changed its culprit"
    (golden / COUNTS_PATH).write_text(GOOD_COUNTS)
    (golden / "tests" / "test_counts.py").write_text(TEST_COUNTS)
    project.git(golden, "add", "-A")
    project.git(golden, "commit", "-qm", "counts: words and word_count")
    project.make_upstream(golden, upstream)
    return project.git(golden, "rev-parse", "HEAD").strip()


def config_changes(upstream: Path, router_config: Path) -> list[tuple[str, str]]:
    """The example config's lines to change: golden's upstream, the router's config, a
    swarm of 4 (2 cores) that tries a red again 5 s after three swarms failed."""
    return [
        ('"--branch", "main",',
         f'"--branch", "main", "--upstream", {json.dumps(str(upstream))}, '
         '"--push", "--refresh-s", "1",'),
        ('target = "procs.llm.service:main"\n',
         f'target = "procs.llm.service:main"\nargs = ["--config", '
         f"{json.dumps(str(router_config))}]\n"),
        # 4 mutators (2 cores); after 3 swarms in a row lost to the kills, one more 5 s
        # later (not the 10 minutes of the example): the soak is short
        ('"--swarm-size", "32"', '"--swarm-size", "4", "--retry-red-s", "5"'),
    ]  # fmt: skip


class SlowFixModel(RecordedFixModel):
    """The demo's recorded fix model, each answer `delay_s` late (a model thinking)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        time.sleep(self.delay_s)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a killed mutator
            super().serve(request)


@dataclass
class RedGolden:
    golden: Path
    upstream: Path
    teammate: Path
    culprit: str | None = None
    pushed_at: float | None = None
    tries: int = 0

    def push_when_synced(self) -> bool:
        """Once golden's upstream has all golden has, the teammate pushes the culprit on
        top (a push that loses a race with golden's own is tried again later). True once
        pushed."""
        if self.culprit is not None:
            return True
        head = project.git(self.golden, "rev-parse", "main").strip()
        if project.git(self.upstream, "rev-parse", "main").strip() != head:
            return False
        self.tries += 1
        if not self.teammate.exists():
            project.git(self.golden.parent, "clone", "-q", str(self.upstream), str(self.teammate))
        project.git(self.teammate, "fetch", "-q", "origin")
        project.git(self.teammate, "reset", "-q", "--hard", "origin/main")
        (self.teammate / COUNTS_PATH).write_text(BROKEN_COUNTS)
        project.git(self.teammate, "commit", "-qam", CULPRIT_MESSAGE)
        done = subprocess.run(["git", "-C", str(self.teammate), "push", "-q", "origin", "main"],
                              capture_output=True, timeout=30, check=False)  # fmt: skip
        if done.returncode != 0:
            return False  # golden pushed first: again on the next look
        self.culprit = project.git(self.teammate, "rev-parse", "HEAD").strip()
        self.pushed_at = time.time()
        return True

    def outcome(self) -> dict[str, object]:
        """Was the culprit on golden, and did a fix follow it: the first commit after it
        on main, and how long after the push it was committed."""
        if self.culprit is None:
            return {"pushed": False}
        on_golden = _git_ok(self.golden, "merge-base", "--is-ancestor", self.culprit, "main")
        after = project.git(self.golden, "rev-list", "--reverse", f"{self.culprit}..main").split()
        fix = after[0] if on_golden and after else None
        fixed_s = None
        if fix is not None and self.pushed_at is not None:
            fixed_s = (
                int(project.git(self.golden, "log", "-1", "--format=%ct", fix)) - self.pushed_at
            )
        return {"pushed": True, "culprit": self.culprit[:10], "on_golden": on_golden,
                "fixed_by": project.git(self.golden, "log", "-1", "--format=%s", fix).strip()
                if fix else None, "fixed_after_s": fixed_s}  # fmt: skip


def _git_ok(repo: Path, *args: str) -> bool:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=30,
                          check=False)  # fmt: skip
    return done.returncode == 0
