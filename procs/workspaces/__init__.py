"""Isolated workspaces of a golden master, made in constant time where the filesystem allows.

Public face (the private modules behind it):

    _model       Workspace, StrategyChoice, the errors, input checks
    _strategies  snapshot, overlay, reflink, jj, worktree, copy; `auto` chooses
    _btrfs       subvolume create/snapshot/delete through ioctls
    _fsinfo      statfs, FICLONE probe, mountinfo, mount(2)/umount2(2) via ctypes
    _records     the SQLite (WAL) records and owner liveness
    _slots       WorkspaceSlots: one governor ledger slot per workspace (max_workspaces)
    _registry    WorkspaceRegistry: create_workspace / destroy_workspace / list_workspaces
                 / adopt_workspace
    _claims      which loops hold a claim: their dead owner's workspaces are kept
    _lower       an overlay's lower layer: a read-only export per commit, shared
    ramdisk      btrfs/XFS RAM disk provisioning (also `python3 -m procs.workspaces.ramdisk`)

The supervised service answering requests is procs/workspaces/service.py.
"""

from procs.workspaces._model import (
    STRATEGIES,
    STRATEGY_CHOICES,
    BadRequest,
    StrategyChoice,
    StrategyFailed,
    StrategyUnavailable,
    Workspace,
    WorkspaceError,
    WorkspaceNotFound,
)
from procs.workspaces._registry import OrphanReport, WorkspaceOwned, WorkspaceRegistry
from procs.workspaces._slots import SlotError, SlotsExhausted, WorkspaceSlots
from procs.workspaces._strategies import AUTO_ORDER

__all__ = [
    "AUTO_ORDER",
    "STRATEGIES",
    "STRATEGY_CHOICES",
    "BadRequest",
    "OrphanReport",
    "SlotError",
    "SlotsExhausted",
    "StrategyChoice",
    "StrategyFailed",
    "StrategyUnavailable",
    "Workspace",
    "WorkspaceError",
    "WorkspaceNotFound",
    "WorkspaceOwned",
    "WorkspaceRegistry",
    "WorkspaceSlots",
]
