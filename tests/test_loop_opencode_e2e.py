"""The loop end to end with a real agent: `python -m procs.loop run` drives real opencode
(`opencode acp --pure`, through whichever AgentTurns the runner uses), whose model is a
scripted OpenAI-compatible server playing the four roles (a TEST DOUBLE:
tests/doubles/role_model.py). The suite runs under real pytest in the sandbox.

Two loops, run once per module and at the same time (opencode costs seconds per turn):

- honest: a bead with three requirements on a small real Python repo becomes green
  commits on its branch. The auditor's first test errors at collection (refused, and the
  auditor is asked again with the reason); the implementer's first attempt is wrong (one
  TCR revert); the architect refactors after the third green. Every landed commit is
  checked out and its tests run.
- cheating: one requirement; the implementer first deletes the failing test, then edits
  its expectation, then hardcodes the expected value, and only then writes the code. No
  cheat reaches a commit: the tests stay the auditor's in every commit.

The runner configures opencode itself ([loop.model]: its own model gateway in front of
the double, which counts every call per role: the counts must be what the double served).

Skips when opencode is not installed (.ci/run installs it into .ci/node).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.role_model import (
    FRESH_ITERATION,
    ROLES,
    Attempt,
    Edit,
    Requirement,
    RoleModel,
    Scenario,
    Shell,
    Write,
    prompt_text,
)
from tests.helpers.loop_repos import write
from tests.helpers.repos import git
from tests.helpers.sandbox import sandbox_mode

ROOT = Path(__file__).resolve().parent.parent


def find_opencode() -> str | None:
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "opencode"
    return str(local) if local.exists() else shutil.which("opencode")


OPENCODE = find_opencode()
# The project uses no pytest plugin: loading this environment's (hypothesis and the like)
# would cost about a second of CPU a run, and the loops run the suite ~40 times.
TEST_COMMAND = ["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", sys.executable, "-m", "pytest", "-q"]
RUN_TIMEOUT_S = 400  # both loops; ~100-200 s on 2 busy cores
pytestmark = [
    pytest.mark.integration,  # opencode, the loop and sandboxed pytest as processes
    pytest.mark.skipif(
        OPENCODE is None,
        reason="opencode not installed (.ci/run installs opencode-ai into .ci/node)",
    ),
    pytest.mark.timeout(RUN_TIMEOUT_S + 20),  # the fixture's loop counts in the first test
]

# The project: a units module with one function and its passing test.
UNITS = '"""Temperature units."""\n\n\ndef c_to_k(c):\n    return c + 273.15\n'
TEST_KELVIN = "import units\n\n\ndef test_c_to_k():\n    assert units.c_to_k(0) == 273.15\n"


def units(*functions: str) -> str:
    return UNITS + "".join(f"\n\n{body}" for body in functions)


C_TO_F = "def c_to_f(c):\n    return c * 9 / 5 + 32\n"
C_TO_F_GUARDED = (
    "def c_to_f(c):\n    if c < -273.15:\n"
    '        raise ValueError(f"{c} degrees C is below absolute zero")\n'
    "    return c * 9 / 5 + 32\n"
)
F_TO_C = "def f_to_c(f):\n    return (f - 32) * 5 / 9\n"
REFACTORED = '''"""Temperature units."""

ABSOLUTE_ZERO_C = -273.15
FREEZING_F = 32


def c_to_k(c):
    return c - ABSOLUTE_ZERO_C


def c_to_f(c):
    if c < ABSOLUTE_ZERO_C:
        raise ValueError(f"{c} degrees C is below absolute zero")
    return c * 9 / 5 + FREEZING_F


def f_to_c(f):
    return (f - FREEZING_F) * 5 / 9
'''

TEST_C_TO_F = (
    "import units\n\n\ndef test_c_to_f():\n"
    "    assert units.c_to_f(100) == 212\n    assert units.c_to_f(0) == 32\n"
)
# imports a name units.py lacks at module level: an ImportError at collection, not a red
TEST_C_TO_F_UNCOLLECTABLE = (
    "from units import c_to_f\n\n\ndef test_c_to_f():\n    assert c_to_f(100) == 212\n"
)
TEST_F_TO_C = (
    "import units\n\n\ndef test_f_to_c():\n"
    "    assert units.f_to_c(212) == 100\n    assert units.f_to_c(32) == 0\n"
)
TEST_ABSOLUTE_ZERO = (
    "import pytest\n\nimport units\n\n\ndef test_below_absolute_zero_is_refused():\n"
    "    with pytest.raises(ValueError):\n        units.c_to_f(-300)\n"
)

HONEST = Scenario(
    requirements=(
        Requirement(
            "c_to_f", "tests/test_c_to_f.py", TEST_C_TO_F, "test_c_to_f",
            refused_tests=(TEST_C_TO_F_UNCOLLECTABLE,),
            attempts=(
                Attempt((Write("units.py", units("def c_to_f(c):\n    return c * 9 / 5\n")),),
                        "scale by 9/5"),
                Attempt((Write("units.py", units(C_TO_F)),), "scale by 9/5 and add 32"),
            ),
        ),
        Requirement(
            "f_to_c", "tests/test_f_to_c.py", TEST_F_TO_C, "test_f_to_c",
            attempts=(Attempt((Write("units.py", units(C_TO_F, F_TO_C)),), "the inverse"),),
        ),
        Requirement(
            "absolute zero", "tests/test_absolute_zero.py", TEST_ABSOLUTE_ZERO,
            "test_below_absolute_zero_is_refused",
            attempts=(Attempt((Write("units.py", units(C_TO_F_GUARDED, F_TO_C)),),
                              "refuse below -273.15"),),
        ),
    ),
    architect=((Write("units.py", REFACTORED),),),
)  # fmt: skip
HONEST_BEAD = {
    "id": "bd-units", "title": "Fahrenheit conversions", "status": "open",
    "issue_type": "feature", "priority": 1,
    "description": "units gains:\n1. c_to_f(c): degrees Celsius to Fahrenheit.\n"
                   "2. f_to_c(f): degrees Fahrenheit to Celsius.\n"
                   "3. c_to_f refuses a temperature below absolute zero (-273.15 C) "
                   "with ValueError.",
}  # fmt: skip

TEST_F_TO_C_ONE = "import units\n\n\ndef test_f_to_c():\n    assert units.f_to_c(212) == 100\n"


@dataclass(frozen=True)
class Cheat:
    """A cheating attempt, and what stops it: the history event that follows it and a
    text of that event's reason."""

    attempt: Attempt
    caught_by: str
    reason: str


RED = "failed: tests.test_f_to_c::test_f_to_c"  # the auditor's test, still failing
CHEATS = {
    "deletes_the_test": Cheat(Attempt(
        (Shell("rm tests/test_f_to_c.py"), Write("tests/test_f_to_c.py", "")),
        "removed the failing test",
    ), "TcrFailed", RED),
    "edits_the_expectation": Cheat(Attempt(
        (Edit("tests/test_f_to_c.py", "== 100", "== 212"),
         Write("units.py", units("def f_to_c(f):\n    return f\n"))),
        "the test now expects what the code returns",
    ), "TcrFailed", RED),
    "hardcodes_the_value": Cheat(Attempt(
        (Write("units.py", units("def f_to_c(f):\n    return 100\n")),),
        "returns the value the test expects",
    ), "GauntletFailed", "[hardcoded_values]"),
}  # fmt: skip
CHEATING = Scenario(
    requirements=(
        Requirement(
            "f_to_c", "tests/test_f_to_c.py", TEST_F_TO_C_ONE, "test_f_to_c",
            attempts=(*(cheat.attempt for cheat in CHEATS.values()),
                      Attempt((Write("units.py", units(F_TO_C)),), "honest")),
        ),
    ),
)  # fmt: skip
CHEATING_BEAD = {"id": "bd-f", "title": "f_to_c", "status": "open",
                 "description": "units gains f_to_c(f): Fahrenheit to Celsius."}  # fmt: skip


@dataclass
class LoopRun:
    """One `python -m procs.loop run` and what it left: the repo, the loop's workspace,
    the report (--json), the model double and the CLI's exit status and stderr."""

    repo: Path
    start: str
    workspace: Path
    returncode: int
    report: dict[str, Any]
    stderr: str
    model: RoleModel

    def events(self) -> list[str]:
        return [entry["event"] for entry in self.report["history"]]

    def landed(self) -> list[str]:
        """The commits the loop landed on the repo's branch, oldest first."""
        return git(self.repo, "rev-list", "--reverse", f"{self.start}..main").split()

    def why(self) -> str:
        return f"exit {self.returncode}\n{self.stderr[-3000:]}\n{self.model.off_script}"


def make_units_project(path: Path) -> Path:
    write(path, "units.py", UNITS)
    write(path, "tests/test_kelvin.py", TEST_KELVIN)
    write(path, "pytest.ini", "[pytest]\npythonpath = .\n")
    write(path, ".gitignore", ".venv/\n__pycache__/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial: c_to_k and its test")
    return path


class StartedLoop:
    """`python -m procs.loop run` started as a process on a fresh units project: its
    agents are opencode, configured by the runner from [loop.model] (the scenario's double,
    behind the runner's own model gateway). `finish()` waits for it and returns the
    LoopRun."""

    def __init__(self, base: Path, scenario: Scenario, bead: dict[str, Any],
                 **limits: int) -> None:  # fmt: skip
        assert OPENCODE is not None
        self.base, self.bead = base, bead
        self.repo = make_units_project(base / "repo")
        self.start = git(self.repo, "rev-parse", "HEAD").strip()
        beads = base / "issues.jsonl"
        beads.write_text(json.dumps(bead) + "\n")
        self.model = RoleModel(scenario)
        self.model.start()
        self.model_stopped = False
        config = base / "factory.toml"
        config.write_text(
            "[loop]\n"
            f"agent_command = {json.dumps([OPENCODE, 'acp', '--pure'])}\n"
            f"test_command = {json.dumps(TEST_COMMAND)}\n"
            f'sandbox = "{sandbox_mode()}"\nturn_timeout_s = 120\nsuite_timeout_s = 120\n'
            'reviewer = "agent"\n'  # the model double plays the reviewer too (no router)
            + "".join(f"{key} = {value}\n" for key, value in limits.items())
            # the runner writes opencode's config, its model the runner's own gateway
            + f'[loop.model]\nkind = "openai"\nbase_url = "{self.model.base_url}"\n'
            + f'model = "{self.model.model}"\n'
        )
        # no factoryd here: the runner starts its own model gateway
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FACTORY_RUNTIME_DIR": str(base / "run")}
        argv = [sys.executable, "-m", "procs.loop", "run", "--repo", str(self.repo),
                "--beads", str(beads), "--bead", bead["id"], "--config", str(config),
                "--state-dir", str(base / "state"), "--json"]  # fmt: skip
        # the report and the log go to files (kept for a look after a failure)
        with open(base / "report.json", "wb") as out, open(base / "stderr.txt", "wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT,
                                            start_new_session=True)  # fmt: skip

    def finish(self, timeout_s: float) -> LoopRun:
        """Wait for the loop to end (killing its process group past `timeout_s`)."""
        try:
            returncode = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = self.process.wait(timeout=30)
        finally:
            self.stop_model()
        prompts = {"prompts": self.model.prompts, "off_script": repr(self.model.off_script)}
        (self.base / "prompts.json").write_text(json.dumps(prompts, indent=1))
        stdout = (self.base / "report.json").read_text()
        try:
            report = json.loads(stdout)
        except json.JSONDecodeError:
            report = {"phase": "no report", "history": [], "stdout": stdout[-3000:]}
        workspace = self.base / "state" / "workspaces" / f"oneshot-{self.bead['id']}"
        stderr = (self.base / "stderr.txt").read_text(errors="replace")
        return LoopRun(self.repo, self.start, workspace, returncode, report, stderr, self.model)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop_model(self) -> None:
        if not self.model_stopped:
            self.model_stopped = True
            self.model.stop()


@pytest.fixture(scope="module")
def loops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LoopRun]]:
    """Both loops, run at the same time: each spends most of its time waiting for its
    agent to start, so together they take little longer than the honest one alone."""
    started: dict[str, StartedLoop] = {}
    try:
        started["honest"] = StartedLoop(
            tmp_path_factory.mktemp("honest"), HONEST, HONEST_BEAD,
            refactor_interval=3, max_impl_attempts=2, max_red_attempts=2,
        )  # fmt: skip
        started["cheating"] = StartedLoop(
            tmp_path_factory.mktemp("cheating"), CHEATING, CHEATING_BEAD,
            max_impl_attempts=len(CHEATS) + 1,
        )  # fmt: skip
        deadline = time.monotonic() + RUN_TIMEOUT_S
        yield {name: loop.finish(max(1.0, deadline - time.monotonic()))
               for name, loop in started.items()}  # fmt: skip
    finally:
        for loop in started.values():
            loop.kill()
            loop.stop_model()


@pytest.fixture(scope="module")
def honest(loops: dict[str, LoopRun]) -> LoopRun:
    return loops["honest"]


@pytest.fixture(scope="module")
def cheating(loops: dict[str, LoopRun]) -> LoopRun:
    return loops["cheating"]


def test_a_bead_becomes_green_commits_through_real_opencode(honest: LoopRun) -> None:
    assert honest.returncode == 0, honest.why()
    assert honest.report["phase"] == "complete", honest.report.get("reason")
    assert honest.model.off_script == [] and honest.model.unused() == {}
    assert honest.events() == [
        "AuditorWroteTest", "RedRefused",  # the test that errors at collection
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrFailed",  # a wrong attempt
        "CodeWritten", "TcrPassed", "GauntletPassed",
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "AuditorWroteTest", "RedConfirmed", "CodeWritten", "TcrPassed", "GauntletPassed",
        "RefactorKept", "RequirementsComplete", "ReviewDone", "Pushed",
    ]  # fmt: skip
    report = honest.report
    assert (report["greens"], report["commits"], report["reverts"]) == (3, 4, 1)
    assert report["commits"] == len(honest.landed())
    # the reverted attempt's test output is the implementer's feedback for the next one
    retry = honest.model.prompts["implementer"][1]
    assert "tests failed (pytest exit 1)" in retry and "assert 180.0 == 212" in retry


def test_the_golden_branch_is_fast_forwarded_to_the_loops_commits(honest: LoopRun) -> None:
    assert honest.returncode == 0, honest.why()
    landed = honest.landed()
    assert git(honest.repo, "rev-list", "--first-parent", "--reverse",
               f"{honest.start}..main").split() == landed  # fmt: skip
    assert landed[-1] == git(honest.workspace, "rev-parse", "HEAD").strip()
    subjects = [git(honest.repo, "log", "-1", "--format=%s", c).strip() for c in landed]
    assert subjects == ["green: iteration 1", "green: iteration 2", "green: iteration 3",
                        "refactor after 3 greens"]  # fmt: skip
    assert (honest.repo / "units.py").read_text() == REFACTORED
    for requirement in HONEST.requirements:
        assert (honest.repo / requirement.test_path).read_text() == requirement.test
    assert git(honest.repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("run", ["honest", "cheating"])
def test_every_landed_commit_passes_its_tests(
    run: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    loop: LoopRun = request.getfixturevalue(run)
    assert loop.returncode == 0, loop.why()
    landed = loop.landed()
    assert landed
    for number, commit in enumerate(landed):
        tree = tmp_path / f"{number}-{commit[:8]}"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(loop.repo), "archive", commit],
                                 capture_output=True, check=True, timeout=30)  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True,
                       timeout=30)  # fmt: skip
        tests = subprocess.run(
            [*TEST_COMMAND, "-p", "no:cacheprovider"], cwd=tree, capture_output=True,
            text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        assert tests.returncode == 0, f"commit {commit} is red:\n{tests.stdout[-3000:]}"
        assert " passed" in tests.stdout


def test_a_test_that_errors_at_collection_is_refused_and_the_auditor_asked_again(
    honest: LoopRun,
) -> None:
    refused = next(h for h in honest.report["history"] if h["event"] == "RedRefused")
    assert (refused["from"], refused["to"]) == ("verifying_red", "auditing")
    assert "collection" in refused["content"]
    first, second = honest.model.prompts["auditor"][:2]
    assert FRESH_ITERATION in first and FRESH_ITERATION not in second
    # asked again, with the reason and pytest's output
    assert "a collection or syntax error (pytest exit 2)" in second
    assert "ImportError" in second
    # the refused test never reaches a commit
    for commit in honest.landed():
        text = git(honest.repo, "show", f"{commit}:tests/test_c_to_f.py")
        assert text == TEST_C_TO_F


@pytest.mark.parametrize("name", list(CHEATS))
def test_a_cheating_implementer_is_never_committed(name: str, cheating: LoopRun) -> None:
    assert cheating.returncode == 0, cheating.why()
    assert cheating.model.off_script == [] and cheating.model.unused() == {}
    assert cheating.events() == [
        "AuditorWroteTest", "RedConfirmed",
        "CodeWritten", "TcrFailed", "CodeWritten", "TcrFailed",  # the test is locked
        "CodeWritten", "TcrPassed", "GauntletFailed",  # the gauntlet sees the hardcoding
        "CodeWritten", "TcrPassed", "GauntletPassed",  # the honest attempt lands
        "RequirementsComplete", "ReviewDone", "Pushed",
    ]  # fmt: skip
    # the green commit is made only after the gauntlet: the refused cheat was never a
    # commit of its own, so `commits` is what landed
    report = cheating.report
    assert (report["commits"], report["reverts"]) == (len(cheating.landed()), len(CHEATS))
    assert report["commits"] == 1
    cheat, number = CHEATS[name], list(CHEATS).index(name) + 1
    # what the loop did with this attempt
    history = cheating.report["history"]
    written = [i for i, h in enumerate(history) if h["event"] == "CodeWritten"][number - 1]
    verdict = next(h for h in history[written + 1 :] if h["event"] != "TcrPassed")
    assert verdict["event"] == cheat.caught_by and cheat.reason in verdict["content"]
    # what opencode told the model after each of the turn's tool calls: every call on
    # the test file was refused by the role's permissions
    prompt = cheating.model.prompts["implementer"][number - 1]
    assert f"attempt {number} of" in prompt
    told = [str(body["messages"][-1].get("content"))
            for body in cheating.model.scripted_requests()
            if prompt_text(body["messages"]) == prompt
            and body["messages"][-1].get("role") == "tool"]  # fmt: skip
    on_tests = [a for a in cheat.attempt.actions
                if isinstance(a, Shell) or a.path.startswith("tests/")]  # fmt: skip
    assert len(told) == len(cheat.attempt.actions)
    assert sum("rejected permission" in text for text in told) == len(on_tests), told
    # every commit the loop's workspace can reach keeps the auditor's test as written,
    # and none holds the cheat's code
    reachable = set(git(cheating.workspace, "rev-list", "--all").split())
    assert set(cheating.landed()) <= reachable
    cheat_code = [a.content for a in cheat.attempt.actions
                  if isinstance(a, Write) and a.path == "units.py"]  # fmt: skip
    for commit in reachable:
        tests = git(cheating.workspace, "ls-tree", "-r", "--name-only", commit, "tests")
        if "tests/test_f_to_c.py" in tests.split():
            shown = git(cheating.workspace, "show", f"{commit}:tests/test_f_to_c.py")
            assert shown == TEST_F_TO_C_ONE, f"{name}: commit {commit} changed the test"
        code = git(cheating.workspace, "show", f"{commit}:units.py")
        assert code not in cheat_code, f"{name}: commit {commit} holds the cheat"
    assert (cheating.repo / "units.py").read_text() == units(F_TO_C)


@pytest.mark.parametrize("run", ["honest", "cheating"])
def test_the_gateways_counts_per_role_are_what_the_model_served(
    run: str, request: pytest.FixtureRequest
) -> None:
    loop: LoopRun = request.getfixturevalue(run)
    assert loop.returncode == 0, loop.why()
    served: dict[str, int] = {}
    for record in loop.model.requests:  # the role is the one its prompt opens with
        role = next((r for r in ROLES if prompt_text(record.body.get("messages") or [])
                     .startswith(f"You are the {r.upper()}")), "none")  # fmt: skip
        served[role] = served.get(role, 0) + 1
    assert "none" not in served, served
    usage = loop.report["model_usage"]
    assert {role: counts["calls"] for role, counts in usage["roles"].items()} == served
    prompt_tokens, completion_tokens = loop.model.usage
    for role, calls in served.items():
        counts = usage["roles"][role]
        assert (counts["input_tokens"], counts["output_tokens"]) == (
            calls * prompt_tokens, calls * completion_tokens,
        )  # fmt: skip
    assert usage["used_tokens"] == sum(served.values()) * (prompt_tokens + completion_tokens)
