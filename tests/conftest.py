"""Shared fixtures: a factoryd factory that always tears its daemons down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Factoryd, Journal


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal")


@pytest.fixture
def factoryd(tmp_path: Path) -> Iterator[type[Factoryd]]:
    started: list[Factoryd] = []

    class Tracked(Factoryd):
        def start(self, *, wait_ready: bool = True) -> Factoryd:
            started.append(self)
            return super().start(wait_ready=wait_ready)

    def make(config: str, **kw: object) -> Factoryd:
        return Tracked(tmp_path, config, **kw)  # type: ignore[arg-type]

    yield make  # type: ignore[misc]
    for d in started:
        d.stop()
