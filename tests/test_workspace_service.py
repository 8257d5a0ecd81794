"""The workspace manager as a real process: factoryctl over its control socket, owners
watched through pidfds, orphan cleanup after a restart, and the RAM disk from config."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ipc import control
from procs.workspaces import _btrfs
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from tests.helpers.host import expected_auto_strategy
from tests.helpers.ramdisks import (
    in_proc_mounts,
    losetup_j,
    new_spec,
    skip_unless_loop_mounts,
    teardown_ramdisk,
)
from tests.helpers.workspace_service import Service, start_service
from tests.waiting import wait_gone, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def service(tmp_path: Path, scratch: Path) -> Iterator[Service]:
    svc = start_service(tmp_path, "--root", str(tmp_path / "ws"), "--scratch", str(scratch))
    yield svc
    if svc.proc.poll() is None:
        for ws in svc.call("workspaces.list")["workspaces"]:
            svc.call("workspaces.destroy", {"id": ws["id"]})
    svc.stop()


def ctl(service: Service, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--runtime-dir", str(service.runtime), *argv], out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_factoryctl_create_list_destroy(service: Service, golden: Path) -> None:
    rc, out, err = ctl(
        service, "workspaces", "create", "feat-1", str(golden), "--owner-pid", str(os.getpid())
    )
    assert rc == ExitStatus.SUCCESS, err
    ws_id, path = out.splitlines()[0].split()
    auto = expected_auto_strategy(golden)  # overlay where root may mount it
    assert f"strategy {auto}:" in out
    assert (Path(path) / "mod0.py").read_text() == "VALUE = 0\n"

    rc, out, _ = ctl(service, "workspaces")
    assert rc == ExitStatus.SUCCESS
    assert out.splitlines()[0].split() == [
        "ID",
        "SLUG",
        "STRATEGY",
        "OWNER",
        "STATE",
        "AGE",
        "PATH",
    ]
    assert out.splitlines()[1].split()[:5] == [
        ws_id,
        "feat-1",
        auto,
        str(os.getpid()),
        "ready",
    ]

    rc, out, _ = ctl(service, "workspaces", "list", "--json")
    listed = orjson.loads(out)["workspaces"]
    assert [(w["id"], w["path"], w["owner_pid"]) for w in listed] == [(ws_id, path, os.getpid())]

    rc, out, _ = ctl(service, "workspaces", "destroy", ws_id)
    assert (rc, out.strip()) == (ExitStatus.SUCCESS, f"destroyed {ws_id} ({path})")
    assert not Path(path).exists()
    assert ctl(service, "workspaces")[1].strip() == "no workspaces"


def test_bad_requests_get_clear_errors(service: Service, golden: Path) -> None:
    rc, _, err = ctl(service, "workspaces", "create", "x", str(golden), "--strategy", "cow")
    assert rc == ExitStatus.USAGE and "unknown strategy 'cow'" in err
    rc, _, err = ctl(service, "workspaces", "create", "../x", str(golden))
    assert rc == ExitStatus.USAGE and "bad slug '../x'" in err
    rc, _, err = ctl(service, "workspaces", "destroy", "0123456789ab")
    assert rc == ExitStatus.NOT_FOUND and "no workspace with id 0123456789ab" in err
    with pytest.raises(control.RemoteError, match="owner_pid is required") as caught:
        service.call("workspaces.create", {"slug": "x", "source": str(golden)})
    assert caught.value.type == "bad_request"
    rc, _, err = ctl(service, "workspaces", "choose", str(golden), "--strategy", "reflink")
    assert rc == ExitStatus.ERROR and "reflink cannot work here" in err
    rc, out, _ = ctl(service, "workspaces", "choose", str(golden))
    assert rc == ExitStatus.SUCCESS and out.startswith(f"{expected_auto_strategy(golden)}: ")
    assert "  not snapshot: source " in out


def test_owner_death_is_seen_at_once(service: Service, golden: Path, owner) -> None:
    reply = service.call(
        "workspaces.create", {"slug": "loop-7", "source": str(golden), "owner_pid": owner.pid}
    )
    path = Path(reply["workspace"]["path"])
    assert path.is_dir()
    os.killpg(owner.pid, signal.SIGKILL)
    owner.wait(timeout=10)
    wait_until(lambda: not service.call("workspaces.list")["workspaces"], what="orphan reaped")
    assert not path.exists()
    [event] = service.events("workspace_orphan")
    assert (event["action"], event["owner_pid"]) == ("removed", owner.pid)


def test_orphans_of_a_killed_manager_are_reaped_on_restart(
    tmp_path: Path, scratch: Path, golden: Path, owner
) -> None:
    args = ("--root", str(tmp_path / "ws"), "--scratch", str(scratch))
    first = start_service(tmp_path, *args)
    mine = first.call(
        "workspaces.create", {"slug": "mine", "source": str(golden), "owner_pid": os.getpid()}
    )["workspace"]
    theirs = first.call(
        "workspaces.create", {"slug": "theirs", "source": str(golden), "owner_pid": owner.pid}
    )["workspace"]
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    os.killpg(owner.pid, signal.SIGKILL)
    owner.wait(timeout=10)
    wait_gone(owner.pid)

    second = start_service(tmp_path, *args)
    try:
        [event] = second.events("workspace_orphan")
        assert (event["id"], event["action"]) == (theirs["id"], "removed")
        [reaped] = second.call("status")["last_reap"]
        assert (reaped["id"], reaped["owner_pid"]) == (theirs["id"], owner.pid)
        assert not Path(theirs["path"]).exists()
        listed = second.call("workspaces.list")["workspaces"]
        assert [w["id"] for w in listed] == [mine["id"]]
        second.call("workspaces.destroy", {"id": mine["id"]})
    finally:
        assert second.stop() == 0
    assert not second.socket.exists()


def test_sigterm_stops_cleanly_and_keeps_workspaces(
    tmp_path: Path, scratch: Path, golden: Path
) -> None:
    args = ("--root", str(tmp_path / "ws"), "--scratch", str(scratch), "--strategy", "copy")
    first = start_service(tmp_path, *args)
    ws = first.call(
        "workspaces.create", {"slug": "stay", "source": str(golden), "owner_pid": os.getpid()}
    )["workspace"]
    assert first.stop() == 0
    assert first.events("stopping")[0]["signal"] == signal.SIGTERM
    assert Path(ws["path"]).is_dir()
    second = start_service(tmp_path, *args)
    try:
        assert [w["id"] for w in second.call("workspaces.list")["workspaces"]] == [ws["id"]]
        second.call("workspaces.destroy", {"id": ws["id"]})
    finally:
        second.stop()


def test_no_manager_running(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--runtime-dir", str(tmp_path), "workspaces"], out=out, err=err)
    assert rc == ExitStatus.NOT_RUNNING
    assert "workspace_manager is not running" in err.getvalue()


@pytest.mark.needs_root
def test_ramdisk_from_config_then_destroyed_by_factoryctl(
    tmp_path: Path, scratch: Path, golden: Path
) -> None:
    skip_unless_loop_mounts("btrfs")
    spec = new_spec(tmp_path / "run", "btrfs")
    try:
        svc = start_service(
            tmp_path, "--scratch", str(scratch), "--ramdisk", "--ramdisk-name", spec.name,
            "--ramdisk-size-mb", str(spec.size_mb), "--golden", str(golden),
        )  # fmt: skip
        try:
            assert _btrfs.is_subvolume(spec.golden)
            assert in_proc_mounts(spec.mountpoint)
            rc, out, _ = ctl(svc, "ramdisk", "status", "--name", spec.name)
            assert rc == 0 and f"ramdisk {spec.name}: mounted at {spec.mountpoint}" in out
            reply = svc.call(
                "workspaces.create",
                {"slug": "fast", "source": str(spec.golden), "owner_pid": os.getpid()},
            )
            assert reply["choice"]["strategy"] == "snapshot"
            # The golden from config was pooled at start: this create was one rename.
            assert svc.call("status")["registry"]["pool_hits"] == 1
            assert Path(reply["workspace"]["path"]).parent == spec.workspaces

            rc, out, err = ctl(svc, "ramdisk", "destroy", "--name", spec.name)
            assert rc == 0, err
            assert f"destroyed workspace {reply['workspace']['id']}" in out
            assert f"ramdisk {spec.name}: not mounted" in out
            assert not in_proc_mounts(spec.mountpoint)
            assert losetup_j(spec.image) == ""
            assert not spec.image.exists()
            assert svc.call("workspaces.list")["workspaces"] == []
        finally:
            assert svc.stop() == 0
    finally:
        teardown_ramdisk(spec)


def test_ramdisk_status_when_absent(service: Service) -> None:
    rc, out, _ = ctl(service, "ramdisk", "status", "--name", "absent", "--json")
    status = orjson.loads(out)
    assert rc == 0
    assert (status["mounted"], status["image_exists"], status["loop_devices"]) == (
        False,
        False,
        [],
    )


def test_hostile_requests_are_error_replies_and_the_manager_lives(
    service: Service, golden: Path, tmp_path: Path
) -> None:
    """A NUL byte in a path, a wrong type, an absurd RAM disk size: each an error reply
    naming the problem; nothing is created and the manager keeps serving."""
    bad = [
        ("workspaces.create", {"slug": "x", "source": f"{golden}\0evil", "owner_pid": 1}),
        ("workspaces.create", {"slug": "x", "source": ["not", "a", "path"], "owner_pid": 1}),
        ("workspaces.choose", {"source": "\0"}),
        ("ramdisk.create", {"name": "huge", "size_mb": 2**40, "fs": "btrfs"}),
    ]
    for command, args in bad:
        with pytest.raises(control.RemoteError) as caught:
            service.call(command, args)
        assert caught.value.type in ("bad_request", "not_found"), (command, caught.value)
    assert "larger than this machine can hold" in str(caught.value)
    assert not list(Path("/dev/shm").glob("factory-huge.img"))
    assert service.proc.poll() is None
    assert service.call("workspaces.list")["workspaces"] == []
