"""Bus signals: the twelve types of seed fs-002, their envelope and wire codec.

"Signal" in this project means a bus message; POSIX signals live in ipc.posix_signals.

- `ipc.signals` (this face): the types, `envelop`, `encode`, `decode`, `parse_frames`.
- `ipc.signals.batch`: many signals of one type in one message (`Publisher.publish_many`).
- `_codec` holds the types and the codec, `_wire` the msgspec mirrors that make it fast.
"""

from __future__ import annotations

from ipc.signals._codec import (
    ENVELOPE_KEYS,
    MAX_MESSAGE_BYTES,
    MAX_SIGNAL_BYTES,
    SIGNAL_TYPES,
    BeadAssigned,
    Envelope,
    Evolution,
    GoldenMasterUpdated,
    LoopComplete,
    LoopFailed,
    LoopSpawned,
    MalformedSignal,
    PatchAccepted,
    PatchProposed,
    PatchRejected,
    ResourceExhausted,
    Signal,
    SignalError,
    SignalTooLarge,
    TestFailure,
    TestPassing,
    UnknownSignal,
    decode,
    decode_checked,
    encode,
    envelop,
    parse_frames,
    payload_dict,
)
from ipc.types import GitHash, InvalidValue, Priority

__all__ = [
    "ENVELOPE_KEYS",
    "MAX_MESSAGE_BYTES",
    "MAX_SIGNAL_BYTES",
    "SIGNAL_TYPES",
    "BeadAssigned",
    "Envelope",
    "Evolution",
    "GitHash",
    "GoldenMasterUpdated",
    "InvalidValue",
    "LoopComplete",
    "LoopFailed",
    "LoopSpawned",
    "MalformedSignal",
    "PatchAccepted",
    "PatchProposed",
    "PatchRejected",
    "Priority",
    "ResourceExhausted",
    "Signal",
    "SignalError",
    "SignalTooLarge",
    "TestFailure",
    "TestPassing",
    "UnknownSignal",
    "decode",
    "decode_checked",
    "encode",
    "envelop",
    "parse_frames",
    "payload_dict",
]
