"""procs/synapse/again.py: when a red golden gets a new generation (pure)."""

from __future__ import annotations

from typing import Any

from procs.synapse.again import new_generation
from procs.synapse.records import GenerationRecord

HEAD = "a" * 40
OTHER = "b" * 40
NOW = 10_000.0


def _red(head: str = HEAD, verdict_on: str | None = HEAD, state: str = "red") -> dict[str, Any]:
    failure = None if verdict_on is None else {"hash": verdict_on, "output": "E boom"}
    return {"hash": head, "state": state, "last_failure": failure}


def _gen(state: str = "done", started_at: float = NOW - 100, context: str = HEAD
         ) -> GenerationRecord:  # fmt: skip
    return GenerationRecord("g", "", "", context, started_at=started_at, state=state)


def _why(golden: dict[str, Any], records: list[GenerationRecord]) -> str | None:
    return new_generation(golden, records, NOW, retry_red_s=60, max_generations=3)


def test_a_red_head_with_no_generation_gets_one() -> None:
    assert _why(_red(), []) == "golden is red and no generation was started for it"
    assert _why(_red(), [_gen(context=OTHER)]) is not None  # another commit's does not count


def test_green_unknown_or_a_verdict_on_another_commit_gets_none() -> None:
    assert _why(_red(state="green"), []) is None
    assert _why(_red(state="unknown"), []) is None
    assert _why(_red(verdict_on=OTHER), []) is None  # HEAD moved: its suite has not said
    assert _why(_red(verdict_on=None), []) is None
    assert _why({"state": "red"}, []) is None  # no hash: nothing to name


def test_a_live_generation_is_never_doubled() -> None:
    for state in ("bisecting", "swarming", "stopping"):
        assert _why(_red(), [_gen(), _gen(state=state)]) is None


def test_ended_generations_go_again_up_to_the_limit_then_after_the_cool_down() -> None:
    assert "after 1 generation" in str(_why(_red(), [_gen()]))
    assert "after 2 generation" in str(_why(_red(), [_gen(), _gen()]))
    three = [_gen(started_at=NOW - 100), _gen(started_at=NOW - 90), _gen(started_at=NOW - 30)]
    assert _why(_red(), three) is None  # the last started 30 s ago; the cool-down is 60 s
    three[-1].started_at = NOW - 60
    assert "cool-down" in str(_why(_red(), three))
