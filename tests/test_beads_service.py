"""The beads service as a real process on a real bus: BeadAssigned for newly ready
beads (at start, on an edit seen through inotify, when a close unblocks one), claims and
closes over its control socket, `factoryctl beads`, and a store that cannot be read
reported as an error, never as "no work"."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipc import control, paths
from ipc.bus import Subscriber
from supervisor.ctl import cli
from tests.helpers.processes import Processes
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def issue(id_: str, priority: int, *blockers: str, **fields: Any) -> bytes:
    record = {"id": id_, "title": f"bead {id_}", "description": f"do {id_}", "status": "open",
              "priority": priority, "issue_type": "task",
              "created_at": "2026-01-01T00:00:00Z", **fields}  # fmt: skip
    if blockers:
        record["dependencies"] = [
            {"issue_id": id_, "depends_on_id": b, "type": "blocks", "metadata": "{}"}
            for b in blockers
        ]
    return orjson.dumps(record) + b"\n"


class BeadsProcess:
    def __init__(self, tmp_path: Path, procs: Processes, *extra: str) -> None:
        self.runtime = tmp_path / "run"
        self.log = tmp_path / f"beads-{len(list(tmp_path.glob('beads-*.log')))}.log"
        self.jsonl = tmp_path / "repo" / ".beads" / "issues.jsonl"
        argv = [sys.executable, "-m", "procs.beads.service", "--runtime-dir", str(self.runtime),
                "--state-dir", str(tmp_path / "state"), "--jsonl", str(self.jsonl),
                "--reconcile-s", "300", *extra]  # fmt: skip
        with open(self.log, "ab") as err:
            self.proc = procs.start(argv, stderr=err)
        wait_until(lambda: self.events("ready") or self.exited(), timeout=30, what="ready")
        assert self.proc.poll() is None, self.log.read_text()

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [e for e in map(orjson.loads, lines) if e.get("event") == name]

    def call(self, command: str, **args: Any) -> Any:
        return control.call(paths.control_socket(self.runtime, "beads"), command, args, timeout=10)

    def ctl(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["--runtime-dir", str(self.runtime), *argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()


def assigned(sub: Subscriber, bead_id: str) -> Any:
    return sub.wait_for("BeadAssigned", lambda e: e.signal.task_id == bead_id, timeout=10).signal


@pytest.mark.integration
def test_the_service_announces_claims_closes_and_lists(tmp_path: Path, procs: Processes) -> None:
    runtime = tmp_path / "run"
    paths.private_dir(runtime)
    procs.broker(runtime)
    sub = Subscriber(runtime, types=["BeadAssigned"])
    sub.wait_connected(timeout=10)
    repo = tmp_path / "repo" / ".beads"
    repo.mkdir(parents=True)
    (repo / "issues.jsonl").write_bytes(
        issue("a", 1) + issue("b", 2) + issue("c", 0, "a") + b"not json\n"
    )
    beads = BeadsProcess(tmp_path, procs, "--bd", "never")
    try:
        # at start: the ready beads, announced with their requirements
        first = assigned(sub, "a")
        assert (first.spec, first.priority.value) == ("bead a", "high")
        assert first.requirements == "## bead a\n\ndo a"
        assigned(sub, "b")
        reply = beads.call("ready")
        assert [b["id"] for b in reply["ready"]] == ["a", "b"]
        assert reply["malformed_lines"] == 1 and reply["malformed"][0]["line"] == 4

        claim = beads.call("claim", bead_id="a", loop_id="7")
        assert (claim["generation"], claim["actor"], claim["state"]) == (1, "factory/7", "claimed")
        with pytest.raises(control.RemoteError, match="claimed by factory/7") as refused:
            beads.call("claim", bead_id="a", loop_id="8")
        assert refused.value.type == "conflict"
        with pytest.raises(control.RemoteError) as bad:
            beads.call("claim", bead_id="a")
        assert bad.value.type == "bad_request"

        # someone else adds a bead: inotify sees it (the timer is 300 s away)
        with open(beads.jsonl, "ab") as f:
            f.write(issue("d", 3))
        assigned(sub, "d")

        code, out, _ = beads.ctl("beads")
        assert "BLOCKED (1)\n  c " in out and "      blocks on a (in_progress)\n" in out

        # a close unblocks c, which is announced
        beads.call("close", bead_id="a", loop_id="7", generation=1, stats={"commits": 2})
        assigned(sub, "c")
        assert beads.call("show", bead_id="c")["requirements"] == "## bead c\n\ndo c"

        beads.call("claim", bead_id="b", loop_id="9")
        code, out, _ = beads.ctl("beads")
        assert code == 0
        assert "READY (2, dispatch order)" in out and out.index("  c ") < out.index("  d ")
        assert "CLAIMED (1)" in out and "b                    loop 9 (gen 1, claimed" in out
        assert "1 malformed line(s) skipped" in out and "line 4: not JSON" in out
        code, out, _ = beads.ctl("beads", "--json")
        listing = orjson.loads(out)
        assert [c["bead_id"] for c in listing["claimed"]] == ["b"]
        assert listing["claimed"][0]["title"] == "bead b"

        status = beads.call("status")
        assert status["backend"] == "jsonl" and status["published"] >= 4
        assert status["inotify_events"] >= 1
    finally:
        os.kill(beads.proc.pid, signal.SIGTERM)
        assert beads.proc.wait(timeout=10) == 0
        sub.close()


@pytest.mark.integration
def test_a_store_that_cannot_be_read_is_an_error_not_no_work(
    tmp_path: Path, procs: Processes
) -> None:
    repo = tmp_path / "repo" / ".beads"
    repo.mkdir(parents=True)
    (repo / "issues.jsonl").write_bytes(issue("a", 1) + issue("b", 1, "a"))
    beads = BeadsProcess(tmp_path, procs, "--bd", "never", "--no-bus")
    try:
        wait_until(lambda: beads.call("status")["readings"] >= 1, timeout=10, what="a reading")
        beads.call("claim", bead_id="a", loop_id="7")
        (repo / "issues.jsonl").rename(repo / "moved.jsonl")  # gone (inotify: MOVED_FROM)
        wait_until(lambda: beads.call("status")["last_error"], timeout=10, what="the error")
        assert "no such file" in beads.call("status")["last_error"]
        assert beads.events("store_unreadable")
        with pytest.raises(control.RemoteError, match="no such file") as err:
            beads.call("ready")
        assert err.value.type == "store_error"
        with pytest.raises(control.RemoteError) as err:
            beads.call("close", bead_id="a", loop_id="7")
        assert err.value.type == "store_error"
        code, out, _ = beads.ctl("beads")
        assert code == 1 and "the beads store cannot be read" in out
        assert "CLAIMED (1)" in out  # the claims are still known
        (repo / "moved.jsonl").rename(repo / "issues.jsonl")
        wait_until(lambda: beads.call("status")["last_error"] is None, timeout=10, what="back")
        beads.call("close", bead_id="a", loop_id="7")  # retried, and it lands
        assert [b["id"] for b in beads.call("ready")["ready"]] == ["b"]
    finally:
        os.kill(beads.proc.pid, signal.SIGTERM)
        assert beads.proc.wait(timeout=10) == 0


@pytest.mark.integration
def test_claims_survive_a_restart_of_the_service(tmp_path: Path, procs: Processes) -> None:
    repo = tmp_path / "repo" / ".beads"
    repo.mkdir(parents=True)
    (repo / "issues.jsonl").write_bytes(issue("a", 1))
    beads = BeadsProcess(tmp_path, procs, "--bd", "never", "--no-bus")
    beads.call("claim", bead_id="a", loop_id="7")
    os.kill(beads.proc.pid, signal.SIGKILL)
    beads.proc.wait(timeout=10)
    again = BeadsProcess(tmp_path, procs, "--bd", "never", "--no-bus")
    try:
        with pytest.raises(control.RemoteError, match="claimed by factory/7"):
            again.call("claim", bead_id="a", loop_id="8")
        _, out, _ = again.ctl("beads", "--json")
        assert [c["loop_id"] for c in orjson.loads(out)["claimed"]] == ["7"]
        reply = again.call("fail", bead_id="a", loop_id="7", reason="loop died")
        assert reply["status"] == "open"
    finally:
        os.kill(again.proc.pid, signal.SIGTERM)
        assert again.proc.wait(timeout=10) == 0


def test_factoryctl_beads_without_the_service(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--runtime-dir", str(tmp_path), "beads"], out=out, err=err)
    assert code == 3 and "beads is not running" in err.getvalue()


def test_the_service_refuses_to_start_without_the_directory(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "procs.beads.service", "--runtime-dir", str(tmp_path / "r"),
            "--state-dir", str(tmp_path / "s"), "--jsonl", str(tmp_path / "no" / "x.jsonl"),
            "--bd", "never", "--no-bus"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=30, check=False)
    assert done.returncode == 1
    assert b"no such directory" in done.stderr


@pytest.mark.integration
def test_with_bd_on_path_the_service_goes_through_bd(
    tmp_path: Path, procs: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_beads_claims import FakeBd

    fake = FakeBd(tmp_path, monkeypatch)
    fake.issues(orjson.loads(issue("a", 2)), orjson.loads(issue("b", 0)))
    (tmp_path / "repo" / ".beads").mkdir(parents=True)  # no JSONL file: bd is the store
    beads = BeadsProcess(tmp_path, procs, "--no-bus", "--bd-timeout-s", "2")
    try:
        assert beads.call("status")["backend"] == "bd"
        assert [b["id"] for b in beads.call("ready")["ready"]] == ["b", "a"]
        assert beads.call("claim", bead_id="b", loop_id="7")["state"] == "claimed"
        assert ["update", "b", "--claim", "--actor", "factory/7", "--json"] in fake.calls()
        fake.mode("garbage")
        with pytest.raises(control.RemoteError, match="printed garbage") as err:
            beads.call("ready")
        assert err.value.type == "store_error"
        fake.mode("hang")
        with pytest.raises(control.RemoteError, match=r"no answer after 2\.0s") as err:
            beads.call("claim", bead_id="a", loop_id="8")
        assert err.value.type == "store_error"
        fake.mode("ok")
        _, out, _ = beads.ctl("beads", "--json")
        assert [c["bead_id"] for c in orjson.loads(out)["claimed"]] == ["b"]
    finally:
        os.kill(beads.proc.pid, signal.SIGTERM)
        assert beads.proc.wait(timeout=10) == 0


CHILD_BLOCK = """
# The beads store's only reader and writer: `factoryctl beads`. With bd on PATH it goes
# through bd (run it in the repository: cwd = "/srv/repo"); otherwise it reads and
# writes the JSONL export, watched with inotify. Claims: <state_dir>/beads.sqlite3.
[[supervisor.children.children]]
id = "beads"
target = "procs.beads.service:main"
ready = "notify"
shutdown_ms = 15000
"""


@pytest.mark.integration
def test_runs_under_factoryd_as_the_example_child(factoryd: Any, tmp_path: Path) -> None:
    jsonl = tmp_path / "repo" / ".beads" / "issues.jsonl"
    jsonl.parent.mkdir(parents=True)
    jsonl.write_bytes(issue("a", 1) + issue("b", 0, "a"))
    d = factoryd(
        '[supervisor]\nstrategy = "rest_for_one"\n'
        '[[supervisor.children]]\nid = "bus"\ntarget = "procs.bus.service:main"\n'
        'ready = "notify"\n'
        '[[supervisor.children]]\nid = "services"\nstrategy = "one_for_one"\n'
        + CHILD_BLOCK
        + f'args = ["--jsonl", "{jsonl}", "--bd", "never", "--max-attempts", "3"]\n'
    ).start()
    assert d.node("beads")["state"] == "running"
    sub = Subscriber(d.runtime_dir, types=["BeadAssigned"])
    try:
        sub.wait_connected(timeout=10)
        sock = paths.control_socket(d.runtime_dir, "beads")
        control.call(sock, "claim", {"bead_id": "a", "loop_id": "1"}, timeout=10)
        control.call(sock, "close", {"bead_id": "a", "loop_id": "1"}, timeout=10)
        assigned(sub, "b")  # announced once a closed
        code, out, _ = d.ctl("beads")
        assert code == 0 and "READY (1, dispatch order)" in out
    finally:
        sub.close()
    d.stop()
    assert d.proc is not None and d.proc.returncode == 0
