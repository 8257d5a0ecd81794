"""The demo's project and its recorded agent session, as data.

PROJECT is the small real Python project the factory works on (`textstats`, committed as
golden's first commit); BEADS are its three beads (ts-3 is blocked by ts-1: it uses
ts-1's `words`, so it is dispatched only once ts-1 is closed). SESSION is what the agents
did in one session, turn by turn, replayed by procs/demo/agents.py when no model is
configured: for each bead and role, the files the turn wrote and what the agent
answered. Its shape:

    SESSION[bead]["auditor"][i]         the auditor's turn when i tests are in (a test to
                                        write, or, past the list, requirements complete)
    SESSION[bead]["implementer"][i][a]  the implementer's try a (0-based) at test i + 1
    SESSION[bead]["architect"]          the architect's answer (nothing to refactor)
    SESSION[bead]["reviewer"]           the reviewer's answer

ts-2's first implementation is wrong on purpose (it counts full stops only): the loop's
TCR check sees the suite red and reverts it, and the second try passes, as in the
session this was taken from.
"""

from __future__ import annotations

from typing import Any

PROJECT: dict[str, str] = {
    "README.md": "# textstats\n\nSmall text statistics: the factory demo's project.\n",
    "textstats/__init__.py": '"""Small text statistics."""\n',
    "tests/test_package.py": (
        "import textstats\n\n\ndef test_the_package_says_what_it_is():\n"
        "    assert textstats.__doc__\n"
    ),
    "pytest.ini": "[pytest]\npythonpath = .\ntestpaths = tests\n",
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
}

BEADS: list[dict[str, Any]] = [
    {"id": "ts-1", "title": "Count words", "priority": 1,
     "description": "textstats.counts.word_count(text) returns how many words text has: "
                    "runs of characters other than whitespace (blank text has none). "
                    "Keep the splitting in textstats.counts.words(text)."},
    {"id": "ts-2", "title": "Count sentences", "priority": 2,
     "description": "textstats.sentences.sentence_count(text) returns how many sentences "
                    "text has: each ends with '.', '!' or '?', and words after the last "
                    "one are a sentence too; blank text has none."},
    {"id": "ts-3", "title": "Most common words", "priority": 1,
     "description": "textstats.top.top_words(text, n) returns the n most common words "
                    "of text, lowercased, with their counts: most common first, ties in "
                    "alphabetical order. It splits words as textstats.counts.words does.",
     "blocked_by": "ts-1"},
]  # fmt: skip

_TEST_COUNTS = """\
def test_words_are_runs_of_non_whitespace():
    from textstats.counts import word_count

    assert word_count("the quick  brown\\tfox\\njumps") == 5
    assert word_count("  \\n ") == 0
"""

_COUNTS = '''\
"""Word counts."""


def words(text):
    """The words of `text`: runs of characters other than whitespace."""
    return text.split()


def word_count(text):
    """How many words `text` has."""
    return len(words(text))
'''

_TEST_SENTENCES = """\
def test_sentences_end_with_a_full_stop_or_a_mark():
    from textstats.sentences import sentence_count

    assert sentence_count("It works. Does it? Yes!") == 3
    assert sentence_count("One. And a tail") == 2
    assert sentence_count("   ") == 0
"""

_SENTENCES_WRONG = '''\
"""Sentence counts."""


def sentence_count(text):
    """How many sentences `text` has."""
    return text.count(".")
'''

_SENTENCES = '''\
"""Sentence counts."""

import re

_END = re.compile(r"[.!?]+")


def sentence_count(text):
    """How many sentences `text` has: each ends with '.', '!' or '?' (or the text does)."""
    return sum(1 for part in _END.split(text) if part.strip())
'''

_TEST_TOP = """\
def test_most_common_first_ties_alphabetical():
    from textstats.top import top_words

    assert top_words("the cat and The dog and THE bird", 2) == [("the", 3), ("and", 2)]
    assert top_words("b a b a c", 3) == [("a", 2), ("b", 2), ("c", 1)]
"""

_TOP = '''\
"""The most common words."""

from collections import Counter

from textstats.counts import words


def top_words(text, n):
    """The `n` most common words of `text`, lowercased, with their counts: most common
    first, ties in alphabetical order."""
    counts = Counter(word.lower() for word in words(text))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
'''

_ARCHITECT = {"say": "The code is small and clear; nothing to refactor.",
              "result": {"status": "refactored", "summary": "nothing to do"}}  # fmt: skip
_REVIEWER = {"say": "The change does what the bead asks, with a test that pins it.",
             "result": {"status": "approve", "issues": []}}  # fmt: skip
_COMPLETE = {"say": "The test covers what the bead asks; nothing is missing.",
             "result": {"status": "requirements_complete"}}  # fmt: skip

SESSION: dict[str, dict[str, Any]] = {
    "ts-1": {
        "auditor": [
            {"write": {"tests/test_counts.py": _TEST_COUNTS},
             "say": "I wrote a failing test for word_count in tests/test_counts.py.",
             "result": {"status": "test_written", "test": "test_words_are_runs_of_non_whitespace"}},
            _COMPLETE,
        ],
        "implementer": [[
            {"write": {"textstats/counts.py": _COUNTS},
             "say": "Added textstats/counts.py: words() splits on whitespace, "
                    "word_count() counts them.",
             "result": {"status": "implemented", "summary": "word_count"}},
        ]],
        "architect": _ARCHITECT,
        "reviewer": _REVIEWER,
    },
    "ts-2": {
        "auditor": [
            {"write": {"tests/test_sentences.py": _TEST_SENTENCES},
             "say": "I wrote a failing test for sentence_count in tests/test_sentences.py.",
             "result": {"status": "test_written",
                        "test": "test_sentences_end_with_a_full_stop_or_a_mark"}},
            _COMPLETE,
        ],
        "implementer": [[
            {"write": {"textstats/sentences.py": _SENTENCES_WRONG},
             "say": "Added sentence_count: it counts the full stops.",
             "result": {"status": "implemented", "summary": "sentence_count"}},
            {"write": {"textstats/sentences.py": _SENTENCES},
             "say": "The test also ends sentences with '!' and '?' and counts a tail "
                    "without a mark: sentence_count now splits on [.!?]+ and counts the "
                    "non-blank parts.",
             "result": {"status": "implemented", "summary": "sentence_count, all marks"}},
        ]],
        "architect": _ARCHITECT,
        "reviewer": _REVIEWER,
    },
    "ts-3": {
        "auditor": [
            {"write": {"tests/test_top.py": _TEST_TOP},
             "say": "I wrote a failing test for top_words in tests/test_top.py.",
             "result": {"status": "test_written",
                        "test": "test_most_common_first_ties_alphabetical"}},
            _COMPLETE,
        ],
        "implementer": [[
            {"write": {"textstats/top.py": _TOP},
             "say": "Added textstats/top.py: top_words counts the lowercased words from "
                    "textstats.counts.words and sorts by count, then alphabetically.",
             "result": {"status": "implemented", "summary": "top_words"}},
        ]],
        "architect": _ARCHITECT,
        "reviewer": _REVIEWER,
    },
}  # fmt: skip
