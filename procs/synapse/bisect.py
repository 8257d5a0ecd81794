"""Parallel bisection: k workers test k points of the suspect range at once. Pure.

The suspects are commits c[0..n-1] in first-parent order, oldest first; c[n-1] is the
red commit the heartbeat announced. A `Span(good, bad)` says c[good] passed (good may
be -1: nothing in the list is known good, the commit before c[0] is taken as good) and
c[bad] failed; the culprit is one of c[good+1..bad]. A round tests up to k commits
strictly inside the span, spaced evenly, so the span's length (bad - good) falls to at
most ceil(length / (k + 1)); after `rounds_bound(n, k)` rounds, the smallest r with
(k + 1) ** r >= n, about log2(n) / log2(k + 1), it is 1 and the culprit is c[bad].

    span = Span.initial(n)                  # the last suspect is known red
    while not span.found:
        points = plan_round(span, k)        # indices to test now, each in a workspace
        span = narrow(span, {i: green_of(i) for i in points})
    culprit = span.bad

`narrow` trusts what it is told: results that are not monotone (a flaky suite) still
give a span that holds a red commit right after a green one, or c[0].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """c[good] is green (-1: the commit before the list), c[bad] is red; good < bad."""

    good: int
    bad: int

    def __post_init__(self) -> None:
        if not -1 <= self.good < self.bad:
            raise ValueError(f"a span needs -1 <= good < bad, got {self.good}..{self.bad}")

    @classmethod
    def initial(cls, n: int) -> Span:
        """n suspects, the last one red, none known green."""
        if n < 1:
            raise ValueError(f"bisecting needs at least one suspect, got {n}")
        return cls(-1, n - 1)

    @property
    def length(self) -> int:
        return self.bad - self.good

    @property
    def found(self) -> bool:
        """The culprit is c[bad]: its parent (or the commit before the list) is green."""
        return self.length == 1


def plan_round(span: Span, k: int) -> list[int]:
    """Up to k indices strictly inside `span`, evenly spaced, ascending (none when found).

    The k + 1 pieces they cut the span into differ in length by at most one."""
    if k < 1:
        raise ValueError(f"k (workers) must be >= 1, got {k}")
    inside = span.length - 1
    take = min(k, inside)
    return [span.good + (j * span.length) // (take + 1) for j in range(1, take + 1)]


def narrow(span: Span, green: Mapping[int, bool]) -> Span:
    """The span after a round: the first red tested point bounds it above, the last
    green point below that bounds it below. Points outside `span` are ignored."""
    inside = {i: ok for i, ok in green.items() if span.good < i < span.bad}
    bad = min([i for i, ok in inside.items() if not ok], default=span.bad)
    good = max([i for i, ok in inside.items() if ok and i < bad], default=span.good)
    return Span(good, bad)


def rounds_bound(n: int, k: int) -> int:
    """The rounds `bisect` takes at most for n suspects and k workers: the smallest r
    with (k + 1) ** r >= n (0 for a single suspect)."""
    rounds, reach = 0, 1
    while reach < n:
        rounds, reach = rounds + 1, reach * (k + 1)
    return rounds


@dataclass(frozen=True)
class Outcome:
    culprit: int  # index into the suspects
    rounds: int
    tested: int  # suite runs


def bisect(n: int, k: int, test_round: Callable[[list[int]], Mapping[int, bool]]) -> Outcome:
    """Run the rounds; `test_round(points)` tests the points at once (green or not)."""
    span, rounds, tested = Span.initial(n), 0, 0
    while not span.found:
        points = plan_round(span, k)
        span = narrow(span, test_round(points))
        rounds, tested = rounds + 1, tested + len(points)
    return Outcome(span.bad, rounds, tested)
