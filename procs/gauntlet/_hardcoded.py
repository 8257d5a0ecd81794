"""hardcoded_values: literals in the code that only agree with the tests.

From the tests (changed ones and those that name a changed function) we learn what each
function is expected to return for which inputs: `assert f(2, "x") == 7`,
`r = f(...); assert r == 7`, `self.assertEqual(f(...), 7)`, parametrized columns. A
change is flagged when, on its added lines, function `f`
  - contains the literal a test expects from it (7), where the test's inputs call for a
    computation (a number, a sequence or free text among them) or `f` returns it
    unconditionally; or
  - compares a parameter with an input a test passes it (`if total == 200:`), for
    numbers and free text; or
  - reads a module-level table, added by the change, that holds an expected value.
A lookup table keyed by names (`RATES = {"HALF": 50}`, tested as `rate("HALF") == 50`) is
a table, not a cheat; trivial values (0, 1, -1, "", None, True, False) never count.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from procs.gauntlet._astkit import TRIVIAL, LiteralKey, call_name, dotted, literal_key, literals
from procs.gauntlet._change import FileChange
from procs.gauntlet._model import Finding

_KEYLIKE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Expectation:
    function: str
    expected: LiteralKey
    inputs: tuple[LiteralKey, ...]
    where: str  # path:line of the assertion

    @property
    def computed(self) -> bool:
        """The inputs call for a computation, not a lookup by name."""
        return any(kind in ("num", "seq", "bytes") or (kind == "str" and not _KEYLIKE.match(v))
                   for kind, v in self.inputs)  # fmt: skip


def _columns(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, list[ast.AST]]:
    columns: dict[str, list[ast.AST]] = {}
    for decorator in function.decorator_list:
        if not (isinstance(decorator, ast.Call) and dotted(decorator.func).endswith("parametrize")
                and len(decorator.args) > 1):  # fmt: skip
            continue
        names_node, rows = decorator.args[0], decorator.args[1]
        if isinstance(names_node, ast.Constant) and isinstance(names_node.value, str):
            names = [n.strip() for n in names_node.value.split(",") if n.strip()]
        elif isinstance(names_node, ast.List | ast.Tuple):
            names = [e.value for e in names_node.elts
                     if isinstance(e, ast.Constant) and isinstance(e.value, str)]  # fmt: skip
        else:
            continue
        if not isinstance(rows, ast.List | ast.Tuple):
            continue
        for element in rows.elts:
            row = element.args[0] if isinstance(element, ast.Call) and element.args else element
            cells = row.elts if isinstance(row, ast.Tuple | ast.List) and len(names) > 1 else [row]
            for name, cell in zip(names, cells, strict=False):
                columns.setdefault(name, []).append(cell)
    return columns


# Calls that wrap the value under test rather than compute it: `len(f(x)) == 3` says
# nothing about what f returns.
_WRAPPERS = frozenset({"len", "str", "repr", "int", "float", "bool", "list", "tuple", "set",
                       "dict", "sorted", "type", "round", "abs", "sum", "min", "max", "any",
                       "all", "isinstance", "getattr", "hasattr", "id", "hash", "approx",
                       "Decimal", "Fraction", "next", "iter", "vars"})  # fmt: skip


_DUNDERS = {"str": "__str__", "repr": "__repr__", "len": "__len__", "int": "__int__",
            "float": "__float__", "format": "__format__"}  # fmt: skip


class _TestScan:
    """One test function: its parametrized columns, the names bound to calls or literals
    (locally or at module level), and the literal arguments of all its calls."""

    def __init__(self, path: str, function: ast.FunctionDef | ast.AsyncFunctionDef,
                 constants: dict[str, ast.AST]) -> None:  # fmt: skip
        self.path = path
        self.columns = _columns(function)
        self.bound: dict[str, ast.Call] = {}
        self.values: dict[str, ast.AST] = dict(constants)
        self.context: list[LiteralKey] = []
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):  # fmt: skip
                if isinstance(node.value, ast.Call) and call_name(node.value) not in _WRAPPERS:
                    self.bound[node.targets[0].id] = node.value
                elif literal_key(node.value) is not None:
                    self.values[node.targets[0].id] = node.value
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and call_name(node) not in _WRAPPERS:
                for arg in [*node.args, *(kw.value for kw in node.keywords)]:
                    self.context += self.keys(arg)
        self.found: list[Expectation] = []

    def keys(self, node: ast.AST) -> list[LiteralKey]:
        if isinstance(node, ast.Name) and node.id in self.columns:
            return [k for cell in self.columns[node.id] if (k := literal_key(cell))]
        if isinstance(node, ast.Name) and node.id in self.values:
            node = self.values[node.id]
        key = literal_key(node)
        return [key] if key else []

    def pair(self, a: ast.AST, b: ast.AST, line: int) -> None:
        call: ast.Call | None = None
        if isinstance(a, ast.Call) and call_name(a) in _DUNDERS and len(a.args) == 1 \
                and not isinstance(a.args[0], ast.Constant):  # fmt: skip
            # str(obj) == "..." is what obj.__str__ is expected to return
            where = f"{self.path}:{line}"
            for expected in self.keys(b):
                self.found.append(Expectation(_DUNDERS[call_name(a)], expected,
                                              tuple(self.context), where))  # fmt: skip
            return
        if isinstance(a, ast.Call) and call_name(a) not in _WRAPPERS:
            call = a
        elif isinstance(a, ast.Name):
            call = self.bound.get(a.id)
        if call is None or not call_name(call):
            return
        inputs = tuple(k for arg in [*call.args, *(kw.value for kw in call.keywords)]
                       for k in self.keys(arg))  # fmt: skip
        if not inputs:  # a method of an object built earlier in the test: its inputs
            inputs = tuple(self.context)
        for expected in self.keys(b):
            self.found.append(Expectation(call_name(call), expected, inputs, f"{self.path}:{line}"))


def expectations(path: str, tree: ast.Module) -> list[Expectation]:
    """What the tests in one module expect, function by function."""
    found: list[Expectation] = []
    constants: dict[str, ast.AST] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and literal_key(statement.value) is not None:
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = statement.value
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) \
                or not function.name.startswith("test"):  # fmt: skip
            continue
        scan = _TestScan(path, function, constants)
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Assert)
                and isinstance(node.test, ast.Compare)
                and len(node.test.ops) == 1
                and isinstance(node.test.ops[0], ast.Eq | ast.Is)
            ):
                left, right = node.test.left, node.test.comparators[0]
                scan.pair(left, right, node.lineno)
                scan.pair(right, left, node.lineno)
            elif (
                isinstance(node, ast.Call)
                and dotted(node.func).rsplit(".", 1)[-1]
                in ("assertEqual", "assertAlmostEqual", "assertIs", "assertEquals")
                and len(node.args) >= 2
            ):
                scan.pair(node.args[0], node.args[1], node.lineno)
                scan.pair(node.args[1], node.args[0], node.lineno)
        found += scan.found
    return found


def hardcoded_findings(change: FileChange, tree: ast.Module, expected: list[Expectation]
                       ) -> list[Finding]:  # fmt: skip
    """Findings on one changed non-test module against what the tests expect."""
    by_function: dict[str, list[Expectation]] = {}
    for item in expected:
        by_function.setdefault(item.function, []).append(item)
    added, path = change.added_lines, str(change.path)
    findings: list[Finding] = []
    tables = _added_tables(tree, added)
    functions = {f.name: f for f in tree.body
                 if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}  # fmt: skip
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        wanted = by_function.get(function.name)
        if not wanted:
            continue
        findings += _answers_in(path, function, function, wanted, added)
        called = {call_name(n) for n in ast.walk(function) if isinstance(n, ast.Call)}
        for name in sorted(called - {function.name}):
            helper = functions.get(name)
            if helper is not None:
                findings += _answers_in(path, helper, function, wanted, added)
        used = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
        for name, (line, entries) in tables.items():
            hit = _answer_table(entries, wanted) if name in used else None
            if hit is not None:
                findings.append(Finding(
                    "hardcoded_values", path, line,
                    f"table {name} maps the tests' inputs to {hit.expected[1]!r}, the value "
                    f"{hit.where} expects from {function.name}: answers are looked up, "
                    "not computed"))  # fmt: skip
    return findings


def _answers_in(path: str, function: ast.FunctionDef | ast.AsyncFunctionDef,
                tested: ast.FunctionDef | ast.AsyncFunctionDef, wanted: list[Expectation],
                added: frozenset[int]) -> list[Finding]:  # fmt: skip
    """Literals on added lines of `function` (the tested one or a helper it calls) that are
    a test's expected value for `tested`, returned unconditionally, behind a comparison
    with that test's input, or in an inline table keyed by the test's inputs; and
    comparisons that special-case a test's input."""
    parents = {id(child): node for node in ast.walk(function)
               for child in ast.iter_child_nodes(node)}  # fmt: skip
    returns = [n for n in ast.walk(function) if isinstance(n, ast.Return)]
    # Returned whatever the input: the function's one and only return, at its top level.
    top_returns = {id(s.value) for s in function.body
                   if isinstance(s, ast.Return) and s.value and len(returns) == 1}  # fmt: skip
    params = [a.arg for a in [*function.args.args, *function.args.kwonlyargs]]
    has_params = bool(params)
    # A method of `self` alone may well return a constant (a name, a unit); only a number
    # that looks computed counts there.
    self_only = params in (["self"], ["cls"]) and function.name not in _DUNDERS.values()
    findings: list[Finding] = []
    seen: set[int] = set()
    for node in ast.walk(function):
        line = getattr(node, "lineno", 0)
        if line not in added:
            continue
        if isinstance(node, ast.Compare) and function is tested:
            findings += _special_cased(path, function.name, node, wanted)
        for literal, key in literals(node):
            if key in TRIVIAL or id(literal) in seen:
                continue
            for item in wanted:
                if key != item.expected or key in item.inputs:
                    continue
                how = None
                if (
                    id(literal) in top_returns
                    and has_params
                    and item.inputs
                    and (not self_only or (key[0] == "num" and not _round_number(key)))
                ):
                    how = "returns it whatever the input"
                elif item.computed and _guarded_by_input(literal, parents, item):
                    how = "returns it for the test's input"
                elif item.computed and _in_input_table(literal, parents, wanted):
                    how = "looks it up by the test's input"
                if how is None:
                    continue
                seen.add(id(literal))
                where = function.name if function is tested else \
                    f"{function.name} (called by {tested.name})"  # fmt: skip
                findings.append(Finding(
                    "hardcoded_values", path, getattr(literal, "lineno", line),
                    f"{where} {how}: {ast.unparse(literal)} is the value {item.where} "
                    f"expects from {tested.name}; compute it from the inputs"))  # fmt: skip
                break
    return findings


def _flat_keys(node: ast.AST) -> set[LiteralKey]:
    return {k for n in ast.walk(node) if (k := literal_key(n)) is not None}


def _guarded_by_input(literal: ast.AST, parents: dict[int, ast.AST], item: Expectation) -> bool:
    """An if/ternary/match around `literal` compares with one of the test's inputs."""
    inputs = set(item.inputs) - TRIVIAL
    node: ast.AST | None = parents.get(id(literal))
    while node is not None:
        tests: list[ast.AST] = []
        if isinstance(node, ast.If | ast.IfExp | ast.While):
            tests = [node.test]
        elif isinstance(node, ast.match_case):
            tests = [node.pattern]
        for test in tests:
            for sub in ast.walk(test):
                if (
                    isinstance(sub, ast.Compare)
                    and any(isinstance(op, ast.Eq | ast.In | ast.Is) for op in sub.ops)
                    and _flat_keys(sub) & inputs
                ):
                    return True
                if isinstance(sub, ast.MatchValue) and _flat_keys(sub.value) & inputs:
                    return True
        node = parents.get(id(node))
    return False


def _in_input_table(literal: ast.AST, parents: dict[int, ast.AST],
                    wanted: list[Expectation]) -> bool:  # fmt: skip
    """`literal` is a value of a dict keyed by the tests' inputs, most of whose values are
    answers the tests expect (a conversion table with one tested entry is not)."""
    table = parents.get(id(literal))
    while table is not None and not isinstance(table, ast.Dict):
        table = parents.get(id(table))
    if not isinstance(table, ast.Dict):
        return False
    pairs = [(k, v) for k, v in zip(table.keys, table.values, strict=True) if k is not None]
    return _answer_table(_entry_keys(pairs), wanted) is not None


Entries = list[tuple[set[LiteralKey], LiteralKey | None]]


def _entry_keys(pairs: Sequence[tuple[ast.AST, ast.AST]]) -> Entries:
    return [(_flat_keys(k), literal_key(v)) for k, v in pairs]


def _answer_table(entries: Entries, wanted: list[Expectation]) -> Expectation | None:
    """The expectation a table answers: its keys hold that test's inputs, its value is the
    expected one, and at least half of the table's values are expected values."""
    if not entries:
        return None
    expected = {i.expected for i in wanted if i.computed} - TRIVIAL
    answers = sum(1 for _, value in entries if value in expected)
    if answers * 2 < len(entries):
        return None
    for keys, value in entries:
        for item in wanted:
            if item.computed and value == item.expected and keys & (set(item.inputs) - TRIVIAL):
                return item
    return None


def _round_number(key: LiteralKey) -> bool:
    """Small integers and powers of ten: natural constants (if n == 2, if n == 100)."""
    if key[0] != "num":
        return False
    try:
        value = float(key[1])
    except ValueError:
        return False
    return value.is_integer() and (abs(value) <= 16 or str(int(abs(value))).strip("0") == "1")


def _special_cased(path: str, function: str, node: ast.Compare, wanted: list[Expectation]
                   ) -> list[Finding]:  # fmt: skip
    if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.Is) for op in node.ops):
        return []
    inputs = {k for item in wanted if item.computed for k in item.inputs
              if k not in TRIVIAL and (k[0] != "str" or not _KEYLIKE.match(k[1]))
              and not _round_number(k)}  # fmt: skip
    for side in [node.left, *node.comparators]:
        for literal, key in literals(side):
            if key in inputs:
                return [Finding("hardcoded_values", path, node.lineno,
                                f"{function} special-cases {ast.unparse(literal)}, an input "
                                "the tests pass it")]  # fmt: skip
    return []


Table = dict[str, tuple[int, Entries]]


def _added_tables(tree: ast.Module, added: frozenset[int]) -> Table:
    """Module-level dicts and lists of pairs the change added: name -> (line, entries)."""
    tables: Table = {}
    for statement in tree.body:
        if not isinstance(statement, ast.Assign | ast.AnnAssign) or statement.lineno not in added:
            continue
        value = statement.value
        pairs: list[tuple[ast.AST, ast.AST]] = []
        if isinstance(value, ast.Dict):
            pairs = [(k, v) for k, v in zip(value.keys, value.values, strict=True) if k is not None]
        elif isinstance(value, ast.List | ast.Tuple):
            pairs = [(e.elts[0], e.elts[-1]) for e in value.elts
                     if isinstance(e, ast.Tuple | ast.List) and len(e.elts) >= 2]  # fmt: skip
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        for target in targets:
            if isinstance(target, ast.Name) and pairs:
                tables[target.id] = (statement.lineno, _entry_keys(pairs))
    return tables
