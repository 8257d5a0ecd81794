"""empty_catch and ignored_errors: handlers that make an error vanish, told apart from the
idioms that handle one by doing nothing on purpose.

The cheat swallows the error the code under test raises (NotImplementedError from the
part not built, the domain error a test provokes) so the call returns as if it had
worked. What honest code swallows is different in kind, and that is what is judged:

    - the error says "already so": a file or process already gone, a directory already
      there, Ctrl-C, a cancelled task, an empty queue (MISSING_OK): always honest;
    - best-effort release: the try body only closes, unlinks, kills, joins, flushes,
      deletes or imports (an optional dependency), catching the OS or lookup error that
      release raises; or any narrow handler in cleanup code (a finally or except block,
      __exit__, __del__, close, cleanup, shutdown, ...);
    - a fallback: the try has an else block, or its body returns/breaks/continues and
      the code after it is the fallback, or it rebinds a name set before it (a default),
      for environment and parse errors (OSError, ValueError, KeyError, decode errors);
      never for programming errors (NotImplementedError, NameError, AttributeError...).
    - broad handlers (bare, Exception, BaseException) are honest only where they
      re-raise, carry the exception on, or are an isolation boundary that records the
      traceback (traceback.print_exc, log.exception, exc_info=, handleError) inside a
      loop over items, a process or thread entry point (main, run, serve, emit, ...) or
      turning it into a failure status (return 1, result = 1, False).
contextlib.suppress(...) is judged as the handler it stands for.
"""

from __future__ import annotations

import ast
import re

from procs.gauntlet._astkit import dotted
from procs.gauntlet._model import Finding

_BROAD = frozenset({"Exception", "BaseException", "AssertionError", "builtins.Exception",
                    "builtins.BaseException"})  # fmt: skip
_MISSING_OK = frozenset({
    "FileNotFoundError", "FileExistsError", "ProcessLookupError", "ChildProcessError",
    "NotADirectoryError", "IsADirectoryError", "KeyboardInterrupt", "CancelledError",
    "Empty", "Full", "QueueEmpty", "QueueFull", "BrokenPipeError", "InterruptedError",
    "BlockingIOError", "NoSuchProcess", "ZombieProcess", "GeneratorExit",
})  # fmt: skip
_ENVIRONMENT = frozenset({
    "OSError", "IOError", "EnvironmentError", "PermissionError", "ConnectionError",
    "ConnectionResetError", "ConnectionAbortedError", "ConnectionRefusedError", "TimeoutError",
    "error", "timeout", "TimeoutExpired", "ImportError", "ModuleNotFoundError", "AccessDenied",
    "KeyError", "IndexError", "LookupError", "ValueError", "UnicodeError",
    "UnicodeDecodeError", "UnicodeEncodeError", "JSONDecodeError", "DecodeError",
    "TOMLDecodeError", "ParseError", "InvalidOperation", "OverflowError", "StopIteration",
    "StopAsyncIteration", "UnsupportedOperation", "Error", "gaierror", "herror", "URLError",
    "HTTPError", "RemoteDisconnected", "IncompleteRead", "SSLError", "RequestException",
})  # fmt: skip
_RELEASE = frozenset({
    "close", "aclose", "unlink", "remove", "rmdir", "rmtree", "removedirs", "kill", "killpg",
    "terminate", "send_signal", "wait", "waitpid", "join", "cancel", "shutdown", "release",
    "unregister", "disconnect", "detach", "stop", "cleanup", "delete", "discard", "pop",
    "clear", "unmount", "umount", "flush", "fsync", "dispose", "unlock", "mkdir",
    "makedirs", "symlink", "unsetenv", "set_wakeup_fd", "signal", "cancel_join_thread",
    "close_fds", "closerange", "wait_closed", "reap", "unsubscribe", "setsockopt", "setpgid",
    "set_blocking", "setblocking",
})  # fmt: skip
_PROGRAMMING = frozenset({
    "NotImplementedError", "RuntimeError", "AssertionError", "NameError", "AttributeError",
    "TypeError", "RecursionError", "SystemError", "UnboundLocalError", "ZeroDivisionError",
    "ArithmeticError", "Exception", "BaseException", "SystemExit", "?",
})  # fmt: skip
# Modules whose calls are operations on the OS: best-effort when they fail with OSError.
_OS_MODULES = frozenset({"os", "shutil", "signal", "fcntl", "resource", "termios", "socket",
                         "select", "ctypes", "mmap", "pty", "tty", "posix", "urllib", "http",
                         "ssl", "requests", "httpx"})  # fmt: skip
# A write to a socket, pipe or stream that may be gone (not a project's own `send`).
_CHANNEL_SEND = re.compile(
    r"(sock|socket|conn|connection|pipe|chan|channel|stream|writer|"
    r"transport)\w*\.(send|sendall|sendmsg|sendto|write)$",
    re.IGNORECASE,
)
_CLEANUP = re.compile(r"^__(exit|aexit|del)__$|(^|_)(close|aclose|cleanup|clean_up|teardown|"
                      r"tear_down|shutdown|stop|dispose|release|reap|kill|terminate|destroy|"
                      r"remove|delete|unlink|finali[sz]e|drop|exit|unmount|umount|disconnect|"
                      r"detach|cancel|free|restore|reset|end|unlock|unregister|unsubscribe)",
                      re.IGNORECASE)  # fmt: skip
# Where a process, thread or callback begins: an error there has nowhere else to go.
_BOUNDARY = re.compile(r"^_*(main|run|serve|serve_forever|run_forever|worker|emit|target|"
                       r"child|mainloop|preload|handle_error|excepthook)$|"
                       r"_(main|loop|worker|thread|forever)$", re.IGNORECASE)  # fmt: skip
_TRACEBACK = re.compile(r"(^|\.)(print_exc|print_exception|format_exc|format_exception|"
                        r"exception|handleError|excepthook|print_tb|extract_tb)$")  # fmt: skip
_REPORTERS = re.compile(r"(^|\.)(print|debug|info|warning|warn|error|exception|critical|log)$")


class Context:
    """Where a node sits: its parent, so enclosing functions, loops and finally blocks
    can be found."""

    def __init__(self, tree: ast.Module) -> None:
        self.parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}

    def function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        parent = self.parents.get(id(node))
        while parent is not None:
            if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
                return parent
            parent = self.parents.get(id(parent))
        return None

    def in_loop(self, node: ast.AST) -> bool:
        parent = self.parents.get(id(node))
        while parent is not None and not isinstance(
            parent, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
        ):
            if isinstance(parent, ast.For | ast.AsyncFor | ast.While):
                return True
            parent = self.parents.get(id(parent))
        return False

    def in_cleanup(self, node: ast.AST) -> bool:
        """In a finally or except block, or in a function whose name says it releases."""
        child, parent = node, self.parents.get(id(node))
        while parent is not None and not isinstance(parent, ast.FunctionDef
                                                    | ast.AsyncFunctionDef):  # fmt: skip
            finally_block = isinstance(parent, ast.Try | ast.TryStar) and any(
                child is s for s in parent.finalbody)  # fmt: skip
            if finally_block:
                return True
            if isinstance(parent, ast.ExceptHandler):
                return True
            child, parent = parent, self.parents.get(id(parent))
        function = self.function(node)
        return function is not None and bool(_CLEANUP.search(function.name))


# A project's own exception whose name says "already so" (SemaphoreGone, NotFound,
# QueueEmpty, AlreadyClosed) or "not now" (Busy, RequestRefused, TryAgain): as much a
# missing-ok as FileNotFoundError, or a retry left to the next call.
_ALREADY_SO = re.compile(
    r"(Gone|NotFound|DoesNotExist|Missing|AlreadyExists|Exists|Closed|"
    r"Empty|Cancelled|Canceled|Removed|Dead|Exited|Finished|"
    r"Busy|Refused|Again|WouldBlock|Unavailable)(Error)?$"
)


def _missing_ok(caught: set[str]) -> bool:
    return all(name in _MISSING_OK or _ALREADY_SO.search(name) for name in caught)


def _caught(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"BaseException"}
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {dotted(t).rsplit(".", 1)[-1] if dotted(t) else "?" for t in types}


def _releases(body: list[ast.stmt], handles: frozenset[str] = frozenset()) -> bool:
    """Every statement of `body` releases, deletes or imports something, or is a
    best-effort OS or network call (on a handle such a call opened: `with urlopen(r) as
    response: response.read()`)."""
    for statement in body:
        if isinstance(statement, ast.Delete | ast.Import | ast.ImportFrom | ast.Pass):
            continue
        if isinstance(statement, ast.With | ast.AsyncWith):
            calls = [i.context_expr for i in statement.items]
            opened = {i.optional_vars.id for i in statement.items
                      if isinstance(i.optional_vars, ast.Name)}  # fmt: skip
            if all(isinstance(c, ast.Call) and dotted(c.func).split(".")[0] in _OS_MODULES
                   for c in calls) and _releases(statement.body, handles | opened):  # fmt: skip
                continue
            return False
        value = statement.value if isinstance(statement, ast.Expr | ast.Assign) else None
        if isinstance(value, ast.Await):
            value = value.value
            if isinstance(value, ast.Name | ast.Attribute):
                continue  # awaiting a task just cancelled
        if isinstance(value, ast.Call) and (
            dotted(value.func).rsplit(".", 1)[-1] in _RELEASE
            or dotted(value.func).split(".")[0] in _OS_MODULES | handles
            or _CHANNEL_SEND.search(dotted(value.func))
        ):
            continue
        return False
    return True


def _exits(body: list[ast.stmt]) -> bool:
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Return | ast.Break | ast.Continue | ast.Raise):
                return True
    return False


def _bound(nodes: list[ast.stmt]) -> set[str]:
    return {n.id for s in nodes for n in ast.walk(s)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}  # fmt: skip


Guarded = ast.Try | ast.TryStar | ast.With | ast.AsyncWith


def _block_of(node: ast.AST, ctx: Context) -> list[ast.stmt] | None:
    parent = ctx.parents.get(id(node))
    for field in ("body", "orelse", "finalbody", "handlers"):
        block = getattr(parent, field, None)
        if isinstance(block, list) and any(s is node for s in block):
            return block
    return None


def _after(node: ast.stmt, ctx: Context) -> list[ast.stmt]:
    """The statements that run after `node` when it completes: the rest of its block, or
    of the enclosing if/with/try block's, up to the enclosing loop or function."""
    parent = ctx.parents.get(id(node))
    block = _block_of(node, ctx)
    if block is None:
        return []
    index = next(i for i, s in enumerate(block) if s is node)
    rest = block[index + 1 :]
    if rest or not isinstance(parent, ast.If | ast.With | ast.AsyncWith | ast.Try | ast.TryStar):
        return rest
    return _after(parent, ctx)


def _fallback(try_node: Guarded, ctx: Context) -> bool:
    """The failure takes another path than success: an else block that does something,
    or a body that leaves (return/break/continue) with code after the try that is not a
    copy of it."""
    if isinstance(try_node, ast.Try | ast.TryStar) and try_node.orelse \
            and not all(isinstance(s, ast.Pass) for s in try_node.orelse):  # fmt: skip
        return True
    after = _after(try_node, ctx)
    if _exits(try_node.body) and after:
        copies = {ast.dump(n) for s in try_node.body for n in ast.walk(s)
                  if isinstance(n, ast.stmt)}  # fmt: skip
        return ast.dump(after[0]) not in copies
    return False


def _default_kept(try_node: Guarded, ctx: Context) -> bool:
    """The body rebinds a name that was set before it: the failure keeps the default."""
    block = _block_of(try_node, ctx)
    if block is None:
        return False
    index = next(i for i, s in enumerate(block) if s is try_node)
    return bool(_bound(try_node.body) & _bound(block[:index]))


def _empty_is_honest(caught: set[str], try_node: Guarded, ctx: Context) -> bool:
    if caught & _PROGRAMMING:
        return False
    if _missing_ok(caught):
        return True
    if caught <= _MISSING_OK | _ENVIRONMENT and (
        _releases(try_node.body) or ctx.in_loop(try_node) or _default_kept(try_node, ctx)
    ):
        return True
    return ctx.in_cleanup(try_node) or _fallback(try_node, ctx)


def _records_traceback(handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(handler):
        if isinstance(node, ast.Call) and (
            _TRACEBACK.search(dotted(node.func)) or any(k.arg == "exc_info" for k in node.keywords)
        ):
            return True
    return False


def _fails(handler: ast.ExceptHandler) -> bool:
    """The handler turns the error into a failure status: return/assign a non-zero int or
    False, or exit non-zero."""
    for node in ast.walk(handler):
        value = None
        if isinstance(node, ast.Return | ast.Assign):
            value = node.value
        elif isinstance(node, ast.Call) and dotted(node.func) in ("sys.exit", "os._exit", "exit"):
            value = node.args[0] if node.args else None
        if isinstance(value, ast.Constant) and (
            value.value is False
            or (isinstance(value.value, int) and not isinstance(value.value, bool)
                and value.value != 0)
        ):  # fmt: skip
            return True
    return False


def _carried(handler: ast.ExceptHandler) -> bool:
    """The caught exception is carried on (returned, stored, passed to code that is not
    a log or print call): the error is turned into a result, not dropped."""
    if not handler.name:
        return False
    reported: set[int] = set()
    for node in ast.walk(handler):
        if isinstance(node, ast.Call) and _REPORTERS.search(dotted(node.func)):
            reported |= {id(n) for n in ast.walk(node)}
    discarded = {id(t) for n in ast.walk(handler) if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and t.id == "_"}  # fmt: skip
    discarded |= {id(n.value) for n in ast.walk(handler) if isinstance(n, ast.Assign)
                  and any(id(t) in discarded for t in n.targets)}  # fmt: skip
    return any(isinstance(n, ast.Name) and n.id == handler.name and isinstance(n.ctx, ast.Load)
               and id(n) not in reported and id(n) not in discarded
               for n in ast.walk(handler))  # fmt: skip


def _broad_is_honest(handler: ast.ExceptHandler, try_node: ast.Try | ast.TryStar,
                     ctx: Context) -> bool:  # fmt: skip
    if any(isinstance(n, ast.Raise) for n in ast.walk(handler)) or _carried(handler):
        return True
    if ctx.in_cleanup(try_node) and _releases(try_node.body):
        return True
    if not _records_traceback(handler):
        return False
    function = ctx.function(try_node)
    boundary = function is not None and bool(_BOUNDARY.search(function.name))
    return _fails(handler) or ctx.in_loop(try_node) or boundary


def handler_findings(path: str, tree: ast.Module, added: frozenset[int],
                     ctx: Context) -> list[Finding]:  # fmt: skip
    """empty_catch / ignored_errors on the added handlers, suppress() and finally blocks."""
    findings: list[Finding] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Try | ast.TryStar):
            findings += _finally_exits(path, node, added)
            for handler in node.handlers:
                if handler.lineno in added:
                    findings += _handler(path, handler, node, ctx)
        elif isinstance(node, ast.With | ast.AsyncWith) and node.lineno in added:
            findings += _suppress(path, node, ctx)
    return findings


def _handler(path: str, handler: ast.ExceptHandler, try_node: ast.Try | ast.TryStar,
             ctx: Context) -> list[Finding]:  # fmt: skip
    caught = _caught(handler)
    what = "a bare except" if handler.type is None else f"except {ast.unparse(handler.type)}"
    broad = handler.type is None or bool(caught & {n.rsplit(".", 1)[-1] for n in _BROAD})
    empty = all(
        isinstance(s, ast.Pass)
        or (
            isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant | ast.Name | ast.Attribute)
        )
        or (isinstance(s, ast.Delete) and all(isinstance(t, ast.Name) for t in s.targets))
        for s in handler.body
    )  # `pass`, `...`, a string, `exc`, `del exc`: nothing done
    findings = []
    if empty and not (not broad and _empty_is_honest(caught, try_node, ctx)) \
            and not (broad and ctx.in_cleanup(try_node) and _releases(try_node.body)):  # fmt: skip
        findings.append(Finding("empty_catch", path, handler.lineno,
                                f"{what} whose body does nothing: the error vanishes; handle "
                                "it or let it propagate"))  # fmt: skip
    if broad and not _broad_is_honest(handler, try_node, ctx):
        findings.append(Finding("ignored_errors", path, handler.lineno,
                                f"{what} swallows every error without re-raising; catch the "
                                "specific exception you can handle"))  # fmt: skip
    return findings


def _suppress(path: str, node: ast.With | ast.AsyncWith, ctx: Context) -> list[Finding]:
    findings = []
    for item in node.items:
        call = item.context_expr
        if not (isinstance(call, ast.Call) and dotted(call.func).endswith("suppress")):
            continue
        caught = {dotted(a).rsplit(".", 1)[-1] or "?" for a in call.args}
        broad = not call.args or bool(caught & {n.rsplit(".", 1)[-1] for n in _BROAD})
        release = ctx.in_cleanup(node) and _releases(node.body)
        if broad and not release:
            findings.append(Finding("ignored_errors", path, node.lineno,
                                    f"{ast.unparse(call)} swallows every error"))  # fmt: skip
        elif not broad and not _empty_is_honest(caught, node, ctx):
            findings.append(Finding("empty_catch", path, node.lineno,
                                    f"{ast.unparse(call)} makes {', '.join(sorted(caught))} "
                                    "vanish around code that is not a release or a fallback: "
                                    "handle it or let it propagate"))  # fmt: skip
    return findings


def _finally_exits(path: str, node: ast.Try | ast.TryStar, added: frozenset[int]
                   ) -> list[Finding]:  # fmt: skip
    """return/break/continue in a finally block drops whatever exception was raised."""
    for child in _walk_here(node.finalbody):
        if isinstance(child, ast.Return | ast.Break | ast.Continue) and child.lineno in added:
            return [Finding("ignored_errors", path, child.lineno,
                            f"{type(child).__name__.lower()} inside finally discards any "
                            "exception raised in the try block")]  # fmt: skip
    return []


def _walk_here(body: list[ast.stmt]) -> list[ast.AST]:
    """The nodes of a finally block that leave it: not inside functions, lambdas or
    classes defined in it (their return is theirs), and no break/continue of a loop that
    is itself inside the block."""
    out: list[ast.AST] = []
    stack: list[tuple[ast.AST, bool]] = [(s, False) for s in body]
    while stack:
        node, in_loop = stack.pop()
        if in_loop and isinstance(node, ast.Break | ast.Continue):
            continue
        out.append(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        loop = in_loop or isinstance(node, ast.For | ast.AsyncFor | ast.While)
        stack += [(child, loop) for child in ast.iter_child_nodes(node)]
    return out
