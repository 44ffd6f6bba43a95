"""Rollback, equivocation and fast-forward attacks on the epoch sequence (docs/DESIGN.md §4 ``previous``, §6).

Every bundle served here is genuinely signed by the anchor and the operator and, but for a proxy serving one
entry in another's place, included in a fresh, validly signed checkpoint: only the *order* of history is
attacked. The client reads the log's entries in log order up to the checkpoint's size, so a rollback or a
skip has to be logged (then the epoch rules refuse it) or served against the tree (then the root does).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.attacks.helpers import client_refuses, core_refuses, disk, state_at, verify
from tests.attacks.simulator import SimResponse, Simulator
from tests.factory import T0, fleet
from verifier.errors import ChainError, ConsistencyError, RollbackError


def test_rollback_to_older_epoch_is_refused(sim3: Simulator, state_dir: Path) -> None:
    state = state_at(sim3, 3)
    with core_refuses(state, RollbackError, "epoch 2 is older than epoch 3 already accepted"):
        verify(sim3, 2, state)

    client = sim3.client(state_dir)
    assert client.refresh().epoch == 3
    # Nothing unauthenticated says which epoch is current: to roll the client back, epoch 1's genuine
    # bundle has to be in the log after epoch 3, and there it is an epoch logged again.
    sim3.append(sim3.entries[0])
    with client_refuses(client, RollbackError, "log entry 3: epoch 1 logged again after epoch 3 with keyset"):
        client.refresh()


@pytest.mark.parametrize(("saved_time", "cls", "fragment"), [
    (T0 + 100, RollbackError, f"older than the {T0 + 100} already seen (replayed checkpoint)"),
    (T0 + 30, ConsistencyError, "checkpoint size 1 is smaller than the size 3 already seen: the log went backwards"),
], ids=["older-than-the-slack", "within-the-slack"])
def test_rollback_by_replaying_an_older_tree_head_is_refused(sim: Simulator, state_dir: Path, saved_time: int,
                                                             cls: type[Exception], fragment: str) -> None:
    """The checkpoint of the log as it was at epoch 1 (validly signed, cosigned at T0, still within the max age)
    replayed to a client at epoch 3: refused by its freshness time, or (within the slack a CDN's cached copy
    is allowed) by its size."""
    sim.add_epoch()
    old_head = sim.checkpoint(timestamp=T0)
    sim.add_epoch()
    sim.add_epoch()
    sim.freshness_time = saved_time
    client = sim.client(state_dir, now=T0 + 160)
    assert client.refresh().epoch == 3 and client.state.freshness_time == saved_time
    sim.override("/checkpoint", SimResponse(200, old_head))
    with client_refuses(client, cls, fragment):
        client.refresh()


def test_revoked_fleet_resurrected_by_serving_older_epoch_is_refused(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch([fleet("fleet-1"), fleet("fleet-2")])
    sim.add_epoch([fleet("fleet-1", "revoked"), fleet("fleet-2")])
    client = sim.client(state_dir)
    assert [f.fleet_id for f in client.refresh().fleets] == ["fleet-2"]

    sim.append(sim.entries[0])  # epoch 1 (fleet-1 still active), genuinely signed, logged again
    with client_refuses(client, RollbackError, "log entry 2: epoch 1 logged again after epoch 2"):
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
    with client_refuses(client, RollbackError, "log entry 3: epoch 3 logged again after epoch 3 with keyset") as info:
        client.refresh()
    assert "(equivocation or rollback)" in str(info.value)


def test_fast_forward_past_unknown_epoch_is_refused(sim3: Simulator, state_dir: Path) -> None:
    state = state_at(sim3, 1)
    with core_refuses(state, ChainError, "epoch 3 skips epochs 2..2"):
        verify(sim3, 3, state)


def test_client_fast_forward_past_unknown_epoch_is_refused(sim: Simulator, state_dir: Path) -> None:
    """The log skips epoch 2: epoch 3, genuinely signed and chained to an epoch 2 that was never logged,
    comes right after epoch 1."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    unlogged = sim.make_keyset(2)
    sim.publish_bundle(sim.world.bundle(sim.make_keyset(3, previous=hashlib.sha256(unlogged).digest()), 3))
    with client_refuses(client, ChainError, "epoch 3 skips epochs 2..2"):
        client.refresh()


def test_epoch_3_served_for_epoch_2_is_refused(sim: Simulator, state_dir: Path) -> None:
    """A proxy answers ``/entry/001`` (epoch 2) with epoch 3's entry, so the client would skip epoch 2."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.add_epoch()
    sim.override("/entry/001", sim.get("/entry/002"))
    with client_refuses(client, ConsistencyError, "the entries are not the log's"):
        client.refresh()


@pytest.mark.parametrize("withheld", [("/entry/001",), ("/entry/001", "/tile/entries/000.p/3")],
                         ids=["entry-object", "entry-object-and-bundle"])
def test_withheld_epoch_cannot_be_skipped(sim: Simulator, state_dir: Path, withheld: tuple[str, ...]) -> None:
    """Formerly "latest lies about its epoch": no server-given epoch, index or 404 tells the client what to
    read any more; it reads every entry up to the verified checkpoint's size, in order. Withholding epoch 2
    (404) makes it read the entry bundle instead, or, withheld there too, go offline on epoch 1: never
    epoch 3 without epoch 2."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.add_epoch()
    saved = disk(client)
    for path in withheld:
        sim.override(path, SimResponse.json({"error": "not found"}, 404))
    result = client.refresh()
    if len(withheld) == 1:
        assert result.epochs_verified == (2, 3) and not result.offline
    else:
        assert result.offline is True and result.epoch == 1 and disk(client) == saved


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
