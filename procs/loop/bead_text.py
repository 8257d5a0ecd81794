"""One bead's requirements, read (never written) from a beads JSONL export, for the
one-shot runner. The beads service owns the store; a loop under factoryd gets its bead's
text from it, not from here.

A record is an issue unless its `_type` says otherwise; a malformed line is skipped and
counted. The requirements are the title, description, design and acceptance criteria.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

MAX_FILE_BYTES = 256 * 1024 * 1024
_SECTIONS = (("description", ""), ("design", "Design"),
             ("acceptance_criteria", "Acceptance Criteria"))  # fmt: skip


class BeadNotFound(LookupError):
    """No issue with that id in the file; the message says how many were read."""


@dataclass(frozen=True)
class BeadText:
    bead_id: str
    title: str
    status: str
    requirements: str
    malformed_lines: int


def read_bead(path: Path, bead_id: str) -> BeadText:
    """The bead `bead_id` from the JSONL file at `path`. Raises OSError (unreadable),
    ValueError (over MAX_FILE_BYTES), BeadNotFound."""
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {size} bytes, over MAX_FILE_BYTES ({MAX_FILE_BYTES})")
    malformed = issues = 0
    found: dict[str, object] | None = None
    for line in Path(path).read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            malformed += 1
            continue
        if not isinstance(record, dict) or record.get("_type", "issue") != "issue":
            continue
        issues += 1
        if record.get("id") == bead_id:
            found = record
    if found is None:
        raise BeadNotFound(
            f"no bead {bead_id!r} among {issues} issues in {path}"
            + (f" ({malformed} malformed lines skipped)" if malformed else "")
        )
    title = str(found.get("title") or "")
    parts = [f"## {title}"] if title else []
    for key, heading in _SECTIONS:
        text = found.get(key)
        if isinstance(text, str) and text.strip():
            parts.append(f"### {heading}\n{text.strip()}" if heading else text.strip())
    return BeadText(bead_id=bead_id, title=title, status=str(found.get("status") or ""),
                    requirements="\n\n".join(parts), malformed_lines=malformed)  # fmt: skip
