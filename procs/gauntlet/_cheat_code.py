"""Cheats in the code a change adds, judged on the added lines only (old code is not the
change's doing), from the patched file's AST and the diff's added lines:

    commented_code    code commented out, turned into a string, or put behind `if False:`
    empty_catch       an except handler that does nothing (pass, ..., a bare constant)
    ignored_errors    a broad handler (bare, Exception, BaseException, AssertionError) that
                      neither re-raises nor carries the exception on (returned, stored:
                      logging it is not handling it); contextlib.suppress of those;
                      return/break/continue in a finally block
    test_detection    code under test that looks for the tests (sys.modules["pytest"],
                      PYTEST_CURRENT_TEST, the call stack, imports of the test machinery) or
                      patches the machinery or builtins, or names the test files;
                      os._exit (runner_tampering: no report is written)
    rigged_equality   __eq__ that is always true, __ne__ always false, comparisons that
                      never look at the other operand, unittest.mock stand-ins (ANY,
                      MagicMock, ...) outside tests
    hardcoded_values  literals that only agree with the tests: the value a test expects
                      from a function, written into that function (rules in _hardcoded.py)

An honest handler (`except ValueError: return None`), a constant table, prose comments,
logging and `contextlib.suppress(FileNotFoundError)` are not flagged.
"""

from __future__ import annotations

import ast
import re
import textwrap

from procs.gauntlet._astkit import call_name, dotted
from procs.gauntlet._change import FileChange
from procs.gauntlet._model import Finding
from procs.testfiles import MACHINERY_MODULES

_BROAD = frozenset({"Exception", "BaseException", "AssertionError", "builtins.Exception",
                    "builtins.BaseException"})  # fmt: skip
_STACK = frozenset({
    "sys._getframe", "inspect.stack", "inspect.currentframe", "inspect.getouterframes",
    "inspect.trace", "traceback.extract_stack", "traceback.format_stack", "traceback.walk_stack",
    "sys.settrace", "sys.setprofile", "sys.gettrace", "sys.getprofile", "gc.get_referrers",
    "gc.get_objects", "_getframe", "currentframe", "extract_stack",
})  # fmt: skip
_PATCHED_ROOTS = frozenset({"builtins", "__builtins__", *MACHINERY_MODULES, "sys.modules",
                            "AssertionError"})  # fmt: skip
_TEST_ENV = re.compile(r"TEST", re.IGNORECASE)
_TEST_FILES = re.compile(r"(^|/)(tests?/|test_\w*\.py|\w+_test\.py|conftest\.py|pytest\.ini)")
_TEST_NAMES = re.compile(r"^_?(test|tests|test_|testing|conftest)$", re.IGNORECASE)
_ENV_READS = frozenset({"os.getenv", "os.environ.get", "getenv", "environ.get", "os.environ",
                        "environ"})  # fmt: skip
_TEST_WORDS = re.compile(r"pytest|unittest|PYTEST_", re.IGNORECASE)
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
    aliases = _aliases(tree)
    # os._exit is how a forked child ends; only outside a module that forks is it a way out
    # of the test runner's report.
    forks = any(
        isinstance(n, ast.Call) and dotted(n.func).endswith(("fork", "forkpty"))
        for n in ast.walk(tree)
    )
    parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    prose = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }  # docstrings
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) not in added or id(node) in prose:
            continue
        if isinstance(node, ast.ExceptHandler):
            findings += _handler(path, node)
        elif isinstance(node, ast.Try | ast.TryStar) and node.finalbody:
            findings += _finally_exits(path, node)
        elif isinstance(node, ast.With | ast.AsyncWith):
            findings += _suppress(path, node)
        if test_file:
            continue
        findings += _detects_tests(path, node, aliases, _looked_for(node, parents), forks)
        findings += _rigged(path, node, aliases)
    return findings


def _aliases(tree: ast.Module) -> dict[str, str]:
    """`import builtins as b` -> {"b": "builtins"}: patched roots are seen through aliases."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def _finally_exits(path: str, node: ast.Try | ast.TryStar) -> list[Finding]:
    """return/break/continue in a finally block drops whatever exception was raised."""
    for statement in node.finalbody:
        for child in ast.walk(statement):
            if isinstance(child, ast.Return | ast.Break | ast.Continue):
                return [Finding("ignored_errors", path, child.lineno,
                                f"{type(child).__name__.lower()} inside finally discards any "
                                "exception raised in the try block")]  # fmt: skip
    return []


def _handler(path: str, handler: ast.ExceptHandler) -> list[Finding]:
    findings = []
    caught = (
        []
        if handler.type is None
        else (handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type])
    )
    names = {dotted(c) for c in caught}
    what = "a bare except" if handler.type is None else f"except {ast.unparse(handler.type)}"
    empty = all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        for s in handler.body
    )
    if empty:
        findings.append(Finding("empty_catch", path, handler.lineno,
                                f"{what} whose body does nothing: the error vanishes; handle "
                                "it or let it propagate"))  # fmt: skip
    reraises = any(isinstance(n, ast.Raise) for n in ast.walk(handler))
    if (handler.type is None or names & _BROAD) and not reraises and not _handled(handler):
        findings.append(Finding("ignored_errors", path, handler.lineno,
                                f"{what} swallows every error without re-raising; catch the "
                                "specific exception you can handle"))  # fmt: skip
    return findings


_REPORTERS = re.compile(r"(^|\.)(print|debug|info|warning|warn|error|exception|critical|log)$")


def _handled(handler: ast.ExceptHandler) -> bool:
    """The caught exception is carried on (returned, stored, passed to code that is not
    a log or print call): the error is turned into a result, not dropped."""
    if not handler.name:
        return False
    reported: set[int] = set()
    for node in ast.walk(handler):
        if isinstance(node, ast.Call) and _REPORTERS.search(dotted(node.func)):
            reported |= {id(n) for n in ast.walk(node)}
    return any(isinstance(n, ast.Name) and n.id == handler.name and id(n) not in reported
               for n in ast.walk(handler))  # fmt: skip


def _suppress(path: str, node: ast.With | ast.AsyncWith) -> list[Finding]:
    findings = []
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call) and dotted(call.func).endswith("suppress"):
            names = {dotted(a) for a in call.args}
            if not call.args or names & _BROAD:
                findings.append(
                    Finding(
                        "ignored_errors",
                        path,
                        node.lineno,
                        f"{ast.unparse(call)} swallows every error",
                    )
                )
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


def _commented(change: FileChange) -> list[Finding]:
    """Added comment lines (alone or as a block) that parse as code."""
    findings: list[Finding] = []
    block: list[tuple[int, str]] = []

    def flush() -> None:
        if not block:
            return
        texts = [text for _, text in block]
        joined = textwrap.dedent("\n".join(texts))
        hit = _code_like(joined) if len(block) > 1 else False
        lines = [block[0][0]] if hit else [n for n, t in block if _code_like(t)]
        for line in lines[:3]:
            findings.append(Finding("commented_code", str(change.path), line,
                                    "code commented out: delete it or make it run "
                                    f"(`{texts[0].strip()[:80]}`)"))  # fmt: skip
        block.clear()

    previous = -2
    for number, text in change.added_text:
        stripped = text.lstrip()
        if stripped.startswith("#") and not stripped.startswith("#!"):
            if number != previous + 1:
                flush()
            block.append((number, stripped[1:].removeprefix(" ")))
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
            test = node.test
            if isinstance(test, ast.Constant) and not test.value:
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


def _resolve(name: str, aliases: dict[str, str]) -> str:
    head, _, rest = name.partition(".")
    real = aliases.get(head)
    return (f"{real}.{rest}" if rest else real) if real else name


# Calls that look a string up or open it, as opposed to printing or raising it.
_LOOKUPS = frozenset({"get", "getenv", "__contains__", "startswith", "endswith", "find",
                      "index", "search", "match", "fullmatch", "count", "open", "Path",
                      "read_text", "read_bytes", "exists", "is_file", "glob", "rglob",
                      "import_module", "__import__", "getattr", "hasattr", "pop",
                      "setdefault", "getmodule", "find_spec", "listdir", "walk"})  # fmt: skip


def _looked_for(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """A string that is compared, used as a key, or handed to a lookup (not a message)."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.Dict):  # a key, not a message held as a value
        return any(key is node for key in parent.keys)
    if isinstance(parent, ast.Compare | ast.Subscript | ast.Set):
        return True
    if isinstance(parent, ast.Tuple | ast.List):  # "x" in ("pytest", "py.test")
        return isinstance(parents.get(id(parent)), ast.Compare)
    return isinstance(parent, ast.Call) and call_name(parent) in _LOOKUPS


def _detects_tests(path: str, node: ast.AST, aliases: dict[str, str], looked_for: bool,
                   forks: bool = False) -> list[Finding]:  # fmt: skip
    def found(why: str) -> list[Finding]:
        return [Finding("test_detection", path, node.lineno, why)]  # type: ignore[attr-defined]

    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]  # fmt: skip
        for module in modules:
            root = module.split(".")[0]
            if root == "doctest":  # `doctest.testmod()` under __main__ is documentation
                continue
            if root in MACHINERY_MODULES or module.startswith("unittest.mock") or root == "mock":
                return found(f"code under test imports the test machinery ({module})")
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and looked_for:
        if _TEST_FILES.search(node.value):
            return found(f"code under test names the test files ({node.value!r})")
        if _TEST_WORDS.search(node.value):
            return found(f"code under test looks for the test runner ({node.value!r})")
    if isinstance(node, ast.Call) and _resolve(dotted(node.func), aliases) in _ENV_READS:
        for arg in node.args[:1]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and _TEST_ENV.search(arg.value):  # fmt: skip
                return found(f"code under test reads {arg.value!r} from the environment")
    if isinstance(node, ast.Compare | ast.Subscript):
        parts = [node.left, *node.comparators] if isinstance(node, ast.Compare) else [node.slice]
        env = isinstance(node, ast.Subscript) and _resolve(dotted(node.value), aliases) in (
            "os.environ",
            "environ",
        )
        in_env = isinstance(node, ast.Compare) and any(
            _resolve(dotted(c), aliases) in ("os.environ", "environ") for c in node.comparators
        )
        for part in parts:
            if (
                isinstance(part, ast.Constant)
                and isinstance(part.value, str)
                and (
                    _TEST_NAMES.match(part.value)
                    or ((env or in_env) and _TEST_ENV.search(part.value))
                )
            ):
                return found(f"code under test compares with {part.value!r}: it looks for tests")
    if isinstance(node, ast.Attribute | ast.Name):
        name = _resolve(dotted(node), aliases)
        if name in _STACK or name.endswith(("._getframe", ".currentframe")):
            return found(f"code under test inspects the call stack or tracer ({name})")
        if name == "os._exit" and not forks:
            return [
                Finding(
                    "runner_tampering",
                    path,
                    node.lineno,
                    "os._exit ends the interpreter before the test runner reports",
                )
            ]
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    elif isinstance(node, ast.Call) and dotted(node.func) in ("setattr", "delattr") and node.args:
        targets = [ast.Attribute(value=node.args[0], attr="_", ctx=ast.Store())]
    for target in targets:
        base = target.value if isinstance(target, ast.Attribute | ast.Subscript) else None
        name = _resolve(dotted(base), aliases) if base is not None else ""
        if name and (name.split(".")[0] in _PATCHED_ROOTS or name in _PATCHED_ROOTS
                     or name.endswith(("TestCase", "sys.modules"))):  # fmt: skip
            return found(f"code under test patches {name} (the builtins or test machinery)")
    return []


_MOCKS = frozenset({"ANY", "Mock", "MagicMock", "NonCallableMock", "NonCallableMagicMock",
                    "AsyncMock", "sentinel", "create_autospec", "PropertyMock"})  # fmt: skip


def _rigged(path: str, node: ast.AST, aliases: dict[str, str]) -> list[Finding]:
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        for name in names:
            value = node.value.body
            if (name in _COMPARISONS or name in _ORDERING) and isinstance(value, ast.Constant):
                return [Finding("rigged_equality", path, node.lineno,
                                f"{name} is a lambda returning {value.value!r}: every "
                                "comparison agrees")]  # fmt: skip
    if isinstance(node, ast.Attribute | ast.Name):
        name = _resolve(dotted(node), aliases)
        if name.startswith(("unittest.mock.", "mock.")) and name.rsplit(".", 1)[-1] in _MOCKS:
            return [Finding("rigged_equality", path, node.lineno,
                            f"{name} in code under test: a stand-in that agrees with what "
                            "the tests look for")]  # fmt: skip
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
    constants = [r.value for r in returns if isinstance(r, ast.Constant)]
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
