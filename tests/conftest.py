"""Fixtures shared by several test packages."""

from __future__ import annotations

import pytest

from tests.witnesses import start_witnesses


@pytest.fixture
def witnesses(world, tmp_path):
    """Real witness processes for every witness of the test's ``world`` fixture (tests/witnesses.py)."""
    procs = start_witnesses(world, tmp_path / "witnesses")
    yield procs
    for w in procs:
        w.stop()
