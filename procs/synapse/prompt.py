"""The mutator's request to the router (seed fs-303) and the strict answer it takes. Pure.

    fix_request(failure, variant, of) -> {"model", "prompt", "max_tokens", "temperature"}
    extract_diff(reply) -> the unified diff          raises NotADiff

The prompt names the failing file, the error, the red commit and the culprit commit with
its diff, and asks for the smallest change to the code (never to a test) as one unified
diff and nothing else. Mutators of one generation differ by their variant: each gets its
own approach line and temperature, so a swarm of n tries n different fixes. The router's
request has no seed field; the variant in the prompt is what makes two requests differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_DIFF_CHARS = 12_000
MAX_ERROR_CHARS = 2_000
MAX_TOKENS = 1024
APPROACHES = (
    "Fix the code the failing test exercises, as the test expects.",
    "Undo only the part of the culprit's change that broke the test.",
    "Fix the root cause named by the error, in the function it points at.",
    "Make the smallest change to a single line that makes the test pass.",
)
HARNESS = ("conftest.py", "pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini")
_FENCE = re.compile(r"\A```(?:diff|patch)?[ \t]*\n(?P<body>.*?\n)```\s*\Z", re.DOTALL)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@", re.MULTILINE)


class NotADiff(ValueError):
    """The model's reply is not one unified diff; the message says what is wrong."""


@dataclass(frozen=True)
class Failure:
    """What golden's red is: the heartbeat's TestFailure and what bisection found."""

    file: str
    error: str
    context_hash: str
    culprit: str  # the first red commit ("" when bisection could not run)
    culprit_diff: str  # `git show` of it, cut to MAX_DIFF_CHARS

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "error": self.error, "context_hash": self.context_hash,
                "culprit": self.culprit, "culprit_diff": self.culprit_diff}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Failure:
        return cls(*(str(raw.get(k, "")) for k in
                     ("file", "error", "context_hash", "culprit", "culprit_diff")))  # fmt: skip


def temperature(variant: int, of: int) -> float:
    """0.2 for the first mutator up to 1.0 for the last, evenly."""
    if of <= 1:
        return 0.2
    return round(0.2 + 0.8 * variant / (of - 1), 3)


def fix_prompt(failure: Failure, variant: int, of: int) -> str:
    culprit = (f"The first red commit is {failure.culprit}. Its change:\n"
               f"{failure.culprit_diff[:MAX_DIFF_CHARS]}\n"
               if failure.culprit else "The commit that broke it is not known.\n")  # fmt: skip
    return (
        "You fix one failing test on the golden branch with a surgical patch.\n"
        f"Golden commit: {failure.context_hash}\n"
        f"Failing test file: {failure.file or '(unknown)'}\n"
        f"Error:\n{failure.error[:MAX_ERROR_CHARS]}\n\n"
        f"{culprit}\n"
        f"Variant {variant + 1} of {of}. Approach: {APPROACHES[variant % len(APPROACHES)]}\n"
        "Rules: change code, never a test; change as little as you can; answer with one "
        "unified diff (--- a/PATH, +++ b/PATH, @@ hunks) against the golden commit and "
        "nothing else, optionally inside one ```diff fence."
    )


def fix_request(failure: Failure, variant: int, of: int) -> dict[str, Any]:
    """The router's `request` for mutator `variant` (0-based) of `of`."""
    if not 0 <= variant < of:
        raise ValueError(f"variant must be 0..{of - 1}, got {variant}")
    return {"model": "", "prompt": fix_prompt(failure, variant, of), "max_tokens": MAX_TOKENS,
            "temperature": temperature(variant, of)}  # fmt: skip


def extract_diff(reply: str) -> str:
    """The unified diff that is the whole reply (or the whole of its one fence)."""
    text = reply.strip()
    fenced = _FENCE.match(text + "\n") if text.startswith("```") else None
    if text.startswith("```") and fenced is None:
        raise NotADiff("a fenced reply must be exactly one ```diff block")
    body = fenced.group("body") if fenced else text + "\n"
    lines = body.splitlines()
    start = 1 if lines and lines[0].startswith("diff --git ") else 0
    if len(lines) < start + 3 or not lines[start].startswith("--- "):
        raise NotADiff("the reply does not start with a unified diff header (--- a/PATH)")
    if not lines[start + 1].startswith("+++ ") or not _HUNK.search(body):
        raise NotADiff("the diff has no +++ line or no @@ hunk")
    return body


def touched_paths(diff: str) -> list[str]:
    """The paths a diff changes (its +++ and --- names, without a/ b/, /dev/null out)."""
    out: list[str] = []
    for line in diff.splitlines():
        if line.startswith(("--- ", "+++ ")):
            name = line[4:].split("\t")[0].strip()
            if name != "/dev/null":
                name = name[2:] if name[:2] in ("a/", "b/") else name
                if name not in out:
                    out.append(name)
    return out


def touches_tests(diff: str) -> bool:
    """A test file or the test harness is in the diff: a mutator may not change them."""
    for path in touched_paths(diff):
        name = path.rsplit("/", 1)[-1]
        if path.startswith("tests/") or "/tests/" in path or name in HARNESS:
            return True
        if name.startswith("test_") or name.endswith("_test.py"):
            return True
    return False
