"""A config too deep or too large is refused by name, at start (--check) and on reload;
a refused reload leaves the running tree untouched and factoryd alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from supervisor.config import MAX_SUPERVISOR_DEPTH, ConfigError, load
from supervisor.toml_bounds import MAX_BYTES, TomlBoundsError, check_brackets, check_depth
from tests.harness import ROOT
from tests.waiting import pid_alive, wait_until

WORKER = '[[supervisor.children]]\nid = "w"\ncommand = ["sleep", "600"]\n'


def deep_arrays(n: int = 3000) -> str:
    """A worker whose args are n nested arrays: tomllib alone recurses past its limit."""
    return f"[supervisor]\n{WORKER}args = {'[' * n}{']' * n}\n"


def inline_supervisors(n: int = 1000) -> str:
    """n supervisors nested as inline tables (two brackets a level)."""
    nest = "".join(f'{{id = "s{i}", children = [' for i in range(n))
    leaf = '{id = "leaf", command = ["true"]}'
    return f"[supervisor]\nchildren = [{nest}{leaf}{']}' * n}]\n"


def header_supervisors(n: int) -> str:
    """n supervisors nested by [[...children]] headers: no bracket nests past 2."""
    lines = ["[supervisor]"]
    key = "supervisor"
    for i in range(n):
        key += ".children"
        lines.append(f'[[{key}]]\nid = "s{i}"')
    lines.append(f'[[{key}.children]]\nid = "leaf"\ncommand = ["true"]')
    return "\n".join(lines) + "\n"


DEEP = {
    "arrays": (deep_arrays(), "supervisor.children.args", "nested more than 100 deep"),
    "inline_supervisors": (inline_supervisors(), "supervisor.children", "nested more than 100"),
    "header_supervisors": (
        header_supervisors(MAX_SUPERVISOR_DEPTH + 8),
        "children[0]",
        f"supervisors nested more than {MAX_SUPERVISOR_DEPTH} deep",
    ),
    "large": ("# " + "x" * MAX_BYTES + "\n" + WORKER, "(file)", f"larger than {MAX_BYTES}"),
}


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.daemon", "--check", "--config", str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(DEEP))
def test_check_refuses_a_deep_or_large_config_with_exit_2_and_a_message(
    tmp_path: Path, name: str
) -> None:
    text, key, problem = DEEP[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    done = _check(path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"factoryd: bad config: {path}: ")
    assert key in done.stderr and problem in done.stderr


def test_supervisors_nested_to_the_bound_are_accepted(tmp_path: Path) -> None:
    for text in (header_supervisors(MAX_SUPERVISOR_DEPTH - 1), inline_supervisors(31)):
        path = tmp_path / "ok.toml"
        path.write_text(text)
        assert load(path).tree.children[0].id == "s0"


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    text = (
        '# [[[[[[[[\nx = "[[[[[[[[\\"[[[["\ny = \'[[[[[[\'\n'
        'z = \'\'\'\n[[[[[[\n\'\'\'\nq = """[[[[""""\nr = [[1], [2]]\n'
    )
    check_brackets(text, max_depth=2)
    assert tomllib.loads(text)["r"] == [[1], [2]]
    with pytest.raises(TomlBoundsError, match=r"^r: .*nested more than 1 deep \(line 8\)"):
        check_brackets(text, max_depth=1)


def test_dotted_keys_nest_tables_without_brackets_and_are_bounded() -> None:
    data = tomllib.loads("a." + ".".join(f"k{i}" for i in range(5000)) + " = 1\n")
    with pytest.raises(TomlBoundsError, match=r"^a\.k0\.k1\..*: tables and arrays nested"):
        check_depth(data)


def test_load_names_the_file_key_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(deep_arrays())
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.file == str(path)
    assert info.value.key == "supervisor.children.args"
    assert "nested more than 100 deep (line 5)" in info.value.problem


OK_CONFIG = """
[supervisor]
[[supervisor.children]]
id = "keeper"
command = ["sleep", "600"]
[[supervisor.children]]
id = "inner"
[[supervisor.children.children]]
id = "nested"
command = ["sleep", "600"]
"""


def test_a_refused_reload_leaves_factoryd_and_its_children_running(factoryd) -> None:
    d = factoryd(OK_CONFIG).start()
    pids = {cid: d.pid(cid) for cid in ("keeper", "nested")}
    cfg = d.tmp / f"{d.name}.toml"
    for n, name in enumerate(sorted(DEEP), start=1):
        text, key, problem = DEEP[name]
        cfg.write_text(text)
        d.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda n=n: d.log().count('"event":"reload_refused"') >= 2 * n - 1,
            timeout=30,
            what=f"the SIGHUP reload of {name} to be refused",
        )
        assert d.proc.poll() is None, d.log()[-3000:]
        code, out, err = d.ctl("reload")
        assert code == 1, (out, err)
        assert err.startswith(f"factoryctl: config not reloaded: {cfg}: "), err
        assert key in err and problem in err
        assert {cid: d.pid(cid) for cid in pids} == pids
        assert all(pid_alive(pid) for pid in pids.values())
    cfg.write_text(OK_CONFIG)  # and a good config still reloads afterwards
    code, out, err = d.ctl("reload")
    assert (code, out) == (0, "reloaded: no change\n"), err
