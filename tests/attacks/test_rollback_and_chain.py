"""Rollback, equivocation and fast-forward attacks on the epoch sequence (docs/DESIGN.md §4 ``previous``, §6).

Every bundle served here is genuinely signed by the anchor and the operator and included in a fresh,
validly signed checkpoint: only the *order* of history is attacked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.attacks.helpers import client_refuses, core_refuses, state_at, verify, with_fields
from tests.attacks.simulator import Simulator
from tests.factory import fleet
from verifier.errors import ChainError, RollbackError


def test_rollback_to_older_epoch_is_refused(sim3: Simulator, state_dir: Path) -> None:
    state = state_at(sim3, 3)
    with core_refuses(state, RollbackError, "epoch 2 is older than epoch 3 already accepted"):
        verify(sim3, 2, state)

    client = sim3.client(state_dir)
    assert client.refresh().epoch == 3
    sim3.override("/api/v1/bundles/latest", sim3.get("/api/v1/bundles/1"))
    with client_refuses(client, RollbackError, "epoch 1 is older than epoch 3 already accepted"):
        client.refresh()


def test_revoked_fleet_resurrected_by_serving_older_epoch_is_refused(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch([fleet("fleet-1"), fleet("fleet-2")])
    sim.add_epoch([fleet("fleet-1", "revoked"), fleet("fleet-2")])
    client = sim.client(state_dir)
    assert [f.fleet_id for f in client.refresh().fleets] == ["fleet-2"]

    sim.override("/api/v1/bundles/latest", sim.get("/api/v1/bundles/1"))  # epoch 1: fleet-1 still active
    with client_refuses(client, RollbackError, "epoch 1 is older than epoch 2 already accepted"):
        client.refresh()
    assert [f.fleet_id for f in client.fleets()] == ["fleet-2"]


def test_replayed_current_epoch_with_another_keyset_is_refused(sim3: Simulator, state_dir: Path) -> None:
    client = sim3.client(state_dir)
    client.refresh()
    state = state_at(sim3, 3)
    # The anchor is made to sign a second keyset for epoch 3 (correctly chained to epoch 2), and the
    # log includes it: an equivocation that only this client's memory of epoch 3 can catch.
    other = sim3.make_keyset(3, [fleet("fleet-1"), fleet("attacker-fleet")])
    sim3.publish_bundle(sim3.world.bundle(other, 3))
    with core_refuses(state, RollbackError, "but this client accepted"):
        verify(sim3, 3, state)
    with client_refuses(client, RollbackError, "(equivocation)"):
        client.refresh()


def test_fast_forward_past_unknown_epoch_is_refused(sim3: Simulator, state_dir: Path) -> None:
    state = state_at(sim3, 1)
    with core_refuses(state, ChainError, "epoch 3 skips epochs 2..2"):
        verify(sim3, 3, state)


@pytest.mark.parametrize("trick", ["epoch 3 served for epoch 2", "latest lies about its epoch"])
def test_client_fast_forward_past_unknown_epoch_is_refused(sim: Simulator, state_dir: Path, trick: str) -> None:
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.add_epoch()
    if trick == "epoch 3 served for epoch 2":
        sim.override("/api/v1/bundles/2", sim.get("/api/v1/bundles/3"))
    else:  # the client would not know there is an epoch 2 to fetch
        sim.tamper("/api/v1/bundles/latest", lambda body: with_fields(body, epoch=2))
    with client_refuses(client, ChainError, "epoch 3 skips epochs 2..2"):
        client.refresh()


def test_next_epoch_on_forked_history_is_refused(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    state = state_at(sim, 1)
    forked = sim.make_keyset(2, previous=hashlib.sha256(b"some other epoch 1").digest())
    sim.publish_bundle(sim.world.bundle(forked, 2))
    with core_refuses(state, ChainError, "(forked history)"):
        verify(sim, 2, state)
    with client_refuses(client, ChainError, "keyset epoch 2: previous = "):
        client.refresh()
