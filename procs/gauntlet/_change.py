"""The change a gauntlet judges: REV to the workspace's HEAD plus uncommitted work.

`Change.load(workspace, base)` snapshots it at once, before any stage runs: the unified
diff (parsed by unidiff), and the text of every changed file at REV and as patched. The
work tree and the index are not modified: untracked files are seen through a temporary
copy of the index (GIT_INDEX_FILE), so `git add -A` never touches the real one (it does
write the changed files' blobs into the object store, as any `git add` would).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

GIT_TIMEOUT_S = 60.0
MAX_FILE_BYTES = 2 * 1024 * 1024


class ChangeError(RuntimeError):
    """The change cannot be read: not a git work tree, an unknown REV, git failing."""


@dataclass(frozen=True)
class FileChange:
    """One changed file: its path now (`path`) and at REV (`base_path`, differs on a
    rename), its text at REV and as patched (None: absent, binary or too large) and the
    1-based line numbers added or modified in the patched file."""

    path: PurePosixPath
    base_path: PurePosixPath
    status: str  # "added", "deleted", "modified", "renamed"
    base_text: str | None
    new_text: str | None
    added_lines: frozenset[int]
    removed_lines: tuple[tuple[int, str], ...] = ()  # (base line number, text)
    added_text: tuple[tuple[int, str], ...] = ()  # (new line number, text)

    @property
    def is_python(self) -> bool:
        return self.path.suffix == ".py" or self.base_path.suffix == ".py"


@dataclass
class Change:
    """The snapshot of one change. `diff` is the unified diff text."""

    workspace: Path
    base: str
    diff: str
    files: list[FileChange] = field(default_factory=list)
    # The test modules (path -> text) whose expectations hardcoded_values learns from;
    # None: the changed ones plus those `git grep` finds naming a changed function.
    test_texts: dict[str, str] | None = None

    @property
    def lines_changed(self) -> int:
        return sum(len(f.added_text) + len(f.removed_lines) for f in self.files)

    def by_path(self) -> dict[PurePosixPath, FileChange]:
        return {f.path: f for f in self.files}

    @classmethod
    def load(cls, workspace: Path, base: str) -> Change:
        """Snapshot the change from `base` (any git revision) to `workspace`'s work tree.
        Raises ChangeError naming what failed. Blocks up to a few GIT_TIMEOUT_S."""
        workspace = Path(workspace).resolve()
        if not (workspace / ".git").exists():
            raise ChangeError(f"workspace {workspace} is not a git work tree (no .git)")
        try:
            rev = git(workspace, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").strip()
        except ChangeError:
            raise ChangeError(f"base {base!r} is not a commit in {workspace}") from None
        with tempfile.TemporaryDirectory(prefix="gauntlet-index-") as scratch:
            index = Path(scratch) / "index"
            real = Path(git(workspace, "rev-parse", "--git-path", "index").strip())
            real = real if real.is_absolute() else workspace / real
            if real.exists():
                shutil.copyfile(real, index)
            env = {"GIT_INDEX_FILE": str(index)}
            git(workspace, "add", "-A", "--", ".", env=env)
            diff = git(workspace, "diff", "--cached", "-M", "--no-color", "--no-ext-diff",
                       "--src-prefix=a/", "--dst-prefix=b/", "-U3", rev, env=env)  # fmt: skip
        files = _files(workspace, rev, diff)
        return cls(workspace=workspace, base=rev, diff=diff, files=files)

    @classmethod
    def from_texts(cls, workspace: Path, texts: dict[str, tuple[str | None, str | None]],
                   test_texts: dict[str, str] | None = None) -> Change:  # fmt: skip
        """A change given as path -> (text at REV, text now) (None: absent), for tests
        and benches: the diff is made with difflib, nothing is run or read; the tests
        hardcoded_values learns from are the changed ones plus `test_texts`."""
        parts = []
        for path, (old, new) in sorted(texts.items()):
            source = "/dev/null" if old is None else f"a/{path}"
            target = "/dev/null" if new is None else f"b/{path}"
            lines = list(difflib.unified_diff(
                (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
                source, target, n=3))  # fmt: skip
            mode = (
                "new file mode 100644\n"
                if old is None
                else ("deleted file mode 100644\n" if new is None else "")
            )
            if lines:
                parts.append(f"diff --git a/{path} b/{path}\n{mode}"
                             + "".join(line if line.endswith("\n") else line + "\n"
                                       for line in lines))  # fmt: skip
        diff = "".join(parts)
        base = {f"REV:{path}": old for path, (old, _) in texts.items() if old is not None}
        now = {path: value for path, (_, value) in texts.items()}
        files = _parse(diff, "REV", base, lambda path: now.get(str(path)))
        return cls(workspace=Path(workspace), base="REV", diff=diff, files=files,
                   test_texts=dict(test_texts or {}))  # fmt: skip


def _files(workspace: Path, rev: str, diff: str) -> list[FileChange]:
    def base_texts(specs: list[str]) -> dict[str, str]:
        return _blobs(workspace, specs)

    entries = _entries(diff, rev)
    texts = base_texts([f"{rev}:{e[0]}" for e in entries if e[2] != "added"])
    return _parse(diff, rev, texts, lambda path: _read(workspace / path))


Entry = tuple[PurePosixPath, PurePosixPath, str, list[tuple[int, str]], list[tuple[int, str]], bool]


def _entries(diff: str, rev: str) -> list[Entry]:
    try:
        patch = PatchSet(diff)
    except UnidiffParseError as exc:
        raise ChangeError(f"cannot parse the diff from {rev[:12]}: {exc}") from None
    entries: list[Entry] = []
    for patched in patch:
        source = PurePosixPath(patched.source_file.removeprefix("a/"))
        target = PurePosixPath(patched.target_file.removeprefix("b/"))
        if patched.is_added_file:
            status, source = "added", target
        elif patched.is_removed_file:
            status, target = "deleted", source
        elif patched.is_rename:
            status = "renamed"
        else:
            status = "modified"
        added: list[tuple[int, str]] = []
        removed: list[tuple[int, str]] = []
        for hunk in patched:
            for line in hunk:
                if line.is_added and line.target_line_no is not None:
                    added.append((line.target_line_no, line.value.rstrip("\n")))
                elif line.is_removed and line.source_line_no is not None:
                    removed.append((line.source_line_no, line.value.rstrip("\n")))
        entries.append((source, target, status, added, removed, patched.is_binary_file))
    return entries


def _parse(diff: str, rev: str, base_texts: dict[str, str],
           read_new: Callable[[PurePosixPath], str | None]) -> list[FileChange]:  # fmt: skip
    files = []
    for source, target, status, added, removed, binary in _entries(diff, rev):
        base_text = None if status == "added" or binary else base_texts.get(f"{rev}:{source}")
        new_text = None if status == "deleted" or binary else read_new(target)
        files.append(FileChange(
            path=target, base_path=source, status=status, base_text=base_text,
            new_text=new_text, added_lines=frozenset(n for n, _ in added),
            removed_lines=tuple(removed), added_text=tuple(added),
        ))  # fmt: skip
    return files


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_bytes().decode()
    except (OSError, UnicodeDecodeError):
        return None


def _blobs(workspace: Path, specs: Sequence[str]) -> dict[str, str]:
    """`rev:path` -> text, through one `git cat-file --batch` (binary or huge: left out)."""
    if not specs:
        return {}
    done = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=workspace, input="\n".join(specs).encode() + b"\n",
        capture_output=True, timeout=GIT_TIMEOUT_S, check=False, env=_env(),
    )  # fmt: skip
    if done.returncode != 0:
        raise ChangeError(f"git cat-file failed: {done.stderr.decode(errors='replace')}")
    out, texts, pos = done.stdout, {}, 0
    for spec in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) < 3 or header[1] == b"missing":
            continue
        size = int(header[2])
        blob = out[pos : pos + size]
        pos += size + 1
        if size <= MAX_FILE_BYTES:
            with contextlib.suppress(UnicodeDecodeError):  # binary: judged as absent
                texts[spec] = blob.decode()
    return texts


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    env.update(extra or {})
    return env


def git(workspace: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in `workspace` (hooks off, bounded by GIT_TIMEOUT_S); its stdout, or
    ChangeError naming the command and git's message."""
    argv = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.quotepath=off", *args]
    try:
        done = subprocess.run(argv, cwd=workspace, capture_output=True, timeout=GIT_TIMEOUT_S,
                              check=False, env=_env(env))  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChangeError(f"git {' '.join(args[:2])} in {workspace}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[:500]
        raise ChangeError(f"git {' '.join(args[:2])} in {workspace} failed: {message}")
    return done.stdout.decode(errors="replace")
