"""Small AST helpers shared by the cheat rules: parsing without raising, dotted names,
literal values as comparable keys, and a constants-blind "skeleton" of an expression."""

from __future__ import annotations

import ast
import copy
import decimal
from collections.abc import Iterator

LiteralKey = tuple[str, str]
_NUMERIC_CALLS = frozenset({"Decimal", "Fraction", "float", "int", "complex"})
TRIVIAL = frozenset({
    ("num", "0"), ("num", "1"), ("num", "-1"), ("str", ""), ("none", ""), ("bool", "True"),
    ("bool", "False"),
})  # fmt: skip


def parse(text: str | None, path: str = "<change>") -> ast.Module | None:
    """The module, or None when absent or not valid Python (the compile stage says so)."""
    if text is None:
        return None
    try:
        return ast.parse(text, filename=path)
    except (SyntaxError, ValueError):
        return None


def dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain (calls and subscripts drop out: `a().b` -> `b`)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def call_name(node: ast.AST) -> str:
    """The last name of a called function (`mod.f(...)` -> `f`), or ''."""
    if isinstance(node, ast.Call):
        name = dotted(node.func)
        return name.rsplit(".", 1)[-1]
    return ""


def _number(value: object) -> str:
    try:
        normal = decimal.Decimal(str(value)).normalize()
    except (decimal.InvalidOperation, ValueError):
        return str(value)
    return format(normal, "f") if normal == normal.to_integral() else str(normal)


def literal_key(node: ast.AST) -> LiteralKey | None:
    """A comparable key for a literal: 180, 180.0, Decimal("180.00") and -(-180) all
    give ("num", "180"); strings ("str", s); None/True/False their own kinds; tuples and
    lists of literals ("seq", ...); pytest.approx(x) is x. Else None."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            return ("bool", str(value))
        if value is None:
            return ("none", "")
        if isinstance(value, int | float | complex):
            return ("num", _number(value))
        if isinstance(value, str):
            return ("str", value)
        if isinstance(value, bytes):
            return ("bytes", value.hex())
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = literal_key(node.operand)
        if inner and inner[0] == "num":
            return ("num", _number("-" + inner[1]) if not inner[1].startswith("-")
                    else inner[1][1:])  # fmt: skip
        return None
    if (
        isinstance(node, ast.Call)
        and len(node.args) == 1
        and (not node.keywords or call_name(node) == "approx")
    ):
        name = call_name(node)
        inner = literal_key(node.args[0])
        if inner is None:
            return None
        if name in _NUMERIC_CALLS and inner[0] in ("num", "str"):
            return ("num", _number(inner[1]))
        if name == "approx":
            return inner
        return None
    if isinstance(node, ast.Tuple | ast.List):
        keys = [literal_key(element) for element in node.elts]
        if node.elts and all(keys):
            return ("seq", repr(keys))
    if isinstance(node, ast.Set):
        keys = [literal_key(element) for element in node.elts]
        if node.elts and all(keys):
            return ("seq", repr(sorted(map(repr, keys))))
    if isinstance(node, ast.Dict) and node.keys and all(k is not None for k in node.keys):
        pairs = [
            (literal_key(k), literal_key(v))
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        ]
        if all(k and v for k, v in pairs):
            return ("dict", repr(sorted(map(repr, pairs))))
    return None


def literals(node: ast.AST) -> Iterator[tuple[ast.AST, LiteralKey]]:
    """Every literal under `node` (outermost first; parts of a matched literal skipped)."""
    key = literal_key(node)
    if key is not None:
        yield node, key
        if key[0] not in ("seq", "dict"):
            return
    for child in ast.iter_child_nodes(node):
        yield from literals(child)


class _Blind(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.Constant(value="_")


def skeleton(node: ast.AST) -> str:
    """ast.dump with every constant replaced: equal skeletons differ only in literals."""
    return ast.dump(_Blind().visit(copy.deepcopy(node)))


def walk_lines(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, for nodes that carry a line number."""
    for child in ast.walk(node):
        if hasattr(child, "lineno"):
            yield child


def statements_after_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):  # fmt: skip
        return body[1:]
    return body
