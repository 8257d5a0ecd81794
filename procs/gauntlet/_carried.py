"""When a test's old check is still made, in other words: the refactors weakened_tests,
deleted_tests and edited_expectations must not take for a loss.

    substitute        `r = f(x); assert r == 5` is `assert f(x) == 5`: locals bound once
                      are inlined before checks are compared, so moving a subject or an
                      expected value into a local is not a change.
    carried           an assertion `S == E` removed while new equality checks in the same
                      test still expect every literal of E, on S itself or a projection of
                      it (a tuple holding it, an attribute, a lookup keyed by it, str(S)):
                      a check split in two or pinned further. Test-module helpers that end
                      in a return are inlined too. `in`, `!=`, `or`, truthiness, arithmetic
                      on S and approx with a tolerance never carry.
    timing            an assertion on elapsed wall time (time.monotonic() - started < 5):
                      removing it drops a flaky measure, not a behaviour.
    benign_edit       literals that differ only in a timeout/delay/retry argument, or in a
                      module or file name the change itself renamed or deleted.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterable, Iterator

from procs.gauntlet._astkit import dotted, literal_key

_TOLERANCES = frozenset({"abs", "rel", "places", "delta"})
_CLOCKS = frozenset({"time.monotonic", "time.time", "time.perf_counter", "monotonic",
                     "perf_counter", "time.monotonic_ns", "time.perf_counter_ns",
                     "time.process_time", "loop.time", "cpu_times", "getrusage",
                     "time.thread_time", "process_time"})  # fmt: skip
_TIMING_NAMES = re.compile(r"elapsed|duration|took|seconds|_s$|_ms$|latency|started|start$",
                           re.IGNORECASE)  # fmt: skip
_PATIENCE = re.compile(r"timeout|deadline|delay|interval|wait|retries|attempts|poll|sleep|"
                       r"grace|patience", re.IGNORECASE)  # fmt: skip


def bindings(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    """Locals of a test bound exactly once, by a plain `name = value`."""
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):  # fmt: skip
            values[node.targets[0].id] = node.value
    return {name: value for name, value in values.items() if counts.get(name) == 1}


Helper = tuple[list[str], ast.expr]  # parameters, returned expression


def helper_returns(helpers: dict[str, ast.AST]) -> dict[str, Helper]:
    """Test-module helpers that end in their only return: name -> the returned expression
    (`def _ids(d): wait(...); return [r.id for r in d.records()]`)."""
    found: dict[str, Helper] = {}
    for name, helper in helpers.items():
        if not isinstance(helper, ast.FunctionDef | ast.AsyncFunctionDef) or not helper.body:
            continue
        last = helper.body[-1]
        returns = [n for n in ast.walk(helper) if isinstance(n, ast.Return)]
        if isinstance(last, ast.Return) and last.value is not None and returns == [last]:
            found[name] = ([a.arg for a in [*helper.args.posonlyargs, *helper.args.args]],
                           last.value)  # fmt: skip
    return found


class _Inline(ast.NodeTransformer):
    def __init__(self, values: dict[str, ast.expr], calls: dict[str, Helper]) -> None:
        self.values = values
        self.calls = calls
        self.depth = 0

    def visit_Call(self, node: ast.Call) -> ast.AST:
        helper = self.calls.get(node.func.id) if isinstance(node.func, ast.Name) else None
        if helper is None or self.depth > 8 or node.keywords:
            self.generic_visit(node)
            return node
        params, value = helper
        arguments = dict(zip(params, node.args, strict=False))
        self.depth += 1
        try:
            inlined: ast.AST = self.visit(_Inline(arguments, {}).visit(copy.deepcopy(value)))
            return inlined
        finally:
            self.depth -= 1

    def visit_Name(self, node: ast.Name) -> ast.AST:
        value = self.values.get(node.id)
        if value is None or not isinstance(node.ctx, ast.Load) or self.depth > 8:
            return node
        self.depth += 1
        try:
            inlined: ast.AST = self.visit(copy.deepcopy(value))
            return inlined
        finally:
            self.depth -= 1


def substitute(node: ast.AST, values: dict[str, ast.expr],
               calls: dict[str, Helper] | None = None) -> ast.AST:  # fmt: skip
    """`node` with the once-bound locals in `values` and the calls of the helpers in
    `calls` inlined (a copy)."""
    if not values and not calls:
        return node
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    if not names & (values.keys() | (calls or {}).keys()):
        return node  # nothing to inline: no copy
    return _Inline(values, calls or {}).visit(copy.deepcopy(node))  # type: ignore[no-any-return]


def _is_literal(node: ast.AST) -> bool:
    return literal_key(node) is not None


def _constants(node: ast.AST) -> set[str]:
    return {repr(n.value) for n in ast.walk(node) if isinstance(n, ast.Constant)}


# Views of a value that keep all of it: `str(x)`, `list(x)`, `tuple(x)`.
# (int, round, sorted, set and bool lose something: not views.)
_VIEWS = frozenset({"str", "repr", "Decimal", "list", "tuple", "dict", "vars", "format"})


def _numeric(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Constant) and isinstance(n.value, int | float | complex)
        and not isinstance(n.value, bool))
        or (isinstance(n, ast.Call) and dotted(n.func).rsplit(".", 1)[-1] in ("Decimal",
                                                                             "Fraction"))
        for n in ast.walk(node)
    )  # fmt: skip


def _projects(node: ast.AST, target: str, depth: int = 0) -> bool:
    """`node` reads `target` (an ast.dump) through projections only: elements of a tuple,
    attributes, subscripts, lookups keyed by it, views (str, list...) and method calls
    with no numbers in their arguments. Arithmetic on it does not count: `x - 5 == 25` is
    not `x == 25`."""
    if ast.dump(node) == target:
        return True
    if depth > 8:
        return False
    if isinstance(node, ast.Tuple | ast.List):
        return any(_projects(e, target, depth + 1) for e in node.elts)
    if isinstance(node, ast.Attribute):
        return _projects(node.value, target, depth + 1)
    if isinstance(node, ast.Subscript):
        keyed = not _is_literal(node.value) and not isinstance(node.value, ast.Dict | ast.List)
        return _projects(node.value, target, depth + 1) or (
            keyed and _projects(node.slice, target, depth + 1)
        )
    if isinstance(node, ast.Call):
        name = dotted(node.func).rsplit(".", 1)[-1]
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if isinstance(node.func, ast.Attribute) and not name.startswith("__") \
                and not any(_numeric(a) for a in arguments):  # fmt: skip
            return _projects(node.func.value, target, depth + 1)
        if name in _VIEWS and len(node.args) == 1:
            return _projects(node.args[0], target, depth + 1)
    return False


def _equalities(node: ast.AST) -> Iterator[tuple[ast.AST, ast.AST]]:
    """(subject, expected) pairs of an equality check (either order; none for `in`,
    ordering, `!=`, `or`, not)."""
    test = node
    if isinstance(test, ast.Call):  # self.assertEqual(a, b)
        last = dotted(test.func).rsplit(".", 1)[-1]
        if last in ("assertEqual", "assertEquals", "assertIs", "assertListEqual",
                    "assertDictEqual", "assertTupleEqual") and len(test.args) >= 2:  # fmt: skip
            yield test.args[0], test.args[1]
            yield test.args[1], test.args[0]
        return
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        for value in test.values:
            yield from _equalities(value)
        return
    if isinstance(test, ast.Compare) and all(isinstance(op, ast.Eq | ast.Is) for op in test.ops):
        sides = [test.left, *test.comparators]
        for i, a in enumerate(sides):
            for b in sides[i + 1 :]:
                yield from _paired(a, b)
                yield from _paired(b, a)


def _paired(a: ast.AST, b: ast.AST) -> Iterator[tuple[ast.AST, ast.AST]]:
    """`(x, y) == (1, 2)` is x == 1 and y == 2: tuples of one length pair element-wise."""
    if isinstance(a, ast.Tuple | ast.List) and isinstance(b, ast.Tuple | ast.List) \
            and len(a.elts) == len(b.elts) and not _is_literal(a):  # fmt: skip
        for x, y in zip(a.elts, b.elts, strict=True):
            yield from _paired(x, y)
        return
    yield a, b


def _tolerant(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and dotted(n.func).rsplit(".", 1)[-1] in ("approx", "isclose")
        and any(k.arg in _TOLERANCES for k in n.keywords)
        for n in ast.walk(node)
    )  # fmt: skip


_TRIVIAL = frozenset({"0", "1", "-1", "True", "False", "None", "''", "0.0"})


def _chain_root(node: ast.AST) -> tuple[ast.AST, int]:
    """The object an attribute/method chain starts from, and the chain's length:
    `proc.wait(timeout=30)` -> (proc, 1); `f(x)` -> (f(x), 0)."""
    depth = 0
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        else:
            return node, depth
        depth += 1


def _same_object(new: ast.AST, old: ast.AST) -> bool:
    """Both read the same object through attribute/method chains (`proc.wait() == 0`
    became `proc.returncode == 0`): another view of that object, not of a new input."""
    old_root, old_depth = _chain_root(old)
    new_root, new_depth = _chain_root(new)
    return old_depth > 0 and new_depth > 0 and ast.dump(old_root) == ast.dump(new_root) \
        and _projects(new, ast.dump(new_root))  # fmt: skip


def carried(old: ast.AST, new_checks: Iterable[ast.AST]) -> bool:
    """`old` (an equality on a subject) is still expected by `new_checks`, the checks the
    patched test added: each literal of its expected side (each element's, for tuples) is
    expected by a new equality whose other side reads that subject (itself, a part or a
    view of it)."""
    pairs = [(s, e) for s, e in _equalities(old) if not _is_literal(s) and _constants(e)]
    if not pairs:
        return False
    fresh = [c for c in new_checks if not _tolerant(c) or _tolerant(old)]
    for subject, expected in pairs:
        target = ast.dump(subject)
        # Another view of the same object carries only a telling value, not 0 or True.
        telling = bool(_constants(expected) - _TRIVIAL)
        seen: set[str] = set()
        for check in fresh:
            for new_subject, new_expected in _equalities(check):
                if not _is_literal(new_subject) and (
                    _projects(new_subject, target)
                    or (telling and _same_object(new_subject, subject))
                ):
                    seen |= _constants(new_expected)
        if not _constants(expected) <= seen:
            return False
    return True


class _Unqualified(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Attribute):
            node.func = ast.Name(id=node.func.attr, ctx=ast.Load())
        return node


def unqualified(node: ast.AST) -> str:
    """ast.dump with `module.f(...)` read as `f(...)`: the same check when the test now
    reaches the function through another module (an import moved)."""
    return ast.dump(_Unqualified().visit(copy.deepcopy(node)))


def timing(node: ast.AST, values: dict[str, ast.expr]) -> bool:
    """An ordering check on elapsed wall time: a clock call or a name bound to one (or
    named like a duration) on one side."""
    if not isinstance(node, ast.Compare) or any(isinstance(op, ast.Eq | ast.Is | ast.In)
                                                for op in node.ops):  # fmt: skip
        return False
    for sub in ast.walk(substitute(node, values)):
        if isinstance(sub, ast.Call) and (
            dotted(sub.func) in _CLOCKS or dotted(sub.func).rsplit(".", 1)[-1] in _CLOCKS
        ):
            return True
    return any(isinstance(sub, ast.Name) and _TIMING_NAMES.search(sub.id)
               for sub in ast.walk(node))  # fmt: skip


def _pairs(a: ast.AST, b: ast.AST, context: str = "") -> Iterator[tuple[object, object, str]]:
    """Differing constants of two nodes of the same shape, with the keyword or call each
    sits in."""
    if isinstance(a, ast.Constant) and isinstance(b, ast.Constant):
        if a.value != b.value or type(a.value) is not type(b.value):
            yield a.value, b.value, context
        return
    if type(a) is not type(b):
        yield a, b, context
        return
    if isinstance(a, ast.keyword):
        context = a.arg or context
    elif isinstance(a, ast.Assign | ast.AnnAssign | ast.AugAssign):
        target = a.targets[0] if isinstance(a, ast.Assign) else a.target
        context = dotted(target) or context
    elif isinstance(a, ast.Call):
        context = dotted(a.func) if "sleep" in dotted(a.func) else context
    children_a, children_b = list(ast.iter_child_nodes(a)), list(ast.iter_child_nodes(b))
    if len(children_a) != len(children_b):
        yield a, b, context
        return
    for x, y in zip(children_a, children_b, strict=True):
        yield from _pairs(x, y, context)


def benign_edit(old: ast.AST, new: ast.AST, gone: frozenset[str]) -> bool:
    """`old` became `new` changing only how long to wait (timeout=, sleep()) or a module
    or path name that the change renamed or deleted."""
    differences = list(_pairs(old, new))
    if not differences:
        return False
    for before, after, context in differences:
        if context and _PATIENCE.search(context) and isinstance(before, int | float) \
                and isinstance(after, int | float):  # fmt: skip
            continue
        if isinstance(before, str) and isinstance(after, str) and gone \
                and any(name in before for name in gone):  # fmt: skip
            continue
        return False
    return True


def gone_names(paths: Iterable[str]) -> frozenset[str]:
    """Module and file names of Python files a change deleted or renamed away from:
    `procs/bus_broker.py` gives it and `procs.bus_broker`."""
    names: set[str] = set()
    for path in paths:
        if not path.endswith(".py"):
            continue
        stem = path.removesuffix(".py").removesuffix("/__init__")
        names |= {path, stem.replace("/", ".")}
    return frozenset(n for n in names if "." in n or "/" in n)
