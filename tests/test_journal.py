"""The signal journal: a real writer process behind a real broker (also stopping on
SIGTERM while a flood outruns it), and factoryctl signals."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ipc import bus, journal, signals
from ipc.journal import JournalReader, JournalWriter
from supervisor.ctl import cli
from supervisor.ctl.exit_status import ExitStatus
from tests.helpers.bus import connected, flood
from tests.helpers.processes import ROOT, Processes
from tests.helpers.signal_examples import HASH
from tests.waiting import wait_until


@pytest.fixture
def dirs(runtime: Path, tmp_path: Path) -> tuple[Path, Path]:
    return runtime, tmp_path / "state"


def start_journal(procs: Processes, runtime: Path, state: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "procs.journal.service"]
    argv += ["--runtime-dir", str(runtime), "--state-dir", str(state)]
    proc = procs.start(argv, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    assert '"event":"ready"' in proc.stderr.readline()
    return proc


def ctl(state: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--state-dir", str(state), "signals", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def journal_count(state: Path) -> int:
    path = journal.journal_path(state)
    if not path.exists():
        return 0
    with JournalReader(path) as reader:
        return reader.count()


@pytest.mark.integration
def test_the_writer_stores_every_signal_once_and_counts_bad_ones(
    procs: Processes, dirs: tuple[Path, Path]
) -> None:
    runtime, state = dirs
    procs.broker(runtime)
    writer = start_journal(procs, runtime, state)
    pub, sub = connected(runtime)
    with pub, sub:

        def probe() -> bool:  # handshake: the writer's subscription is in place
            pub.publish(signals.TestPassing(hash=HASH))
            return journal_count(state) > 0

        wait_until(probe, what="a probe in the journal")
        spawned = signals.envelop(signals.LoopSpawned("7", "fs-1", "auditing"), source="t")
        pub.send(spawned)
        pub.send(spawned)  # resent with the same id: stored once
        pub.send_frames([b"LoopFailed", b"not json"])
        for i in range(2000):
            pub.publish(signals.LoopFailed(loop_id=str(i), reason="burst"))
        bus.deliver(pub, sub, signals.PatchRejected(reason="last"), timeout=10)
        wait_until(
            lambda: _types(state)[-1:] == ["PatchRejected"], timeout=30, what="the last signal"
        )
    assert procs.kill(writer, 15) == 0  # SIGTERM: flush and stop cleanly
    with JournalReader(journal.journal_path(state)) as reader:
        rows = [r for r in reader.read() if r.type != "TestPassing"]
        assert rows[0].id == spawned.id and rows[0].fields() == spawned.signal.fields_dict()
        assert [r.body["loop_id"] for r in rows[1:-1]] == [str(i) for i in range(2000)]
        assert reader.count("LoopSpawned") == 1
        assert reader.writer_stats()["malformed"] == 1


@pytest.mark.integration
def test_the_journal_stops_on_sigterm_while_a_flood_outruns_it(
    procs: Processes, dirs: tuple[Path, Path]
) -> None:
    """SIGTERM waited for the journal's drain, which kept taking signals as long as the
    flood kept sending them. The flood here never ends (until the teardown kills it)."""
    runtime, state = dirs
    procs.broker(runtime)
    writer = start_journal(procs, runtime, state)
    flooder = flood(procs, runtime)  # more than the journal stores meanwhile
    wait_until(lambda: journal_count(state) > 10_000, what="the flood in the journal")
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=15) == 0
    assert flooder.poll() is None  # it stopped while the flood was still on


def _types(state: Path) -> list[str]:
    with JournalReader(journal.journal_path(state)) as reader:
        return [r.type for r in reader.read(last=1)]


def seed_journal(state: Path) -> list[signals.Envelope]:
    envelopes = [
        signals.envelop(signals.LoopSpawned("7", "fs-1", "auditing"), source="loop.7"),
        signals.envelop(signals.PatchRejected(reason="red\nsuite", patch_id="p"), source="mq"),
        signals.envelop(signals.LoopFailed(loop_id="7", reason="gave up"), source="loop.7"),
    ]
    writer = JournalWriter(journal.journal_path(state))
    assert writer.append_many(envelopes) == 3
    assert writer.append_many(envelopes[:1]) == 0  # same id: stored once
    writer.close()
    return envelopes


def test_prune_keeps_the_newest_rows(tmp_path: Path) -> None:
    writer = JournalWriter(journal.journal_path(tmp_path))
    envelopes = [
        signals.envelop(signals.LoopFailed(loop_id=str(i), reason="r"), source="t")
        for i in range(10)
    ]
    writer.append_many(envelopes)
    assert writer.prune(3) == 7
    assert writer.prune(3) == 0
    with pytest.raises(ValueError, match="keep_rows must be >= 0"):
        writer.prune(-1)
    writer.close()
    with JournalReader(journal.journal_path(tmp_path)) as reader:
        assert [e.id for e in reader.read()] == [e.id for e in envelopes[-3:]]


def test_factoryctl_signals_lists_filters_and_prints_json(tmp_path: Path) -> None:
    envelopes = seed_journal(tmp_path)
    code, out, _ = ctl(tmp_path)
    assert code == ExitStatus.SUCCESS
    lines = out.splitlines()
    assert [line.split()[2] for line in lines] == ["LoopSpawned", "PatchRejected", "LoopFailed"]
    assert "reason=red\\nsuite" in lines[1]
    code, out, _ = ctl(tmp_path, "--type", "LoopFailed", "--type", "LoopSpawned", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [envelopes[0].id, envelopes[2].id]
    assert rows[1] == {**rows[1], "type": "LoopFailed", "loop_id": "7", "reason": "gave up"}
    code, out, _ = ctl(tmp_path, "-n", "1", "--json")
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["LoopFailed"]


def test_factoryctl_signals_errors(tmp_path: Path) -> None:
    code, _, err = ctl(tmp_path)
    assert code == ExitStatus.NOT_RUNNING and "no signal journal" in err
    seed_journal(tmp_path)
    code, _, err = ctl(tmp_path, "--type", "Nope")
    assert code == ExitStatus.USAGE and "unknown signal type 'Nope'" in err


@pytest.mark.integration
def test_factoryctl_signals_follow_prints_new_signals(tmp_path: Path, procs: Processes) -> None:
    seed_journal(tmp_path)
    writer = JournalWriter(journal.journal_path(tmp_path))
    earlier = signals.envelop(signals.Evolution(hash=HASH, reason="first"), source="gm")
    writer.append_many([earlier])
    argv = [sys.executable, "-m", "supervisor.ctl.cli", "--state-dir", str(tmp_path)]
    argv += ["signals", "--follow", "--for", "60", "--json", "--type", "Evolution", "-n", "1"]
    follower = procs.start(
        argv, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert follower.stdout is not None
    # reads are bounded by pytest-timeout; the first line says it is following
    assert json.loads(follower.stdout.readline())["id"] == earlier.id
    later = signals.envelop(signals.Evolution(hash=HASH, reason="moved"), source="gm")
    writer.append_many([signals.envelop(signals.PatchRejected(reason="x"), source="mq"), later])
    writer.close()
    row = json.loads(follower.stdout.readline())
    assert (row["type"], row["id"], row["reason"]) == ("Evolution", later.id, "moved")
