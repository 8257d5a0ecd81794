"""runner_tampering: changes to how tests are found, selected, run or judged.

    - pytest settings (pyproject [tool.pytest.ini_options], pytest.ini, tox.ini [pytest],
      setup.cfg [tool:pytest]): testpaths, python_files/classes/functions, norecursedirs,
      confcutdir, xfail_strict turned off, addopts gaining -k/-m/--deselect/--ignore/-p/...
    - conftest.py and test modules: new or changed collection and reporting hooks,
      collect_ignore(_glob), pytest_plugins, module-level skips, sys.exit/os._exit,
      patching pytest/unittest/builtins; a conftest deleted;
    - files Python or pytest load first: sitecustomize.py, usercustomize.py, *.pth, and
      modules that shadow the machinery (pytest.py, unittest/...);
    - [tool.factory] changed (the gauntlet reads its settings at REV anyway).
Adding a fixture, a marker registration or a -ra/--strict-markers option is not flagged.
"""

from __future__ import annotations

import ast
import configparser
import shlex
import tomllib
from pathlib import PurePosixPath
from typing import Any

from procs.gauntlet._astkit import dotted, parse
from procs.gauntlet._change import FileChange
from procs.gauntlet._model import Finding
from procs.testfiles import is_test_path, shadows_machinery

_SELECTING = (
    "testpaths",
    "python_files",
    "python_classes",
    "python_functions",
    "norecursedirs",
    "confcutdir",
    "rootdir",
    "collect_ignore",
    "required_plugins",
)
# Options that change which tests run or how they are judged (-x or --maxfail only stop
# early: a failure still fails, so they are not here).
_OPTIONS = ("-k", "-m", "--deselect", "--ignore", "--ignore-glob", "-p", "--co",
            "--collect-only", "--lf", "--last-failed", "--sw", "--stepwise",
            "--stepwise-skip", "--noconftest", "--confcutdir", "--rootdir", "--pyargs",
            "--continue-on-collection-errors", "-c", "--config-file", "-o", "--override-ini",
            "--assert", "--import-mode", "--last-failed-no-failures", "--deselect-glob",
            "--doctest-modules", "--ignore-glob", "--trace", "--pdb")  # fmt: skip
_HARMLESS_OPTIONS = frozenset({"-q", "--quiet", "--runxfail"})
_HOOKS = frozenset({
    "pytest_collection_modifyitems", "pytest_ignore_collect", "pytest_collect_file",
    "pytest_pycollect_makeitem", "pytest_pycollect_makemodule", "pytest_collection",
    "pytest_collect_directory", "pytest_runtest_protocol", "pytest_runtest_call",
    "pytest_runtest_makereport", "pytest_runtest_setup", "pytest_runtest_teardown",
    "pytest_runtest_logreport", "pytest_report_teststatus", "pytest_terminal_summary",
    "pytest_sessionfinish", "pytest_sessionstart", "pytest_deselected", "pytest_collectreport",
    "pytest_itemcollected", "pytest_exception_interact", "pytest_unconfigure",
    "pytest_cmdline_main", "pytest_cmdline_parse", "pytest_cmdline_preparse",
    "pytest_load_initial_conftests", "pytest_pyfunc_call", "pytest_make_collect_report",
    "pytest_runtestloop", "pytest_collection_finish", "pytest_fixture_setup",
})  # fmt: skip
_CONFIG_TOUCH = frozenset({"option", "args", "known_args_namespace", "pluginmanager",
                           "_inicache", "inicfg", "invocation_params"})  # fmt: skip
_NAMES = frozenset({"collect_ignore", "collect_ignore_glob", "pytest_plugins", "pytestmark"})
_EXITS = frozenset({"sys.exit", "os._exit", "exit", "quit", "os.abort", "os.kill"})


def harness_findings(change: FileChange) -> list[Finding]:
    path, name = change.path, change.path.name
    findings: list[Finding] = []
    where = str(path)
    if change.status == "added" and shadows_machinery(path):
        findings.append(Finding("runner_tampering", where, 0,
                                f"{path} shadows the test machinery module "
                                f"{path.parts[0].removesuffix('.py')}"))  # fmt: skip
    if name in ("sitecustomize.py", "usercustomize.py") or name.endswith(".pth"):
        findings.append(
            Finding(
                "runner_tampering", where, 0, f"{name} runs before any test: it may not be changed"
            )
        )
    if name in ("pyproject.toml", "pytest.ini", "tox.ini", "setup.cfg"):
        findings += _settings(change)
    if name == "conftest.py" or (is_test_path(path) and path.suffix == ".py"
                                 and change.status != "deleted"):  # fmt: skip
        if name == "conftest.py" and change.status == "deleted":
            findings.append(Finding("runner_tampering", str(change.base_path), 0,
                                    "conftest.py deleted: its fixtures and hooks no longer "
                                    "apply"))  # fmt: skip
        else:
            findings += _hooks(change)
    return findings


def _pytest_table(name: str, text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        if name == "pyproject.toml":
            table = tomllib.loads(text).get("tool", {}).get("pytest", {}).get("ini_options", {})
            return dict(table) if isinstance(table, dict) else {}
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(text)
        section = {"pytest.ini": "pytest", "tox.ini": "pytest", "setup.cfg": "tool:pytest"}[name]
        if (
            name == "pytest.ini"
            and not parser.has_section(section)
            and parser.has_section("tool:pytest")
        ):
            section = "tool:pytest"
        return dict(parser.items(section)) if parser.has_section(section) else {}
    except (tomllib.TOMLDecodeError, configparser.Error, UnicodeDecodeError):
        return {"<unreadable>": text[:40]}


def _plugins(text: str | None) -> Any:
    if not text:
        return None
    try:
        points = tomllib.loads(text).get("project", {}).get("entry-points", {})
    except tomllib.TOMLDecodeError:
        return "<unreadable>"
    return points.get("pytest11") if isinstance(points, dict) else None


def _factory_table(text: str | None) -> Any:
    if not text:
        return None
    try:
        return tomllib.loads(text).get("tool", {}).get("factory")
    except tomllib.TOMLDecodeError:
        return "<unreadable>"


def _tokens(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return shlex.split(str(value))
    except ValueError:
        return str(value).split()


def _settings(change: FileChange) -> list[Finding]:
    name, where = change.path.name, str(change.path)
    old = _pytest_table(name, change.base_text)
    new = _pytest_table(name, change.new_text)
    findings = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key in _SELECTING or key == "<unreadable>":
            findings.append(
                Finding(
                    "runner_tampering",
                    where,
                    0,
                    f"pytest setting {key} changed ({before!r} -> {after!r}): "
                    "which tests run is not the change's to decide",
                )
            )
        elif key == "xfail_strict" and str(before).lower() in ("true", "1"):
            findings.append(
                Finding(
                    "runner_tampering",
                    where,
                    0,
                    "xfail_strict turned off: unexpected passes stop failing",
                )
            )
        elif key == "addopts":
            added = [t for t in _tokens(after) if t not in _tokens(before)]
            bad = [t for t in added if t not in _HARMLESS_OPTIONS and any(
                t == o or t.startswith(o + "=") or (o.startswith("-") and not o.startswith("--")
                                                    and t.startswith(o) and len(o) == 2)
                for o in _OPTIONS)]  # fmt: skip
            if bad:
                findings.append(Finding("runner_tampering", where, 0,
                                        f"addopts gains {' '.join(bad)}: it changes which tests "
                                        "run or how they are judged"))  # fmt: skip
    if name == "pyproject.toml" and _plugins(change.base_text) != _plugins(change.new_text):
        findings.append(
            Finding(
                "runner_tampering",
                where,
                0,
                "a pytest11 entry point (a pytest plugin) added or changed",
            )
        )
    if name == "pyproject.toml" and _factory_table(change.base_text) != _factory_table(
        change.new_text
    ):
        findings.append(Finding("runner_tampering", where, 0,
                                "[tool.factory] changed: the gauntlet's settings are the "
                                "operator's"))  # fmt: skip
    return findings


def _entries(tree: ast.Module | None) -> dict[str, tuple[int, str]]:
    """Suspicious top-level constructs of a conftest or test module: name -> (line, dump).
    A hook counts only when it steers (see _steers); os._exit only in a module that does
    not fork (a forked child leaves that way); code under `if __name__ == "__main__":`
    does not run at import."""
    if tree is None:
        return {}
    forks = any(isinstance(n, ast.Call) and dotted(n.func).endswith(_FORKS) for n in ast.walk(tree))
    out: dict[str, tuple[int, str]] = {}
    for statement in tree.body:
        if _main_guard(statement):
            continue
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and _patching_fixture(
            statement
        ):
            out[f"autouse fixture {statement.name} patching code"] = (
                statement.lineno,
                ast.dump(statement),
            )
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            touches = statement.name == "pytest_configure" and _rewrites_config(statement)
            why = _steers(statement) if statement.name in _HOOKS else None
            if why or touches:
                out[f"hook {statement.name} ({why or 'rewrites the configuration'})"] = (
                    statement.lineno, ast.dump(statement))  # fmt: skip
        elif isinstance(statement, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) \
                else [statement.target]  # fmt: skip
            for target in targets:
                name = dotted(target.value if isinstance(target, ast.Subscript) else target)
                if name in _NAMES and name != "pytestmark":
                    out[f"setting {name}"] = (statement.lineno, ast.dump(statement))
        at_import = not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(statement):
            if isinstance(node, ast.Call) and dotted(node.func) in _EXITS and at_import:
                out[f"call {dotted(node.func)} at import"] = (node.lineno, ast.dump(node))
            if isinstance(node, ast.Call) and dotted(node.func) in ("pytest.skip", "skip") \
                    and any(k.arg == "allow_module_level" for k in node.keywords):  # fmt: skip
                out["module-level skip"] = (node.lineno, ast.dump(node))
            if isinstance(node, ast.Call) and dotted(node.func) in ("os._exit", "os.abort") \
                    and not forks:  # fmt: skip
                out[f"call {dotted(node.func)}"] = (node.lineno, ast.dump(node))
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    root = (
                        dotted(target.value)
                        if isinstance(target, ast.Attribute | ast.Subscript)
                        else ""
                    )
                    if root.split(".")[0] in ("builtins", "__builtins__", "pytest", "_pytest",
                                              "unittest") or root == "sys.modules":  # fmt: skip
                        out[f"patches {root}"] = (node.lineno, ast.dump(node))
    return out


_MUTATORS = frozenset(
    {
        "register",
        "unregister",
        "set_blocked",
        "import_plugin",
        "append",
        "extend",
        "insert",
        "clear",
        "remove",
        "pop",
        "__setitem__",
        "setdefault",
        "update",
        "consider_module",
        "consider_pluginarg",
    }
)


def _rewrites_config(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """pytest_configure that writes the parsed options, the arguments or the plugins
    (config.option.deselect = ..., config.args[:] = ..., pluginmanager.register(...))."""
    for node in ast.walk(function):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _MUTATORS:  # fmt: skip
            targets = [node.func.value]
        for target in targets:
            if any(isinstance(n, ast.Attribute) and n.attr in _CONFIG_TOUCH
                   for n in ast.walk(target)):  # fmt: skip
                return True
    return False


_FORKS = ("fork", "forkpty", "Process", "ProcessPoolExecutor", "Pool")


def _main_guard(statement: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (a helper run as a script, not imported by pytest)."""
    test = statement.test if isinstance(statement, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and dotted(test.left) == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


# Hooks whose first non-None result decides: returning one replaces pytest's own answer.
_DECIDING = frozenset({
    "pytest_ignore_collect", "pytest_collect_file", "pytest_pycollect_makeitem",
    "pytest_pycollect_makemodule", "pytest_runtest_protocol", "pytest_pyfunc_call",
    "pytest_report_teststatus", "pytest_cmdline_main", "pytest_runtestloop",
    "pytest_make_collect_report", "pytest_collection", "pytest_fixture_setup",
    "pytest_collect_directory", "pytest_cmdline_parse", "pytest_runtest_call",
    "pytest_runtest_makereport", "pytest_assertrepr_compare",
})  # fmt: skip
# Writes a hook may make to what it is given: notes on the item or report, not outcomes.
_HARMLESS_WRITES = frozenset({"user_properties", "sections", "stash", "extra", "_report_sections"})
_STEERING_CALLS = frozenset({"remove", "pop", "clear", "__delitem__", "__setitem__",
                             "force_result", "force_exception", "pytest_deselected", "skip",
                             "xfail", "exit", "_exit", "setattr", "delattr", "fail"})  # fmt: skip
_FAILING = frozenset({"TESTS_FAILED", "INTERRUPTED", "INTERNAL_ERROR", "USAGE_ERROR"})


def _steers(hook: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """How a hook changes which tests run or how they are judged, or None when it only
    adds markers, reorders, reports or makes the exit status stricter."""
    params = {a.arg for a in [*hook.args.posonlyargs, *hook.args.args, *hook.args.kwonlyargs]}
    wrapper = any(
        isinstance(d, ast.Call) and any(k.arg in ("hookwrapper", "wrapper") for k in d.keywords)
        for d in hook.decorator_list
    )
    skip_marks = {
        t.id for n in ast.walk(hook) if isinstance(n, ast.Assign) and _is_skip_mark(n.value)
        for t in n.targets if isinstance(t, ast.Name)
    }  # fmt: skip
    if wrapper:
        yielded = {
            t.id for n in ast.walk(hook) if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Yield | ast.YieldFrom)
            for t in n.targets if isinstance(t, ast.Name)
        }  # fmt: skip
        for node in ast.walk(hook):
            if isinstance(node, ast.Try | ast.TryStar) and node.handlers:
                return "catches what the tests raise"
            if (
                isinstance(node, ast.Return)
                and node.value is not None
                and not (
                    isinstance(node.value, ast.Yield | ast.YieldFrom)
                    or (isinstance(node.value, ast.Name) and node.value.id in yielded)
                )
            ):
                return "returns its own result for the tests"
    for node in ast.walk(hook):
        if hook.name in _DECIDING and isinstance(node, ast.Return) and node.value is not None \
                and not (isinstance(node.value, ast.Constant) and node.value.value is None) \
                and not wrapper:  # fmt: skip
            return "returns its own answer"
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                if not isinstance(target, ast.Attribute | ast.Subscript):
                    continue
                root = dotted(target.value).split(".")[0] if dotted(target.value) else ""
                attr = target.attr if isinstance(target, ast.Attribute) else ""
                if (root in params or wrapper) and attr not in _HARMLESS_WRITES \
                        and not _stricter(attr, getattr(node, "value", None)):  # fmt: skip
                    return f"rewrites {ast.unparse(target)}"
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            owner = name.split(".")[0]
            if last in _STEERING_CALLS and (owner in params or owner in ("pytest", "os", "sys")
                                            or wrapper or "hook" in name):  # fmt: skip
                return f"calls {name}"
            if (
                last == "add_marker"
                and node.args
                and (
                    _is_skip_mark(node.args[0])
                    or (isinstance(node.args[0], ast.Name) and node.args[0].id in skip_marks)
                )
            ):
                return "marks tests skip or xfail"
    return None


def _is_skip_mark(node: ast.AST | None) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return target is not None and dotted(target).rsplit(".", 1)[-1] in ("skip", "skipif", "xfail")


def _stricter(attr: str, value: ast.AST | None) -> bool:
    """An exit status made a failing one."""
    if attr not in ("exitstatus", "returncode") or value is None:
        return False
    if isinstance(value, ast.Constant):
        return isinstance(value.value, int) and value.value not in (0, 5)
    return dotted(value).rsplit(".", 1)[-1] in _FAILING


_PATCH_CALLS = frozenset({"monkeypatch.setattr", "monkeypatch.setitem", "mock.patch", "patch",
                          "patch.object", "mocker.patch", "mocker.patch.object", "setattr",
                          "unittest.mock.patch", "mock.patch.object"})  # fmt: skip


def _patching_fixture(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """An autouse fixture that replaces something: every test then checks a stand-in."""
    autouse = any(
        isinstance(d, ast.Call) and dotted(d.func).endswith("fixture")
        and any(k.arg == "autouse" and isinstance(k.value, ast.Constant) and k.value.value
                for k in d.keywords)
        for d in function.decorator_list
    )  # fmt: skip
    return autouse and any(
        isinstance(n, ast.Call) and dotted(n.func) in _PATCH_CALLS for n in ast.walk(function)
    )


def _hooks(change: FileChange) -> list[Finding]:
    path = PurePosixPath(change.path)
    old = _entries(parse(change.base_text))
    new = _entries(parse(change.new_text))
    findings = []
    for what, (line, dump) in sorted(new.items()):
        if old.get(what, (0, ""))[1] != dump:
            findings.append(Finding("runner_tampering", str(path), line,
                                    f"{path.name}: {what} added or changed: it can deselect, "
                                    "skip or re-judge tests"))  # fmt: skip
    return findings
