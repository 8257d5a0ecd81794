"""Role path rules, fs handlers and the permission decision, on real files and symlinks,
and against what a concurrent agent shell can do: swap a directory for a symlink between
our check and our use, leave a FIFO, a symlink loop, a huge line or an unencodable name."""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path, PurePosixPath

import pytest

from procs.agent import files
from procs.agent.files import FileTooLarge, read_text_file, write_text_file
from procs.agent.permissions import decide, pick_option
from procs.agent.roles import PathRefused, RolePolicy, check_write, resolve_in_workspace
from procs.testfiles import is_test_path

AUDITOR = RolePolicy.for_role("auditor")
IMPLEMENTER = RolePolicy.for_role("implementer")
ARCHITECT = RolePolicy.for_role("architect")
REVIEWER = RolePolicy.for_role("reviewer")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "tests").mkdir()
    (workspace / "src" / "app.py").write_text("a = 1\nb = 2\nc = 3\n")
    return workspace


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/test_x.py", True), ("tests/data/input.txt", True), ("pkg/test/helpers.py", True),
        ("test_top.py", True), ("pkg/thing_test.py", True), ("conftest.py", True),
        ("src/app.py", False), ("src/testing.py", False), ("latest/app.py", False),
    ],
)  # fmt: skip
def test_test_paths(path: str, expected: bool) -> None:
    assert is_test_path(PurePosixPath(path)) is expected


@pytest.mark.parametrize(
    ("policy", "path", "allowed"),
    [
        (AUDITOR, "tests/test_x.py", True), (AUDITOR, "src/app.py", False),
        (IMPLEMENTER, "src/app.py", True), (IMPLEMENTER, "tests/test_x.py", False),
        (IMPLEMENTER, "conftest.py", False),
        (ARCHITECT, "src/app.py", True), (ARCHITECT, "tests/test_x.py", True),
        (REVIEWER, "src/app.py", False), (REVIEWER, "tests/test_x.py", False),
        (ARCHITECT, ".git/config", False),
        (IMPLEMENTER, "pytest.ini", False), (IMPLEMENTER, "pyproject.toml", False),
        (IMPLEMENTER, "setup.cfg", False), (IMPLEMENTER, "src/sitecustomize.py", False),
        (IMPLEMENTER, "src/zz_disable.pth", False),
        (IMPLEMENTER, "src/__pycache__/app.cpython-311.pyc", False),
        (AUDITOR, "tox.ini", False), (AUDITOR, "tests/__pycache__/x.pyc", False),
        (ARCHITECT, "pytest.ini", True), (ARCHITECT, "pyproject.toml", True),
        (IMPLEMENTER, "src/setup_helpers.py", True),
    ],
)  # fmt: skip
def test_role_write_rules(ws: Path, policy: RolePolicy, path: str, allowed: bool) -> None:
    if allowed:
        assert check_write(policy, ws, path).relative == PurePosixPath(path)
        assert check_write(policy, ws, str(ws / path)).real == ws.resolve() / path
    else:
        with pytest.raises(PathRefused, match=f"role {policy.role.value} may not|inside .git"):
            check_write(policy, ws, path)


def test_confinement_refuses_every_way_out(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "src" / "link_out").symlink_to(outside)
    (ws / "src" / "file_out.py").symlink_to(outside / "target.py")
    (ws / "src" / "link_in.py").symlink_to(ws / "src" / "app.py")
    cases = {
        "../outside/x.py": "contains '..'",
        "src/../src/app.py": "contains '..'",
        str(outside / "x.py"): "outside the workspace",
        "/etc/passwd": "outside the workspace",
        "src/link_out/x.py": "leads outside the workspace",
        "src/file_out.py": "leads outside the workspace",
        "": "non-empty string",
        "src/a\x00b": "NUL",
        ".": "the workspace itself",
    }
    for path, reason in cases.items():
        with pytest.raises(PathRefused, match=reason):
            check_write(ARCHITECT, ws, path)
    assert check_write(ARCHITECT, ws, "src/link_in.py").relative == PurePosixPath("src/app.py")
    with pytest.raises(PathRefused, match="non-empty string"):
        check_write(ARCHITECT, ws, 42)


def test_write_is_atomic_replaces_a_symlink_never_follows_it_out(ws: Path, tmp_path: Path) -> None:
    written = write_text_file(IMPLEMENTER, ws, "src/new/mod.py", "x = 1\n")
    assert written.read_text() == "x = 1\n"
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in written.parent.iterdir()] == ["mod.py"]  # no temp file left
    victim = tmp_path / "victim.py"
    victim.write_text("safe\n")
    (ws / "src" / "evil.py").symlink_to(victim)
    with pytest.raises(PathRefused, match="leads outside"):
        write_text_file(IMPLEMENTER, ws, "src/evil.py", "pwned\n")
    assert victim.read_text() == "safe\n"


def test_write_caps_and_types(ws: Path) -> None:
    with pytest.raises(FileTooLarge, match="over the 10-byte write cap"):
        write_text_file(IMPLEMENTER, ws, "src/big.py", "x" * 11, max_bytes=10)
    with pytest.raises(TypeError, match="content must be a string"):
        write_text_file(IMPLEMENTER, ws, "src/big.py", b"bytes")
    with pytest.raises(IsADirectoryError):
        write_text_file(IMPLEMENTER, ws, "src", "x")
    assert not (ws / "src" / "big.py").exists()


def test_read_windows_caps_and_confinement(ws: Path, tmp_path: Path) -> None:
    assert read_text_file(ws, "src/app.py") == "a = 1\nb = 2\nc = 3\n"
    assert read_text_file(ws, str(ws / "src" / "app.py"), line=2, limit=1) == "b = 2\n"
    with pytest.raises(FileTooLarge, match="over the 5-byte read cap"):
        read_text_file(ws, "src/app.py", max_bytes=5)
    with pytest.raises(FileNotFoundError):
        read_text_file(ws, "src/missing.py")
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", ws / "tests" / "secret")
    with pytest.raises(PathRefused):
        read_text_file(ws, "tests/secret")
    with pytest.raises(ValueError, match="line must be >= 1"):
        read_text_file(ws, "src/app.py", line=0)


def edit(*paths: str, kind: str = "edit") -> dict:
    return {"toolCallId": "c1", "kind": kind, "locations": [{"path": p} for p in paths]}


def test_permission_decisions(ws: Path) -> None:
    assert decide(IMPLEMENTER, ws, edit(str(ws / "src" / "app.py"))).allow
    refused = decide(IMPLEMENTER, ws, edit(str(ws / "src" / "a.py"), str(ws / "tests" / "t.py")))
    assert not refused.allow
    assert "may not write tests" in refused.reason
    assert not decide(IMPLEMENTER, ws, edit()).allow  # an edit must name its path
    assert decide(AUDITOR, ws, edit(str(ws / "tests" / "test_a.py"))).allow
    assert decide(REVIEWER, ws, edit(str(ws / "src" / "app.py"), kind="read")).allow
    assert not decide(REVIEWER, ws, edit("/etc/passwd", kind="read")).allow
    outside = {"kind": "other", "rawInput": {"filepath": "/tmp/x", "parentDir": "/tmp"}}
    assert "outside the workspace" in decide(ARCHITECT, ws, outside).reason
    assert not decide(IMPLEMENTER, ws, {"kind": "execute", "rawInput": {"command": "ls"}}).allow
    runner = RolePolicy.for_role("implementer", may_execute=True)
    assert decide(runner, ws, {"kind": "execute", "rawInput": {"command": "ls"}}).allow
    assert not decide(ARCHITECT, ws, {"kind": "fetch"}).allow
    with pytest.raises(ValueError, match="unknown role 'janitor'"):
        RolePolicy.for_role("janitor")


def test_pick_option_never_allows_always() -> None:
    options = [
        {"optionId": "always", "kind": "allow_always"},
        {"optionId": "once", "kind": "allow_once"},
        {"optionId": "reject", "kind": "reject_once"},
    ]
    assert pick_option(options, True) == "once"
    assert pick_option(options, False) == "reject"
    assert pick_option(options[:1], True) is None


# what the sandbox locks for each role ---------------------------------------------------


def test_each_role_locks_what_it_may_not_write(tmp_path: Path) -> None:
    from procs.agent.locked_paths import locked_paths

    ws = tmp_path / "ws"
    for path in ("src/app.py", "src/pkg/tests/test_inner.py", "tests/test_a.py",
                 "tests/__pycache__/x.pyc", "test_top.py", "conftest.py", "pyproject.toml",
                 ".git/HEAD", "README.md"):  # fmt: skip
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).write_text("")
    (ws / "link.py").symlink_to(ws / "tests" / "test_a.py")

    def locked(role: str) -> list[str]:
        found = locked_paths(RolePolicy.for_role(role), ws)
        return sorted(str(p.relative_to(ws.resolve())) for p in found)

    assert locked("implementer") == [
        ".git", "conftest.py", "pyproject.toml", "src/pkg/tests", "test_top.py", "tests",
    ]  # fmt: skip
    assert locked("auditor") == [".git", "README.md", "pyproject.toml", "src", "tests/__pycache__"]
    assert locked("architect") == [".git"]
    assert locked("reviewer") == ["."]


# races, special files and odd paths ---------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    elsewhere = tmp_path / "outside"
    elsewhere.mkdir()
    (elsewhere / "app.py").write_text("secret\n")
    return elsewhere


def swap_for_symlink(directory: Path, target: Path) -> None:
    """What a concurrent agent shell can do between our check and our use."""
    directory.rename(directory.with_name(directory.name + ".old"))
    directory.symlink_to(target, target_is_directory=True)


def test_write_refuses_a_directory_swapped_for_a_symlink_after_the_check(
    ws: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_check = files.check_write

    def check_then_swap(policy: RolePolicy, workspace: Path, raw: object):  # type: ignore[no-untyped-def]
        target = real_check(policy, workspace, raw)
        swap_for_symlink(ws / "src", outside)
        return target

    monkeypatch.setattr(files, "check_write", check_then_swap)
    with pytest.raises(PathRefused):
        write_text_file(ARCHITECT, ws, "src/app.py", "pwned\n")
    assert (outside / "app.py").read_text() == "secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["app.py"]


def test_read_refuses_a_directory_swapped_for_a_symlink_after_the_check(
    ws: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_resolve = files.resolve_in_workspace

    def resolve_then_swap(workspace: Path, raw: object):  # type: ignore[no-untyped-def]
        target = real_resolve(workspace, raw)
        swap_for_symlink(ws / "src", outside)
        return target

    monkeypatch.setattr(files, "resolve_in_workspace", resolve_then_swap)
    with pytest.raises(PathRefused):
        read_text_file(ws, "src/app.py")


def test_reading_a_fifo_is_refused_instead_of_blocking(ws: Path) -> None:
    fifo = ws / "src" / "pipe"
    os.mkfifo(fifo)
    outcome: list[Exception | str] = []

    def read() -> None:
        try:
            outcome.append(read_text_file(ws, "src/pipe"))
        except Exception as exc:  # noqa: BLE001 - hand any outcome back to the test
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10.0)
    if reader.is_alive():  # unblock the stuck open() so the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10.0)
        pytest.fail("read_text_file blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], PathRefused), outcome
    assert "not a regular file" in str(outcome[0])


def test_a_line_window_never_holds_an_over_long_line_in_memory(ws: Path) -> None:
    big = 32 * 1024 * 1024
    with open(ws / "src" / "minified.js", "w") as handle:
        handle.write("x" * big + "\nshort\n")
    tracemalloc.start()
    try:
        assert read_text_file(ws, "src/minified.js", line=2, limit=1, max_bytes=1024) == "short\n"
        with pytest.raises(FileTooLarge):
            read_text_file(ws, "src/minified.js", line=1, limit=1, max_bytes=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < big // 4, f"peak {peak} bytes while reading a window capped at 1024 bytes"


def test_line_windows_count_every_newline_convention(ws: Path) -> None:
    (ws / "src" / "mixed.txt").write_bytes(b"a\r\nb\rc\nd")
    got = [read_text_file(ws, "src/mixed.txt", line=n, limit=1) for n in (1, 2, 3, 4, 5)]
    assert got == ["a\r\n", "b\r", "c\n", "d", ""]


def test_symlink_loops_and_unencodable_paths_are_refused_with_a_reason(ws: Path) -> None:
    os.symlink("loop-b", ws / "loop-a")
    os.symlink("loop-a", ws / "loop-b")
    for raw in ("loop-a", "src/\udc80.py"):
        with pytest.raises(PathRefused):
            resolve_in_workspace(ws, raw)
        decision = decide(ARCHITECT, ws, {"kind": "edit", "locations": [{"path": raw}]})
        assert decision.allow is False and decision.reason


@pytest.mark.parametrize(
    "path", ["vendor/lib/.git/config", "sub/.git", "sub/.git/hooks/pre-commit"]
)
def test_no_role_writes_a_nested_git_dir_or_gitlink(ws: Path, path: str) -> None:
    # A submodule's `.git` file names its gitdir, whose config (core.fsmonitor, hooks)
    # runs commands when the factory's git recurses into the submodule.
    with pytest.raises(PathRefused, match=r"\.git"):
        write_text_file(ARCHITECT, ws, path, "gitdir: /tmp/evil\n")
    assert not (ws / path).exists()
