"""Freeze attacks: keeping a client on old data (docs/DESIGN.md §5 freshness, §6 expiry), and the offline
mode that must never outlive the keyset's expiry."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.attacks.helpers import NOW, client_refuses, core_refuses, disk, state_at, verify
from tests.attacks.simulator import SimResponse, Simulator
from tests.factory import DAY, T0, World, fleet
from verifier.client import Client, FetchError
from verifier.errors import ConsistencyError, ExpiredError, FreezeError, RollbackError
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
        sim.override("/checkpoint", failure)
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


# -- hold-back: the newest epochs withheld under the fresh, honest checkpoint ---------------------------
#
# There is no "latest" answer any more: a client reads every entry up to the size of the checkpoint it
# verified, so holding an epoch back means serving entries that are not the log's (refused: their root is
# not the checkpoint's) or not serving them at all (an outage: the client stays on its verified state and
# says it is offline; it never reports the older epoch as current).


def test_newest_epochs_held_back_from_a_new_client_are_refused(world: World, tmp_path: Path) -> None:
    """Every static file (entries, entry bundles, hash tiles) tells one consistent lie, a log in which epoch 3
    is epoch 2 again, under the honest checkpoint of size 3: however a new client reads the log, the tree it
    rebuilds is not the checkpoint's."""
    sim = Simulator(world)
    for _ in range(3):
        sim.add_epoch()
    lie = Simulator(world)
    lie.entries = [sim.entries[0], sim.entries[1], sim.entries[1]]
    sim.static_view = lie
    client = sim.client(tmp_path / "c")
    with client_refuses(client, ConsistencyError, "size 3") as info:
        client.refresh()
    assert "root" in str(info.value)
    assert disk(client) is None and client.state == ClientState()


def test_newest_epochs_withheld_from_a_new_client_leave_it_without_keys(world: World, tmp_path: Path) -> None:
    """The static files of the log as it was at epoch 1 under the honest checkpoint of size 3: every file the
    checkpoint implies is missing, so a new client has no keys (typed FetchError), never epoch 1 as current."""
    sim, older = Simulator(world), Simulator(world)
    for _ in range(3):
        sim.add_epoch()
    older.add_epoch()
    assert older.entries == sim.entries[:1]
    sim.static_view = older
    client = sim.client(tmp_path / "c")
    with client_refuses(client, FetchError, "though the checkpoint of size 3 implies it"):
        client.refresh()
    assert disk(client) is None


@pytest.fixture
def revocation_pending(tmp_path: Path) -> tuple[Simulator, Client]:
    """A client at epoch 2; epoch 3 (fleet-1 revoked) is logged: the next refresh reads ``/entry/002``."""
    sim = Simulator(World())
    sim.add_epoch([fleet("fleet-1"), fleet("fleet-2")])
    sim.add_epoch([fleet("fleet-1"), fleet("fleet-2"), fleet("fleet-3")])
    client = sim.client(tmp_path / "c")
    assert client.refresh().epoch == 2
    sim.add_epoch([fleet("fleet-1", "revoked"), fleet("fleet-2"), fleet("fleet-3")])
    sim.requests.clear()
    return sim, client


def test_revocation_held_back_from_an_existing_client_is_refused(revocation_pending) -> None:
    """``/entry/002`` answers epoch 2's bytes again instead of the revocation: not the log's entry 2."""
    sim, client = revocation_pending
    sim.override("/entry/002", SimResponse(200, sim.entries[1]))
    with client_refuses(client, ConsistencyError, "the entries are not the log's"):
        client.refresh()
    assert ("client", "/entry/002") in sim.requests
    assert "fleet-1" in [f.fleet_id for f in client.fleets()]  # still the verified epoch 2, nothing new


def test_revocation_withheld_by_404_is_read_from_the_entry_bundle(revocation_pending) -> None:
    """A 404 for the per-entry object steers nothing: the client reads the entry bundle instead."""
    sim, client = revocation_pending
    sim.override("/entry/002", SimResponse.json({"error": "no such entry"}, 404))
    result = client.refresh()
    assert result.epoch == 3 and result.epochs_verified == (3,) and not result.offline
    assert [f.fleet_id for f in result.fleets] == ["fleet-2", "fleet-3"]
    assert ("client", "/tile/entries/000.p/3") in sim.requests


def test_revocation_withheld_everywhere_is_an_outage_not_news(revocation_pending) -> None:
    """The per-entry object and the entry bundle both withheld: the client is offline on its verified epoch 2
    and says so; it never saves the fresh checkpoint, nor reports epoch 2 as the log's newest."""
    sim, client = revocation_pending
    saved, memory = disk(client), client.state
    for path in ("/entry/002", "/tile/entries/000.p/3"):
        sim.override(path, SimResponse.json({"error": "no such entry"}, 404))
    result = client.refresh()
    assert result.offline is True and result.epoch == 2 and result.checkpoint_size == 2
    assert result.message.startswith("OFFLINE: ") and "though the checkpoint of size 3 implies it" in result.message
    assert disk(client) == saved and client.state == memory


def test_pure_core_requires_the_newest_entry_by_default():
    sim = Simulator(World())
    for _ in range(3):
        sim.add_epoch()
    state = ClientState()
    with core_refuses(state, FreezeError, "entry 0 but the checkpoint holds 3 entries"):
        verify(sim, 1, state, require_latest=True)
    assert verify(sim, 3, state, require_latest=True).epoch == 3
