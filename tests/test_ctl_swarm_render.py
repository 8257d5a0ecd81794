"""factoryctl swarm's text: each generation, with what a restarted synapse took up."""

from __future__ import annotations

import argparse
import io
import time

from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.swarm import render


def _gen(**extra: object) -> dict[str, object]:
    return {"id": "abc123abc123-1", "state": "done", "started_at": time.time() - 5,
            "context_hash": "abc123abc123" + "0" * 28, "file": "tests/test_counts.py",
            "culprit": "f00dbeef" * 5, "suspects": 7,
            "bisect": {"rounds": 2, "runs": 6, "workers": 4, "ms": 812},
            "size": 4, "children": ["mutators.1", "mutators.2"], "ended": "fix landed (p-9)",
            "stop_ms": 12.5, **extra}  # fmt: skip


def _text(result: dict[str, object]) -> tuple[ExitStatus, str]:
    out = io.StringIO()
    status = render(result, argparse.Namespace(json=False), out)
    return status, out.getvalue()


def test_a_generation_shows_its_culprit_mutators_and_end() -> None:
    status, text = _text({"generations": [_gen()], "counts": {"generations": 1}, "live": 0})
    assert status == ExitStatus.SUCCESS
    assert "culprit f00dbeeff00d of 7 suspects: 2 rounds" in text
    assert "mutators 2/4: mutators.1 mutators.2" in text
    assert "ended: fix landed (p-9) (stopped in 12.5 ms)" in text
    assert "taken up again" not in text


def test_a_generation_a_restarted_synapse_took_up_says_so_and_live_is_exit_1() -> None:
    status, text = _text({"generations": [_gen(state="swarming", ended="", resumed=2)],
                          "live": 1})  # fmt: skip
    assert status == ExitStatus.ERROR  # golden is red and the swarm is at work
    assert "SWARMING" in text and "taken up again by 2 restarted synapse(s)" in text
