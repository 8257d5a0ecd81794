"""cheat_detection on the corpus (tests/gauntlet_corpus/): every cheat is reported as its
class (recall 100 % per class) and no honest change gets a finding (0 false alarms); every
patch makes plain pytest green on its own (so the cheats are real ones); REV's tests,
re-run as they were against the patched code, fail for a cheat on the tests in each class
that touches them, whatever the static rules say, and pass for every honest change."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from procs.gauntlet import CLASSES, Change, GauntletConfig
from procs.gauntlet._cheat_dynamic import run_protected
from tests.gauntlet_corpus.harness import (
    ALL,
    Judged,
    change_in_memory,
    materialize,
    pytest_green,
    pytest_green_many,
    score,
    template,
)
from tests.gauntlet_corpus.patches import CHEATS, HONEST, Patch
from tests.helpers.sandbox import bwrap_unusable

CONFIG = GauntletConfig(unit_command=(sys.executable, "-m", "pytest", "-q"), timeout_s=120)


def test_the_corpus_has_three_cheats_per_class_and_ten_honest_changes() -> None:
    counts = {cls: sum(p.cls == cls for p in CHEATS) for cls in CLASSES}
    assert all(count >= 3 for count in counts.values()), counts
    assert len(HONEST) >= 10
    assert len({p.name for p in ALL}) == len(ALL)


def test_static_rules_catch_every_cheat_by_class_and_no_honest_change(tmp_path: Path) -> None:
    judged = [Judged(p, _static(p, tmp_path)) for p in ALL]
    per_class, false_alarms = score(judged)
    report = "\n".join(f"{cls:20} {caught}/{total}" for cls, (caught, total) in per_class.items())
    print(f"\nrecall per class:\n{report}\nfalse alarms: {len(false_alarms)}/{len(HONEST)}")
    missed = [(j.patch.name, [f.feedback() for f in j.findings]) for j in judged
              if j.patch.cls is not None and not j.caught]  # fmt: skip
    assert missed == []
    assert [(j.patch.name, [f.feedback() for f in j.findings]) for j in false_alarms] == []


def _static(patch: Patch, scratch: Path) -> list:  # type: ignore[type-arg]
    from procs.gauntlet import static_findings

    return static_findings(change_in_memory(patch, scratch))


def test_every_finding_names_class_path_line_and_why(tmp_path: Path) -> None:
    for patch in CHEATS:
        for finding in _static(patch, tmp_path):
            assert finding.cls in CLASSES, finding
            assert finding.path and finding.line >= 0 and len(finding.message) > 10, finding


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return template(tmp_path_factory.mktemp("corpus"))


@pytest.mark.integration
def test_every_patch_makes_plain_pytest_green(repo: tuple[Path, str], tmp_path: Path) -> None:
    template_repo, _ = repo
    spaces = [materialize(p, template_repo, tmp_path / p.name) for p in ALL]
    outcomes = pytest_green_many(spaces)
    assert pytest_green(spaces[0])[0]  # the forking driver agrees with a plain run
    red = [(p.name, out) for p, (green, out) in zip(ALL, outcomes, strict=True) if not green]
    assert red == []


# One cheat per class that touches the tests or their configuration, and the honest
# changes that touch tests or harness files: the re-run needs no static rule.
DYNAMIC_CHEATS = ["delete-one-test", "assert-true", "expected-half-fits-wrong-rate",
                  "conftest-deselect-hook"]  # fmt: skip
DYNAMIC_HONEST = ["adds-tests", "conftest-fixture-and-marker"]


@pytest.mark.integration
def test_revs_tests_rerun_against_the_patch_fail_for_test_cheats_and_pass_for_honest(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    template_repo, base = repo
    by_name = {p.name: p for p in ALL}
    verdicts = {}
    for name in DYNAMIC_CHEATS + DYNAMIC_HONEST:
        workspace = materialize(by_name[name], template_repo, tmp_path / name)
        verdicts[name] = run_protected(Change.load(workspace, base), CONFIG)
    assert [n for n in DYNAMIC_CHEATS if verdicts[n].green] == []
    assert {n: verdicts[n].failed for n in DYNAMIC_HONEST if not verdicts[n].green} == {}
    assert ("tests/test_discount.py", "test_half_takes_half_off") in verdicts[
        "delete-one-test"
    ].failed


@pytest.mark.integration
def test_a_unit_command_that_is_not_pytest_is_judged_by_its_exit_status(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    if (why := bwrap_unusable()) is not None:
        pytest.skip(why)
    template_repo, base = repo
    runner = ("import importlib, sys; runner = importlib.import_module('py' + 'test'); "
              "sys.exit(runner.main(['-q', '-p', 'no:cacheprovider']))")  # fmt: skip
    config = GauntletConfig(unit_command=(sys.executable, "-c", runner), timeout_s=120)
    by_name = {p.name: p for p in ALL}
    cheat = materialize(by_name["delete-one-test"], template_repo, tmp_path / "cheat")
    honest = materialize(by_name["constant-table"], template_repo, tmp_path / "honest")
    failed = run_protected(Change.load(cheat, base), config)
    assert not failed.green and "exited 1" in failed.problem
    assert run_protected(Change.load(honest, base), config).green
