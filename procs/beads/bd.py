"""The beads store through the `bd` CLI (beads >= 1.x keeps issues in Dolt).

    bd ready --json --limit 0                          the ready set (bd's rules; --limit 0:
                                                       bd shows only 100 by default)
    bd blocked --json                                  the blocked beads (for listings)
    bd show ID --json                                  one bead (every read-back)
    bd update ID --claim --actor ACTOR --json          beads' compare-and-swap claim
    bd close ID --reason TEXT --actor ACTOR --json
    bd update ID --status open|blocked --assignee '' --actor ACTOR --json
    bd comments add ID TEXT --author ACTOR             the reason a loop failed

Each call runs with a timeout in its own process group (killed whole on the timeout).
A bd that cannot start, exits non-zero, runs past its timeout or prints what is not the
JSON expected raises BdError naming the command and what went wrong; nothing of ours
changes. bd may report a refused claim on stderr and still exit 0, so every change is
read back with `bd show`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from procs.beads.edits import Refused, describe_stats
from procs.beads.jsonl import StoreError
from procs.beads.ready import Bead, NotABead, Verdict, bead_from_record, dispatch_key
from procs.beads.store import ReadBackFailed, View

DEFAULT_TIMEOUT_S = 30.0
MAX_OUTPUT_BYTES = 64 * 1024 * 1024


class BdError(StoreError):
    """bd failed, hung or printed garbage; the message says which command and how."""


def find_bd(path: str | None = None) -> str | None:
    """The `bd` executable on PATH (or `path`'s PATH), or None."""
    return shutil.which("bd", path=path)


class BdBackend:
    name = "bd"

    def __init__(
        self,
        executable: str = "bd",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.executable = executable
        self.timeout_s = timeout_s
        self.cwd = cwd
        self.calls = 0
        self.failures = 0

    # -- running bd -------------------------------------------------------------------

    def run(self, args: Sequence[str]) -> bytes:
        """bd's stdout. Raises BdError (not found, exit status, timeout)."""
        shown = " ".join(["bd", *args])
        self.calls += 1
        try:
            proc = subprocess.Popen(
                [self.executable, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                start_new_session=True,  # a timeout kills bd and whatever it started
            )
        except OSError as exc:
            self.failures += 1
            raise BdError(f"{shown}: cannot run {self.executable}: {exc.strerror or exc}") from None
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.failures += 1
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise BdError(f"{shown}: no answer after {self.timeout_s}s (killed)") from None
        if proc.returncode != 0:
            self.failures += 1
            tail = err.decode("utf-8", "replace").strip()[-500:] or "(nothing on stderr)"
            raise BdError(f"{shown}: exit status {proc.returncode}: {tail}")
        if len(out) > MAX_OUTPUT_BYTES:
            self.failures += 1
            raise BdError(f"{shown}: printed {len(out)} bytes, more than {MAX_OUTPUT_BYTES}")
        return out

    def run_json(self, args: Sequence[str]) -> Any:
        out = self.run(args)
        try:
            return orjson.loads(out)
        except orjson.JSONDecodeError as exc:
            self.failures += 1
            start = out[:120].decode("utf-8", "replace")
            message = f"bd {' '.join(args)}: printed garbage, not JSON ({exc}): {start!r}"
            raise BdError(message) from None

    def _records(self, args: Sequence[str]) -> list[dict[str, Any]]:
        """A JSON array of issue objects (a single object is taken as one)."""
        data = self.run_json(args)
        items = [data] if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            self.failures += 1
            raise BdError(f"bd {' '.join(args)}: printed JSON that is not a list of issues")
        return items

    def _beads(self, args: Sequence[str]) -> list[tuple[Bead, dict[str, Any]]]:
        out = []
        for record in self._records(args):
            try:
                out.append((bead_from_record(record), record))
            except NotABead as exc:
                self.failures += 1
                raise BdError(f"bd {' '.join(args)}: an entry is not an issue: {exc}") from None
        return out

    # -- the Backend interface ---------------------------------------------------------

    def read(self, *, listing: bool = True) -> View:
        ready = self._beads(["ready", "--json", "--limit", "0"])
        notes: list[str] = []
        held: list[Verdict] = []
        try:
            for bead, record in self._beads(["blocked", "--json"]) if listing else ():
                names = [
                    str(b.get("id") or b.get("depends_on_id") or b)
                    if isinstance(b, dict)
                    else str(b)
                    for b in record.get("blocked_by") or []
                ]  # bd writes ids, or objects with an id
                reason = f"blocked by {', '.join(names)}" if names else "blocked"
                held.append(Verdict(bead, (reason,), True))
        except BdError as exc:  # a listing without the blocked beads, said so
            notes.append(f"blocked beads unknown: {exc}")
        return View(
            source="bd",
            ready=sorted((b for b, _ in ready), key=dispatch_key),
            held=held,
            records={b.id: r for b, r in ready},
            notes=notes,
        )

    def show(self, bead_id: str) -> dict[str, Any]:
        items = self._records(["show", bead_id, "--json"])
        for item in items:
            if item.get("id") == bead_id:
                return item
        raise BdError(f"bd show {bead_id} --json: no issue {bead_id} in its output")

    def holder(self, bead_id: str) -> tuple[str, str]:
        record = self.show(bead_id)
        return str(record.get("status") or "open"), str(record.get("assignee") or "")

    def _read_back(self, bead_id: str, want: tuple[str, str], what: str) -> dict[str, Any]:
        record = self.show(bead_id)
        got = (str(record.get("status") or "open"), str(record.get("assignee") or ""))
        if got != want:
            raise ReadBackFailed(
                f"bd {what} {bead_id}: reads back {got[0]}/{got[1] or 'unassigned'}, "
                f"not {want[0]}/{want[1] or 'unassigned'}"
            )
        return record

    def claim(self, bead_id: str, actor: str) -> Mapping[str, Any]:
        status, holder = self.holder(bead_id)
        if status == "in_progress" and holder == actor:
            return self.show(bead_id)
        if status != "open" or (holder and holder != actor):
            raise Refused(f"{bead_id} is {status}, assigned to {holder or 'nobody'}")
        try:
            self.run(["update", bead_id, "--claim", "--actor", actor, "--json"])
        except BdError:
            # bd exits 1 when the claim lost the race: say so if the bead shows it
            status, holder = self.holder(bead_id)
            if holder and holder != actor:
                raise Refused(f"{bead_id} was claimed by {holder}") from None
            raise
        return self._read_back(bead_id, ("in_progress", actor), "update --claim")

    def close(
        self, bead_id: str, actor: str, reason: str, stats: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        self._check_held(bead_id, actor)
        text = reason if not stats else f"{reason} ({describe_stats(stats)})"
        self.run(["close", bead_id, "--reason", text, "--actor", actor, "--json"])
        return self._read_back(bead_id, ("closed", actor), "close")

    def fail(
        self, bead_id: str, actor: str, reason: str, attempt: int, max_attempts: int
    ) -> Mapping[str, Any]:
        self._check_held(bead_id, actor)
        status = "blocked" if attempt >= max_attempts else "open"
        text = f"factory: attempt {attempt} of {max_attempts} failed: {reason}" + (
            "; blocked after the last attempt" if status == "blocked" else ""
        )
        args = ["update", bead_id, "--status", status, "--assignee", "", "--actor", actor]
        self.run([*args, "--json"])
        record = self._read_back(bead_id, (status, ""), "update --status")
        self.run(["comments", "add", bead_id, text, "--author", actor])
        return record

    def release(self, bead_id: str, actor: str) -> Mapping[str, Any]:
        self._check_held(bead_id, actor)
        args = ["update", bead_id, "--status", "open", "--assignee", "", "--actor", actor]
        self.run([*args, "--json"])
        return self._read_back(bead_id, ("open", ""), "update --status")

    def _check_held(self, bead_id: str, actor: str) -> None:
        status, holder = self.holder(bead_id)
        if status != "in_progress" or holder != actor:
            raise Refused(
                f"{bead_id} is {status} and assigned to {holder or 'nobody'}, not held by {actor}"
            )

    def statistics(self) -> dict[str, int]:
        return {"bd_calls": self.calls, "bd_failures": self.failures}
