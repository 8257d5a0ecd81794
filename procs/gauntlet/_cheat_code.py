"""Cheats in the code a change adds, judged on the added lines only (old code is not the
change's doing), from the patched file's AST and the diff's added lines:

    commented_code    code commented out (real comments, found by tokenize: a `#` inside a
                      string is data), turned into a string, or put behind `if False:`
    empty_catch       a handler that does nothing, or contextlib.suppress(...), where the
                      error is not an "already so" one, the code is not a release or
                      cleanup, and no fallback follows (rules in _handlers.py)
    ignored_errors    a broad handler (bare, Exception, BaseException, AssertionError) that
                      neither re-raises nor carries the exception on, nor is an isolation
                      boundary that records the traceback; suppress of those;
                      return/break/continue in a finally block
    test_detection    behaviour that depends on being under test: a runtime source
                      (sys.modules, argv, environ, frames) meeting a test word, the stack
                      inspected, the machinery steered or patched, the tests read
                      (rules in _detection.py); os._exit is runner_tampering
    rigged_equality   __eq__ that is always true, __ne__ always false, comparisons that
                      never look at the other operand, unittest.mock stand-ins and
                      pytest.approx returned by code under test
    hardcoded_values  literals that only agree with the tests: the value a test expects
                      from a function, written into that function (rules in _hardcoded.py)

An honest handler (`except ValueError: return None`), a constant table, prose comments,
logging, `contextlib.suppress(FileNotFoundError)` and a tool that names pytest are not
flagged.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize

from procs.gauntlet._astkit import dotted
from procs.gauntlet._change import FileChange
from procs.gauntlet._detection import Module, detection_findings
from procs.gauntlet._handlers import Context, handler_findings
from procs.gauntlet._model import Finding

_DIRECTIVE = re.compile(r"^(noqa|type:|pragma|fmt:|pylint|mypy|isort|ruff|nosec|TODO|FIXME|XXX)",
                        re.IGNORECASE)  # fmt: skip
_COMPARISONS = {"__eq__": True, "__ne__": False}
_ORDERING = frozenset({"__lt__", "__le__", "__gt__", "__ge__", "__contains__",
                       "__instancecheck__", "__subclasscheck__"})  # fmt: skip


def code_findings(change: FileChange, tree: ast.Module, *, test_file: bool) -> list[Finding]:
    """Findings on the added lines of one changed Python file. Test files get the
    comment/catch rules only (their own rules are in _cheat_tests.py)."""
    added = change.added_lines
    path = str(change.path)
    findings = _commented(change) + _disabled(path, tree, added)
    ctx = Context(tree)
    findings += handler_findings(path, tree, added, ctx)
    if test_file:
        return findings
    module = Module(tree)
    # os._exit is how a forked child ends; only outside a module that forks is it a way out
    # of the test runner's report. Docstrings are prose.
    forks, prose = False, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and dotted(node.func).endswith(("fork", "forkpty")):
            forks = True
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            prose.add(id(node.value))
    findings += detection_findings(path, tree, added, module, skip=prose, parents=ctx.parents)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) not in added:
            continue
        if isinstance(node, ast.Attribute | ast.Name) and not forks \
                and module.name(node) == "os._exit":  # fmt: skip
            findings.append(Finding("runner_tampering", path, node.lineno,
                                    "os._exit ends the interpreter before the test runner "
                                    "reports"))  # fmt: skip
        findings += _rigged(path, node)
    return findings


def _code_like(text: str) -> bool:
    """Whether comment text is Python code (not prose, not a directive)."""
    stripped = text.strip()
    if not stripped or _DIRECTIVE.match(stripped) or stripped.startswith(("!", "-*-", "http")):
        return False
    candidates = [stripped]
    if stripped.endswith(":"):
        candidates.append(stripped + "\n    pass")
    for candidate in candidates:
        try:
            tree = ast.parse(textwrap.dedent(candidate))
        except (SyntaxError, ValueError):
            continue
        for statement in tree.body:
            if isinstance(statement, ast.Expr):
                if isinstance(statement.value, ast.Call | ast.Await | ast.Yield | ast.Compare):
                    return True
                continue
            if isinstance(statement, ast.AnnAssign) and statement.value is None:
                continue  # "Note: something" is prose
            return True
    return False


def _comment_lines(text: str | None) -> dict[int, str]:
    """Line -> comment text, for lines that hold only a comment (tokenize: a `#` inside
    a string, such as test data that shows code, is not a comment)."""
    if not text:
        return {}
    found: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT and not token.line[: token.start[1]].strip():
                found[token.start[0]] = token.string
    except (tokenize.TokenError, SyntaxError):
        pass  # not Python that compiles: the compile stage says so
    return found


def _commented(change: FileChange) -> list[Finding]:
    """Added comment lines (alone or as a block) that parse as code; a comment the file
    had already (moved, re-indented) is not the change's doing."""
    findings: list[Finding] = []
    block: list[tuple[int, str]] = []
    comments = _comment_lines(change.new_text)
    if not comments:
        return []
    old = {c.strip() for c in _comment_lines(change.base_text).values()}

    def flush() -> None:
        if not block:
            return
        texts = [text for _, text in block]
        if all(f"#{t}".strip() in old or f"# {t}".strip() in old for t in texts):
            block.clear()
            return
        joined = textwrap.dedent("\n".join(texts))
        hit = _code_like(joined) if len(block) > 1 else False
        lines = [block[0][0]] if hit else [n for n, t in block if _code_like(t)]
        for line in lines[:3]:
            findings.append(Finding("commented_code", str(change.path), line,
                                    "code commented out: delete it or make it run "
                                    f"(`{texts[0].strip()[:80]}`)"))  # fmt: skip
        block.clear()

    previous = -2
    for number, _ in change.added_text:
        comment = comments.get(number)
        if comment is not None and not comment.startswith("#!"):
            if number != previous + 1:
                flush()
            block.append((number, comment[1:].removeprefix(" ")))
            previous = number
        else:
            flush()
            previous = -2
    flush()
    return findings


def _disabled(path: str, tree: ast.Module, added: frozenset[int]) -> list[Finding]:
    """Code put behind `if False:` or kept as a string statement (not a docstring)."""
    findings = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.If | ast.While) and node.lineno in added:
            fixed = _fixed(node.test)  # False, 0, `False and x`, `not True`
            if fixed is not _VARIES and not fixed:
                findings.append(
                    Finding(
                        "commented_code",
                        path,
                        node.lineno,
                        "code disabled behind a condition that is never true",
                    )
                )
        if not isinstance(body, list):
            continue
        findings += _unreachable(path, body, added)
        for index, statement in enumerate(body):
            if index == 0 and isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef
                                         | ast.AsyncFunctionDef):  # fmt: skip
                continue
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
                    and isinstance(statement.value.value, str) and statement.lineno in added \
                    and _code_like(statement.value.value):  # fmt: skip
                findings.append(
                    Finding(
                        "commented_code",
                        path,
                        statement.lineno,
                        "code kept as a string statement: it does not run",
                    )
                )
    return findings


def _unreachable(path: str, body: list[ast.stmt], added: frozenset[int]) -> list[Finding]:
    """Statements after a return/raise/break/continue the change added: the code below it
    is kept but never runs, as if commented out."""
    for index, statement in enumerate(body[:-1]):
        if isinstance(statement, ast.Return | ast.Raise | ast.Break | ast.Continue) \
                and statement.lineno in added:  # fmt: skip
            return [Finding("commented_code", path, body[index + 1].lineno,
                            f"code after `{ast.unparse(statement)[:60]}` never runs: delete it "
                            "or make it run")]  # fmt: skip
    return []


_VARIES = object()


def _fixed(value: ast.expr | None) -> object:
    """What an expression always evaluates to, when it does: a constant, `x or True`,
    `x and False`, `not <fixed>`; else _VARIES."""
    if isinstance(value, ast.Constant):
        return value.value
    if isinstance(value, ast.BoolOp):
        decisive = isinstance(value.op, ast.Or)
        for part in value.values:
            fixed = _fixed(part)
            if fixed is not _VARIES and bool(fixed) is decisive:
                return decisive
    if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not):
        fixed = _fixed(value.operand)
        return _VARIES if fixed is _VARIES else not fixed
    return _VARIES


def _rigged(path: str, node: ast.AST) -> list[Finding]:
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        for name in names:
            value = node.value.body
            if (name in _COMPARISONS or name in _ORDERING) and isinstance(value, ast.Constant):
                return [Finding("rigged_equality", path, node.lineno,
                                f"{name} is a lambda returning {value.value!r}: every "
                                "comparison agrees")]  # fmt: skip
    if not isinstance(node, ast.FunctionDef) or not (
        node.name in _COMPARISONS or node.name in _ORDERING
    ):
        return []
    params = [a.arg for a in node.args.args]
    other = params[1] if len(params) > 1 else None
    returns = [
        n.value for n in ast.walk(node)
        if isinstance(n, ast.Return)
        and not (isinstance(n.value, ast.Name) and n.value.id == "NotImplemented")
    ]  # fmt: skip
    constants = [v for r in returns if (v := _fixed(r)) is not _VARIES]
    uses_other = other is not None and any(
        isinstance(n, ast.Name) and n.id == other for n in ast.walk(node)
    )
    expected = _COMPARISONS.get(node.name)
    always = bool(returns) and len(constants) == len(returns)
    if always and (expected is None or all(c is expected for c in constants)):
        return [Finding("rigged_equality", path, node.lineno,
                        f"{node.name} always returns {constants[0]!r}: it agrees with "
                        "whatever it is compared to")]  # fmt: skip
    if not uses_other:
        return [
            Finding(
                "rigged_equality",
                path,
                node.lineno,
                f"{node.name} never looks at the other operand",
            )
        ]
    return []
