"""The demo's red golden, fixed by the swarm: driven and followed from outside, as an
operator would see it.

Once the beads have landed, a teammate pushes three commits to golden's upstream (one
breaks golden: procs/demo/red_session.py). Nothing else is staged: golden refreshes from
its upstream, the heartbeat runs the suite on the move and says TestFailure, the synapse
bisects the commits to the culprit and starts its mutators, each asks the router's
`mutator` role (the recorded fix model), tests its diff and proposes it to the merge
queue, the first fix lands, the synapse stops the rest, and golden is green again.

`poll()` reads golden's `status`, the synapse's `status` and factoryd's tree (the
`mutators` supervisor), once each, and returns a line for each step seen; `done` once
golden is green on the fix, the generation is done and no mutator runs. `summary()` is
the episode for the demo's end: culprit, mutators spawned, the fix, how long golden was
red; `ok` says whether it went as it must (the culprit named, exactly one fix on golden,
green, no mutator left).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import control, paths
from procs.demo.project import DemoError, git
from procs.demo.red_session import TEAMMATE

CALL_TIMEOUT_S = 5.0
FIX_PREFIX = "synapse: fix"


@dataclass
class RedEpisode:
    golden: Path
    upstream: Path
    teammate: Path  # the teammate's clone (made here)
    runtime: Path
    stamp: Callable[[], str]
    pushed: list[str] = field(default_factory=list)
    tip: str = ""
    red_since: float | None = None  # golden's `since` (epoch s)
    green_since: float | None = None
    failed_test: str = ""
    generation: dict[str, Any] = field(default_factory=dict)
    mutators_seen: set[str] = field(default_factory=set)
    mutators_live: int = -1
    fix: str = ""
    done: bool = False
    _said: set[str] = field(default_factory=set)

    # -- driving ------------------------------------------------------------------------

    def push_when_synced(self) -> list[str]:
        """Once golden's upstream has what landed (golden pushes on its refresh), the
        teammate clones it, commits and pushes. Returns the progress lines (none yet)."""
        if self.pushed:
            return []
        head = git(self.golden, "rev-parse", "main").strip()
        if git(self.upstream, "rev-parse", "main").strip() != head:
            return []
        git(self.golden.parent, "clone", "-q", str(self.upstream), str(self.teammate))
        for message, files in TEAMMATE:
            for relpath, text in files.items():
                (self.teammate / relpath).write_text(text)
            git(self.teammate, "commit", "-qam", message)
            self.pushed.append(git(self.teammate, "rev-parse", "HEAD").strip())
        git(self.teammate, "push", "-q", "origin", "main")
        self.tip = self.pushed[-1]
        return [f"{self.stamp()} a teammate pushes {len(self.pushed)} commits to golden's "
                "upstream; one of them breaks words() (which one is for the synapse to "
                "find)"]  # fmt: skip

    # -- following ------------------------------------------------------------------------

    def poll(self) -> list[str]:
        lines = self.push_when_synced()
        if not self.pushed or self.done:
            return lines
        golden = self._call("golden", "status")
        if golden is not None:
            lines += self._golden(golden)
        synapse = self._call("synapse", "status")
        if synapse is not None:
            lines += self._synapse(synapse)
        tree = self._call("factoryd", "status")
        if tree is not None:
            lines += self._mutators(tree)
        if (self.green_since is not None and self.generation.get("state") == "done"
                and self.mutators_live == 0):  # fmt: skip
            self.done = True
        return lines

    def _call(self, endpoint: str, command: str) -> dict[str, Any] | None:
        with contextlib.suppress(control.ControlError):
            result = control.call(paths.control_socket(self.runtime, endpoint), command, {},
                                  timeout=CALL_TIMEOUT_S)  # fmt: skip
            return result if isinstance(result, dict) else None
        return None  # busy or restarting: ask again next time

    def _once(self, key: str, line: str) -> list[str]:
        if key in self._said:
            return []
        self._said.add(key)
        return [f"{self.stamp()} {line}"]

    def _golden(self, status: dict[str, Any]) -> list[str]:
        head, state = str(status.get("hash") or ""), str(status.get("state") or "")
        failure = status.get("last_failure") or {}
        lines: list[str] = []
        if head == self.tip:
            moved = f"golden refreshed from its upstream: now at {head[:10]}"
            lines += self._once("moved", f"{moved} ({len(self.pushed)} new commits)")
            if state == "red":
                self.red_since = self.red_since or _float(status.get("since"))
                self.failed_test = _failed_test(str(failure.get("output") or ""))
                lines += self._once("red", f"golden is RED at {head[:10]}: "
                                           f"{self.failed_test or 'the suite fails'}")  # fmt: skip
            return lines
        if self.red_since is None and failure.get("hash") == self.tip and self.tip:
            # red and fixed between two looks: golden's record of the red verdict says when
            self.red_since = _float(failure.get("at"))
            self.failed_test = _failed_test(str(failure.get("output") or ""))
        if state == "green" and self.red_since is not None and self._descends(head):
            self.fix = head
            self.green_since = self.green_since or _float(status.get("since"))
            lines += self._once("green", f"golden is green again at {head[:10]}: "
                                         f"{self._subject(head)}")  # fmt: skip
        return lines

    def _descends(self, head: str) -> bool:
        with contextlib.suppress(DemoError):
            git(self.golden, "merge-base", "--is-ancestor", self.tip, head)
            return head != self.tip
        return False

    def _synapse(self, status: dict[str, Any]) -> list[str]:
        ours = [g for g in status.get("generations") or [] if g.get("context_hash") == self.tip]
        if not ours:
            return []
        gen = self.generation = ours[-1]  # newest first: the first one made for this red
        lines: list[str] = self._once("generation", f"synapse: generation {gen['id']} for "
                                                    "the red commit; bisecting")  # fmt: skip
        if gen.get("state") != "bisecting":
            lines += self._once("culprit", self._culprit_line(gen))
        if int(gen.get("size") or 0) > 0:
            lines += self._once("swarm", f"synapse: {gen['size']} mutators race to fix it "
                                         "(each asks the router's mutator role: the "
                                         "RECORDED fix model)")  # fmt: skip
        if gen.get("state") == "done":
            lines += self._once("gen-done", f"synapse: generation ended ({gen.get('ended')}; "
                                            f"stop {gen.get('stop_ms')} ms)")  # fmt: skip
        return lines

    def _culprit_line(self, gen: dict[str, Any]) -> str:
        bisect, culprit = gen.get("bisect") or {}, str(gen.get("culprit") or "")
        how = (f"{gen.get('suspects')} suspects, {bisect.get('rounds')} rounds, "
               f"{bisect.get('workers')} at once, {bisect.get('ms')} ms")  # fmt: skip
        if not culprit:
            return f"synapse: no culprit named ({how}): {bisect.get('error') or '-'}"
        return f'synapse: culprit {culprit[:10]} "{self._subject(culprit)}" ({how})'

    def _subject(self, commit: str) -> str:
        with contextlib.suppress(DemoError):
            return git(self.golden, "log", "-1", "--format=%s", commit).strip()
        return "?"

    def _mutators(self, status: dict[str, Any]) -> list[str]:
        node = _find(status.get("tree") or {}, "mutators")
        if node is None:
            return []
        running = [str(c["id"]) for c in node.get("children", []) if c.get("state") == "running"]
        before = self.mutators_live
        self.mutators_seen.update(running)
        self.mutators_live = len(running)
        if before > 0 and not running and self.generation.get("size"):
            return self._once("mutators-gone", "every mutator is gone")
        return []

    # -- the end --------------------------------------------------------------------------

    def summary(self, factoryd_log: Path, decisions: list[dict[str, Any]]
                ) -> tuple[list[str], bool]:  # fmt: skip
        """The episode's lines for the demo's end, and whether it went as it must.
        `decisions`: the merge queue's decisions seen (for the mutators stopped before
        they heard theirs)."""
        gen = self.generation
        culprit = str(gen.get("culprit") or "")
        expected = self.pushed[1] if len(self.pushed) > 1 else ""
        fixes = self._fixes_on_golden()
        lines = ["", "red golden (a teammate's commit), fixed by the swarm:"]
        if not self.pushed:
            return [*lines, "  never pushed: golden's upstream never had what landed"], False
        lines.append(f"  pushed: {', '.join(c[:10] for c in self.pushed)} (to golden's upstream)")
        lines.append(f"  red at {self.tip[:10]}: {self.failed_test or 'never seen red'}")
        bisect = gen.get("bisect") or {}
        lines.append(f"  culprit: {culprit[:10] or 'none named'} \"{self._subject(culprit)}\" "
                     f"(bisected {gen.get('suspects', 0)} suspects in "
                     f"{bisect.get('rounds', 0)} rounds, {bisect.get('runs', 0)} runs)"
                     if culprit else "  culprit: none named")  # fmt: skip
        outcomes = mutator_outcomes(factoryd_log, str(gen.get("id") or "-"))
        for decision in decisions:  # the queue's word for a mutator stopped before it heard
            key = str(decision.get("key") or "")
            prefix = f"{gen.get('group')}-"
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                outcomes[int(key[len(prefix) :])] = _decided(decision)
        spawned, live = len(gen.get("children") or []), max(self.mutators_live, 0)
        lines.append(f"  mutators spawned: {spawned} (swarm size {gen.get('size', 0)}); "
                     f"still running: {live}")  # fmt: skip
        for variant, outcome in sorted(outcomes.items()):
            lines.append(f"    variant {variant}: {outcome}")
        red_s = None
        if self.green_since is not None and self.red_since is not None:
            red_s = self.green_since - self.red_since
        lines.append(f"  fix: {self.fix[:10] or 'none'} "
                     f"\"{self._subject(self.fix) if self.fix else '-'}\"; "
                     f"fixes on golden: {len(fixes)}")  # fmt: skip
        lines.append(f"  golden red for {red_s:.1f} s (first red verdict to the fix landing)"
                     if red_s is not None else "  golden is still red")  # fmt: skip
        ok = (bool(culprit) and culprit == expected and len(fixes) == 1 and self.done
              and self.mutators_live == 0)  # fmt: skip
        return lines, ok

    def _fixes_on_golden(self) -> list[str]:
        if not self.tip:
            return []
        with contextlib.suppress(DemoError):
            out = git(self.golden, "log", "--format=%H %s", f"{self.tip}..main")
            return [line.split()[0] for line in out.splitlines()
                    if line.split(" ", 1)[1].startswith(FIX_PREFIX)]  # fmt: skip
        return []


def mutator_outcomes(factoryd_log: Path, generation: str) -> dict[int, str]:
    """Each mutator's last word in factoryd's log (its JSON records on stderr): gave up
    at which step, or the merge queue's decision. A mutator stopped first says nothing:
    'stopped'. Variants count from 0, as the mutators' --variant and commits do."""
    out: dict[int, str] = {}
    try:
        text = factoryd_log.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        start = line.find("{")
        if start < 0 or generation not in line:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("generation") != generation:
            continue
        variant, event = record.get("variant"), record.get("event")
        if not isinstance(variant, int):
            continue
        if event == "asking":
            out.setdefault(variant, "stopped (by the synapse, before it had an answer)")
        elif event == "proposed":
            out[variant] = "proposed a fix; stopped before the queue decided"
        elif event == "gave_up":
            reason = str(record.get("reason"))
            reason = "still red with its diff" if reason.startswith("still red") else reason
            out[variant] = f"gave up at {record.get('step')}: {reason[:70]}"
        elif event == "decided":
            out[variant] = _decided(record)
    return out


def _decided(decision: dict[str, Any]) -> str:
    """A merge queue decision (or a mutator's record of it) in a few words."""
    state, why = decision.get("state"), decision.get("reason") or ""
    if state == "accepted":
        return f"its fix landed as {str(decision.get('landed_hash') or '')[:10]}"
    detail = f": {decision['detail']}" if decision.get("detail") else ""
    return f"its fix was {state} ({why}{detail})"


def _failed_test(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("FAILED "):
            return line[len("FAILED ") :].split(" - ")[0]
    return ""


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _find(node: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    if node.get("id") == node_id:
        return node
    for child in node.get("children", []):
        if (found := _find(child, node_id)) is not None:
            return found
    return None
