"""Stop the line on red: while golden is red, a patch that leaves it red is rejected
(its output kept, the reason naming the red golden) and a patch that turns it green
lands; `factoryctl queue` shows the rejection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ipc import control
from supervisor.ctl import cli
from tests.helpers.golden_queue import commit, git, start_golden, start_queue, tiny_project
from tests.helpers.processes import Processes

pytestmark = pytest.mark.integration


def test_a_red_golden_accepts_only_a_fixing_patch(tmp_path: Path, procs: Processes) -> None:
    golden = tmp_path / "golden"
    tiny_project(golden)
    red = commit(golden, {"core.py": "def add(a, b):\n    return a - b\n"}, "broken")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(golden), str(work))
    git(work, "checkout", "-q", "-b", "unrelated", red)
    commit(work, {"VERSION": "2\n"}, "unrelated")
    git(work, "checkout", "-q", "-b", "fix", red)
    fix = commit(work, {"core.py": "def add(a, b):\n    return a + b\n"}, "fix add")
    gm = start_golden(procs, tmp_path, golden)
    assert gm.call("status")["state"] == "red"
    mq = start_queue(procs, tmp_path, "--k", "2")
    assert mq.ready, mq.log.read_text()

    unrelated = mq.call("propose", source=str(work), ref="refs/heads/unrelated", key="a")
    fixing = mq.call("propose", source=str(work), ref="refs/heads/fix", key="b")
    first = mq.call("wait", timeout=90, patch_id=unrelated["patch_id"], timeout_s=80)
    second = mq.call("wait", timeout=90, patch_id=fixing["patch_id"], timeout_s=80)

    assert (first["state"], first["reason"]) == ("rejected", "tests")
    assert "golden is red" in first["detail"] and "assert" in first["output_tail"]
    assert (second["state"], second["landed_hash"]) == ("accepted", fix)  # a fast-forward
    assert gm.call("get_hash")["hash"] == fix
    assert gm.call("status")["state"] == "green"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["--runtime-dir", str(mq.runtime), "queue"], out=out, err=err) == 0
    assert f"{unrelated['patch_id']}" in out.getvalue() and "rejected: tests" in out.getvalue()
    out = io.StringIO()
    assert cli.main(["--runtime-dir", str(mq.runtime), "queue", "--json"], out=out, err=err) == 0
    shown = json.loads(out.getvalue())
    assert shown["golden"] == {"hash": fix, "state": "green"} and shown["entries"] == []
    assert [r["reason"] for r in shown["recent"]] == ["", "tests"]
    with pytest.raises(control.RemoteError) as refused:
        mq.call("propose", source="https://example.invalid/repo.git")
    assert refused.value.type == "bad_request"
