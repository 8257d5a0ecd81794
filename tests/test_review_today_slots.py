"""Review of the workspace slots (procs/workspaces/_slots.py) and how the manager uses
them: each test is a bug found in review, shown with the real manager process, a real
ledger and real holders."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import control, ledger
from ipc.ledger import LedgerOwner, Limits
from tests import test_workspace_fixtures as fx
from tests.test_workspace_fixtures import make_repo
from tests.test_workspace_service import start_service
from tests.test_workspace_slots import create, manager_args, slots_in_use

scratch = fx.scratch
ROOT = Path(__file__).resolve().parent.parent

LANE_HOLDER = """
import sys
from ipc.ledger import TicketLedger
led = TicketLedger.open(sys.argv[1])
led.acquire({"workspace": 1}, label="holder", timeout=5)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run"
    path.mkdir()
    yield path
    ledger.destroy(path)


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "golden")


def hold_the_only_lane(runtime: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", LANE_HOLDER, str(runtime)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_full_pid_table_when_the_ledger_is_attached_is_a_refusal_not_a_crash(
    tmp_path: Path, runtime: Path, scratch: Path, golden: Path
) -> None:
    """Attaching a ledger counts the kept workspaces into it (_cover). A LedgerError
    there other than a refusal (here: its pid table full) escaped every handler, so
    `workspaces.list` killed the manager (and a manager started then never came up)."""
    svc = start_service(tmp_path, *manager_args(tmp_path, scratch))
    holder = None
    try:
        kept = create(svc, "kept", golden)  # no ledger yet: unlimited
        LedgerOwner.create(runtime, Limits(max_workspaces=4), nlanes=1)
        holder = hold_the_only_lane(runtime)  # the one lane is another live process's

        listed = svc.call("workspaces.list")  # attaches the ledger
        assert [w["id"] for w in listed["workspaces"]] == [kept["id"]]
        assert listed["slots"]["uncovered"] == [kept["id"]]
        with pytest.raises(control.RemoteError, match="pid table is full") as caught:
            create(svc, "more", golden)
        assert caught.value.type == "failed"
        assert svc.proc.poll() is None

        holder.stdin.close()  # type: ignore[union-attr]
        assert holder.wait(timeout=10) == 0  # its lane is free to sweep now
        more = create(svc, "more", golden)
        assert svc.call("status")["slots"]["uncovered"] == []
        assert slots_in_use(runtime) == (2, 4)
        for ws in (kept, more):
            svc.call("workspaces.destroy", {"id": ws["id"]})
        assert slots_in_use(runtime) == (0, 4)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait(timeout=10)
            holder.stdout.close()  # type: ignore[union-attr]
            if holder.stdin and not holder.stdin.closed:
                holder.stdin.close()
        assert svc.stop() == 0
