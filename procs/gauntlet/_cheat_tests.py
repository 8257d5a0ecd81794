"""Cheats on the tests themselves, from the test files at REV and as patched.

    deleted_tests         a test (or a parametrized case) at REV that no patched test
                          carries on: gone, renamed out of collection, its assertions lost.
                          A test renamed or moved with its assertions is not deleted.
    weakened_tests        skip/xfail added (not a skipif that cannot skip here), an
                          assertion removed or loosened, pytest.raises broadened, `assert
                          True`, assertions fenced off (try/except AssertionError, an early
                          return, a condition false here, a loop over nothing), an
                          expectation computed by the code it checks, `__test__ = False`,
                          the code patched with a stand-in or a name rebound to a double.
    edited_expectations   an assertion, a parametrized case, a module-level value or a
                          fixture kept in shape but with other literals: the expectation
                          moved to fit the code; test data files under tests/ changed.
Adding tests, assertions, fixtures or test data is never flagged, and neither is a check
still made in other words (_carried.py): locals, simple fixtures and helpers inlined, a
check split or pinned further, a test moved, renamed, parametrized or rewritten in
unittest style, a timing assert dropped, a timeout raised, a module path the change
renamed, the clock or environment patched, a tripwire patched in.
"""

from __future__ import annotations

import ast
import copy
import os
import platform
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from procs.gauntlet._astkit import dotted, parse, skeleton
from procs.gauntlet._carried import (
    Helper,
    benign_edit,
    bindings,
    carried,
    gone_names,
    helper_returns,
    substitute,
    timing,
    unqualified,
)
from procs.gauntlet._change import FileChange
from procs.gauntlet._model import Finding
from procs.testfiles import is_test_module, is_test_path

_SKIP_MARKS = ("skip", "skipif", "xfail")
_SKIP_CALLS = frozenset({"pytest.skip", "pytest.xfail", "pytest.importorskip", "skip", "xfail",
                         "self.skipTest", "unittest.skip"})  # fmt: skip
_BROAD = frozenset({"Exception", "BaseException", "AssertionError", "object"})


@dataclass
class TestFunction:
    """One collected test: its qualified name (Class::name), where, what it asserts."""

    name: str
    path: str
    line: int
    node: ast.FunctionDef | ast.AsyncFunctionDef
    marks: set[str] = field(default_factory=set)
    assertions: dict[str, ast.AST] = field(default_factory=dict)  # dump -> node
    cases: dict[str, ast.AST] = field(default_factory=dict)  # parametrize case dump -> node
    helpers: dict[str, ast.AST] = field(default_factory=dict)  # the module's other functions
    inlined: dict[str, ast.AST] = field(default_factory=dict)  # assertions, locals inlined
    inline_of: dict[str, tuple[str, ast.AST]] = field(default_factory=dict)  # raw -> inlined
    doubles: frozenset[str] = frozenset()  # names that are the test module's own stand-ins

    @property
    def fingerprint(self) -> frozenset[str]:
        if self.assertions:
            return frozenset(self.assertions)
        return frozenset({ast.dump(ast.Module(body=self.node.body, type_ignores=[]))})


def _mark_names(decorators: Iterable[ast.expr]) -> set[str]:
    names = set()
    for decorator in decorators:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = dotted(target)
        last = name.rsplit(".", 1)[-1]
        if last in _SKIP_MARKS or last.startswith("skip") or last == "expectedFailure":
            if isinstance(decorator, ast.Call) and _skips_here(decorator) is False:
                continue  # skipif(sys.platform == "win32"): does not skip where it runs
            names.add(name)
    return names


class _Unknown(Exception):
    """A condition that cannot be decided without running the code."""


_PLATFORM = {
    "sys.platform": sys.platform, "os.name": os.name,
    "sys.version_info": tuple(sys.version_info),
    "sys.implementation.name": sys.implementation.name,
    "platform.system": platform.system(), "platform.python_implementation":
        platform.python_implementation(),
}  # fmt: skip


def _static(node: ast.AST) -> object:
    """The value of a condition on the platform or Python version, or _Unknown."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_static(e) for e in node.elts)
    if isinstance(node, ast.Attribute | ast.Name) and dotted(node) in _PLATFORM:
        return _PLATFORM[dotted(node)]
    if isinstance(node, ast.Subscript):
        value, index = _static(node.value), _static(node.slice)
        if isinstance(value, tuple | str) and isinstance(index, int):
            return value[index]
    if isinstance(node, ast.Call) and not node.args and dotted(node.func) in _PLATFORM:
        return _PLATFORM[dotted(node.func)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("startswith", "endswith", "lower"):  # fmt: skip
        value = _static(node.func.value)
        args = [_static(a) for a in node.args]
        if isinstance(value, str) and all(isinstance(a, str | tuple) for a in args):
            return getattr(value, node.func.attr)(*args)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _static(node.operand)
    if isinstance(node, ast.BoolOp):
        values = [bool(_static(v)) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _static(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _static(right_node)
            try:
                if not _holds(op, left, right):
                    return False
            except TypeError:
                raise _Unknown from None
            left = right
        return True
    raise _Unknown


def _holds(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if isinstance(op, ast.Lt):
        return bool(left < right)
    if isinstance(op, ast.LtE):
        return bool(left <= right)
    if isinstance(op, ast.Gt):
        return bool(left > right)
    if isinstance(op, ast.GtE):
        return bool(left >= right)
    if isinstance(op, ast.In):
        return bool(left in right)
    if isinstance(op, ast.NotIn):
        return bool(left not in right)
    raise _Unknown


def _skips_here(mark: ast.Call) -> bool | None:
    """Whether skipif/skipIf/skipUnless(condition) skips on this platform and Python;
    None when the condition is not one about them."""
    last = dotted(mark.func).rsplit(".", 1)[-1]
    if last not in ("skipif", "skipIf", "skipUnless") or not mark.args:
        return None
    condition: ast.AST = mark.args[0]
    if isinstance(condition, ast.Constant) and isinstance(condition.value, str):
        try:
            condition = ast.parse(condition.value, mode="eval").body
        except SyntaxError:
            return None
    try:
        value = bool(_static(condition))
    except _Unknown:
        return None
    return value if last != "skipUnless" else not value


def _cases(decorators: Iterable[ast.expr]) -> dict[str, ast.AST]:
    cases: dict[str, ast.AST] = {}
    for decorator in decorators:
        if isinstance(decorator, ast.Call) and dotted(decorator.func).endswith("parametrize"):
            values = decorator.args[1] if len(decorator.args) > 1 else None
            if isinstance(values, ast.List | ast.Tuple):
                for element in values.elts:
                    cases[ast.dump(element)] = element
    return cases


_UNITTEST_OPS: dict[str, ast.cmpop] = {
    "assertEqual": ast.Eq(), "assertEquals": ast.Eq(), "assertNotEqual": ast.NotEq(),
    "assertIs": ast.Is(), "assertIsNot": ast.IsNot(), "assertIn": ast.In(),
    "assertNotIn": ast.NotIn(), "assertLess": ast.Lt(), "assertLessEqual": ast.LtE(),
    "assertGreater": ast.Gt(), "assertGreaterEqual": ast.GtE(),
}  # fmt: skip
_SYMMETRIC = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)


def _canonical(node: ast.AST) -> str:
    """One key for the ways to write the same check: `assert a == b`, `assert b == a` and
    `self.assertEqual(a, b)` (likewise for the other unittest comparisons, assertTrue,
    assertFalse, assertIsNone), so converting a test's style is not a weakening."""
    test: ast.AST = node
    if isinstance(node, ast.Call) and not node.keywords:
        last = dotted(node.func).rsplit(".", 1)[-1]
        args = node.args
        if last in _UNITTEST_OPS and len(args) == 2:
            test = ast.Compare(left=args[0], ops=[_UNITTEST_OPS[last]], comparators=[args[1]])
        elif last == "assertTrue" and len(args) == 1:
            test = args[0]
        elif last == "assertFalse" and len(args) == 1:
            test = ast.UnaryOp(op=ast.Not(), operand=args[0])
        elif last in ("assertRaises", "raises") and args:  # self.assertRaises(E) is raises(E)
            return "raises(" + ", ".join(ast.dump(a) for a in args) + ")"
        elif last == "assertIsNone" and len(args) == 1:
            test = ast.Compare(left=args[0], ops=[ast.Is()], comparators=[ast.Constant(None)])
    if isinstance(test, ast.Compare) and len(test.ops) == 1 \
            and isinstance(test.ops[0], _SYMMETRIC):  # fmt: skip
        sides = sorted([ast.dump(test.left), ast.dump(test.comparators[0])])
        return f"{type(test.ops[0]).__name__}({sides[0]}, {sides[1]})"
    return ast.dump(test)


_TEST_ROOTS = ("tests", "test", "conftest")


def _bound_names(tree: ast.Module) -> dict[str, str]:
    """Module-level names -> where they come from ("module.name" for imports, "<local>"
    for what the module defines)."""
    found: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            for a in statement.names:
                found[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(statement, ast.ImportFrom):
            for a in statement.names:
                found[a.asname or a.name] = f"{statement.module or ''}.{a.name}"
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[statement.name] = "<local>"
    return found


def _rebound_to_doubles(path: str, base: ast.Module, new: ast.Module) -> list[Finding]:
    """A name the tests used for the code now comes from the tests themselves (a module
    under tests/ or a definition in the test module): the same assertions check a
    stand-in."""
    before, after = _bound_names(base), _bound_names(new)
    findings = []
    for name, source in sorted(after.items()):
        old = before.get(name)
        if old is None or old in (source, "<local>") or old.split(".")[0] in _TEST_ROOTS:
            continue
        if source == "<local>" or source.split(".")[0] in _TEST_ROOTS:
            findings.append(Finding("weakened_tests", path, 0,
                                    f"`{name}` was {old} and now comes from the tests "
                                    f"({source}): the assertions check a stand-in"))  # fmt: skip
    return findings


def _doubles(tree: ast.Module) -> frozenset[str]:
    """Names a test module defines itself or imports from the tests: a call through one
    of them is a stand-in's answer, not the code's."""
    names = {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef
                                                     | ast.ClassDef)}  # fmt: skip
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and (statement.module or "").split(".")[0] \
                in ("tests", "test", "conftest"):  # fmt: skip
            names |= {a.asname or a.name for a in statement.names}
        elif isinstance(statement, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in statement.names
                      if a.name.split(".")[0] in ("tests", "test", "conftest")}  # fmt: skip
    return frozenset(names)


def _uses_doubles(node: ast.AST, doubles: frozenset[str]) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        and dotted(n.func).split(".")[0] in doubles
        for n in ast.walk(node)
    )  # fmt: skip


def _fixture_values(tree: ast.Module) -> dict[str, ast.expr]:
    """Module fixtures that only return an expression: name -> that expression."""
    found: dict[str, ast.expr] = {}
    for statement in tree.body:
        if not isinstance(statement, ast.FunctionDef) or not any(
            dotted(d.func if isinstance(d, ast.Call) else d).endswith("fixture")
            for d in statement.decorator_list
        ):
            continue
        body = [s for s in statement.body
                if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]  # fmt: skip
        if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
            found[statement.name] = body[0].value
    return found


def _assertions(node: ast.AST, inline: bool = False,
                fixtures: dict[str, ast.expr] | None = None) -> dict[str, ast.AST]:  # fmt: skip
    """A test's checks by canonical key: asserts, pytest.raises/warns, self.assert*; with
    `inline`, the locals bound once and the simple fixtures it takes are inlined
    (`r = f(x); assert r == 5` is `assert f(x) == 5`)."""
    return {key: check for key, check, _, _ in _checks(node, inline, fixtures)}


def _checks(node: ast.AST, inline: bool = False, fixtures: dict[str, ast.expr] | None = None,
            calls: dict[str, Helper] | None = None
            ) -> list[tuple[str, ast.AST, str, ast.AST]]:  # fmt: skip
    """Each check as (key, node, key with locals inlined, node with locals inlined)."""
    values: dict[str, ast.expr] = {}
    if inline and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        params = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
        values = {n: v for n, v in (fixtures or {}).items() if n in params}
        values.update(bindings(node))
    found: list[tuple[str, ast.AST, str, ast.AST]] = []
    for child in ast.walk(node):
        check: ast.AST | None = None
        if isinstance(child, ast.Assert):
            check = child.test
        elif isinstance(child, ast.Call):
            last = dotted(child.func).rsplit(".", 1)[-1]
            if last in ("raises", "warns", "deprecated_call") or last.startswith("assert"):
                check = child
        if check is not None:
            inlined = substitute(check, values, calls if inline else None)
            found.append((_canonical(check), check, _canonical(inlined), inlined))
    return found


def collect_tests(path: str, tree: ast.Module) -> dict[str, TestFunction]:
    """The tests pytest would collect by default from a module: test* functions, test*
    methods of Test* classes or TestCase subclasses; class and module marks included."""
    module_marks: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in statement.targets
        ):
            values = statement.value.elts if isinstance(statement.value, ast.List) \
                else [statement.value]  # fmt: skip
            module_marks |= _mark_names(values)
    tests: dict[str, TestFunction] = {}
    helpers: dict[str, ast.AST] = {
        s.name: s for s in tree.body
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and not s.name.startswith("test")
    }  # fmt: skip
    fixtures = _fixture_values(tree)
    returns = helper_returns(helpers)
    doubles = _doubles(tree)

    def add(function: ast.FunctionDef | ast.AsyncFunctionDef, prefix: str, marks: set[str]
            ) -> None:  # fmt: skip
        checks = _checks(function, inline=True, fixtures=fixtures, calls=returns)
        test = TestFunction(
            name=f"{prefix}{function.name}", path=path, line=function.lineno, node=function,
            marks=marks | _mark_names(function.decorator_list),
            assertions=_assertions(function), cases=_cases(function.decorator_list),
            helpers=helpers, inlined={k: n for _, _, k, n in checks},
            inline_of={k: (ik, n) for k, _, ik, n in checks}, doubles=doubles,
        )  # fmt: skip
        tests[test.name] = test

    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            if statement.name.startswith("test"):
                add(statement, "", module_marks)
        elif isinstance(statement, ast.ClassDef):
            testcase = any(dotted(b).endswith("TestCase") for b in statement.bases)
            if not (statement.name.startswith("Test") or testcase):
                continue
            marks = module_marks | _mark_names(statement.decorator_list)
            for member in statement.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) \
                        and member.name.startswith("test"):  # fmt: skip
                    add(member, f"{statement.name}::", marks)
    return tests


def _src(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 120 else text[:117] + "..."


def _never(test: ast.AST) -> bool:
    """A condition false here: a false constant, or one on the platform or Python version
    (`if sys.version_info >= (4,):`)."""
    if isinstance(test, ast.Constant):
        return not test.value
    try:
        return not _static(test)
    except _Unknown:
        return False


def _tautology(test: ast.AST, values: dict[str, ast.expr]) -> bool:
    """`x == x` once the test's locals are inlined: the expectation is computed by the
    very call it checks (`expected = f(2); assert f(2) == expected`)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq | ast.Is | ast.GtE | ast.LtE)):  # fmt: skip
        return False
    if ast.dump(test.left) == ast.dump(test.comparators[0]):
        return False  # spelled out (a reflexivity check); a loss is judged as weakened_tests
    left, right = substitute(test.left, values), substitute(test.comparators[0], values)
    return ast.dump(left) == ast.dump(right) and any(
        isinstance(n, ast.Call | ast.Name | ast.Attribute) for n in ast.walk(left)
    )


def _fenced(test: TestFunction) -> list[tuple[int, str]]:
    """Ways a test's assertions were made unable to fail, with lines."""
    found = []
    body = test.node.body
    values = bindings(test.node)
    for index, statement in enumerate(body):
        if isinstance(statement, ast.Return) and index < len(body) - 1:
            found.append((statement.lineno, "returns before its assertions run"))
    for child in ast.walk(test.node):
        if isinstance(child, ast.Try):
            for handler in child.handlers:
                caught = (
                    []
                    if handler.type is None
                    else (
                        handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                    )
                )
                names = {dotted(c) for c in caught}
                if (handler.type is None or names & _BROAD) and not any(
                    isinstance(n, ast.Raise) for n in ast.walk(handler)
                ):
                    found.append(
                        (
                            handler.lineno,
                            "swallows assertion failures "
                            f"(except {_src(handler.type) if handler.type else ''})",
                        )
                    )
        elif isinstance(child, ast.If | ast.While) and _never(child.test):
            found.append((child.lineno, "puts code behind a condition that is never true"))
        elif (
            isinstance(child, ast.For | ast.AsyncFor)
            and isinstance(child.iter, ast.List | ast.Tuple | ast.Set | ast.Dict)
            and not getattr(child.iter, "elts", getattr(child.iter, "keys", None))
        ):
            found.append((child.lineno, "loops over nothing: its body never runs"))
        elif isinstance(child, ast.Assert):
            test_expr = child.test
            if isinstance(test_expr, ast.Constant) and test_expr.value:
                found.append((child.lineno, f"asserts a constant ({_src(child)})"))
            elif (
                isinstance(test_expr, ast.BoolOp)
                and isinstance(test_expr.op, ast.Or)
                and any(isinstance(v, ast.Constant) and v.value for v in test_expr.values)
            ):
                found.append((child.lineno, f"assertion can never fail ({_src(child)})"))
            elif _tautology(test_expr, values):
                found.append((child.lineno, "compares the code's answer with itself "
                                            f"({_src(child)})"))  # fmt: skip
        elif isinstance(child, ast.Call) and dotted(child.func) in _SKIP_CALLS:
            found.append((child.lineno, f"calls {dotted(child.func)}()"))
    return found


_PATCHERS = ("monkeypatch.setattr", "monkeypatch.setitem", "mock.patch", "patch",
             "patch.object", "mock.patch.object", "mocker.patch", "mocker.patch.object",
             "unittest.mock.patch", "patch.dict", "mock.patch.dict")  # fmt: skip


def _patched_in_test(old: TestFunction, new: TestFunction) -> list[Finding]:
    """A test that now replaces code with a stand-in (monkeypatch, mock.patch) it did not
    replace at REV: what it checks is no longer the code."""

    def patches(test: TestFunction) -> dict[str, ast.AST]:
        found: dict[str, ast.AST] = {}
        for node in ast.walk(test.node):
            if isinstance(node, ast.Call) and dotted(node.func) in _PATCHERS:
                found[ast.dump(node)] = node
        for decorator in test.node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if dotted(target) in _PATCHERS:
                found[ast.dump(decorator)] = decorator
        return found

    before, after = patches(old), patches(new)
    tripwires = _tripwires(new.node)
    after = {dump: node for dump, node in after.items()
             if not _environment_patch(node) and not _sets_tripwire(node, tripwires)}  # fmt: skip
    return [Finding("weakened_tests", new.path, getattr(node, "lineno", new.line),
                    f"test {new.name} now patches `{_src(node)}`: it checks a stand-in")
            for dump, node in after.items() if dump not in before]  # fmt: skip


def _tripwires(function: ast.AST) -> set[str]:
    """Functions defined in a test that only raise or fail: a spy that proves a path is
    never taken, which makes the test stricter, not a stand-in that answers."""
    found = set()
    for node in ast.walk(function):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node is not function:
            body = [s for s in node.body if not _is_docstring(s)]
            if body and all(_fails_loudly(s) for s in body):
                found.add(node.name)
    return found


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _fails_loudly(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Raise):
        return True
    value = statement.value if isinstance(statement, ast.Expr) else None
    return isinstance(value, ast.Call) and dotted(value.func) in ("pytest.fail", "self.fail",
                                                                  "fail")  # fmt: skip


def _sets_tripwire(call: ast.AST, tripwires: set[str]) -> bool:
    """monkeypatch.setattr(obj, "name", refuse) / patch(..., side_effect=refuse) where
    refuse only raises."""
    if not isinstance(call, ast.Call):
        return False
    values = [*call.args[1:], *(k.value for k in call.keywords
                                if k.arg in ("new", "side_effect", "value"))]  # fmt: skip
    return any(
        (isinstance(v, ast.Name) and v.id in tripwires)
        or (isinstance(v, ast.Call) and dotted(v.func).rsplit(".", 1)[-1].endswith("Error"))
        for v in values
    )


# What a test may replace without checking a stand-in: the clock, randomness, the
# environment, the process's streams.
_ENVIRONMENT = frozenset({"time", "random", "datetime", "os", "sys", "uuid", "secrets",
                          "socket", "subprocess", "shutil", "tempfile", "platform", "getpass",
                          "signal", "asyncio", "threading", "monotonic", "perf_counter",
                          "sleep", "now",
                          "utcnow", "today", "randint", "choice", "uuid4", "urandom", "getpid",
                          "environ", "getenv", "argv", "stdin", "stdout", "stderr", "home",
                          "cwd", "getcwd", "gethostname", "cpu_count", "clock", "timer",
                          "token_hex", "token_bytes"})  # fmt: skip


def _environment_patch(node: ast.AST) -> bool:
    """monkeypatch.setattr(mod, "time", fake) / patch("m.time.sleep"): a stand-in for the
    clock, randomness or the environment, not for the code under test."""
    call = node if isinstance(node, ast.Call) else None
    if call is None or not call.args:
        return False
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        target = first.value  # "pkg.mod.name" (setattr with one string, patch)
    elif len(call.args) > 1 and isinstance(call.args[1], ast.Constant) \
            and isinstance(call.args[1].value, str):  # fmt: skip
        target = call.args[1].value  # setattr(obj, "name", value)
    elif isinstance(first, ast.Attribute | ast.Name):
        target = dotted(first)  # patch.object(time, ...) / setattr(time.sleep, ...)
    else:
        return False
    parts = target.split(".")
    return parts[-1] in _ENVIRONMENT or any(p in _ENVIRONMENT for p in parts[-2:-1])


_REPORTS = re.compile(
    r"(^|\.)(print|debug|info|warning|warn|error|exception|critical|log|"
    r"write|write_line|section)$"
)


def _reports(statement: ast.stmt) -> bool:
    """`print(...)`, `log.info(...)`: what a test says, not what it expects."""
    value = statement.value if isinstance(statement, ast.Expr) else None
    return isinstance(value, ast.Call) and bool(_REPORTS.search(dotted(value.func)))


def _edited_statements(old: TestFunction, new: TestFunction, gone: frozenset[str] = frozenset()
                       ) -> list[Finding]:  # fmt: skip
    """Statements in a test (expected = ..., inputs) kept in shape with other literals."""

    def simple(test: TestFunction) -> dict[str, ast.stmt]:
        return {
            ast.dump(n): n
            for n in ast.walk(test.node)
            if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Expr)
            and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))  # prose
            and not _reports(n)
        }

    before, after = simple(old), simple(new)
    twins = {skeleton(n): n for d, n in after.items() if d not in before}
    findings = []
    for dump, node in before.items():
        if dump in after:
            continue
        twin = twins.get(skeleton(node))
        if twin is not None and not any(isinstance(n, ast.Assert) for n in ast.walk(node)) \
                and not benign_edit(node, twin, gone):  # fmt: skip
            findings.append(Finding("edited_expectations", new.path, twin.lineno,
                                    f"test {new.name}: `{_src(node)}` changed to "
                                    f"`{_src(twin)}`"))  # fmt: skip
    return findings


class _NameBlind(ast.NodeTransformer):
    """Constants, and the names in `local`, all become `_`."""

    def __init__(self, local: set[str]) -> None:
        self.local = local

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.Name(id="_", ctx=ast.Load())

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Name(id="_" if node.id in self.local else node.id, ctx=ast.Load())


def _locals(test: TestFunction) -> set[str]:
    """A test's parameters (fixtures, parametrized names) and the names it assigns."""
    args = test.node.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    for node in ast.walk(test.node):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _refactored(base: ast.AST, old: TestFunction, new: TestFunction) -> bool:
    """A literal of `base` moved into a name of the test (a fixture, a parameter, a
    local) and nothing else changed: same shape, no literal the old test did not have.
    REV's own test is what the re-run judges in any case."""
    local = _locals(new)
    shape = ast.dump(_NameBlind(local).visit(copy.deepcopy(base)))
    old_literals = {ast.dump(n) for n in ast.walk(old.node) if isinstance(n, ast.Constant)}
    for dump, node in new.assertions.items():
        if dump in old.assertions:
            continue
        if ast.dump(_NameBlind(local).visit(copy.deepcopy(node))) != shape:
            continue
        added = {ast.dump(n) for n in ast.walk(node) if isinstance(n, ast.Constant)}
        if added <= old_literals and any(
            isinstance(n, ast.Name) and n.id in local for n in ast.walk(node)
        ):
            return True
    return False


def _strengthened(base: ast.AST, new: TestFunction) -> bool:
    """`base` is still checked, more strictly: an assertion that contains it and adds a
    comparison or a conjunct (`assert x` -> `assert x == 5`), or the same pytest.raises
    with more keywords (`match=`)."""
    dump = ast.dump(base)
    for node in new.assertions.values():
        if isinstance(node, ast.Compare | ast.BoolOp) and any(
            ast.dump(sub) == dump for sub in ast.walk(node) if sub is not node
        ):
            if isinstance(node, ast.BoolOp) and not isinstance(node.op, ast.And):
                continue
            return True
        if (
            isinstance(base, ast.Call)
            and isinstance(node, ast.Call)
            and ast.dump(base.func) == ast.dump(node.func)
            and [ast.dump(a) for a in base.args] == [ast.dump(a) for a in node.args]
            and {ast.dump(k) for k in base.keywords} < {ast.dump(k) for k in node.keywords}
        ):
            return True
    return False


def _raises_swapped(base: ast.AST, old: TestFunction, new: TestFunction) -> ast.AST | None:
    """A pytest.raises of another (not broader) exception that took `base`'s place."""
    if not (isinstance(base, ast.Call) and dotted(base.func).endswith("raises")):
        return None
    for dump, node in new.assertions.items():
        if dump not in old.assertions and isinstance(node, ast.Call) \
                and dotted(node.func).endswith("raises"):  # fmt: skip
            return node
    return None


def _broadened(base: ast.AST, new_tests: TestFunction) -> str | None:
    if not (isinstance(base, ast.Call) and dotted(base.func).endswith("raises")):
        return None
    for node in new_tests.assertions.values():
        if isinstance(node, ast.Call) and dotted(node.func).endswith("raises") and node.args:
            caught = node.args[0]
            names = {dotted(e) for e in (caught.elts if isinstance(caught, ast.Tuple)
                                         else [caught])}  # fmt: skip
            if names & _BROAD:
                return f"pytest.raises broadened: {_src(base)} became {_src(node)}"
    return None


def test_file_findings(files: list[FileChange]) -> list[Finding]:
    """Findings over every changed test file (the whole change's test files at once, so
    a test moved from one file to another is seen as moved)."""
    findings: list[Finding] = []
    base_tests: dict[str, TestFunction] = {}
    new_tests: dict[str, TestFunction] = {}
    gone = gone_names(str(c.base_path) for c in files if c.status in ("deleted", "renamed"))
    for change in files:
        base_path, path = change.base_path, change.path
        if is_test_path(base_path) and base_path.suffix != ".py" and change.status != "added":
            findings.append(Finding("edited_expectations", str(path), 0,
                                    f"test data {change.status}: {base_path}"))  # fmt: skip
            continue
        if _is_helper(base_path) and _is_helper(path):
            findings += _helper_findings(change)
            continue
        base_tree = parse(change.base_text) if is_test_module(base_path) else None
        new_tree = parse(change.new_text) if is_test_module(path) else None
        if base_tree is not None:
            for test in collect_tests(str(base_path), base_tree).values():
                base_tests[f"{base_path}::{test.name}"] = test
        if new_tree is not None:
            for test in collect_tests(str(path), new_tree).values():
                new_tests[f"{path}::{test.name}"] = test
        if new_tree is not None:
            findings += _shadowed_tests(str(path), new_tree, change.added_lines)
        if base_tree is not None and new_tree is not None:
            findings += _rebound_to_doubles(str(path), base_tree, new_tree)
            findings += _module_values(str(path), base_tree, new_tree, change.added_lines, gone)
            if any(_is_test_off(s) for s in new_tree.body) and not any(
                _is_test_off(s) for s in base_tree.body
            ):
                findings.append(
                    Finding(
                        "weakened_tests",
                        str(path),
                        0,
                        "`__test__ = False` stops pytest collecting the module",
                    )
                )
    findings += _removed_tests(files, base_tests, new_tests, gone)
    return findings


def _removed_tests(files: list[FileChange], base_tests: dict[str, TestFunction],
                   new_tests: dict[str, TestFunction], gone: frozenset[str] = frozenset()
                   ) -> list[Finding]:  # fmt: skip
    """deleted_tests for REV's tests that no patched test carries on; _compare for the
    ones still there. A test renamed, moved, split or parametrized keeps its assertions
    (or its literals and calls, for a parametrization) somewhere in the patched tests."""
    findings: list[Finding] = []
    renamed_from = {str(c.base_path): str(c.path) for c in files}
    kept: set[str] = set()
    kept_cases: set[str] = set()
    kept_inlined: set[str] = set()
    for test in new_tests.values():
        kept |= test.fingerprint
        kept_inlined |= set(test.inlined)
        kept_cases |= set(test.cases)
    by_name: dict[str, list[TestFunction]] = {}
    for test in new_tests.values():
        by_name.setdefault(test.name.rsplit("::", 1)[-1], []).append(test)
    for old in base_tests.values():
        where = renamed_from.get(old.path, old.path)
        new = new_tests.get(f"{where}::{old.name}")
        if new is not None:
            findings += _compare(old, new, gone)
            continue
        # Moved to another file or class under the same name: judged as if it stayed.
        if any(not _compare(old, t, gone) for t in by_name.get(old.name.rsplit("::", 1)[-1], [])):
            continue
        checks_kept = bool(old.assertions) and all(
            key in kept or old.inline_of.get(key, (key, None))[0] in kept_inlined
            for key in old.assertions
        )
        carried = (old.fingerprint <= kept or checks_kept) and set(old.cases) <= kept_cases
        if not carried and not any(_parametrized_into(old, t) for t in new_tests.values()):
            findings.append(Finding("deleted_tests", old.path, old.line,
                                    f"test {old.name} was removed and no test keeps its "
                                    "assertions"))  # fmt: skip
    return findings


def _calls(node: ast.AST) -> set[str]:
    return {dotted(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}


def _literal_keys(node: ast.AST) -> set[str]:
    return {
        repr(n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and n.value not in (None, True, False, 0, 1, "")
    }


def _parametrized_into(old: TestFunction, new: TestFunction) -> bool:
    """`old` became a case of the parametrized test `new`: its calls are in new's
    assertions and every literal of its assertions is in new's cases."""
    if not new.cases or not old.assertions:
        return False
    case_literals: set[str] = set()
    for case in new.cases.values():
        case_literals |= _literal_keys(case)
    new_calls: set[str] = set()
    for node in new.assertions.values():
        new_calls |= _calls(node)
    for node in old.assertions.values():
        if not _calls(node) <= new_calls | {"Decimal", "pytest.approx", "approx"}:
            return False
        if not _literal_keys(node) <= case_literals | _literal_keys(new.node):
            return False
    return True


def _shadowed_tests(path: str, tree: ast.Module, added: frozenset[int]) -> list[Finding]:
    """`del test_x` or `test_x = None` after the def: the test is gone from the module."""
    findings = []
    defined = {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.ClassDef)}
    for statement in tree.body:
        if statement.lineno not in added:
            continue
        names: list[str] = []
        if isinstance(statement, ast.Delete | ast.Assign):
            names = [dotted(t) for t in statement.targets]
        for name in names:
            if name in defined and name.startswith(("test", "Test")):
                findings.append(Finding("deleted_tests", path, statement.lineno,
                                        f"{name} is deleted or rebound after its def: pytest "
                                        "no longer collects it"))  # fmt: skip
    return findings


def _is_helper(path: PurePosixPath) -> bool:
    """A Python file under the tests that is not a test module nor a conftest: helpers."""
    return (path.suffix == ".py" and is_test_path(path) and not is_test_module(path)
            and path.name != "conftest.py")  # fmt: skip


def _helper_findings(change: FileChange) -> list[Finding]:
    """A test helper's functions compared as tests are: a helper that stops asserting,
    or asserts other values, weakens every test that calls it."""
    base, new = parse(change.base_text), parse(change.new_text)
    if base is None or new is None:
        return []

    def functions(tree: ast.Module, path: str) -> dict[str, TestFunction]:
        found = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found[node.name] = TestFunction(node.name, path, node.lineno, node,
                                                assertions=_assertions(node))  # fmt: skip
        return found

    old_functions = functions(base, str(change.base_path))
    findings = []
    for name, helper in functions(new, str(change.path)).items():
        old = old_functions.get(name)
        if old is not None and old.assertions:
            findings += [
                Finding(f.cls, f.path, f.line, f.message.replace("test ", "test helper ", 1))
                for f in _compare(old, helper)
            ]
    return findings


def _is_test_off(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__test__" for t in statement.targets)
        and isinstance(statement.value, ast.Constant)
        and not statement.value.value
    )


def _compare(old: TestFunction, new: TestFunction, gone: frozenset[str] = frozenset()
             ) -> list[Finding]:  # fmt: skip
    findings = []
    where = new.path
    for mark in sorted(new.marks - old.marks):
        findings.append(
            Finding(
                "weakened_tests",
                where,
                new.line,
                f"test {new.name} is now marked {mark}: it no longer judges",
            )
        )
    old_fenced = {why for _, why in _fenced(old)}
    for line, why in _fenced(new):
        if why not in old_fenced:
            findings.append(Finding("weakened_tests", where, line, f"test {new.name} {why}"))
    new_skeletons = {skeleton(node): node for dump, node in new.assertions.items()
                     if dump not in old.assertions}  # fmt: skip
    if old.assertions and not new.assertions:
        findings.append(
            Finding(
                "deleted_tests",
                where,
                new.line,
                f"test {new.name} keeps its name but none of its assertions",
            )
        )
    fresh_skeletons: dict[str, ast.AST] = {}  # built on first need
    for dump, node in old.assertions.items():
        if dump in new.assertions or _strengthened(node, new):
            continue
        inlined_key, inlined = old.inline_of.get(dump, (dump, node))
        if inlined_key in new.inlined:
            continue
        if not fresh_skeletons:
            fresh_skeletons = {skeleton(n): n for d, n in new.inlined.items()
                               if d not in old.inlined} or {"": inlined}  # fmt: skip
        inlined_twin = fresh_skeletons.get(skeleton(inlined))
        if inlined_twin is not None and ast.dump(inlined_twin) != ast.dump(inlined) \
                and new_skeletons.get(skeleton(node)) is None \
                and not benign_edit(inlined, inlined_twin, gone):  # fmt: skip
            findings.append(Finding("edited_expectations", where, new.line,
                                    f"test {new.name}: expectation changed from "
                                    f"`{_src(inlined)}` to `{_src(inlined_twin)}`"))  # fmt: skip
            continue
        twin = new_skeletons.get(skeleton(node))
        if twin is not None and benign_edit(node, twin, gone):
            continue
        if twin is not None:
            findings.append(Finding("edited_expectations", where, getattr(twin, "lineno", new.line),
                                    f"test {new.name}: expectation changed from `{_src(node)}` "
                                    f"to `{_src(twin)}`"))  # fmt: skip
            continue
        if _refactored(node, old, new) or timing(inlined, {}):
            continue
        fresh = [n for d, n in new.inlined.items() if d not in old.inlined]
        plain = {unqualified(n) for n in fresh if not _uses_doubles(n, new.doubles)}
        if carried(inlined, fresh) or unqualified(inlined) in plain:
            continue
        broadened = _broadened(node, new)
        swapped = None if broadened else _raises_swapped(node, old, new)
        if swapped is not None:
            findings.append(Finding("edited_expectations", where, getattr(swapped, "lineno", 0),
                                    f"test {new.name}: expected exception changed from "
                                    f"`{_src(node)}` to `{_src(swapped)}`"))  # fmt: skip
            continue
        findings.append(Finding("weakened_tests", where, new.line,
                                f"test {new.name}: {broadened}" if broadened else
                                f"test {new.name}: assertion `{_src(node)}` was removed "
                                "or loosened"))  # fmt: skip
    findings += _edited_statements(old, new, gone)
    findings += _patched_in_test(old, new)
    new_case_skeletons = {skeleton(node): node for dump, node in new.cases.items()
                          if dump not in old.cases}  # fmt: skip
    for dump, node in old.cases.items():
        if dump in new.cases:
            continue
        twin = new_case_skeletons.get(skeleton(node))
        if twin is not None:
            findings.append(Finding("edited_expectations", where, getattr(twin, "lineno", new.line),
                                    f"test {new.name}: parametrized case `{_src(node)}` changed "
                                    f"to `{_src(twin)}`"))  # fmt: skip
        else:
            findings.append(Finding("deleted_tests", where, new.line,
                                    f"test {new.name}: parametrized case `{_src(node)}` was "
                                    "removed"))  # fmt: skip
    return findings


def _bare(node: ast.AST) -> str:
    """ast.dump without docstrings: a reworded docstring is not an edited expectation."""
    stripped = copy.deepcopy(node)
    for sub in ast.walk(stripped):
        body = getattr(sub, "body", None)
        if not isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            sub.body = body[1:] or [ast.Pass()]
    return ast.dump(stripped)


def _module_values(path: str, base: ast.Module, new: ast.Module, added: frozenset[int],
                   gone: frozenset[str] = frozenset()) -> list[Finding]:  # fmt: skip
    """Module-level values and fixtures/helpers kept in shape but with other literals."""

    def named(tree: ast.Module) -> dict[str, ast.stmt]:
        out: dict[str, ast.stmt] = {}
        for statement in tree.body:
            if isinstance(statement, ast.Assign | ast.AnnAssign):
                targets = statement.targets if isinstance(statement, ast.Assign) \
                    else [statement.target]  # fmt: skip
                for target in targets:
                    if isinstance(target, ast.Name):
                        out[target.id] = statement
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                    and not statement.name.startswith(("test", "Test")):  # fmt: skip
                out[statement.name] = statement
        return out

    findings = []
    old_named, new_named = named(base), named(new)
    for name, statement in new_named.items():
        before = old_named.get(name)
        if before is None or _bare(before) == _bare(statement):
            continue
        if (
            skeleton(before) == skeleton(statement)
            and not benign_edit(before, statement, gone)
            and any(
                line in added for line in range(statement.lineno, (statement.end_lineno or 0) + 1)
            )
        ):
            findings.append(Finding("edited_expectations", path, statement.lineno,
                                    f"`{name}` keeps its shape but its values changed: "
                                    "the tests' expectations moved"))  # fmt: skip
    return findings
