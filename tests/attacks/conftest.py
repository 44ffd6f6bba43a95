"""Fixtures for the attack tests: a fixed-seed world and an in-process distributor over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks.simulator import Simulator
from tests.factory import World


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def sim(world: World) -> Simulator:
    """A distributor with no entries yet."""
    return Simulator(world)


@pytest.fixture
def sim3(sim: Simulator) -> Simulator:
    """A distributor that logged epochs 1, 2 and 3 (indexes 0, 1, 2)."""
    for _ in range(3):
        sim.add_epoch()
    return sim


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "client"
