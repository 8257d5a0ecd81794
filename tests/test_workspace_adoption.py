"""Loop workspaces survive a restart of the whole tree: real workspace managers, a real
beads service and real owner processes standing in for factoryd's zygote. A workspace
whose loop still holds its bead's claim is kept (`detached`) when its owner dies and is
adopted by the resumed loop (procs/loop/workspace.py, the loop's own code path); one
whose loop holds no claim is reaped; while the claims cannot be read, nothing is."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipc import control, paths
from procs.loop import workspace as loop_workspace
from procs.workspaces._records import WorkspaceRecords
from tests.helpers.processes import Processes
from tests.helpers.workspace_service import Service, start_service
from tests.waiting import wait_gone, wait_until

pytestmark = pytest.mark.integration


def bead(id_: str) -> bytes:
    return (
        orjson.dumps(
            {
                "id": id_,
                "title": f"bead {id_}",
                "description": "do it",
                "status": "open",
                "priority": 1,
                "issue_type": "task",
                "created_at": "2026-01-01T00:00:00Z",
            }
        )
        + b"\n"
    )


class Beads:
    """The beads service (JSONL, no bus) as a real process."""

    def __init__(self, tmp_path: Path, procs: Processes) -> None:
        self.runtime = tmp_path / "run"
        self.log = tmp_path / f"beads-{len(list(tmp_path.glob('beads-*.log')))}.log"
        argv = [
            sys.executable,
            "-m",
            "procs.beads.service",
            "--runtime-dir",
            str(self.runtime),
            "--state-dir",
            str(tmp_path / "state"),
            "--no-bus",
            "--bd",
            "never",
            "--jsonl",
            str(tmp_path / "repo" / ".beads" / "issues.jsonl"),
        ]
        with open(self.log, "ab") as err:
            self.proc = procs.start(argv, stderr=err)
        wait_until(
            lambda: "ready" in self.log.read_text() or self.proc.poll() is not None,
            timeout=30,
            what="beads ready",
        )
        assert self.proc.poll() is None, self.log.read_text()

    def call(self, command: str, **args: Any) -> Any:
        return control.call(paths.control_socket(self.runtime, "beads"), command, args, timeout=10)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture
def zygotes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stand-ins for factoryd's zygote: the owner of every loop workspace."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def new_zygote(started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    started.append(proc)
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_gone(proc.pid)


def via(manager: Service, owner: subprocess.Popen[bytes], tmp_path: Path) -> Any:
    return loop_workspace.WorkspaceSource(
        manager_socket=manager.socket, clone_root=tmp_path / "clones", owner_pid=owner.pid
    )


def listed(manager: Service) -> dict[str, dict[str, Any]]:
    return {w["owner_loop"]: w for w in manager.call("workspaces.list")["workspaces"]}


def test_a_tree_restart_keeps_claimed_loops_workspaces_for_adoption(
    tmp_path: Path, procs: Processes, golden: Path, zygotes: list[subprocess.Popen[bytes]]
) -> None:
    jsonl = tmp_path / "repo" / ".beads" / "issues.jsonl"
    jsonl.parent.mkdir(parents=True)
    jsonl.write_bytes(bead("a") + bead("b"))
    beads = Beads(tmp_path, procs)
    generation = beads.call("claim", bead_id="a", loop_id="a.1")["generation"]
    beads.call("claim", bead_id="b", loop_id="b.1")
    args = ("--root", str(tmp_path / "ws"), "--strategy", "copy", "--reconcile-s", "0.1")
    manager = start_service(tmp_path, *args)
    zygote = new_zygote(zygotes)
    a = loop_workspace.find_or_make(golden, "main", "a.1", via(manager, zygote, tmp_path))
    b = loop_workspace.find_or_make(golden, "main", "b.1", via(manager, zygote, tmp_path))
    (a.path / "work_in_progress.py").write_text("HALF = 1\n")
    assert {k: w["state"] for k, w in listed(manager).items()} == {"a.1": "ready", "b.1": "ready"}
    beads.call("release", bead_id="b", loop_id="b.1", generation=1, reason="given up")

    # The tree goes down hard: manager, zygote and beads; the workspaces stay on disk.
    os.killpg(manager.proc.pid, signal.SIGKILL)
    manager.proc.wait(timeout=10)
    kill(zygote)
    beads.stop()

    # The manager comes back first (as in the example tree): beads cannot be asked yet,
    # so neither workspace is reaped, both wait detached.
    manager = start_service(tmp_path, *args)
    try:
        kept = {e["owner_loop"]: e for e in manager.events("workspace_orphan")}
        assert {k: e["action"] for k, e in kept.items()} == {"a.1": "detached", "b.1": "detached"}
        assert "claims unknown" in kept["a.1"]["reason"]
        assert a.path.is_dir() and b.path.is_dir()

        # beads is back (its claims survived): b's loop holds none, so b is reaped.
        beads = Beads(tmp_path, procs)
        wait_until(lambda: not b.path.exists(), timeout=10, what="b reaped")
        assert list(listed(manager)) == ["a.1"]
        [removed] = [e for e in manager.events("workspace_orphan") if e["action"] == "removed"]
        assert removed["owner_loop"] == "b.1" and "holds no claim" in removed["reason"]

        # The resumed loop (a new zygote) finds its workspace where its store recorded it.
        zygote = new_zygote(zygotes)
        found = loop_workspace.find(a.path, via(manager, zygote, tmp_path))
        assert found == a
        mine = listed(manager)["a.1"]
        assert (mine["state"], mine["owner_pid"]) == ("ready", zygote.pid)
        assert (a.path / "work_in_progress.py").read_text() == "HALF = 1\n"
        # ... and by its slug, as a restart without a stored path does: no second one.
        assert (
            loop_workspace.find_or_make(golden, "main", "a.1", via(manager, zygote, tmp_path)) == a
        )
        assert len(listed(manager)) == 1

        # The new owner dies while a.1 still holds its claim: kept again, seen at once.
        kill(zygote)
        wait_until(
            lambda: listed(manager)["a.1"]["state"] == "detached", timeout=10, what="a detached"
        )
        # The claim goes (the dispatcher gave up on the bead): now it is an orphan.
        beads.call("release", bead_id="a", loop_id="a.1", generation=generation, reason="x")
        wait_until(lambda: not a.path.exists(), timeout=10, what="a reaped")
        assert listed(manager) == {}
    finally:
        manager.stop()
        beads.stop()


def test_an_adoption_never_takes_a_live_owners_workspace(
    tmp_path: Path, golden: Path, zygotes: list[subprocess.Popen[bytes]]
) -> None:
    manager = start_service(
        tmp_path, "--root", str(tmp_path / "ws"), "--strategy", "copy", "--claims", "none"
    )
    try:
        first, second = new_zygote(zygotes), new_zygote(zygotes)
        ws = manager.call(
            "workspaces.create",
            {"slug": "loop-x", "source": str(golden), "owner_pid": first.pid, "owner_loop": "x"},
        )
        with pytest.raises(control.RemoteError, match="still runs") as refused:
            manager.call("workspaces.adopt", {"id": ws["workspace"]["id"], "owner_pid": second.pid})
        assert refused.value.type == "owned"
        with pytest.raises(control.RemoteError, match="owner_pid is required"):
            manager.call("workspaces.adopt", {"id": ws["workspace"]["id"]})
        with pytest.raises(control.RemoteError, match="owner_loop must be a loop id"):
            manager.call(
                "workspaces.create",
                {"slug": "y", "source": str(golden), "owner_pid": first.pid, "owner_loop": 7},
            )
        # Without a claims source (--claims none) a loop's workspace is reaped as before.
        kill(first)
        wait_until(lambda: not Path(ws["workspace"]["path"]).exists(), timeout=10, what="reaped")
    finally:
        manager.stop()


def test_records_from_before_adoption_are_migrated(tmp_path: Path) -> None:
    db = tmp_path / "workspaces.sqlite3"
    old = sqlite3.connect(db)
    old.execute("""CREATE TABLE workspaces (
        id TEXT PRIMARY KEY, slug TEXT NOT NULL, path TEXT NOT NULL UNIQUE,
        scratch TEXT NOT NULL, strategy TEXT NOT NULL, source TEXT NOT NULL,
        owner_pid INTEGER NOT NULL, owner_start INTEGER, created_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'orphaned', 'destroying')))""")
    old.execute(
        "INSERT INTO workspaces VALUES ('0123456789ab', 's', '/w/s', '/x/s', 'copy', "
        "'/g', 42, 7, 1.5, 'ready')"
    )
    old.commit()
    old.close()
    records = WorkspaceRecords(db)
    try:
        [rec] = records.all()
        assert (rec.id, rec.owner_pid, rec.state, rec.owner_loop) == (
            "0123456789ab",
            42,
            "ready",
            None,
        )
        records.set_state(rec.id, "detached")  # the new state is allowed now
        assert records.get(rec.id).state == "detached"  # type: ignore[union-attr]
    finally:
        records.close()
    WorkspaceRecords(db).close()  # opening a migrated file again changes nothing
