"""test_detection: code under test whose behaviour depends on being under test.

Naming the test machinery is not detecting it. A tool that builds a pytest command line,
classifies paths as `conftest.py` or `test_*.py`, keeps a set {"pytest", "unittest"} or
strips PYTEST_* from a child's environment names pytest and behaves the same under a test
runner as outside one. Detection is a fact about the *running process* meeting a test
word: so a finding needs both

    - a runtime source, what differs when a test runner is running: sys.modules,
      sys.argv, os.environ / os.getenv (also through getattr, aliases and local names),
      __main__, the tracer/profiler, the call stack and its frames; and
    - a test word: a string that names the test machinery or the tests (pytest,
      unittest, conftest, PYTEST_CURRENT_TEST, test_, TESTING, ...), direct or through
      a constant name or a constant concatenation,

in one comparison, lookup or subscript read. Beyond that, whatever the strings:

    - the call stack or tracer inspected (the caller's file decides the answer),
      unless only printed or logged;
    - the test machinery's outcome controls used by code under test (pytest.skip,
      pytest.exit, unittest.SkipTest, _pytest internals, mock.patch): a test that calls
      the code is skipped, ended or judged against a stand-in;
    - builtins, the machinery or sys.modules patched (sys.modules[__name__] = ..., a
      module replacing itself, is the lazy-module idiom and not flagged);
    - a concrete test file (tests/test_x.py, tests/data/x.json) opened or imported: the
      code reads its answers from the tests. A glob such as "test_*.py" is a tool's.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from procs.gauntlet._astkit import dotted
from procs.gauntlet._model import Finding
from procs.testfiles import MACHINERY_MODULES

_SOURCES = ("sys.modules", "sys.argv", "sys.orig_argv", "os.environ", "os.environb",
            "os.getenv", "os.getenvb", "__main__", "sys.gettrace", "sys.getprofile",
            "posix.environ")  # fmt: skip
STACK = frozenset({
    "sys._getframe", "inspect.stack", "inspect.currentframe", "inspect.getouterframes",
    "inspect.trace", "traceback.extract_stack", "traceback.format_stack", "traceback.walk_stack",
    "sys.settrace", "sys.setprofile", "sys.gettrace", "sys.getprofile", "gc.get_referrers",
    "gc.get_objects", "sys._current_frames",
})  # fmt: skip
_FRAME_ATTRS = frozenset({"f_back", "f_globals", "f_locals", "f_code", "co_filename",
                          "tb_frame", "f_builtins"})  # fmt: skip
# A string naming the test machinery or the tests. "latest", "contest", "attest" are not.
_WORD = re.compile(r"pytest|py\.test|unittest|conftest|nose2?\b|(?<![a-z])tests?(?![a-z])|"
                   r"(?<![a-z])testing(?![a-z])|(?<![a-z])test_|_test(?![a-z])",
                   re.IGNORECASE)  # fmt: skip
# A concrete test module or test data file, as a path or a dotted module name.
_TEST_FILE = re.compile(r"(^|[/\\.])(test_\w+|\w+_test|conftest)\.py$|"
                        r"(^|/)tests?/[\w./-]*\w\.(py|json|ya?ml|txt|csv|toml|cfg|ini)$|"
                        r"^tests?\.[\w.]+$|(^|\.)test_\w+$")  # fmt: skip
# Predicates and lookups: a string handed to one of these is looked for.
_LOOKUP_METHODS = frozenset({"get", "pop", "setdefault", "__contains__", "__getitem__",
                             "startswith", "endswith", "find", "rfind", "index", "count",
                             "search", "match", "fullmatch", "findall", "has_key"})  # fmt: skip
_PREDICATES = frozenset({"search", "match", "fullmatch", "findall", "fnmatch", "fnmatchcase",
                         "getattr", "hasattr"})  # fmt: skip
_READS = frozenset({"open", "read_text", "read_bytes", "import_module", "__import__",
                    "run_path", "run_module", "exec_module", "loadtxt", "spec_from_file_location",
                    "getsource", "load_source"})  # fmt: skip
_WRITE_MODES = re.compile(r"[wax]")
# The machinery's controls of an outcome: skipping, ending, expecting or approximating,
# replacing code. A plugin or tool module may use the rest (pytest.fixture, pytest.main,
# pytest.Config, hookimpl, unittest.TestCase).
_STEERING = re.compile(
    r"^(pytest|py\.test)\.(skip|xfail|exit|importorskip|raises|warns|deprecated_call|"
    r"register_assert_rewrite|MonkeyPatch|mark\.(skip|skipif|xfail))\b|"
    r"^_pytest\.(outcomes|skipping|runner|reports|python_api|monkeypatch|unittest|nose)\b|"
    r"^unittest\.(SkipTest|skip|skipIf|skipUnless|expectedFailure|case\.SkipTest|"
    r"case\._|mock\.patch)\b|^mock\.patch\b"
)
_MOCK_STANDINS = frozenset({"ANY", "Mock", "MagicMock", "NonCallableMock",
                            "NonCallableMagicMock", "AsyncMock", "create_autospec",
                            "PropertyMock"})  # fmt: skip
PATCHED_ROOTS = frozenset({"builtins", "__builtins__", *MACHINERY_MODULES, "sys.modules",
                           "AssertionError"})  # fmt: skip
_REPORTERS = re.compile(r"(^|\.)(print|debug|info|warning|warn|error|exception|critical|log|"
                        r"write)$")  # fmt: skip


class Module:
    """What the rules need to know of one module: import aliases, string constants by
    name, and the names bound (anywhere in the module) to a runtime source."""

    def __init__(self, tree: ast.Module) -> None:
        self.aliases: dict[str, str] = {}
        self.strings: dict[str, str] = {}
        self.tainted: set[str] = set()
        self._touches: dict[int, bool] = {}
        bindings: list[tuple[list[ast.expr], ast.AST]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Assign):
                bindings.append((node.targets, node.value))
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr) and node.value:
                bindings.append(([node.target], node.value))
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                bindings.append(([node.target], node.iter))
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                bindings.append(([node.optional_vars], node.context_expr))
            elif isinstance(node, ast.arguments):  # def f(var="PYTEST_CURRENT_TEST")
                positional = [*node.posonlyargs, *node.args]
                pairs = [*zip(positional[len(positional) - len(node.defaults) :],
                              node.defaults, strict=True),
                         *((a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)
                           if d is not None)]  # fmt: skip
                for arg, default in pairs:
                    bindings.append(([ast.Name(id=arg.arg, ctx=ast.Store())], default))
        for targets, value in bindings:
            text = self.text(value)
            if text is not None:
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.strings[target.id] = text
        # Names bound to a source, or to names bound to one: one walk of each bound value,
        # then a fixpoint over the names alone.
        flows: list[tuple[bool, set[str], set[str]]] = []
        for targets, value in bindings:
            subs = list(ast.walk(value))
            direct = any(self.is_source(n) for n in subs)
            used = {n.id for n in subs if isinstance(n, ast.Name)}
            bound = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            flows.append((direct, used, bound))
        changed = True
        while changed:
            changed = False
            for direct, used, bound in flows:
                if (direct or used & self.tainted) and not bound <= self.tainted:
                    self.tainted |= bound
                    changed = True

    def text(self, node: ast.AST) -> str | None:
        """A string constant, a name bound to one, or a concatenation of those."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.strings.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.text(node.left), self.text(node.right)
            return None if left is None or right is None else left + right
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))  # fmt: skip
        return None

    def name(self, node: ast.AST) -> str:
        """The dotted name an expression resolves to, through import aliases,
        getattr(x, "name"), __import__("m") and importlib.import_module("m")."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.name(node.value)
            return f"{base}.{node.attr}" if base else node.attr
        if isinstance(node, ast.Call) and node.args:
            called = dotted(node.func).rsplit(".", 1)[-1]
            if called == "getattr" and len(node.args) >= 2:
                attr = self.text(node.args[1])
                base = self.name(node.args[0])
                return f"{base}.{attr}" if base and attr else ""
            if called in ("__import__", "import_module"):
                return self.text(node.args[0]) or ""
        return ""

    def is_source(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name) and node.id in self.tainted:
            return True
        if isinstance(node, ast.Attribute) and node.attr in _FRAME_ATTRS:
            return True
        if isinstance(node, ast.Name | ast.Attribute | ast.Call):
            name = self.name(node)
            if name and (name in STACK or any(name == s or name.startswith(s + ".")
                                              for s in _SOURCES)):  # fmt: skip
                return True
            if name in ("environ", "getenv", "_getframe", "currentframe", "extract_stack"):
                return True
        return False

    def touches(self, node: ast.AST) -> bool:
        """Some part of `node` is a runtime source (memoized: asked of nested nodes)."""
        known = self._touches.get(id(node))
        if known is None:
            known = self.is_source(node) or any(self.touches(c)
                                                for c in ast.iter_child_nodes(node))  # fmt: skip
            self._touches[id(node)] = known
        return known

    def words(self, node: ast.AST) -> Iterator[str]:
        """The test words among the strings of an expression."""
        for sub in ast.walk(node):
            text = self.text(sub)
            if text and _WORD.search(text):
                yield text


def detection_findings(path: str, tree: ast.Module, added: frozenset[int], module: Module, *,
                       skip: set[int], parents: dict[int, ast.AST]) -> list[Finding]:  # fmt: skip
    """test_detection findings on the added lines of one module of code under test
    (`skip`: ids of nodes not to judge, e.g. docstrings; `parents`: child id -> node)."""
    skip = skip | _annotations(tree)
    findings: list[Finding] = []
    flagged: set[int] = set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if line not in added or id(node) in skip:
            continue
        why = _why(node, module, parents)
        if why is None or line in flagged:
            continue
        flagged.add(line)
        cls = "rigged_equality" if why.startswith("!") else "test_detection"
        findings.append(Finding(cls, path, line, why.removeprefix("!")))
    return findings


def _annotations(tree: ast.Module) -> set[int]:
    """Ids of the nodes in type annotations: naming a type is not using it."""
    roots: list[ast.AST | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(sub) for root in roots if root is not None for sub in ast.walk(root)}


def _why(node: ast.AST, module: Module, parents: dict[int, ast.AST]) -> str | None:
    if isinstance(node, ast.Compare):
        return _looked_up(node, node, module, parents)
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
            and module.touches(node.value):  # fmt: skip
        return _looked_up(node, node.slice, module, parents)
    if isinstance(node, ast.Call):
        return _call(node, module, parents)
    if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
        if isinstance(parents.get(id(node)), ast.Attribute):
            return None  # judged as the outer attribute
        return _used(node, module, parents)
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        return _patched(node, module)
    return None


def _looked_up(node: ast.AST, where: ast.AST, module: Module,
               parents: dict[int, ast.AST]) -> str | None:  # fmt: skip
    """A comparison or lookup that meets a runtime source with a test word."""
    if not module.touches(node) or _filters_environment(node, module, parents):
        return None
    for word in module.words(where):
        return f"code under test looks for {word!r} in the running process: it behaves " \
               "differently under the tests"  # fmt: skip
    return None


def _filters_environment(node: ast.AST, module: Module, parents: dict[int, ast.AST]) -> bool:
    """A condition of a dict comprehension over the environment: a child's environment
    built without some variables, not a decision taken on them."""
    parent = parents.get(id(node))
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.comprehension) and any(node is c or _within(node, c)
                                                         for c in parent.ifs):  # fmt: skip
            return isinstance(parents.get(id(parent)), ast.DictComp) and module.touches(parent.iter)
        parent = parents.get(id(parent))
    return False


def _within(node: ast.AST, root: ast.AST) -> bool:
    return any(sub is node for sub in ast.walk(root))


def _call(node: ast.Call, module: Module, parents: dict[int, ast.AST]) -> str | None:
    name = module.name(node.func)
    last = name.rsplit(".", 1)[-1] if name else dotted(node.func).rsplit(".", 1)[-1]
    args = [*node.args, *(k.value for k in node.keywords)]
    if name in STACK or last in ("_getframe", "currentframe", "extract_stack"):
        if _reported(node, parents):
            return None
        return f"code under test inspects the call stack or tracer ({name or last})"
    discarded = isinstance(parents.get(id(node)), ast.Expr)
    if isinstance(node.func, ast.Attribute) and last in _LOOKUP_METHODS \
            and module.touches(node.func.value) and not (discarded and last == "pop"):  # fmt: skip
        return _looked_up(node, ast.Tuple(elts=args, ctx=ast.Load()), module, parents)
    if name in ("os.getenv", "os.getenvb", "getenv") or (
        last in _PREDICATES and any(module.touches(a) for a in args)
    ):
        return _looked_up(node, ast.Tuple(elts=args, ctx=ast.Load()), module, parents)
    if last in ("getattr", "hasattr") and len(node.args) >= 2:
        owner = module.name(node.args[0])
        if owner.split(".")[0] in ("sys", "os", "builtins", "__builtins__", "__main__"):
            for word in module.words(node.args[1]):
                return f"code under test looks for {word!r} on {owner}: it behaves " \
                       "differently under the tests"  # fmt: skip
    if last in ("setattr", "delattr") and node.args:
        owner = module.name(node.args[0])
        if owner and (owner.split(".")[0] in PATCHED_ROOTS or owner.endswith("TestCase")):
            return f"code under test patches {owner} (the builtins or test machinery)"
    if last in _READS or (isinstance(node.func, ast.Attribute) and node.func.attr in _READS):
        return _reads_tests(node, module)
    return None


def _reads_tests(node: ast.Call, module: Module) -> str | None:
    """A concrete test file or module opened or imported by code under test."""
    if dotted(node.func).rsplit(".", 1)[-1] == "open" and len(node.args) > 1:
        mode = module.text(node.args[1]) or ""
        if _WRITE_MODES.search(mode):
            return None
    for sub in ast.walk(node):
        text = module.text(sub)
        if text and _TEST_FILE.search(text.strip()):
            return f"code under test reads the tests ({text!r}): its answers come from them"
    return None


def _reported(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """Only handed to a print or log call (a diagnostic, not a decision)."""
    parent = parents.get(id(node))
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.Call) and _REPORTERS.search(dotted(parent.func)):
            return True
        parent = parents.get(id(parent))
    return False


def _used(node: ast.Attribute | ast.Name, module: Module,
          parents: dict[int, ast.AST]) -> str | None:  # fmt: skip
    name = module.name(node)
    if not name:
        return None
    root = name.split(".")[0]
    if root in ("sys", "os", "builtins", "__builtins__", "__main__") and "." in name \
            and _WORD.search(name.split(".", 1)[1]):  # fmt: skip
        return f"code under test reads {name}: a flag the tests set"
    if name.startswith(("unittest.mock.", "mock.")) and name.rsplit(".", 1)[-1] in _MOCK_STANDINS:
        return f"!{name} in code under test: a stand-in that agrees with what the tests look for"
    if name in ("pytest.approx", "_pytest.python_api.approx"):
        return "!pytest.approx returned by code under test: it compares equal to values near it"
    if not _STEERING.search(name):
        return None
    return f"code under test uses the test machinery ({name}): it steers the tests' outcome"


def _patched(node: ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete,
             module: Module) -> str | None:  # fmt: skip
    targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
    for target in targets:
        if not isinstance(target, ast.Attribute | ast.Subscript):
            continue
        name = module.name(target.value)
        if not name:
            continue
        itself = isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Name) \
            and target.slice.id == "__name__"  # fmt: skip
        if name == "sys.modules" and itself:
            continue  # a module replacing itself (a lazy module)
        if name.split(".")[0] in PATCHED_ROOTS or name in PATCHED_ROOTS \
                or name.endswith(("TestCase", "sys.modules")):  # fmt: skip
            return f"code under test patches {name} (the builtins or test machinery)"
    return None
