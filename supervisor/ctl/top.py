"""A live view of the whole factory: the tree and its resources, loops, the merge queue,
golden, the swarm and the last signals, refreshed every --interval seconds.

CLI:  factoryctl top [--interval 1] [--call-timeout 1] [--once [--width 80]]
Wire: none of its own; each refresh is the calls the other views make, each bounded by
      --call-timeout: factoryd `status` (tree, resources: the ledger), merge_queue.sock
      `queue`, golden.sock `status`; and two read-only reads of the state dir:
      loops.sqlite3 (ipc/loop_records.py) and signals.sqlite3 (ipc/journal.py, the
      journal of the bus).

Keys: q (or Ctrl-C) quits. The terminal is put in cbreak mode (no echo, no line
buffering) and the alternate screen while it runs, and both are restored on every way
out: q, Ctrl-C, SIGTERM, SIGHUP, an error. A source that fails shows its reason in its
panel; while factoryd is gone the top line says so and the view keeps retrying. Plain
colours, no mouse: it works over ssh in 80x24 (smaller panels crop their rows).

--once prints one frame (every panel in full) and exits: for scripts and tests. Exit
status 0; 3 (not running) with --once when factoryd does not answer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from supervisor.ctl.exit_status import ExitStatus

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from rich.console import Console

    from supervisor.ctl.cli import CtlContext
    from supervisor.ctl.top_sources import Snapshot

READS_STATE_DIR = True  # its databases: factoryctl finds them (cli._state_dir)
HELP = "a live view: tree, resources, loops, merge queue, golden, swarm, signals"
QUIT_KEYS = (b"q", b"Q", b"\x03")  # \x03: Ctrl-C arriving as a byte (ISIG off somewhere)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", dest="interval_s", type=float, default=1.0,
                        help="seconds between refreshes (1)")  # fmt: skip
    parser.add_argument("--call-timeout", dest="call_timeout_s", type=float, default=1.0,
                        help="seconds each status call may take (1)")  # fmt: skip
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--width", type=int, default=None,
                        help="columns for --once (default: the terminal's, else 80)")  # fmt: skip


def run(ctx: CtlContext, args: argparse.Namespace) -> ExitStatus:
    for name in ("interval_s", "call_timeout_s"):
        if not 0 < getattr(args, name) < 3600:
            ctx.err.write(f"factoryctl: --{name[:-2].replace('_', '-')} must be in (0, 3600)\n")
            return ExitStatus.USAGE
    call_timeout_s = min(args.call_timeout_s, ctx.timeout_s)
    if args.once:
        return _once(ctx, args, call_timeout_s)
    return _live(ctx, args, call_timeout_s)


def _take(ctx: CtlContext, call_timeout_s: float) -> Snapshot:
    from supervisor.ctl import top_sources  # noqa: PLC0415 - only top needs it

    return top_sources.gather(ctx.runtime_dir, ctx.state_dir, call_timeout_s=call_timeout_s)


def _console(out: TextIO, width: int | None, *, live: bool) -> Console:
    from rich.console import Console  # noqa: PLC0415 - rich is slow to import

    return Console(file=out, width=width, color_system="standard" if live else None,
                   force_terminal=live or None, emoji=False, highlight=False,
                   legacy_windows=False)  # fmt: skip


def _once(ctx: CtlContext, args: argparse.Namespace, call_timeout_s: float) -> ExitStatus:
    from supervisor.ctl import top_view  # noqa: PLC0415

    snap = _take(ctx, call_timeout_s)
    width = args.width or _terminal_width(ctx.out)
    console = _console(ctx.out, width, live=False)
    console.print(top_view.stacked(snap, interval_s=args.interval_s))
    return ExitStatus.NOT_RUNNING if snap.factoryd_gone else ExitStatus.SUCCESS


def _terminal_width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


class _Stop(Exception):
    """SIGTERM or SIGHUP: leave the view the way q does."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _live(ctx: CtlContext, args: argparse.Namespace, call_timeout_s: float) -> ExitStatus:
    from rich.live import Live  # noqa: PLC0415

    from supervisor.ctl import top_view  # noqa: PLC0415

    stdin_fd = sys.stdin.fileno()
    if not os.isatty(stdin_fd):
        ctx.err.write("factoryctl: top needs a terminal on stdin (use --once in scripts)\n")
        return ExitStatus.USAGE
    console = _console(ctx.out, None, live=True)
    refresher = _Refresher(lambda: _take(ctx, call_timeout_s), args.interval_s)
    old_handlers = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        live_view = Live(console=console, screen=True, auto_refresh=False,
                         redirect_stdout=False, redirect_stderr=False)  # fmt: skip
        with _cbreak(stdin_fd), live_view as live:
            for snap in refresher.frames(stdin_fd):
                height = console.size.height
                live.update(top_view.screen(snap, height=height, interval_s=args.interval_s),
                            refresh=True)  # fmt: skip
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        refresher.stop()
        for s, handler in old_handlers.items():
            signal.signal(s, handler)
    return ExitStatus.SUCCESS


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """The terminal at `fd` in cbreak mode (keys one at a time, no echo; Ctrl-C still
    signals) for the block, then exactly as it was, whatever the way out."""
    import termios  # noqa: PLC0415
    import tty  # noqa: PLC0415

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Refresher:
    """Takes snapshots in a thread, so a slow source never delays a key: the view waits
    on stdin and a wake-up pipe together."""

    def __init__(self, take: Callable[[], Snapshot], interval_s: float) -> None:
        self.take = take
        self.interval_s = interval_s
        self.latest: Snapshot | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.thread = threading.Thread(target=self._work, name="top-refresh", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while not self.stopping.is_set():
            snap = self.take()
            with self.lock:
                self.latest = snap
            # a wake-up already pending (BlockingIOError), or the view closed the pipe
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"!")
            self.stopping.wait(self.interval_s)

    def frames(self, stdin_fd: int) -> Iterator[Snapshot]:
        """Each new snapshot as it comes, until a quit key (returns)."""
        while True:
            ready, _, _ = select.select([stdin_fd, self.wake_r], [], [], self.interval_s)
            if stdin_fd in ready:
                keys = os.read(stdin_fd, 64)
                if not keys or any(k in keys for k in QUIT_KEYS):
                    return
            if self.wake_r in ready:
                os.read(self.wake_r, 64)
                with self.lock:
                    snap = self.latest
                if snap is not None:
                    yield snap

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=self.interval_s + 0.1)  # a slow call may outlive this
        os.close(self.wake_r)
        if not self.thread.is_alive():  # else the thread's next write fails and it ends
            os.close(self.wake_w)
