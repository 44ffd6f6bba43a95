"""Freeze attacks: keeping a client on old data (docs/DESIGN.md §5 freshness, §6 expiry), and the offline
mode that must never outlive the keyset's expiry."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.attacks.helpers import NOW, client_refuses, core_refuses, disk, state_at, verify
from tests.attacks.simulator import SimResponse, Simulator
from tests.factory import DAY, T0, World
from verifier.client import FetchError
from verifier.errors import ExpiredError, FreezeError, RollbackError
from verifier.update import ClientState

HOUR = 3600


def test_expired_keyset_is_refused(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch(expires_at=T0 + DAY)
    client = sim.client(state_dir)
    client.refresh()
    # A day later the distributor still serves epoch 1 (freshly cosigned) and hides anything newer.
    later = T0 + DAY + 60
    sim.freshness_time = later
    state = ClientState()
    with core_refuses(state, ExpiredError, "stale data, possible freeze attack"):
        verify(sim, 1, state, now=later)
    client.clock = lambda: later
    with client_refuses(client, ExpiredError, "keyset epoch 1 expired at"):
        client.refresh()


def test_stale_checkpoint_beyond_max_age_is_refused(sim3: Simulator, state_dir: Path) -> None:
    client = sim3.client(state_dir)
    client.refresh()
    # The log stops re-cosigning: an hour and a second later the newest freshness cosignature is too old.
    later = sim3.freshness_time + HOUR + 1
    state = state_at(sim3, 2)
    with core_refuses(state, ExpiredError, "3601 s old, more than the allowed 3600 s"):
        verify(sim3, 3, state, now=later)
    client.clock = lambda: later
    with client_refuses(client, ExpiredError, "(stale checkpoint: possible freeze attack)"):
        client.refresh()


def test_replayed_older_freshness_cosignature_is_refused(sim3: Simulator, state_dir: Path) -> None:
    now = T0 + 1100
    sim3.freshness_time = T0 + 1000
    client = sim3.client(state_dir, now=now)
    client.refresh()
    state = state_at(sim3, 3, now=now)
    assert state.freshness_time == T0 + 1000
    # The attacker replays a checkpoint cosigned earlier: still within max_age, but older than seen.
    sim3.freshness_time = T0 + 500
    with core_refuses(state, RollbackError, f"is older than the {T0 + 1000} already seen (replayed checkpoint)"):
        verify(sim3, 3, state, now=now)
    with client_refuses(client, RollbackError, "(replayed checkpoint)"):
        client.refresh()


def test_future_dated_freshness_cosignature_is_refused(sim3: Simulator, state_dir: Path) -> None:
    # Accepting it would pin the client's freshness time in the future and freeze out every honest
    # checkpoint until then.
    sim3.freshness_time = NOW + 301
    client = sim3.client(state_dir)
    with core_refuses(ClientState(), ExpiredError, "is in the future"):
        verify(sim3, 3, ClientState())
    with client_refuses(client, ExpiredError, f"timestamp {NOW + 301} is in the future"):
        client.refresh()


# -- offline mode ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [
    requests.ConnectionError("connection refused"),
    requests.exceptions.ReadTimeout("read timed out (stalled distributor)"),
    SimResponse(500, b'{"error": "internal"}'),
    SimResponse(429, b'{"error": "slow down"}'),
], ids=["unreachable", "stalled", "http-500", "http-429"])
def test_offline_mode_serves_saved_fleets_until_keyset_expiry(sim: Simulator, state_dir: Path, failure) -> None:
    sim.add_epoch(expires_at=T0 + 2 * DAY)
    client = sim.client(state_dir, retries=2)
    online = client.refresh()
    saved = disk(client)
    if isinstance(failure, BaseException):
        sim.outage = failure
    else:
        sim.override("/api/v1/trust-roots/2", failure)
    sim.requests.clear()

    client.clock = lambda: T0 + DAY
    offline = client.refresh()
    assert offline.offline is True and offline.epoch == 1 and offline.fleets == online.fleets
    assert "OFFLINE" in offline.message
    assert len(sim.requests) == 3, "two retries after the first attempt"
    assert disk(client) == saved

    client.clock = lambda: T0 + 2 * DAY
    with client_refuses(client, ExpiredError, "expired at 2026-11-27T10:00:00Z: refusing stale keys"):
        client.refresh()
    with client_refuses(client, ExpiredError, "saved keyset epoch 1 expired"):
        client.fleets()


def test_offline_without_saved_state_is_an_error(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch()
    sim.outage = requests.exceptions.ReadTimeout("stalled")
    client = sim.client(state_dir)
    with client_refuses(client, FetchError, "no verified state saved yet"):
        client.refresh()


# -- hold-back: an older epoch served as current under the fresh, honest checkpoint -------------------


def test_old_epoch_served_as_latest_to_a_new_client_is_refused(tmp_path):
    """A distributor (or CDN) answers /bundles/latest with epoch 1 while the checkpoint holds 3."""
    sim = Simulator(World())
    for _ in range(3):
        sim.add_epoch()
    sim.override("/api/v1/bundles/latest", sim.get("/api/v1/bundles/1"))
    client = sim.client(tmp_path / "c")
    with client_refuses(client, FreezeError, "held back"):
        client.refresh()


def test_revocation_held_back_from_an_existing_client_is_refused(tmp_path):
    """The client is at epoch 2; epoch 3 (a revocation) is logged but /latest keeps answering epoch 2."""
    sim = Simulator(World())
    sim.add_epoch()
    sim.add_epoch()
    client = sim.client(tmp_path / "c")
    assert client.refresh().epoch == 2
    sim.add_epoch()
    sim.override("/api/v1/bundles/latest", sim.get("/api/v1/bundles/2"))
    with client_refuses(client, FreezeError, "held back"):
        client.refresh()


def test_pure_core_requires_the_newest_entry_by_default():
    sim = Simulator(World())
    for _ in range(3):
        sim.add_epoch()
    state = ClientState()
    with core_refuses(state, FreezeError, "entry 0 but the checkpoint holds 3 entries"):
        verify(sim, 1, state, require_latest=True)
    assert verify(sim, 3, state, require_latest=True).epoch == 3
