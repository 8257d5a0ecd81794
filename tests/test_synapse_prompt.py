"""The mutator's request (fs-303) and the strict answer it takes (procs/synapse/prompt.py),
and the swarm's size (procs/synapse/generation.py): pure, no processes."""

from __future__ import annotations

import pytest

from procs.synapse.generation import Generation, swarm_size
from procs.synapse.prompt import (
    Failure,
    NotADiff,
    extract_diff,
    fix_request,
    touched_paths,
    touches_tests,
)

CULPRIT = "diff --git a/core.py b/core.py\n-    return a + b\n+    return a - b\n"
FAILURE = Failure("tests/test_core.py", "assert add(2, 3) == 5", "a" * 40, "b" * 40, CULPRIT)
DIFF = "--- a/core.py\n+++ b/core.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"  # noqa: E501


def test_the_prompt_names_the_file_the_error_the_hash_and_the_culprits_diff() -> None:
    prompt = fix_request(FAILURE, 0, 8)["prompt"]
    for needle in (FAILURE.file, FAILURE.error, FAILURE.context_hash, FAILURE.culprit,
                   "return a - b", "unified diff", "never a test"):  # fmt: skip
        assert needle in prompt


def test_no_two_mutators_of_a_swarm_send_the_same_request() -> None:
    requests = [fix_request(FAILURE, i, 8) for i in range(8)]
    assert len({(r["prompt"], r["temperature"]) for r in requests}) == 8
    assert len({r["temperature"] for r in requests}) == 8
    assert all(0.0 <= r["temperature"] <= 2.0 for r in requests)
    with pytest.raises(ValueError):
        fix_request(FAILURE, 8, 8)


@pytest.mark.parametrize("reply", [DIFF, f"```diff\n{DIFF}```", f"\n```\n{DIFF}```\n",
                                   f"diff --git a/core.py b/core.py\n{DIFF}"])  # fmt: skip
def test_a_diff_bare_or_in_one_fence_is_taken(reply: str) -> None:
    assert "+    return a + b" in extract_diff(reply)


@pytest.mark.parametrize("reply", [
    "Sure! Here is the fix:\n" + DIFF, f"```diff\n{DIFF}```\nThis fixes it.",
    "--- a/core.py\n+++ b/core.py\n no hunk\n", "", "return a + b",
])  # fmt: skip
def test_anything_but_one_diff_is_refused(reply: str) -> None:
    with pytest.raises(NotADiff):
        extract_diff(reply)


def test_a_fix_that_touches_a_test_or_the_harness_is_told_apart() -> None:
    assert touched_paths(DIFF) == ["core.py"] and not touches_tests(DIFF)
    for path in ("tests/test_core.py", "pkg/tests/x.py", "test_x.py", "conftest.py", "pytest.ini"):
        assert touches_tests(DIFF.replace("core.py", path))


def test_the_swarm_is_bounded_by_free_slots_and_ram() -> None:
    assert swarm_size(32, None, None, 512) == 32
    assert swarm_size(32, 8, None, 512) == 8
    assert swarm_size(32, 40, 2048, 512) == 4
    assert swarm_size(32, 0, 99999, 512) == 0
    assert swarm_size(32, 5, 100, 0) == 5


def test_a_generation_file_reads_back_as_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gen = Generation("abc-1", FAILURE, "/golden", ("pytest", "-q"), 60.0, "none", 8)
    assert Generation.read(gen.write(tmp_path)) == gen
    assert gen.group == "synapse-abc-1"


def test_a_pytest_suite_runs_the_failing_file_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from procs.synapse.trial import failing_first

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_core.py").write_text("")
    pytest_cmd = ("python3", "-m", "pytest", "-q")
    assert failing_first(pytest_cmd, tmp_path, "tests/test_core.py") == [
        *pytest_cmd, "tests/test_core.py"]  # fmt: skip
    for file in ("", "tests/missing.py", "../x.py", "/etc/passwd", "-k"):
        assert failing_first(pytest_cmd, tmp_path, file) is None
    assert failing_first(("make", "test"), tmp_path, "tests/test_core.py") is None
