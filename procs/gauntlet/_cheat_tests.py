"""Cheats on the tests themselves, from the test files at REV and as patched.

    deleted_tests         a test (or a parametrized case) at REV that no patched test
                          carries on: gone, renamed out of collection, its assertions lost.
                          A test renamed or moved with its assertions is not deleted.
    weakened_tests        skip/xfail added, an assertion removed or loosened, pytest.raises
                          broadened, `assert True`, assertions fenced off (try/except
                          AssertionError, an early return, `if False:`), `__test__ = False`.
    edited_expectations   an assertion, a parametrized case, a module-level value or a
                          fixture kept in shape but with other literals: the expectation
                          moved to fit the code; test data files under tests/ changed.
Adding tests, assertions, fixtures or test data is never flagged.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field

from procs.gauntlet._astkit import dotted, parse, skeleton
from procs.gauntlet._change import FileChange
from procs.gauntlet._model import Finding
from procs.gauntlet._paths import is_test_module, is_test_path

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
            names.add(name)
    return names


def _cases(decorators: Iterable[ast.expr]) -> dict[str, ast.AST]:
    cases: dict[str, ast.AST] = {}
    for decorator in decorators:
        if isinstance(decorator, ast.Call) and dotted(decorator.func).endswith("parametrize"):
            values = decorator.args[1] if len(decorator.args) > 1 else None
            if isinstance(values, ast.List | ast.Tuple):
                for element in values.elts:
                    cases[ast.dump(element)] = element
    return cases


def _assertions(node: ast.AST) -> dict[str, ast.AST]:
    found: dict[str, ast.AST] = {}
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            found[ast.dump(child.test)] = child.test
        elif isinstance(child, ast.Call):
            name = dotted(child.func)
            last = name.rsplit(".", 1)[-1]
            if last in ("raises", "warns", "deprecated_call") or last.startswith("assert"):
                found[ast.dump(child)] = child
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

    def add(function: ast.FunctionDef | ast.AsyncFunctionDef, prefix: str, marks: set[str]
            ) -> None:  # fmt: skip
        test = TestFunction(
            name=f"{prefix}{function.name}", path=path, line=function.lineno, node=function,
            marks=marks | _mark_names(function.decorator_list),
            assertions=_assertions(function), cases=_cases(function.decorator_list),
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


def _fenced(test: TestFunction) -> list[tuple[int, str]]:
    """Ways a test's assertions were made unable to fail, with lines."""
    found = []
    body = test.node.body
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
        elif isinstance(child, ast.If | ast.While) and isinstance(child.test, ast.Constant) \
                and not child.test.value:  # fmt: skip
            found.append((child.lineno, "puts code behind a condition that is never true"))
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
        elif isinstance(child, ast.Call) and dotted(child.func) in _SKIP_CALLS:
            found.append((child.lineno, f"calls {dotted(child.func)}()"))
    return found


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
    for change in files:
        base_path, path = change.base_path, change.path
        if is_test_path(base_path) and base_path.suffix != ".py" and change.status != "added":
            findings.append(Finding("edited_expectations", str(path), 0,
                                    f"test data {change.status}: {base_path}"))  # fmt: skip
            continue
        base_tree = parse(change.base_text) if is_test_module(base_path) else None
        new_tree = parse(change.new_text) if is_test_module(path) else None
        if base_tree is not None:
            for test in collect_tests(str(base_path), base_tree).values():
                base_tests[f"{base_path}::{test.name}"] = test
        if new_tree is not None:
            for test in collect_tests(str(path), new_tree).values():
                new_tests[f"{path}::{test.name}"] = test
        if base_tree is not None and new_tree is not None:
            findings += _module_values(str(path), base_tree, new_tree, change.added_lines)
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
    renamed_from = {str(c.base_path): str(c.path) for c in files}
    for old in base_tests.values():
        where = renamed_from.get(old.path, old.path)
        new = new_tests.get(f"{where}::{old.name}")
        if new is None:
            keeper = next(
                (
                    t
                    for t in new_tests.values()
                    if old.fingerprint <= t.fingerprint
                    and (not old.cases or set(old.cases) <= set(t.cases))
                ),
                None,
            )
            if keeper is None:
                findings.append(Finding("deleted_tests", old.path, old.line,
                                        f"test {old.name} was removed and no test keeps its "
                                        "assertions"))  # fmt: skip
            continue
        findings += _compare(old, new)
    return findings


def _is_test_off(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__test__" for t in statement.targets)
        and isinstance(statement.value, ast.Constant)
        and not statement.value.value
    )


def _compare(old: TestFunction, new: TestFunction) -> list[Finding]:
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
    new_skeletons = {skeleton(node): node for node in new.assertions.values()}
    for dump, node in old.assertions.items():
        if dump in new.assertions:
            continue
        twin = new_skeletons.get(skeleton(node))
        if twin is not None:
            findings.append(Finding("edited_expectations", where, getattr(twin, "lineno", new.line),
                                    f"test {new.name}: expectation changed from `{_src(node)}` "
                                    f"to `{_src(twin)}`"))  # fmt: skip
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
    new_case_skeletons = {skeleton(node): node for node in new.cases.values()}
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


def _module_values(path: str, base: ast.Module, new: ast.Module, added: frozenset[int]
                   ) -> list[Finding]:  # fmt: skip
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
        if before is None or ast.dump(before) == ast.dump(statement):
            continue
        if skeleton(before) == skeleton(statement) and any(
            line in added for line in range(statement.lineno, (statement.end_lineno or 0) + 1)
        ):
            findings.append(Finding("edited_expectations", path, statement.lineno,
                                    f"`{name}` keeps its shape but its values changed: "
                                    "the tests' expectations moved"))  # fmt: skip
    return findings
