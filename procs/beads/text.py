"""One bead's requirements as the loop's prompts take them: the title, then the
description, design and acceptance criteria (the same text procs/loop/bead_text.py
makes from a JSONL file; the beads service's `show` command gives it to loops)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECTIONS = (("description", ""), ("design", "Design"),
            ("acceptance_criteria", "Acceptance Criteria"))  # fmt: skip


def requirements(record: Mapping[str, Any]) -> str:
    title = str(record.get("title") or "")
    parts = [f"## {title}"] if title else []
    for key, heading in SECTIONS:
        text = record.get(key)
        if isinstance(text, str) and text.strip():
            parts.append(f"### {heading}\n{text.strip()}" if heading else text.strip())
    return "\n\n".join(parts)
