"""Workspace slots from the governor's ledger: max_workspaces holds for the real workspace
manager, across a SIGKILL and restart of the manager, with kept workspaces over the
limit, and without a ledger (unlimited, as before)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import control, ledger
from ipc.ledger import LedgerOwner, Limits
from procs.workspaces import SlotsExhausted, StrategyFailed, WorkspaceRegistry, WorkspaceSlots
from procs.workspaces import service as workspace_manager
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from tests.helpers.governor import governor_status, start_governor
from tests.helpers.processes import ROOT, Processes
from tests.helpers.repos import git
from tests.helpers.workspace_service import Service, start_service
from tests.waiting import wait_gone, wait_until

pytestmark = pytest.mark.integration
EXHAUSTED_2_OF_2 = (
    "workspace exhausted: 2/2 in use; no workspace was created (destroy one, or raise "
    "max_workspaces)"
)


def manager_args(tmp_path: Path, scratch: Path, *extra: str) -> tuple[str, ...]:
    root = str(tmp_path / "ws")
    return ("--root", root, "--scratch", str(scratch), "--strategy", "copy", *extra)


def create(svc: Service, slug: str, golden: Path, owner_pid: int | None = None) -> dict:
    args = {"slug": slug, "source": str(golden), "owner_pid": owner_pid or os.getpid()}
    return svc.call("workspaces.create", args)["workspace"]


def refused(svc: Service, golden: Path) -> str:
    """Ask for one more workspace, expect the refusal; returns its message."""
    with pytest.raises(control.RemoteError) as caught:
        create(svc, "one-more", golden)
    assert caught.value.type == "exhausted"
    return str(caught.value)


def on_disk(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "ws").iterdir()}


def slots_in_use(runtime: Path) -> tuple[int, int]:
    entry = ledger.snapshot(runtime)["resources"]["workspace"]
    return entry["in_use"], entry["limit"]


def held_by(runtime: Path, pid: int) -> set[str]:
    """Workspace ids whose slot a live `pid` holds in the ledger, by ticket label."""
    return {
        h["label"].removeprefix("workspace ")
        for h in ledger.snapshot(runtime)["holders"]
        if h["pid"] == pid and h["alive"] and h["resources"] == {"workspace": 1}
    }


def ctl(svc: Service, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--runtime-dir", str(svc.runtime), *argv], out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def sigkill(svc: Service) -> None:
    os.killpg(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(timeout=10)


def test_max_workspaces_holds_through_refusal_destroy_and_a_manager_sigkill(
    tmp_path: Path, procs: Processes, runtime: Path, scratch: Path, golden: Path
) -> None:
    start_governor(procs, runtime, "--max-workspaces", "2", "--min-free-ram-mb", "0")
    args = manager_args(tmp_path, scratch)
    first = start_service(tmp_path, *args)
    assert first.events("ready")[0]["slots"]["summary"] == "0/2 in use"
    a, b = create(first, "a", golden), create(first, "b", golden)
    assert slots_in_use(runtime) == (2, 2)
    assert held_by(runtime, first.proc.pid) == {a["id"], b["id"]}

    assert refused(first, golden) == EXHAUSTED_2_OF_2
    rc, _, err = ctl(
        first, "workspaces", "create", "c", str(golden), "--owner-pid", str(os.getpid())
    )
    assert (rc, err.strip()) == (ExitStatus.ERROR, f"factoryctl: {EXHAUSTED_2_OF_2}")
    # Nothing was made for the refused creates: no directory, no record.
    assert on_disk(tmp_path) == {Path(a["path"]).name, Path(b["path"]).name}
    listed = first.call("workspaces.list")["workspaces"]
    assert [w["slug"] for w in listed] == ["a", "b"]
    # Each refusal counts as an exhaustion of the ledger (the governor broadcasts it).
    assert governor_status(runtime)["ledger"]["resources"]["workspace"]["exhausted"] == 2
    rc, out, _ = ctl(first, "workspaces")
    assert out.splitlines()[-1] == "workspace slots: 2/2 in use"

    first.call("workspaces.destroy", {"id": a["id"]})
    assert slots_in_use(runtime) == (1, 2)
    c = create(first, "c", golden)
    assert slots_in_use(runtime) == (2, 2)
    status = first.call("status")["slots"]
    assert (status["in_use"], status["limit"], status["held"], status["uncovered"]) == (
        2,
        2,
        2,
        [],
    )

    sigkill(first)
    assert slots_in_use(runtime) == (0, 2)  # SEM_UNDO: the kernel took them back
    second = start_service(tmp_path, *args)
    try:
        [ready] = second.events("ready")
        assert (ready["slots"]["summary"], ready["slots"]["held"]) == ("2/2 in use", 2)
        assert slots_in_use(runtime) == (2, 2)
        assert held_by(runtime, second.proc.pid) == {b["id"], c["id"]}
        assert refused(second, golden) == EXHAUSTED_2_OF_2
        assert len(on_disk(tmp_path)) == 2
        for ws in (b, c):
            second.call("workspaces.destroy", {"id": ws["id"]})
        assert slots_in_use(runtime) == (0, 2)
    finally:
        assert second.stop() == 0


def test_kept_workspaces_over_the_limit_after_a_restart_are_reported_not_deleted(
    tmp_path: Path, runtime: Path, scratch: Path, golden: Path
) -> None:
    owner_ledger = LedgerOwner.create(runtime, Limits(max_workspaces=3))
    args = manager_args(tmp_path, scratch, "--orphans", "keep")
    first = start_service(tmp_path, *args)
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        mine = [create(first, f"mine-{i}", golden) for i in range(2)]
        theirs = create(first, "theirs", golden, owner_pid=owner.pid)
    finally:
        owner.kill()
        owner.wait(timeout=10)
        owner.stdin.close()  # type: ignore[union-attr]
    wait_until(
        lambda: first.events("workspace_orphan"), what="the dead owner's workspace to be kept"
    )
    assert first.events("workspace_orphan")[0]["action"] == "kept"
    assert slots_in_use(runtime) == (3, 3)  # a kept orphan keeps its slot

    sigkill(first)
    assert owner_ledger.adjust_limits(Limits(max_workspaces=2)) == []
    second = start_service(tmp_path, *args)
    try:
        [over] = second.events("slots_over_limit")
        assert (over["in_use"], over["limit"], over["held"], len(over["uncovered"])) == (
            2,
            2,
            2,
            1,
        )
        kept = {mine[0]["id"], mine[1]["id"], theirs["id"]}
        assert {w["id"] for w in second.call("workspaces.list")["workspaces"]} == kept
        assert len(on_disk(tmp_path)) == 3  # user work is never deleted for a limit
        assert refused(second, golden) == (
            "workspace over the limit: 1 kept workspace(s) hold no slot (2/2 in use); "
            "destroy 1 before creating another"
        )
        summary = second.call("status")["slots"]["summary"]
        assert summary == "2/2 in use; over the limit: 1 kept workspace(s) hold no slot"

        second.call("workspaces.destroy", {"id": theirs["id"]})
        slots = second.call("status")["slots"]
        assert (slots["in_use"], slots["held"], slots["uncovered"]) == (2, 2, [])
        assert held_by(runtime, second.proc.pid) == {mine[0]["id"], mine[1]["id"]}
        assert refused(second, golden) == EXHAUSTED_2_OF_2
        second.call("workspaces.destroy", {"id": mine[0]["id"]})
        third = create(second, "third", golden)
        assert held_by(runtime, second.proc.pid) == {mine[1]["id"], third["id"]}
        for ws in (mine[1], third):
            second.call("workspaces.destroy", {"id": ws["id"]})
    finally:
        assert second.stop() == 0
    wait_gone(second.proc.pid)
    assert slots_in_use(runtime) == (0, 2)


def test_an_orphan_removed_when_its_owner_dies_gives_its_slot_back(
    tmp_path: Path, runtime: Path, scratch: Path, golden: Path
) -> None:
    LedgerOwner.create(runtime, Limits(max_workspaces=1))
    svc = start_service(tmp_path, *manager_args(tmp_path, scratch))  # --orphans remove
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        create(svc, "short-lived", golden, owner_pid=owner.pid)
        assert refused(svc, golden).startswith("workspace exhausted: 1/1 in use")
        owner.kill()
        owner.wait(timeout=10)
        wait_until(lambda: slots_in_use(runtime) == (0, 1), what="the orphan's slot back")
        assert svc.events("workspace_orphan")[0]["action"] == "removed"
        ws = create(svc, "next", golden)
        assert held_by(runtime, svc.proc.pid) == {ws["id"]}
        svc.call("workspaces.destroy", {"id": ws["id"]})
    finally:
        owner.kill()
        owner.wait(timeout=10)
        owner.stdin.close()  # type: ignore[union-attr]
        assert svc.stop() == 0


def test_without_a_ledger_creates_are_unlimited_and_a_later_ledger_is_used(
    tmp_path: Path, runtime: Path, scratch: Path, golden: Path
) -> None:
    svc = start_service(tmp_path, *manager_args(tmp_path, scratch))
    try:
        assert svc.events("ready")[0]["slots"]["summary"] == "no ledger: unlimited"
        made = [create(svc, f"free-{i}", golden) for i in range(3)]
        slots = svc.call("status")["slots"]
        assert (slots["ledger"], slots["summary"]) == (None, "no ledger: unlimited")
        rc, out, _ = ctl(svc, "workspaces")
        assert rc == ExitStatus.SUCCESS and "workspace slots" not in out

        # The governor starts later: its ledger is attached and the 3 kept workspaces
        # are counted into it (1 slot: 2 of them are over the limit).
        owner_ledger = LedgerOwner.create(runtime, Limits(max_workspaces=1))
        message = refused(svc, golden)
        assert message.startswith("workspace over the limit: 2 kept workspace(s) hold no slot")
        assert slots_in_use(runtime) == (1, 1)
        rc, out, _ = ctl(svc, "workspaces")
        assert out.splitlines()[-1] == (
            "workspace slots: 1/1 in use; over the limit: 2 kept workspace(s) hold no slot"
        )

        owner_ledger.destroy()  # the ledger goes away again: unlimited, as before
        made.append(create(svc, "free-3", golden))
        assert svc.call("status")["slots"]["summary"] == "no ledger: unlimited"
        assert len(on_disk(tmp_path)) == 4
        for ws in made:
            svc.call("workspaces.destroy", {"id": ws["id"]})
    finally:
        assert svc.stop() == 0


LANE_HOLDER = """
import sys
from ipc.ledger import TicketLedger
led = TicketLedger.open(sys.argv[1])
led.acquire({"workspace": 1}, label="holder", timeout=5)
print("held", flush=True)
sys.stdin.read()
"""


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


# -- the registry's slots, in process ------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path, runtime: Path, scratch: Path) -> Iterator[WorkspaceRegistry]:
    reg = WorkspaceRegistry(
        tmp_path / "ws",
        tmp_path / "ws.sqlite3",
        scratch=scratch,
        default_strategy="copy",
        slots=WorkspaceSlots(runtime, timeout_s=0.2),
    )
    yield reg
    reg.close()


def test_a_failed_create_gives_its_slot_back(
    tmp_path: Path, runtime: Path, registry: WorkspaceRegistry
) -> None:
    LedgerOwner.create(runtime, Limits(max_workspaces=1))
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")  # no commit: `git worktree add` fails after the slot is taken
    with pytest.raises(StrategyFailed, match="invalid reference: HEAD"):
        registry.create_workspace("broken", empty, "worktree")
    assert slots_in_use(runtime) == (0, 1)
    assert registry.list_workspaces() == [] and not any((tmp_path / "ws").iterdir())


def test_refusals_name_the_resource_the_use_and_the_limit(
    tmp_path: Path, runtime: Path, registry: WorkspaceRegistry, golden: Path
) -> None:
    owner_ledger = LedgerOwner.create(runtime, Limits(max_workspaces=1))
    ws = registry.create_workspace("only", golden)
    with pytest.raises(SlotsExhausted) as caught:
        registry.create_workspace("second", golden)
    assert (caught.value.resource, caught.value.current, caught.value.limit) == ("workspace", 1, 1)
    assert str(caught.value) == (
        "workspace exhausted: 1/1 in use after waiting 0.2 s; no workspace was created "
        "(destroy one, or raise max_workspaces)"
    )
    registry.destroy_workspace(ws.id)

    huge = 10**9  # the governor's free RAM minimum, far above this machine's RAM
    owner_ledger.adjust_limits(Limits(max_workspaces=1, min_free_ram_mb=huge))
    with pytest.raises(SlotsExhausted, match=f"is below the minimum {huge} MB; no workspace"):
        registry.create_workspace("starved", golden)
    owner_ledger.adjust_limits(Limits(max_workspaces=0))
    with pytest.raises(SlotsExhausted, match="workspace exhausted: max_workspaces is 0"):
        registry.create_workspace("none", golden)
    assert registry.list_workspaces() == [] and not any((tmp_path / "ws").iterdir())


HOLDER = """
import sys
from ipc import ledger
from ipc.ledger import TicketLedger
from tests.waiting import wait_until
runtime = sys.argv[1]
led = TicketLedger.open(runtime)
led.acquire({"workspace": 1}, label="holder", timeout=5)
print("held", flush=True)
wait_until(  # then exit, which frees the slot
    lambda: ledger.snapshot(runtime)["resources"]["workspace"]["waiting"],
    timeout=30,
    what="someone waiting for the slot",
)
"""


def test_a_create_waits_for_a_slot_another_holder_frees(
    tmp_path: Path, runtime: Path, scratch: Path, golden: Path
) -> None:
    LedgerOwner.create(runtime, Limits(max_workspaces=1))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(runtime)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        reg = WorkspaceRegistry(
            tmp_path / "ws",
            tmp_path / "ws.sqlite3",
            scratch=scratch,
            default_strategy="copy",
            slots=WorkspaceSlots(runtime, timeout_s=30.0),
        )
        ws = reg.create_workspace("patient", golden)  # blocks until the holder exits
        assert holder.wait(timeout=10) == 0
        assert held_by(runtime, os.getpid()) == {ws.id}
        assert ledger.snapshot(runtime)["resources"]["workspace"]["exhausted"] == 1
        reg.destroy_workspace(ws.id)
        reg.close()
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()  # type: ignore[union-attr]


def test_a_bad_slot_timeout_is_refused_with_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("-1", "inf", "nan", "soon"):
        with pytest.raises(SystemExit) as caught:
            workspace_manager.build_parser().parse_args(["--slot-timeout-s", bad])
        assert caught.value.code == 2
        assert f"--slot-timeout-s: must be a finite number of seconds >= 0, got {bad!r}" in (
            capsys.readouterr().err
        )
    assert workspace_manager.build_parser().parse_args([]).slot_timeout_s == 0.0
    with pytest.raises(ValueError, match="slot timeout must be a finite number of seconds"):
        WorkspaceSlots(None, timeout_s=-0.5)
