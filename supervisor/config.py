"""factoryd's TOML config: parsed and checked in full before anything starts.

    [factory]                     # optional daemon settings
    runtime_dir = "/run/factory"  # sockets; default per ipc.paths
    state_dir = "/var/lib/factory"
    preload = ["procs"]           # modules the zygote imports once, for fast target starts
    sandbox = "bwrap"             # how agent-written code runs: "bwrap", or "none" (unisolated)

    [supervisor]                  # the root supervisor
    strategy = "one_for_one"      # one_for_all | rest_for_one | simple_one_for_one
    intensity = 5                 # at most 5 restarts ...
    period = 30                   # ... in 30 seconds, else give up (escalate)
    auto_shutdown = "never"       # any_significant | all_significant

    [[supervisor.children]]       # a worker: command = [...] or target = "pkg.mod:func"
    id = "echo"
    command = ["python3", "child.py", "/tmp/out"]
    restart = "permanent"         # transient | temporary
    shutdown_ms = 5000            # or shutdown = "brutal_kill" | "infinity"
    ready = "started"             # or "notify": up once it sends READY=1 (sd_notify)
    notify_access = "main"        # or "all": any process of its group may send it
    pass_env = ["ANTHROPIC_API_KEY"]  # secrets it inherits (*_API_KEY, *_TOKEN, ...):
                                  # without this, none reach it from factoryd's environment
    start_timeout_ms = 30000      # how long a start (and READY=1) may take

    [[supervisor.children]]       # a nested supervisor: has `children`
    id = "services"
    strategy = "rest_for_one"
    [[supervisor.children.children]]
    ...

Every problem raises ConfigError naming the file, the key and what is wrong; a config
that fails anywhere starts nothing. A config is at most 1 MiB, its values nest at most
100 deep (supervisor/toml_bounds.py) and its supervisors at most MAX_SUPERVISOR_DEPTH
(32, the root counting as 1): checked before anything walks the tree recursively.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from supervisor.spec import (
    SECRET_ENV_SUFFIXES,
    AutoShutdown,
    ChildSpec,
    NotifyAccess,
    Readiness,
    RestartType,
    SpecError,
    Start,
    Strategy,
    SupervisorFlags,
    SupervisorSpec,
    check_unique_ids,
    is_secret_env,
)
from supervisor.toml_bounds import TomlBoundsError, check_brackets, check_depth, read_bounded

MAX_SUPERVISOR_DEPTH = 32  # the root is 1; OTP trees are a handful deep


class ConfigError(ValueError):
    """The config is unusable: `str()` reads `FILE: KEY: problem`."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class DaemonConfig:
    tree: SupervisorSpec
    runtime_dir: str | None = None
    state_dir: str | None = None
    preload: tuple[str, ...] = ()
    sandbox: str = "bwrap"
    source: str = "<config>"


_FACTORY_KEYS = {"runtime_dir", "state_dir", "preload", "sandbox"}
SANDBOX_MODES = ("bwrap", "none")
_FLAG_KEYS = {"strategy", "intensity", "period", "auto_shutdown"}
_SUP_KEYS = {"id", "type", "children", "restart", "shutdown_ms", "shutdown", "significant"}
_WORKER_KEYS = {
    "id", "type", "command", "target", "args", "env", "pass_env", "cwd",
    "restart", "shutdown_ms", "shutdown", "significant", "ready", "notify_access",
    "start_timeout_ms",
}  # fmt: skip


def load(path: str | Path) -> DaemonConfig:
    """Read and check a config file; raises ConfigError.

    The file's size and nesting are bounded (toml_bounds) before and after tomllib
    reads it, so no config makes this recurse past a fixed depth or read past 1 MiB.
    """
    path = Path(path)
    file = str(path)
    try:
        text = read_bounded(path)
        check_brackets(text)
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(file, "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "(file)", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", f"not valid TOML: {exc}") from None
    except TomlBoundsError as exc:
        raise ConfigError(file, exc.key, exc.problem) from None
    return parse(data, file)


def parse(data: dict[str, Any], file: str = "<config>") -> DaemonConfig:
    """Check a decoded config mapping; raises ConfigError. Its nesting is checked first,
    without recursion, so nothing after recurses past a fixed depth."""
    try:
        check_depth(data)
    except TomlBoundsError as exc:
        raise ConfigError(file, exc.key, exc.problem) from None
    _no_unknown(file, "", data, {"factory", "supervisor"})
    factory = data.get("factory", {})
    _expect(file, "factory", factory, dict, "a table")
    _no_unknown(file, "factory", factory, _FACTORY_KEYS)
    preload = factory.get("preload", [])
    _expect_strings(file, "factory.preload", preload)
    for key in ("runtime_dir", "state_dir"):
        if key in factory:
            _expect(file, f"factory.{key}", factory[key], str, "a string")
    sandbox = factory.get("sandbox", "bwrap")
    if sandbox not in SANDBOX_MODES:
        raise ConfigError(
            file, "factory.sandbox", f"must be one of {', '.join(SANDBOX_MODES)} (got {sandbox!r})"
        )
    if "supervisor" not in data:
        raise ConfigError(file, "supervisor", "missing: the config needs a [supervisor] table")
    root_table = data["supervisor"]
    _expect(file, "supervisor", root_table, dict, "a table")
    root = _supervisor(file, "supervisor", {"id": "root", **root_table}, root=True)
    try:
        check_unique_ids(root)
    except SpecError as exc:
        raise ConfigError(file, "supervisor", exc.problem) from None
    return DaemonConfig(
        tree=root,
        runtime_dir=factory.get("runtime_dir"),
        state_dir=factory.get("state_dir"),
        preload=tuple(preload),
        sandbox=sandbox,
        source=file,
    )


def _supervisor(
    file: str, key: str, table: dict[str, Any], *, root: bool = False, depth: int = 1
) -> SupervisorSpec:
    if depth > MAX_SUPERVISOR_DEPTH:
        raise ConfigError(
            file, key, f"supervisors nested more than {MAX_SUPERVISOR_DEPTH} deep (the root is 1)"
        )
    allowed = _FLAG_KEYS | (
        _SUP_KEYS - {"restart", "shutdown_ms", "shutdown", "significant"} if root else _SUP_KEYS
    )
    _no_unknown(file, key, table, allowed)
    if "type" in table and table["type"] != "supervisor":
        raise ConfigError(file, f"{key}.type", f"must be 'supervisor' here (got {table['type']!r})")
    children_raw = table.get("children", [])
    _expect(file, f"{key}.children", children_raw, list, "an array of tables")
    children: list[ChildSpec | SupervisorSpec] = []
    for i, child in enumerate(children_raw):
        child_key = f"{key}.children[{i}]"
        _expect(file, child_key, child, dict, "a table")
        is_sup = child.get("type") == "supervisor" or "children" in child
        children.append(
            _supervisor(file, child_key, child, depth=depth + 1)
            if is_sup
            else _worker(file, child_key, child)
        )
    try:
        flags = SupervisorFlags(
            strategy=_enum(file, f"{key}.strategy", table.get("strategy", "one_for_one"), Strategy),
            intensity=_int(file, f"{key}.intensity", table.get("intensity", 1)),
            period_s=_number(file, f"{key}.period", table.get("period", 5)),
            auto_shutdown=_enum(
                file, f"{key}.auto_shutdown", table.get("auto_shutdown", "never"), AutoShutdown
            ),
        )
        return SupervisorSpec(
            id=_str(file, f"{key}.id", table.get("id")),
            flags=flags,
            children=tuple(children),
            restart=_enum(file, f"{key}.restart", table.get("restart", "permanent"), RestartType),
            shutdown_s=_shutdown(file, key, table, default=math.inf),
            significant=_bool(file, f"{key}.significant", table.get("significant", False)),
        )
    except SpecError as exc:
        raise ConfigError(file, key, exc.problem) from None


def _worker(file: str, key: str, table: dict[str, Any]) -> ChildSpec:
    _no_unknown(file, key, table, _WORKER_KEYS)
    if "type" in table and table["type"] != "worker":
        raise ConfigError(
            file, f"{key}.type", f"must be 'worker' or 'supervisor' (got {table['type']!r})"
        )
    command = table.get("command", [])
    _expect_strings(file, f"{key}.command", command)
    args = table.get("args", [])
    _expect_strings(file, f"{key}.args", args)
    if command and args:
        raise ConfigError(
            file, f"{key}.args", "args go with target; put a command's arguments in command"
        )
    env = table.get("env", {})
    _expect(file, f"{key}.env", env, dict, "a table of strings")
    for name, value in env.items():
        _expect(file, f"{key}.env.{name}", value, str, "a string")
        if not name or "=" in name or "\0" in name:
            raise ConfigError(file, f"{key}.env.{name}", "not a usable variable name")
        _no_nul(file, f"{key}.env.{name}", [value])
    pass_env = table.get("pass_env", [])
    _expect_strings(file, f"{key}.pass_env", pass_env)
    for name in pass_env:
        if not is_secret_env(name):
            raise ConfigError(
                file,
                f"{key}.pass_env",
                f"{name!r} is not a secret variable, every child inherits it anyway "
                f"(pass_env lists names ending in {', '.join(SECRET_ENV_SUFFIXES)})",
            )
    cwd = table.get("cwd")
    if cwd is not None:
        _expect(file, f"{key}.cwd", cwd, str, "a string")
        _no_nul(file, f"{key}.cwd", [cwd])
    _no_nul(file, f"{key}.command", command)
    _no_nul(file, f"{key}.args", args)
    target = table.get("target", "")
    _expect(file, f"{key}.target", target, str, "a string")
    if not command and not target:
        raise ConfigError(
            file, key, 'a worker needs command = [...] or target = "pkg.module:function"'
        )
    if command and target:
        raise ConfigError(file, key, "give command or target, not both")
    try:
        return ChildSpec(
            id=_str(file, f"{key}.id", table.get("id")),
            start=Start(
                command=tuple(command),
                target=target,
                args=tuple(args),
                env=tuple(sorted(env.items())),
                cwd=cwd,
                pass_env=tuple(sorted(set(pass_env))),
            ),
            restart=_enum(file, f"{key}.restart", table.get("restart", "permanent"), RestartType),
            shutdown_s=_shutdown(file, key, table, default=5.0),
            significant=_bool(file, f"{key}.significant", table.get("significant", False)),
            ready=_enum(file, f"{key}.ready", table.get("ready", "started"), Readiness),
            notify_access=_enum(file, f"{key}.notify_access",
                                table.get("notify_access", "main"), NotifyAccess),
            start_timeout_s=_positive_ms(file, f"{key}.start_timeout_ms",
                                         table.get("start_timeout_ms", 30000)),
        )  # fmt: skip
    except SpecError as exc:
        raise ConfigError(file, key, exc.problem) from None


def _positive_ms(file: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(file, key, f"must be an integer > 0 (got {value!r})")
    return value / 1000.0


def _shutdown(file: str, key: str, table: dict[str, Any], *, default: float) -> float:
    if "shutdown_ms" in table and "shutdown" in table:
        raise ConfigError(file, key, "give shutdown_ms or shutdown, not both")
    if "shutdown_ms" in table:
        ms = table["shutdown_ms"]
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ConfigError(file, f"{key}.shutdown_ms", f"must be an integer >= 0 (got {ms!r})")
        return ms / 1000.0
    if "shutdown" in table:
        word = table["shutdown"]
        if word == "brutal_kill":
            return 0.0
        if word == "infinity":
            return math.inf
        raise ConfigError(
            file, f"{key}.shutdown", f"must be 'brutal_kill' or 'infinity' (got {word!r})"
        )
    return default


def _no_unknown(file: str, key: str, table: dict[str, Any], allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(
                file, where, f"unknown key (allowed here: {', '.join(sorted(allowed))})"
            )


_T = TypeVar("_T")


def _expect(file: str, key: str, value: object, kind: type[_T], words: str) -> _T:
    if not isinstance(value, kind):
        raise ConfigError(file, key, f"must be {words} (got {type(value).__name__} {value!r:.60})")
    return value


def _expect_strings(file: str, key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(file, key, f"must be an array of strings (got {value!r:.60})")


def _no_nul(file: str, key: str, values: list[str]) -> None:
    """A NUL byte cannot reach exec, the environment or chdir: refuse it here."""
    if any("\0" in v for v in values):
        raise ConfigError(file, key, "must not contain a NUL byte")


def _str(file: str, key: str, value: Any) -> str:
    if value is None:
        raise ConfigError(file, key, "missing")
    return _expect(file, key, value, str, "a string")


def _int(file: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(file, key, f"must be an integer >= 0 (got {value!r})")
    return value


def _number(file: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(file, key, f"must be a number > 0 (got {value!r})")
    return float(value)


def _bool(file: str, key: str, value: Any) -> bool:
    return _expect(file, key, value, bool, "true or false")


def _enum(file: str, key: str, value: Any, enum: type[Any]) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise ConfigError(file, key, f"must be one of {choices} (got {value!r})") from None
