"""One signal of each type, a good LoopFailed body, and one-change mutations of frames:
the examples the signal, codec and batch tests share."""

from __future__ import annotations

from typing import Any

import orjson

from ipc import signals
from ipc.signals import Envelope

HASH = "0123456789abcdef0123456789abcdef01234567"

EXAMPLES: list[signals.Signal] = [
    signals.TestFailure(file="tests/test_x.py", error="AssertionError", context_hash=HASH),
    signals.TestPassing(hash=HASH),
    signals.BeadAssigned(task_id="fs-031", spec="slots", requirements="- ok", priority="P1"),
    signals.PatchProposed(patch_id="p1", base_hash=HASH, diff="--- a\n+++ b\n", workspace="/w"),
    signals.PatchAccepted(hash=HASH, patch_id="p1"),
    signals.PatchRejected(reason="suite failed", patch_id="p2"),
    signals.GoldenMasterUpdated(hash=HASH, previous_hash=None),
    signals.Evolution(hash=HASH, reason="golden master moved"),
    signals.LoopSpawned(loop_id="7", task_id="fs-031", phase="auditing"),
    signals.LoopComplete(commits=3, reverts=1, duration_ms=5400, loop_id="7"),
    signals.LoopFailed(loop_id="7", reason="intensity"),
    signals.ResourceExhausted(resource="gpu", current=2, limit=2),
]

GOOD = {"type": "LoopFailed", "id": "x-1", "ts": 1.5, "source": "s", "loop_id": "7", "reason": "r"}


def envelope_body(envelope: Envelope) -> dict[str, Any]:
    """The JSON object an envelope is sent as: its head, then its signal's fields."""
    head = {"type": envelope.type, "id": envelope.id, "ts": envelope.ts, "source": envelope.source}
    return {**head, **envelope.signal.fields_dict()}


def mutations(envelope: Envelope) -> list[list[Any]]:
    """Frames for `envelope` with one thing changed at a time, valid and invalid."""
    body = envelope_body(envelope)
    topic = envelope.type.encode()
    odd_values: list[Any] = [
        *(None, True, 0, -1, 1.5, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, "", "x", [], {}),
        *(HASH, HASH.upper(), f" {HASH}\n", HASH[:-1], HASH + "0", "g" * 40, "\u00e9" * 40),
        *("high", "High", "P1", "1", "urgent", " low "),
    ]
    out: list[list[Any]] = [[topic, orjson.dumps(body)]]
    for key in body:
        out.append([topic, orjson.dumps({k: v for k, v in body.items() if k != key})])
        out += [[topic, orjson.dumps({**body, key: v})] for v in odd_values]
    payload = orjson.dumps(body)
    out += [
        [topic, orjson.dumps({**body, "extra": 1})],
        [b"LoopFailed" if topic != b"LoopFailed" else b"LoopSpawned", payload],
        [topic.lower(), payload],
        [topic],
        [topic, payload, b""],
        [topic, payload + b" x"],
        [topic, payload + b"  \n"],
        [topic, payload[:-1]],
        [topic, b"[" + payload + b"]"],
        [topic, b"\xff" + payload],
        [topic, payload.replace(b'"source":', b'"source":"\\ud800","source":')],
        [topic, payload.replace(b'"source":', b'"source":7,"source":')],
        [topic, payload[:-1] + b',"source":7}'],
        [topic, payload.replace(b'"ts":', b'"ts":1e999,"x":')],
        [topic, payload.replace(b'"ts":', b'"ts":1e999,"ts":')],
        [topic, payload[:-1] + b',"type":"Bogus"}'],
        [topic, payload.replace(b'"type":', b'"type":"Bogus","type":')],
        [topic, payload.replace(b'"type":', b'"type":"Bogus","type":').replace(topic, b"Bogus")],
        [topic, None],
        [topic, payload.decode()],
    ]
    return out
