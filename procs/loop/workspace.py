"""A loop's workspace: made once, found again by every restart of the loop, freed at its end.

    lease = find_or_make(source, loop_id, via)   # LoopWorkspace(path, manager_id)
    ...
    free(lease, via)                             # once the loop is Complete or Failed

Where it comes from (`WorkspaceSource`):
- the workspace manager (procs/workspaces), over its control socket in the runtime dir:
  `workspaces.create {slug: loop-<loop id>, source: golden, owner_pid}`. The manager
  reaps a workspace when its owner dies, so the owner is NOT the loop process (a
  SIGKILLed loop would find its workspace removed when its supervisor restarts it): it
  is the loop's parent, factoryd's zygote, which forks every restart of the loop and
  lives exactly as long as the tree (when it dies factoryd exits). So the workspace
  outlives any number of loop restarts and goes with the tree; the loop frees it itself
  at its end (`workspaces.destroy`). A restart finds it again by its slug, or by the
  path the loop store recorded. A factoryd restart brings a new zygote: the old one's
  loop workspaces are then kept `detached` while their loops hold their beads' claims
  (the create names the loop: `owner_loop`), and a resumed loop adopts its own
  (`workspaces.adopt {id, owner_pid}`), so it resumes in it instead of failing.
  Its source is golden's `workspace_source` when the golden master names one (golden on
  the RAM disk, --ramdisk: a btrfs subvolume, so the workspace is a snapshot), else the
  loop's --repo.
- otherwise (no manager running), a clone of the golden repository at
  <state_dir>/loop-workspaces/<loop id>, as the one-shot runner makes: cloned beside, then
  renamed into place, so a crash mid-clone leaves no half workspace to be mistaken for
  a real one.

Every call blocks at most CONTROL_TIMEOUT_S on the manager, or CLONE_TIMEOUT_S on git.
Raises WorkspaceUnavailable with the manager's or git's words.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipc import control, paths
from procs.loop import git

MANAGER = "workspace_manager"
GOLDEN = "golden"
CONTROL_TIMEOUT_S = 120.0  # a copy or worktree create of a big repo takes a while
CLONE_TIMEOUT_S = 600.0
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_-]")


class WorkspaceUnavailable(RuntimeError):
    """No workspace could be made or found; the message says why."""


@dataclass(frozen=True)
class WorkspaceSource:
    """`manager_socket`: the workspace manager's control socket (None: clone instead);
    `clone_root`: where clones go; `owner_pid`: whose death lets the manager reap it;
    `strategy`: the manager's strategy name (None: its default)."""

    manager_socket: Path | None
    clone_root: Path
    owner_pid: int
    strategy: str | None = None


@dataclass(frozen=True)
class LoopWorkspace:
    """A workspace `path`; `manager_id`: the manager's id for it (None: a clone)."""

    path: Path
    manager_id: str | None = None


def slug(loop_id: str) -> str:
    """The manager's slug for a loop's workspace: loop-<id>, [A-Za-z0-9_-], <= 64."""
    return _NOT_SLUG.sub("-", f"loop-{loop_id}")[:64]


def find_or_make(golden: Path, branch: str, loop_id: str, via: WorkspaceSource) -> LoopWorkspace:
    """The loop's workspace: the one made for it before (a restart), else a new one."""
    if via.manager_socket is None:
        return _clone(golden, branch, via.clone_root / loop_id)
    found = _listed(via, lambda ws: ws.get("slug") == slug(loop_id))
    if found is not None:
        return found
    reply = _call(via, "workspaces.create", {
        "slug": slug(loop_id), "source": str(_source(golden, via)), "owner_pid": via.owner_pid,
        "owner_loop": loop_id, **({"strategy": via.strategy} if via.strategy else {}),
    })  # fmt: skip
    ws = reply["workspace"]
    return LoopWorkspace(Path(ws["path"]), ws["id"])


def find(path: Path, via: WorkspaceSource) -> LoopWorkspace | None:
    """The workspace the loop store recorded at `path`, if it is still there."""
    if not path.is_dir():
        return None
    if via.manager_socket is None:
        return LoopWorkspace(path)
    listed = _listed(via, lambda ws: Path(ws.get("path", "")) == path)
    return listed if listed is not None else LoopWorkspace(path)


def free(workspace: LoopWorkspace, via: WorkspaceSource) -> None:
    """Remove the workspace (the manager's destroy, or the clone's directory)."""
    if workspace.manager_id is not None and via.manager_socket is not None:
        _call(via, "workspaces.destroy", {"id": workspace.manager_id})
    elif workspace.manager_id is None and workspace.path.parent == via.clone_root:
        shutil.rmtree(workspace.path, ignore_errors=True)


def _source(golden: Path, via: WorkspaceSource) -> Path:
    """Where the manager makes the workspace from: the golden master's
    `workspace_source` when it runs and names one, else `golden` (--repo)."""
    assert via.manager_socket is not None
    socket = paths.control_socket(via.manager_socket.parent, GOLDEN)
    if not socket.exists():
        return golden
    try:
        reply = control.call(socket, "get_hash", {}, timeout=CONTROL_TIMEOUT_S)
    except control.ControlError as exc:
        raise WorkspaceUnavailable(f"the golden master's get_hash: {exc}") from None
    source = reply.get("workspace_source") if isinstance(reply, dict) else None
    return Path(source) if isinstance(source, str) and source else golden


def _listed(via: WorkspaceSource, match: Any) -> LoopWorkspace | None:
    reply = _call(via, "workspaces.list", {})
    for ws in reply.get("workspaces", []):
        state = ws.get("state")
        if match(ws) and state in ("ready", "orphaned", "detached") and Path(ws["path"]).is_dir():
            if state != "ready" or ws.get("owner_pid") != via.owner_pid:
                _adopt(via, ws)
            return LoopWorkspace(Path(ws["path"]), ws["id"])
    return None


def _adopt(via: WorkspaceSource, ws: dict[str, Any]) -> None:
    """Take a kept workspace back (its owner died: a factoryd restart). One whose owner
    still runs stays its owner's (the manager refuses); the loop works in it all the same,
    as before adoption existed."""
    assert via.manager_socket is not None
    try:
        args = {"id": ws["id"], "owner_pid": via.owner_pid}
        control.call(via.manager_socket, "workspaces.adopt", args, timeout=CONTROL_TIMEOUT_S)
    except control.ControlError as exc:
        if not (isinstance(exc, control.RemoteError) and exc.type == "owned"):
            raise WorkspaceUnavailable(f"workspace manager workspaces.adopt: {exc}") from None


def _call(via: WorkspaceSource, command: str, args: dict[str, Any]) -> dict[str, Any]:
    assert via.manager_socket is not None
    try:
        reply = control.call(via.manager_socket, command, args, timeout=CONTROL_TIMEOUT_S)
    except control.ControlError as exc:
        raise WorkspaceUnavailable(f"workspace manager {command}: {exc}") from None
    if not isinstance(reply, dict):
        raise WorkspaceUnavailable(f"workspace manager {command}: unexpected reply {reply!r:.200}")
    return reply


def _clone(golden: Path, branch: str, path: Path) -> LoopWorkspace:
    if path.is_dir():
        return LoopWorkspace(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for leftover in path.parent.glob(f".{path.name}.partial-*"):  # a crash mid-clone
        shutil.rmtree(leftover, ignore_errors=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        git.git(path.parent, "clone", "-q", "--branch", branch, str(golden), str(partial),
                timeout_s=CLONE_TIMEOUT_S)  # fmt: skip
        partial.rename(path)
    except (git.GitError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise WorkspaceUnavailable(f"cloning {golden} into {path}: {exc}") from None
    return LoopWorkspace(path)
