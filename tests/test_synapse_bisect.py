"""The synapse's parallel bisection plan (procs/synapse/bisect.py), without processes:
every culprit position of every range up to 130 suspects for 1..9 workers is found in at
most ceil(log_{k+1} n) rounds, with at most k suite runs per round; any answers at all
(a flaky suite) still end, on a red commit right after a green one."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procs.synapse.bisect import Span, bisect, narrow, plan_round, rounds_bound


def _monotone(culprit: int) -> Callable[[list[int]], dict[int, bool]]:
    return lambda points: {i: i < culprit for i in points}


def _recording(culprit: int, rounds: list[list[int]]) -> Callable[[list[int]], dict[int, bool]]:
    def test_round(points: list[int]) -> dict[int, bool]:
        rounds.append(points)
        return {i: i < culprit for i in points}

    return test_round


def test_every_culprit_is_found_within_the_bound() -> None:
    for k in range(1, 10):
        for n in range(1, 131):
            bound = rounds_bound(n, k)
            assert bound == (0 if n == 1 else math.ceil(math.log(n) / math.log(k + 1) - 1e-9))
            for culprit in range(n):
                rounds: list[list[int]] = []
                out = bisect(n, k, _recording(culprit, rounds))
                assert out.culprit == culprit, (n, k, culprit)
                assert out.rounds <= bound, (n, k, culprit, rounds)
                assert all(1 <= len(p) <= k and p == sorted(set(p)) for p in rounds)


def test_eight_workers_need_two_rounds_for_64_suspects_where_one_needs_six() -> None:
    assert bisect(64, 8, _monotone(37)).rounds <= 2
    assert bisect(64, 1, _monotone(37)).rounds == 6


def test_a_round_cuts_the_span_into_pieces_that_differ_by_at_most_one() -> None:
    span = Span(-1, 99)
    points = plan_round(span, 4)
    edges = [span.good, *points, span.bad]
    pieces = [b - a for a, b in itertools.pairwise(edges)]
    assert max(pieces) - min(pieces) <= 1 and sum(pieces) == span.length


def test_bad_spans_and_worker_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        Span(3, 3)
    with pytest.raises(ValueError):
        Span.initial(0)
    with pytest.raises(ValueError):
        plan_round(Span(-1, 5), 0)
    assert plan_round(Span(4, 5), 3) == []


@given(n=st.integers(1, 400), k=st.integers(1, 40), data=st.data())
def test_any_answers_end_on_a_red_commit_after_a_green_one(n: int, k: int, data: st.DataObject
                                                           ) -> None:  # fmt: skip
    answers: dict[int, bool] = {}

    def flaky(points: list[int]) -> dict[int, bool]:
        for i in points:
            answers.setdefault(i, data.draw(st.booleans(), label=f"green({i})"))
        return {i: answers[i] for i in points}

    out = bisect(n, k, flaky)
    assert 0 <= out.culprit < n
    assert out.culprit == n - 1 or answers[out.culprit] is False
    assert out.culprit == 0 or answers.get(out.culprit - 1) is True
    assert out.rounds <= n


@given(good=st.integers(-1, 50), length=st.integers(1, 50), k=st.integers(1, 10),
       answers=st.dictionaries(st.integers(-5, 120), st.booleans()))  # fmt: skip
def test_narrow_keeps_a_span_inside_the_old_one(good: int, length: int, k: int,
                                                answers: dict[int, bool]) -> None:  # fmt: skip
    span = Span(good, good + length)
    after = narrow(span, answers)
    assert span.good <= after.good < after.bad <= span.bad
    assert all(span.good < p < span.bad for p in plan_round(span, k))
