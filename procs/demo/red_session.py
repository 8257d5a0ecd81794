"""The demo's red golden, as data: a teammate's commits that break golden, and the fix
answers a model gave the swarm, recorded and replayed (procs/demo/fix_model.py).

TEAMMATE is three commits a teammate pushes to golden's upstream once the beads have
landed; golden picks them up on its refresh, as it would any upstream commit (the merge
queue never lets a red patch land, so a red golden comes from outside it). The second
one breaks `words()` (it splits on single spaces, so runs of whitespace make empty
words): tests/test_counts.py fails, the heartbeat says TestFailure, and the synapse
bisects the three commits to that one.

FIX_ANSWERS is what the model answered each mutator of the swarm, by its variant (the
"Variant I of N" its prompt carries; variant I gets FIX_ANSWERS[(I - 1) % 4]): a right
fix, prose (no diff: that mutator gives up), a wrong fix (still red: it gives up), and
another right fix that races the first. The merge queue lands the first of the two and
rejects the other as stale, or the synapse stops it first.
"""

from __future__ import annotations

import difflib

COUNTS_PATH = "textstats/counts.py"

_README = """\
# textstats

Small text statistics: the factory demo's project.

Run the tests with `python3 -m pytest -q`.
"""

_BROKEN_COUNTS = '''\
"""Word counts."""


def words(text):
    """The words of `text`: runs of characters other than whitespace; a hyphen
    separates words too ("well-known" is two)."""
    return text.replace("-", " ").split(" ")


def word_count(text):
    """How many words `text` has."""
    return len(words(text))
'''

_INIT = '''\
"""Small text statistics: word_count and words (textstats.counts), sentence_count
(textstats.sentences), top_words (textstats.top)."""
'''

# (message, files written): applied in order on top of golden's HEAD
TEAMMATE: list[tuple[str, dict[str, str]]] = [
    ("README: how to run the tests", {"README.md": _README}),
    ("counts: a hyphen separates words too", {COUNTS_PATH: _BROKEN_COUNTS}),
    ("textstats: the package docstring lists what it has", {"textstats/__init__.py": _INIT}),
]
CULPRIT_MESSAGE = TEAMMATE[1][0]

_BROKEN_LINE = '    return text.replace("-", " ").split(" ")\n'


def _fix(new_line: str) -> str:
    """A unified diff of counts.py that replaces the broken line with `new_line`."""
    fixed = _BROKEN_COUNTS.replace(_BROKEN_LINE, new_line)
    return "".join(difflib.unified_diff(_BROKEN_COUNTS.splitlines(keepends=True),
                                        fixed.splitlines(keepends=True),
                                        f"a/{COUNTS_PATH}", f"b/{COUNTS_PATH}"))  # fmt: skip


FIX_ANSWERS: tuple[str, ...] = (
    "```diff\n" + _fix('    return text.replace("-", " ").split()\n') + "```",
    "words() now splits on single spaces, so two spaces in a row or a tab make an empty "
    "word. Splitting on any run of whitespace (split() without an argument) fixes it.",
    _fix('    return text.replace("-", " ").strip().split(" ")\n'),  # still red: "a  b"
    _fix('    return text.replace("-", " ").split(None)\n'),
)


def fix_answer(variant: int) -> str:
    """The recorded answer to mutator `variant` (1-based, as its prompt says)."""
    return FIX_ANSWERS[(variant - 1) % len(FIX_ANSWERS)]
