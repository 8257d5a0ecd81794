"""The config check refuses child specs that could not be started: environment names
and values, a cwd or command with NUL, and a dynamic supervisor id too long to leave room
for its children's ids. Pure: supervisor.config.load on a file, no process."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import ConfigError, load


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('env = { "A=B" = "x" }', "env.A=B", "name"),
        ('env = { "" = "x" }', "env.", "name"),
        ('env = { A = "x\\u0000y" }', "env.A", "NUL"),
        ('cwd = "/tmp\\u0000x"', "cwd", "NUL"),
    ],
)
def test_config_refuses_what_the_child_could_not_be_started_with(
    tmp_path: Path, toml: str, key: str, problem: str
) -> None:
    path = tmp_path / "f.toml"
    path.write_text(
        f'[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["true"]\n{toml}\n'
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == f"supervisor.children[0].{key}"
    assert problem in err.value.problem


def test_config_refuses_nul_in_a_command(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[supervisor]\n[[supervisor.children]]\nid = "w"\ncommand = ["a\\u0000b"]\n')
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == "supervisor.children[0].command"
    assert "NUL" in err.value.problem


def test_a_dynamic_supervisor_id_leaves_room_for_its_childrens_ids(tmp_path: Path) -> None:
    """A simple_one_for_one supervisor with a 63-character id passed the config check;
    its first start_child built the id SUP.1 (65 characters), the spec check raised
    inside the control handler, and factoryd died of it."""
    long_id = "s" * 63
    path = tmp_path / "f.toml"
    path.write_text(
        f'[supervisor]\n[[supervisor.children]]\nid = "{long_id}"\n'
        'strategy = "simple_one_for_one"\n[[supervisor.children.children]]\n'
        'id = "t"\ncommand = ["true"]\n'
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.key == "supervisor.children[0]"
    assert "simple_one_for_one" in err.value.problem and "characters" in err.value.problem
