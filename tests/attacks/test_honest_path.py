"""Positive controls: an honest distributor is verified, so every refusal elsewhere is for the attack
alone and not for a broken simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks.helpers import LONG_NOW, NOW, entry_bundle, long_log, verify
from tests.attacks.simulator import BASE_URL, Simulator, Witness
from tests.factory import T0, World
from verifier.checkpoint import open_checkpoint
from verifier.merkle import leaf_hash
from verifier.tlogproof import parse_tlog_proof
from verifier.update import ClientState

STATIC = ("/checkpoint", "/entry/", "/tile/")


def paths(sim: Simulator, client: str = "client") -> list[str]:
    return [p for name, p in sim.requests if name == client]


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
    # The gap is bridged by reading both new entries, in log order, as per-entry objects.
    assert paths(sim) == ["/checkpoint", "/entry/001", "/entry/002"] and result.requests == 3

    restarted = sim.client(state_dir)
    assert restarted.state == client.state and restarted.state.epoch == 3
    assert restarted.state.checkpoint_size == 3 and restarted.state.freshness_time == sim.freshness_time

    sim.requests.clear()
    again = restarted.refresh()
    assert again.epoch == 3 and again.epochs_verified == () and "still current" in again.message
    assert paths(sim) == ["/checkpoint"] and again.requests == 1


def test_one_epoch_behind_reads_the_checkpoint_and_one_entry(sim: Simulator, state_dir: Path) -> None:
    """The spec's cheapest update: ``GET /checkpoint`` and ``GET /entry/<N>``, nothing else."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.requests.clear()
    result = client.refresh()
    assert result.epochs_verified == (2,) and result.checkpoint_size == 2
    assert paths(sim) == ["/checkpoint", "/entry/001"] and result.requests == 2


def test_no_change_refresh_is_exactly_one_request(sim3: Simulator, state_dir: Path) -> None:
    client = sim3.client(state_dir)
    client.refresh()
    saved = client.state
    sim3.requests.clear()
    result = client.refresh()
    assert paths(sim3) == ["/checkpoint"] and result.requests == 1
    assert result.epoch == 3 and not result.offline and client.state == saved


def test_fresh_client_ends_at_the_latest_epoch(sim3: Simulator, state_dir: Path) -> None:
    """A fresh client ends on the newest epoch having read only static files, a few of them (how it starts,
    forwards from entry 0 or backwards from the newest bundle, is not fixed here)."""
    client = sim3.client(state_dir)
    result = client.refresh()
    assert result.epoch == 3 and not result.offline and result.checkpoint_size == 3
    assert result.epochs_verified[-1] == 3
    assert list(result.epochs_verified) == list(range(result.epochs_verified[0], 4))
    assert [f.fleet_id for f in result.fleets] == ["fleet-1", "fleet-2", "fleet-3"]
    assert client.state.checkpoint_size == 3 and client.state.checkpoint_root == sim3.tree_head().root
    assert client.state.bundle == sim3.entries[2]
    assert all(p.startswith(STATIC) for p in paths(sim3)), paths(sim3)
    assert paths(sim3)[0] == "/checkpoint" and result.requests == len(paths(sim3)) <= 6


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


@pytest.mark.parametrize(("change", "behind"), [
    ("freshness re-cosigned", 2), ("entry appended", 2), ("entry appended", 3),
], ids=["freshness re-cosigned", "entry appended (entry objects)", "entry appended (entry bundle)"])
def test_log_moving_on_during_catch_up_is_not_an_attack(sim: Simulator, state_dir: Path, change: str,
                                                       behind: int) -> None:
    """Right after the client read ``/checkpoint`` the log re-cosigns or grows: the client finishes at the
    checkpoint it verified (the files it needs stay served: older partial widths included), and the next
    refresh picks the change up."""
    sim.add_epoch()
    client = sim.client(state_dir, now=T0 + 200)
    client.refresh()
    for _ in range(behind):
        sim.add_epoch()

    moved = []

    def log_moves_on() -> None:
        if moved:
            return
        moved.append(change)
        if change == "freshness re-cosigned":
            sim.freshness_time = T0 + 120
        else:
            sim.add_epoch()  # epoch behind + 2 lands between the client's requests

    sim.after("/checkpoint", log_moves_on)
    result = client.refresh()
    assert moved, "the log did not move on during the refresh"
    assert result.epochs_verified == tuple(range(2, behind + 2)) and result.checkpoint_size == behind + 1
    assert client.state.freshness_time == T0
    again = client.refresh()
    if change == "freshness re-cosigned":
        assert again.epochs_verified == () and client.state.freshness_time == T0 + 120
    else:
        assert again.epochs_verified == (behind + 2,) and again.checkpoint_size == behind + 2


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
    auditor = sim.session("auditor")
    assert auditor.get(BASE_URL + "/entry/000").content == sim.entries[0]
    assert auditor.get(BASE_URL + "/tile/entries/000.p/1").content == entry_bundle(sim.entries[:1])
    assert auditor.get(BASE_URL + "/tile/0/000.p/1").content == leaf_hash(sim.entries[0])
    assert auditor.get(BASE_URL + "/tile/0/000.p/2").status_code == 404       # not at size 1
    assert auditor.get(BASE_URL + "/entry/001").status_code == 404
    assert auditor.get(BASE_URL + "/entry/1").status_code == 404               # not the canonical path
    latest = sim.session("auditor").get(BASE_URL + "/api/v1/bundles/latest").json()
    assert parse_tlog_proof(latest["proof"].encode()).checkpoint == honest.content
    assert sim.session("auditor").get(BASE_URL + "/api/v1/bundles/7").status_code == 404
    sim.add_epoch()  # older partial widths stay served, like the distributor's
    assert auditor.get(BASE_URL + "/tile/entries/000.p/1").content == entry_bundle(sim.entries[:1])
    assert auditor.get(BASE_URL + "/tile/0/000.p/1").content == leaf_hash(sim.entries[0])
    assert auditor.get(BASE_URL + "/tile/entries/000.p/2").content == entry_bundle(sim.entries)


def test_long_log_is_over_the_fixture_world(world: World, state_dir: Path) -> None:
    """:func:`tests.attacks.helpers.long_log` (the catch-up tests' log) has the ``world`` fixture's keys, and
    an honest client verifies it."""
    sim = long_log(3)
    assert sim.world.trust_root_bytes() == world.trust_root_bytes()
    assert sim.client(state_dir, now=LONG_NOW).refresh().epoch == 3
