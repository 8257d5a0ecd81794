"""Workspace records, strategy names, and the checks every caller's input goes through."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STRATEGIES = ("snapshot", "overlay", "reflink", "jj", "worktree", "copy")
STRATEGY_CHOICES = ("auto", *STRATEGIES)
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# overlayfs option strings split on ',' and ':' and treat '\' as an escape.
_OVERLAY_UNSAFE = re.compile(r"[,:\\\n]")


class WorkspaceError(Exception):
    """Base of every error this package raises on purpose; the message says what to do."""

    kind = "error"


class BadRequest(WorkspaceError, ValueError):
    """The caller's input is wrong: a bad slug, strategy name, source or id."""

    kind = "bad_request"


class StrategyUnavailable(WorkspaceError):
    """The asked strategy cannot work for this source and root; says why and what would."""

    kind = "unavailable"


class WorkspaceNotFound(WorkspaceError, KeyError):
    """No workspace record has this id."""

    kind = "not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "workspace not found"


class StrategyFailed(WorkspaceError):
    """A strategy's system call or command failed while creating or destroying."""

    kind = "failed"


@dataclass(frozen=True)
class Workspace:
    """One isolated working copy of a golden master.

    `path` is a git working copy the owner may change freely; `owner_pid` is the process
    whose death makes the workspace an orphan; `created_at` is Unix time in seconds.
    """

    id: str
    slug: str
    path: Path
    strategy: str
    owner_pid: int
    created_at: float
    source: Path
    state: str = "ready"
    owner_loop: str | None = None  # the loop it was made for: kept for it if it resumes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["source"] = str(self.source)
        return d


@dataclass(frozen=True)
class StrategyChoice:
    """Which strategy `auto` (or the caller) settled on, and why, for the operator to read."""

    strategy: str
    reason: str
    skipped: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "reason": self.reason,
            "skipped": [{"strategy": s, "reason": r} for s, r in self.skipped],
        }


def check_slug(slug: object) -> str:
    """Return `slug` if it is 1-64 of [A-Za-z0-9_-], not starting with '-' or '_'."""
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise BadRequest(
            f"bad slug {slug!r}: use 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return slug


def check_strategy(name: object) -> str:
    if name not in STRATEGY_CHOICES:
        raise BadRequest(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGY_CHOICES)}")
    return str(name)


def check_source(source: object, root: Path) -> Path:
    """Return the resolved source repo; it must be an existing git (or jj) working copy
    outside the workspace root."""
    if not isinstance(source, str | Path) or not str(source):
        raise BadRequest(f"source must be a path, got {source!r}")
    path = Path(source)
    if not path.is_absolute():
        raise BadRequest(f"source {str(source)!r} must be an absolute path")
    path = path.resolve()
    if not path.is_dir():
        raise BadRequest(f"source {path} is not a directory")
    if not (path / ".git").exists() and not (path / ".jj").is_dir():
        raise BadRequest(f"source {path} is not a git repository (no .git in it)")
    if path == root or root in path.parents:
        raise BadRequest(f"source {path} lies inside the workspace root {root}")
    return path


def check_inside(path: Path, root: Path) -> Path:
    """Return `path` if it resolves to a direct child of `root`; refuse anything escaping it."""
    resolved = path.parent.resolve() / path.name
    if resolved.parent != root.resolve() or path.name in ("", ".", ".."):
        raise BadRequest(f"workspace path {path} is not directly inside root {root}")
    return resolved


def overlay_safe(path: Path) -> bool:
    return not _OVERLAY_UNSAFE.search(str(path))
