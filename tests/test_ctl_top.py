"""`factoryctl top`: one frame from data (pure), `--once` with nothing running, and the
live view in a real terminal (tmux, 80x24) over the example factory: it shows the tree
and a loop, tells the operator when factoryd is gone, quits on q and leaves the
terminal as it found it."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ipc import ledger
from supervisor.ctl import cli, top_view
from supervisor.ctl.exit_status import ExitStatus
from supervisor.ctl.top_sources import Snapshot, Source
from tests.harness import ROOT
from tests.helpers.example_factory import runnable_example
from tests.helpers.sandbox import skip_without_bwrap
from tests.test_example_config import BEAD
from tests.waiting import pid_gone, wait_until

NOW = 1_800_000_000.0
TREE = {"id": "factory", "type": "supervisor", "strategy": "one_for_one", "state": "running",
        "children": [
            {"id": "bus", "type": "worker", "state": "running", "pid": 10, "restarts": 0,
             "rss_bytes": 30 << 20, "cpu_s": 0.5},
            {"id": "mutators", "type": "supervisor", "strategy": "simple_one_for_one",
             "state": "running", "children": [
                 {"id": "mutators.1", "type": "worker", "state": "running", "pid": 11,
                  "restarts": 0, "status_text": "testing fix"}]},
        ]}  # fmt: skip
RESOURCES = {"ram_unit_mb": 64, "resources": {
    "loop": {"limit": 4, "in_use": 1, "available": 3, "waiting": 0, "exhausted": 0},
    "mutator": {"limit": 32, "in_use": 1, "available": 31, "waiting": 0, "exhausted": 0},
    "gpu": {"limit": 1, "in_use": 0, "available": 1, "waiting": 2, "exhausted": 0},
    "ram": {"limit": 100, "in_use": 2, "available": 98, "waiting": 0, "exhausted": 0}}}  # fmt: skip
LOOP = {"loop_id": "bd-7.1", "bead": "bd-7", "phase": "green", "iteration": 2, "greens": 1,
        "commits": 1, "reverts": 0, "cost": 0.25, "tokens": 1500, "age_s": 61.0}  # fmt: skip


def snapshot(**overrides: Source) -> Snapshot:
    sources: dict[str, Any] = {
        "factoryd": Source(
            {"daemon": {"pid": 42, "uptime_s": 5.0}, "tree": TREE, "resources": RESOURCES}
        ),
        "loops": Source([LOOP]),
        "queue": Source(
            {
                "entries": [
                    {"position": 1, "patch_id": "p-3", "build": "testing", "key": "bd-7.1"}
                ],
                "counts": {"accepted": 2, "rejected": 1},
                "recent": [],
            }
        ),
        "golden": Source({"state": "red", "since": NOW - 90, "hash": "abc123", "move_count": 3}),
        "signals": Source([(NOW, "TestFailure", "heartbeat", {"hash": "abc123"})]),
        **overrides,
    }
    return Snapshot(taken_at=NOW, **sources)


def draw(renderable: Any, width: int = 80, height: int = 24) -> str:
    out = io.StringIO()
    Console(file=out, width=width, height=height, color_system=None).print(renderable)
    return out.getvalue()


def test_a_frame_in_80x24_shows_every_panel() -> None:
    text = draw(top_view.screen(snapshot(), height=24, interval_s=1.0))
    lines = text.splitlines()
    assert len(lines) == 24 and max(len(line) for line in lines) <= 80
    for title in ("TREE", "RESOURCES", "GOLDEN", "QUEUE", "SWARM", "LOOPS", "SIGNALS"):
        assert title in text, title
    assert "factoryd pid 42" in lines[0]
    assert "RED" in text and "1m30s" in text  # golden red for how long
    assert "bd-7" in text and "$0.25" in text  # a loop with its cost
    assert "1/1 mutators" in text and "TestFailure" in text
    assert "gpu tickets" in text and "ram MB" in text


def test_a_tree_too_tall_for_the_terminal_folds_its_largest_supervisor() -> None:
    services = [{"id": f"svc{i}", "type": "worker", "state": "running", "restarts": 0}
                for i in range(11)]  # fmt: skip
    services[3]["state"] = "failed"
    tree = {**TREE, "children": [*TREE["children"],
            {"id": "services", "type": "supervisor", "state": "running", "children": services},
            {"id": "heartbeat", "type": "worker", "state": "running", "restarts": 2}]}  # fmt: skip
    factoryd = Source({"daemon": {"pid": 42}, "tree": tree, "resources": RESOURCES})
    text = draw(top_view.screen(snapshot(factoryd=factoryd), height=24, interval_s=1.0))
    assert "services" in text and "1 failed 10 running" in text  # one row for eleven
    assert "svc0" not in text and "heartbeat" in text and "mutators.1" in text
    tall = draw(top_view.screen(snapshot(factoryd=factoryd), height=40, interval_s=1.0), height=40)
    assert "svc10" in tall  # room enough: nothing folded


def test_a_loop_without_a_price_shows_the_tokens_the_gateway_counted() -> None:
    loops = Source([{**LOOP, "cost": None}, {**LOOP, "bead": "bd-8", "cost": None,
                                             "tokens": None}])  # fmt: skip
    text = draw(top_view.stacked(snapshot(loops=loops), interval_s=1.0), width=100)
    assert "1.5k tok" in text
    assert [line.split()[-2] for line in text.splitlines() if line.startswith("bd-8")] == ["-"]


def test_a_failing_source_shows_in_its_panel_and_the_rest_still_draw() -> None:
    snap = snapshot(
        queue=Source(error="merge_queue: no answer within 1s"),
        loops=Source(error="no loops database at /x (no loop has run yet)"),
    )
    text = draw(top_view.stacked(snap, interval_s=1.0), width=100)
    assert "unavailable: merge_queue: no answer within 1s" in text
    assert "unavailable: no loops database" in text
    assert "TREE" in text and "bus" in text and "RED" in text


def test_once_with_no_factoryd_says_it_is_gone(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--runtime-dir", str(tmp_path), "--state-dir", str(tmp_path), "top", "--once"]
    code = cli.main(argv, out=out, err=err)
    assert code == ExitStatus.NOT_RUNNING
    assert "factoryd is gone" in out.getvalue()
    assert out.getvalue().count("unavailable:") == 7  # every panel, none crashed


def test_live_top_needs_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end))
    err = io.StringIO()
    code = cli.main(["--runtime-dir", str(tmp_path), "top"], out=io.StringIO(), err=err)
    os.close(write_end)
    assert code == ExitStatus.USAGE and "--once" in err.getvalue()


# -- the live view in tmux -------------------------------------------------------------


def start_example_factory(factoryd: Any, tmp_path: Path, *, extra_toml: str = "") -> Any:
    """The example config over a real small project (as tests/test_example_config.py
    runs it), plus `extra_toml`; returns the started Factoryd with a ready bead written,
    `beads` (the JSONL path) set on it."""
    skip_without_bwrap()  # the example runs every test under bubblewrap
    example = runnable_example(tmp_path)
    d = factoryd(example.text + extra_toml).start()
    wait_until(lambda: d.status()["resources"] is not None, timeout=20,
               what="the governor's ledger")  # fmt: skip
    example.beads.write_text(json.dumps(BEAD) + "\n")  # ready: the dispatcher starts its loop
    d.beads = example.beads
    return d


def _workers(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node["type"] == "worker":
        return [node]
    return [w for c in node["children"] for w in _workers(c)]


class Tmux:
    """A private tmux server (its own socket) with one 80x24 pane running `command`."""

    def __init__(self, tmp: Path, command: str, env: dict[str, str]) -> None:
        self.socket = tmp / "tmux.sock"
        self.env = env
        self.run("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", command)
        self.run("set-option", "-t", "top", "remain-on-exit", "on")

    def run(self, *argv: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *argv], env=self.env, check=True,
                              capture_output=True, text=True, timeout=10).stdout  # fmt: skip

    def screen(self) -> str:
        """What the pane shows now."""
        return self.run("capture-pane", "-p", "-t", "top")

    def scrollback(self) -> str:
        """The pane's history and screen (a dead pane's notice scrolls the screen away)."""
        return self.run("capture-pane", "-p", "-S", "-100", "-t", "top")

    def pane_dead(self) -> bool:
        return self.run("display-message", "-p", "-t", "top", "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], env=self.env,
                       capture_output=True, timeout=10, check=False)  # fmt: skip


def top_in_tmux(tmp: Path, runtime_dir: Path, state_dir: Path) -> Tmux:
    """`factoryctl top` in an 80x24 tmux pane whose shell notes the terminal's modes
    before and after (stty.before, stty.after in `tmp`) and top's exit status."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    ctl = (f"{sys.executable} -m supervisor.ctl.cli --runtime-dir {runtime_dir} "
           f"--state-dir {state_dir} top --interval 0.2")  # fmt: skip
    script = tmp / "pane.sh"
    # An interactive shell outlives the Ctrl-C meant for its foreground job; this one,
    # with a trap (reset to the default in its children, unlike an ignored signal), too.
    script.write_text(f"trap : INT\nstty -g > {tmp}/stty.before\n{ctl}\n"
                      f"echo \"top exited $?\"\nstty -g > {tmp}/stty.after\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    env.pop("TMUX", None)
    return Tmux(tmp, f"sh {script}", env)


def _top_pid(tmux: Tmux) -> int:
    shell = tmux.run("display-message", "-p", "-t", "top", "#{pane_pid}").strip()
    children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
    return int(children[0])


@pytest.mark.integration
@pytest.mark.parametrize("way_out", ["C-c", "SIGTERM", "SIGHUP"])
def test_top_restores_the_terminal_on_every_way_out(way_out: str, tmp_path: Path) -> None:
    """With no factoryd at all: the view says so, and leaves as cleanly as with q."""
    tmux = top_in_tmux(tmp_path, tmp_path / "run", tmp_path / "state")
    try:
        wait_until(lambda: "factoryd is gone" in tmux.screen(), timeout=20,
                   what="top telling the operator factoryd is gone")  # fmt: skip
        if way_out.startswith("SIG"):
            os.kill(_top_pid(tmux), getattr(signal, way_out))
        else:
            tmux.run("send-keys", "-t", "top", way_out)
        wait_until(tmux.pane_dead, timeout=20, what=f"top to exit on {way_out}")
        assert "top exited 0" in tmux.scrollback()
        before_modes = (tmp_path / "stty.before").read_text()
        assert (tmp_path / "stty.after").read_text() == before_modes
    finally:
        tmux.kill()


@pytest.mark.integration
def test_top_in_tmux_shows_the_factory_quits_on_q_and_restores_the_terminal(
    factoryd: Any, tmp_path: Path
) -> None:
    d = start_example_factory(factoryd, tmp_path)
    tmux = top_in_tmux(tmp_path, d.runtime_dir, d.tmp / "state")
    try:

        def tree_and_loop() -> str | None:
            screen = tmux.screen()
            lines = screen.splitlines()
            loops = next((i for i, line in enumerate(lines) if line.startswith("LOOPS")), None)
            if loops is None or "services" not in screen or "heartbeat" not in screen:
                return None
            return screen if lines[loops + 2].startswith("bd-1 ") else None  # under the header

        screen = wait_until(tree_and_loop, timeout=60, what="top showing the tree and a loop")
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines), screen
        assert "factoryd pid" in lines[0] and "LOOPS" in screen and "GOLDEN" in screen, screen

        # Its loop done and its workspace given back, so that killing factoryd leaks none
        wait_until(lambda: json.loads(d.beads.read_text())["status"] == "closed", timeout=100,
                   what="bd-1 closed")  # fmt: skip

        def loop_gone() -> bool:
            status = d.status()
            loops = next(c for c in status["tree"]["children"] if c["id"] == "loops")
            in_use = status["resources"]["resources"]["workspace"]["in_use"]
            return not loops["children"] and in_use == 0

        wait_until(loop_gone, timeout=30, what="the loop and its workspace gone")
        pids = [w["pid"] for w in _workers(d.status()["tree"]) if w.get("pid")]
        d.proc.send_signal(signal.SIGKILL)  # factoryd dies; the view must say so and go on
        d.proc.wait(timeout=10)
        wait_until(lambda: "factoryd is gone" in tmux.screen(), timeout=30,
                   what="top telling the operator factoryd is gone")  # fmt: skip
        for pid in pids:  # its children die with it (PDEATHSIG through the zygote)
            wait_until(lambda pid=pid: pid_gone(pid), timeout=20, what=f"child {pid} gone")

        tmux.run("send-keys", "-t", "top", "q")
        wait_until(tmux.pane_dead, timeout=20, what="top to exit on q")
        after = tmux.scrollback()
        assert "top exited 0" in after, after
        assert "factoryd is gone" not in after  # the alternate screen is gone with it
        before_modes = (tmp_path / "stty.before").read_text()
        assert (tmp_path / "stty.after").read_text() == before_modes  # echo, icanon back
    finally:
        tmux.kill()
        d.stop()
        ledger.destroy(d.runtime_dir)
