"""Small real Python projects in git for the loop's tests: a module, its tests, a pytest.ini.

`make_project(path)` commits calc.py (add) with tests/test_calc.py (test_add, passing);
`write(repo, relpath, text)` writes a file as an agent would; `TEST_COMMAND` runs this
interpreter's pytest (in the sandbox: the whole filesystem is readable there).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from tests.helpers.repos import git

# The projects' own pytest without this machine's third-party plugins: their entry points
# cost ~1 s of every sandboxed run (0.2 s without), and a loop test makes dozens.
TEST_COMMAND = ("env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", sys.executable, "-m", "pytest", "-q")

CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = textwrap.dedent(
    """\
    import calc


    def test_add():
        assert calc.add(2, 3) == 5
    """
)


def write(repo: Path, relpath: str, text: str) -> Path:
    """Write `text` to `repo/relpath` (parents made); return the path."""
    path = repo / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def make_project(path: Path) -> Path:
    """A committed project on branch main whose suite passes."""
    path.mkdir(parents=True, exist_ok=True)
    write(path, "calc.py", CALC)
    write(path, "tests/test_calc.py", TEST_CALC)
    write(path, "pytest.ini", "[pytest]\npythonpath = .\n")
    write(path, ".gitignore", ".venv/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial: add() and its test")
    return path


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()
