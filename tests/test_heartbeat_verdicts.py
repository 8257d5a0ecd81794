"""The heartbeat's verdicts and announcements as pure functions, and their record: the
same red twice is one TestFailure, a new error is another, green after red is one
TestPassing, green at first is silent; what was announced survives a reopen."""

from __future__ import annotations

from pathlib import Path

from ipc.signals import TestFailure, TestPassing
from procs.heartbeat.suite import Verdict, judge
from procs.heartbeat.verdicts import VerdictStore, announce, state_after

A, B = "a" * 40, "b" * 40


def red(commit: str, *failures: tuple[str, str, str]) -> Verdict:
    return judge(commit, exit_code=1, timed_out=False, duration_ms=5.0, output="1 failed",
                 failures=list(failures), timeout_s=60.0)  # fmt: skip


def test_judge_names_the_first_failing_file_and_its_error() -> None:
    v = judge(A, exit_code=1, timed_out=False, duration_ms=1.0, output="",
              failures=[("tests.test_x::test_a", "tests/test_x.py", "assert 1 == 2 at 0x7f00"),
                        ("tests.test_y::test_b", "tests/test_y.py", "boom")],
              timeout_s=60.0)  # fmt: skip
    assert (v.green, v.file) == (False, "tests/test_x.py")
    assert v.error == "2 failed; first tests.test_x::test_a: assert 1 == 2 at 0x7f00"
    again = judge(A, exit_code=1, timed_out=False, duration_ms=9.0, output="",
                  failures=[("tests.test_y::test_b", "tests/test_y.py", "boom"),
                            ("tests.test_x::test_a", "tests/test_x.py", "assert 1 == 2 at 0x55")],
                  timeout_s=60.0)  # fmt: skip
    assert again.signature == v.signature  # same tests, same errors: addresses aside


def test_a_timeout_and_a_non_pytest_failure_are_red() -> None:
    slow = judge(A, exit_code=-9, timed_out=True, duration_ms=1.0, output="", failures=[],
                 timeout_s=30.0)  # fmt: skip
    assert (slow.green, slow.error) == (False, "the suite timed out after 30 s")
    plain = judge(A, exit_code=2, timed_out=False, duration_ms=1.0, output="x\nmake: *** Error 2\n",
                  failures=[], timeout_s=30.0)  # fmt: skip
    assert (plain.green, plain.error) == (False, "exit 2: make: *** Error 2")
    ok = judge(A, exit_code=0, timed_out=False, duration_ms=1.0, output="", failures=[],
               timeout_s=30.0)  # fmt: skip
    assert ok.green and announce(None, ok) is None  # green at first: nothing to say


def test_red_is_announced_once_until_its_error_changes_then_green_once(tmp_path: Path) -> None:
    first = red(A, ("t::a", "t.py", "assert 1 == 2"))
    signal = announce(None, first)
    assert signal == TestFailure("t.py", "1 failed; first t::a: assert 1 == 2", A)
    store = VerdictStore(tmp_path / "hb.sqlite3")
    store.set_announced(state_after(first, 1.0), "TestFailure")
    store.close()
    store = VerdictStore(tmp_path / "hb.sqlite3")  # a restart
    last = store.announced()
    assert announce(last, red(B, ("t::a", "t.py", "assert 1 == 2"))) is None
    changed = announce(last, red(B, ("t::a", "t.py", "assert 1 == 3")))
    assert isinstance(changed, TestFailure) and changed.context_hash == B
    fixed = judge(B, exit_code=0, timed_out=False, duration_ms=1.0, output="", failures=[],
                  timeout_s=30.0)  # fmt: skip
    assert announce(last, fixed) == TestPassing(B)
    assert announce(state_after(fixed, 2.0), fixed) is None
    store.close()
