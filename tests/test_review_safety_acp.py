"""Adversarial review of the ACP client's file handlers: races, special files, odd paths."""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from procs.agent import files
from procs.agent.files import FileTooLarge, read_text_file, write_text_file
from procs.agent.permissions import decide
from procs.agent.roles import PathRefused, RolePolicy, resolve_in_workspace

ARCHITECT = RolePolicy.for_role("architect")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("inside\n")
    return workspace


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
