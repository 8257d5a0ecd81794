"""Workspaces for bisection trials and mutators: the workspace manager's, else a clone.

    lease = make(runtime, state, slug, repo, owner_pid)   # Lease(path, manager_id)
    free(runtime, lease)

With the workspace manager running (its socket in the runtime dir) a workspace is
`workspaces.create {slug, source: repo, owner_pid}`: made in constant time where its
filesystem allows, holding one of the governor's workspace slots, and reaped by the
manager when `owner_pid` dies (a killed mutator's workspace comes back with no help from
it). Without the manager, a `git clone --shared` under <state>/synapse-workspaces/<slug>
(objects borrowed from golden, nothing written there), removed by `free` or by the next
synapse start. Calls block at most CONTROL_TIMEOUT_S. Raises WorkspaceUnavailable.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipc import control, paths
from procs.synapse import git

MANAGER = "workspace_manager"
CONTROL_TIMEOUT_S = 60.0
LOCAL = "synapse-workspaces"
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_-]")


class WorkspaceUnavailable(RuntimeError):
    """No workspace could be made; the message says why."""


@dataclass(frozen=True)
class Lease:
    path: Path
    manager_id: str | None  # None: a local clone


def slug(text: str) -> str:
    return _NOT_SLUG.sub("-", text)[:64]


def make(runtime: Path, state: Path, name: str, repo: Path, owner_pid: int) -> Lease:
    manager = paths.control_socket(runtime, MANAGER)
    if manager.exists():
        create = {"slug": slug(name), "source": str(repo), "owner_pid": owner_pid}
        reply = _call(manager, "workspaces.create", create)
        ws = reply["workspace"]
        return Lease(Path(ws["path"]), str(ws["id"]))
    path = state / LOCAL / slug(name)
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        git.run(path.parent, "clone", "-q", "--shared", "--no-checkout", str(repo), path.name)
    except git.GitFailed as exc:
        raise WorkspaceUnavailable(str(exc)) from None
    return Lease(path, None)


def free(runtime: Path, lease: Lease) -> None:
    """Give the workspace back (gone already is fine)."""
    if lease.manager_id is None:
        shutil.rmtree(lease.path, ignore_errors=True)
        return
    try:
        _call(paths.control_socket(runtime, MANAGER), "workspaces.destroy",
              {"id": lease.manager_id})  # fmt: skip
    except WorkspaceUnavailable as exc:
        if "not_found" not in str(exc) and "no workspace" not in str(exc).lower():
            raise


def remove_local(state: Path) -> None:
    """Clones a killed synapse or mutator left behind (the manager reaps its own)."""
    shutil.rmtree(state / LOCAL, ignore_errors=True)


def _call(socket: Path, command: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = control.call(socket, command, args, timeout=CONTROL_TIMEOUT_S)
    except control.ControlError as exc:
        raise WorkspaceUnavailable(f"workspace manager {command}: {exc}") from None
    if not isinstance(reply, dict):
        raise WorkspaceUnavailable(f"workspace manager {command}: a reply of {reply!r:.200}")
    return reply
