"""Child specs and supervisor flags: frozen data, checked once at the edge.

Mirrors OTP's `check_childspec/2`: defaults are filled in and bad combinations are
refused with a SpecError naming the offending child. Declaring a tree has no side
effects, so a reload can diff two trees.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum


class SpecError(ValueError):
    """A child spec or supervisor flags are invalid; `where` names the offender."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


class RestartType(StrEnum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit
    TEMPORARY = "temporary"  # never restarted


class Readiness(StrEnum):
    STARTED = "started"  # up once exec'd (a command) or imported (a target)
    NOTIFY = "notify"  # up once it sends READY=1 to its $NOTIFY_SOCKET (sd_notify)


class NotifyAccess(StrEnum):
    """Who may speak for a child on its NOTIFY_SOCKET (systemd's NotifyAccess=)."""

    MAIN = "main"  # the child's own process only
    ALL = "all"  # any process of its process group (a wrapper script's worker, say)


class AutoShutdown(StrEnum):
    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


# Secrets a child inherits from factoryd's environment only when its spec lists them
# in pass_env: API keys and tokens stay with the one service that needs them.
SECRET_ENV = frozenset({"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"})
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_SECRET_KEY", "_PASSWORD")


def is_secret_env(name: str) -> bool:
    """Whether environment variable `name` holds a secret a child gets only by pass_env."""
    upper = name.upper()
    return upper in SECRET_ENV or upper.endswith(SECRET_ENV_SUFFIXES)


BRUTAL_KILL = 0.0  # shutdown_s == 0: SIGKILL at once, as OTP's brutal_kill
INFINITY = math.inf  # shutdown_s == inf: wait as long as it takes (supervisors)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_DYNAMIC_SUP_ID_MAX = 64 - 11  # dynamic children are ID.N, N up to 10 digits


def check_id(where: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise SpecError(
            where,
            f"id must be 1-64 characters of letters, digits, '_', '.', ':', '-' (got {value!r})",
        )
    return value


@dataclass(frozen=True)
class Start:
    """How to start a worker: an external command, or a Python target run in a fork.

    `target` is "package.module:function"; the function is called as `function(args)`
    with the list of string args and its return value (int or None) is the exit code.
    """

    command: tuple[str, ...] = ()
    target: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    pass_env: tuple[str, ...] = ()  # secret variables (is_secret_env) it may inherit

    def with_extra_args(self, extra: tuple[str, ...]) -> Start:
        """Start with `extra` appended, as simple_one_for_one's start_child(Sup, Extra)."""
        if self.command:
            return replace(self, command=self.command + extra)
        return replace(self, args=self.args + extra)

    def describe(self) -> str:
        if self.command:
            return " ".join(self.command)
        return f"{self.target}({', '.join(self.args)})"


@dataclass(frozen=True)
class ChildSpec:
    """One worker child: what to start, when to restart it, how to stop it."""

    id: str
    start: Start
    restart: RestartType = RestartType.PERMANENT
    shutdown_s: float = 5.0
    significant: bool = False
    ready: Readiness = Readiness.STARTED
    start_timeout_s: float = 30.0
    notify_access: NotifyAccess = NotifyAccess.MAIN

    def __post_init__(self) -> None:
        check_id(f"child {self.id!r}", self.id)
        where = f"child {self.id!r}"
        if bool(self.start.command) == bool(self.start.target):
            raise SpecError(where, "exactly one of command or target is required")
        if self.start.target and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.start.target):
            raise SpecError(
                where,
                f"target must look like 'package.module:function' (got {self.start.target!r})",
            )
        if not (self.shutdown_s >= 0):
            raise SpecError(where, f"shutdown must be >= 0 seconds (got {self.shutdown_s})")
        if self.significant and self.restart is RestartType.PERMANENT:
            raise SpecError(where, "a significant child must be transient or temporary")
        if not (0 < self.start_timeout_s < math.inf):
            raise SpecError(where, f"start timeout must be > 0 and finite ({self.start_timeout_s})")

    @property
    def is_supervisor(self) -> bool:
        return False


@dataclass(frozen=True)
class SupervisorFlags:
    """OTP's sup_flags: strategy, intensity/period, auto_shutdown."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 1
    period_s: float = 5.0
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER

    def __post_init__(self) -> None:
        if not isinstance(self.intensity, int) or self.intensity < 0:
            raise SpecError("flags", f"intensity must be an integer >= 0 (got {self.intensity!r})")
        if not (self.period_s > 0):
            raise SpecError("flags", f"period must be > 0 seconds (got {self.period_s!r})")


@dataclass(frozen=True)
class SupervisorSpec:
    """A supervisor: flags plus ordered children (workers or nested supervisors).

    As a child of another supervisor it also has a restart type, a shutdown time
    (infinity by default, as OTP recommends for supervisors) and significance.
    """

    id: str
    flags: SupervisorFlags = field(default_factory=SupervisorFlags)
    children: tuple[ChildSpec | SupervisorSpec, ...] = ()
    restart: RestartType = RestartType.PERMANENT
    shutdown_s: float = INFINITY
    significant: bool = False

    def __post_init__(self) -> None:
        where = f"supervisor {self.id!r}"
        check_id(where, self.id)
        seen: set[str] = set()
        for child in self.children:
            if child.id in seen:
                raise SpecError(where, f"duplicate child id {child.id!r}")
            seen.add(child.id)
        if self.flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            if len(self.children) != 1:
                raise SpecError(
                    where, "simple_one_for_one needs exactly one child spec (the template)"
                )
            if isinstance(self.children[0], SupervisorSpec):
                raise SpecError(where, "simple_one_for_one's template must be a worker")
            if len(self.id) > _DYNAMIC_SUP_ID_MAX:  # room for ".N" within the 64
                raise SpecError(
                    where,
                    f"a simple_one_for_one supervisor's id may have at most "
                    f"{_DYNAMIC_SUP_ID_MAX} characters (its children are named ID.N)",
                )
        if self.significant and self.restart is RestartType.PERMANENT:
            raise SpecError(where, "a significant child must be transient or temporary")
        if self.flags.auto_shutdown is not AutoShutdown.NEVER and not any(
            c.significant for c in self.children
        ):
            raise SpecError(
                where, f"auto_shutdown={self.flags.auto_shutdown} but no child is significant"
            )

    @property
    def is_supervisor(self) -> bool:
        return True


def walk(spec: SupervisorSpec) -> list[ChildSpec | SupervisorSpec]:
    """Every node of the tree, parents before children, in start order."""
    nodes: list[ChildSpec | SupervisorSpec] = [spec]
    for child in spec.children:
        if isinstance(child, SupervisorSpec):
            nodes.extend(walk(child))
        else:
            nodes.append(child)
    return nodes


def check_unique_ids(root: SupervisorSpec) -> None:
    """Ids are unique across the whole tree so `factoryctl kill ID` is unambiguous."""
    seen: set[str] = set()
    for node in walk(root):
        if node.id in seen:
            raise SpecError(f"supervisor {root.id!r}", f"id {node.id!r} is used twice in the tree")
        seen.add(node.id)
