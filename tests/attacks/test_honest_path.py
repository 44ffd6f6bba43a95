"""Positive controls: an honest distributor is verified, so every refusal elsewhere is for the attack
alone and not for a broken simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks.helpers import NOW, verify
from tests.attacks.simulator import BASE_URL, Simulator, Witness
from tests.factory import T0, World
from verifier.checkpoint import open_checkpoint
from verifier.tlogproof import parse_tlog_proof
from verifier.update import ClientState


def test_honest_epochs_are_verified_across_a_gap(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch()
    client = sim.client(state_dir)
    first = client.refresh()
    assert (first.epoch, first.epochs_verified, first.offline) == (1, (1,), False)

    sim.add_epoch()
    sim.add_epoch()
    sim.requests.clear()
    result = client.refresh()
    assert result.epochs_verified == (2, 3) and result.message == "verified epochs 2, 3"
    assert [f.fleet_id for f in result.fleets] == ["fleet-1", "fleet-2", "fleet-3"]
    assert ("client", "/api/v1/bundles/2") in sim.requests, "the gap is bridged by fetching epoch 2"
    assert ("client", "/api/v1/proof/consistency?from=1&to=3") in sim.requests

    restarted = sim.client(state_dir)
    assert restarted.state == client.state and restarted.state.epoch == 3
    assert restarted.state.checkpoint_size == 3 and restarted.state.freshness_time == sim.freshness_time

    again = restarted.refresh()
    assert again.epochs_verified == (3,) and "still current" in again.message


def test_fresh_client_starts_at_the_latest_epoch(sim3: Simulator, state_dir: Path) -> None:
    result = sim3.client(state_dir).refresh()
    assert result.epoch == 3 and result.epochs_verified == (3,)


def test_pure_core_verifies_honest_epochs_in_order(sim3: Simulator) -> None:
    state = ClientState()
    for epoch in (1, 2, 3):
        update = verify(sim3, epoch, state)
        assert update.epoch == epoch and update.changed and update.index == epoch - 1
        state = update.state
    assert not verify(sim3, 3, state).changed
    sim3.freshness_time = T0 + 30
    assert verify(sim3, 3, state, now=NOW).state.freshness_time == T0 + 30


def test_witnessed_log_is_verified(tmp_path: Path) -> None:
    world = World(witness_threshold=1)
    sim = Simulator(world, witness=Witness(world))
    sim.add_epoch()
    client = sim.client(tmp_path)
    assert client.refresh().epoch == 1
    sim.add_epoch()
    assert client.refresh().epochs_verified == (2,)


@pytest.mark.parametrize("change", ["freshness re-cosigned", "entry appended"])
def test_log_moving_on_during_catch_up_is_not_an_attack(sim: Simulator, state_dir: Path, change: str) -> None:
    sim.add_epoch()
    client = sim.client(state_dir, now=T0 + 200)
    client.refresh()
    sim.add_epoch()
    sim.add_epoch()

    moved = []

    def log_moves_on() -> None:
        if moved:
            return
        moved.append(change)
        if change == "freshness re-cosigned":
            sim.freshness_time = T0 + 120
        else:
            sim.add_epoch()  # epoch 4 lands between the client's requests

    sim.after("/api/v1/bundles/latest", log_moves_on)
    expected = (2, 3) if change == "freshness re-cosigned" else (2, 3, 4)
    assert client.refresh().epochs_verified == expected


def test_simulator_serves_the_signed_checkpoint_and_split_views(world: World) -> None:
    sim, fork = Simulator(world), Simulator(world)
    for log in (sim, fork):
        log.add_epoch()
    fork.append(b"only in the fork")
    sim.split_view("victim", fork)
    honest = sim.session("auditor").get(BASE_URL + "/checkpoint")
    shown = sim.session("victim").get(BASE_URL + "/checkpoint")
    assert honest.headers["Content-Type"].startswith("text/plain")
    key = world.trust_root().log.key
    assert open_checkpoint(honest.content, key).checkpoint.size == 1
    assert open_checkpoint(shown.content, key).checkpoint.size == 2   # validly signed, another history
    latest = sim.session("auditor").get(BASE_URL + "/api/v1/bundles/latest").json()
    assert parse_tlog_proof(latest["proof"].encode()).checkpoint == honest.content
    assert sim.session("auditor").get(BASE_URL + "/api/v1/bundles/7").status_code == 404
