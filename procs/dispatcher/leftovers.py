"""Workspaces a loop could not free itself. A loop frees its own workspace when it ends
(Complete or Failed); one that died past its resumes, or never got going, leaves it.
When the dispatcher settles such a loop (its process gone), it destroys that workspace,
or keeps it for a post-mortem (--keep-failed-workspaces), and says which.

    WorkspaceCleaner(runtime, clone_root, keep_failed).settle(path) -> "destroyed" |
        "kept" | "gone" | "not ours"          raises CleanupFailed

Through the workspace manager when it runs (<runtime>/workspace_manager.sock:
`workspaces.list`, then `workspaces.destroy` by id), else only a clone directory under
`clone_root` (<state_dir>/loop-workspaces, where a loop without a manager clones):
nothing else is ever removed. With `state`, `remove_tmp(loop_id)` removes such a loop's
temp directory (ipc.paths.loop_tmp: its gauntlet's scratch), kept with its workspace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ipc import control, paths

MANAGER = "workspace_manager"
CALL_TIMEOUT_S = 30.0


class CleanupFailed(Exception):
    """The workspace manager could not be asked; the message says why."""


class WorkspaceCleaner:
    def __init__(self, runtime: Path, clone_root: Path, *, keep_failed: bool,
                 state: Path | None = None) -> None:  # fmt: skip
        self.socket = paths.control_socket(runtime, MANAGER)
        self.clone_root = clone_root
        self.keep_failed = keep_failed
        self.state = state

    def remove_tmp(self, loop_id: str) -> bool:
        """Remove a dead loop's temp directory; True when there was one to remove."""
        if self.state is None or self.keep_failed:
            return False
        path = paths.loop_tmp(self.state, loop_id)
        if not path.is_dir():
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True

    def settle(self, workspace: str) -> str:
        if not workspace or not Path(workspace).is_dir():
            return "gone"
        if self.keep_failed:
            return "kept"
        path = Path(workspace)
        if self.socket.exists():
            try:
                listed = control.call(self.socket, "workspaces.list", {}, timeout=CALL_TIMEOUT_S)
                for ws in listed.get("workspaces", []):
                    if Path(str(ws.get("path", ""))) == path:
                        control.call(self.socket, "workspaces.destroy", {"id": ws["id"]},
                                     timeout=CALL_TIMEOUT_S)  # fmt: skip
                        return "destroyed"
            except control.ControlError as exc:
                raise CleanupFailed(f"the workspace manager: {exc}") from None
        if path.parent == self.clone_root:
            shutil.rmtree(path, ignore_errors=True)
            return "destroyed"
        return "not ours"
