"""Where the runtime files (sockets, shared memory names) and the state (SQLite) live.

Resolution order, the same for factoryd, factoryctl and every service: an explicit
argument, then $FACTORY_RUNTIME_DIR / $FACTORY_STATE_DIR (factoryd sets both for its
children), then the systemd-style defaults (/run/factory, /var/lib/factory for root;
$XDG_RUNTIME_DIR/factory and ~/.local/state/factory otherwise).

Both are private: `private_dir` makes (or tightens) them 0700, and `private_file` /
`private_sqlite` make what goes in them 0600 whatever the umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def runtime_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("FACTORY_RUNTIME_DIR"):
        return Path(env)
    if os.getuid() == 0:
        return Path("/run/factory")
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/factory-{os.getuid()}"
    return Path(base) / "factory"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("FACTORY_STATE_DIR"):
        return Path(env)
    if os.getuid() == 0:
        return Path("/var/lib/factory")
    return Path.home() / ".local" / "state" / "factory"


def control_socket(runtime: Path, endpoint: str = "factoryd") -> Path:
    """The control socket of `endpoint` (factoryd, or a service answering operators)."""
    return runtime / f"{endpoint}.sock"


def loop_tmp(state: Path, loop_id: str) -> Path:
    """A loop's own temp directory (its gauntlet's scratch trees): the loop empties it
    when it starts and removes it when it ends, and the dispatcher removes the one of a
    loop that died for good, so a SIGKILLed loop leaves nothing in /tmp."""
    return state / "loop-tmp" / loop_id.replace("/", "_")


class NotPrivate(OSError):
    """A directory factoryd would keep its sockets or databases in is not its own to
    make private: another user's, or a shared sticky directory such as /tmp."""


def private_dir(path: Path) -> str | None:
    """Make `path` a directory only its owner can use, creating it (and its parents)
    0700, or tightening an existing one that group or others could use to 0700.

    Returns a note saying what was tightened ("... mode 0755 -> 0700"), None when
    nothing needed to change. Raises NotPrivate when the directory belongs to another
    user or is a shared sticky one, OSError when it cannot be made or changed.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        raise NotPrivate(
            f"{path} belongs to uid {st.st_uid}, not to uid {os.geteuid()}: "
            "give factoryd a directory of its own"
        )
    if st.st_mode & stat.S_ISVTX:
        raise NotPrivate(f"{path} is a shared directory (sticky bit): give factoryd its own")
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    os.chmod(path, 0o700)
    return f"{path}: group/others could use it; mode {mode:04o} -> 0700"


def private_file(path: str | os.PathLike[str], *, create: bool = True) -> str | None:
    """Make `path` a file only its owner can read: create it empty and 0600 if it is
    missing (and `create`), else take group and other bits off an existing one.

    An existing file is never opened (closing any descriptor of a file drops this
    process's SQLite locks on it): it is stat'ed and chmod'ed by path. Returns a note
    when an existing file was tightened, else None. Raises OSError.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not create:
            return None
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except FileExistsError:  # made meanwhile by someone else: tighten it below
            st = os.stat(path)
        else:
            return None
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    os.chmod(path, mode & 0o700)
    return f"{os.fspath(path)}: group/others could read it; mode {mode:04o} -> {mode & 0o700:04o}"


def private_sqlite(path: str | os.PathLike[str]) -> None:
    """Before sqlite3.connect(path): the database file exists 0600 (SQLite gives its
    -wal and -shm files the database's mode) and any leftover -wal/-shm is tightened."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        private_file(f"{os.fspath(path)}{suffix}", create=False)
