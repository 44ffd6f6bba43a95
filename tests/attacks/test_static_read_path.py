"""Attacks on the static read path (the client reads ``/checkpoint``, then every new entry in log order).

One test (or a few) per attack of the issue that moved the client off the dynamic API:

* freeze through catch-up — a client far behind catches up in one refresh, a stall keeps its progress;
* hidden rotation — a trust-root rotation logged before the newest bundle cannot be skipped;
* offline instead of refused — a checkpoint the log cannot back, or one that is not signed;
* forged output — server text in an offline message is printable;
* a freshness time ahead of the clock is accepted but never saved as is;
* a revocation is never undone, not even epochs later;
* an entry that is not a fleetkeys entry;
* two processes sharing one state directory (compare-and-swap saves).

Each refusal checks the exact error class, a fragment of its message, and that the state on disk and in
memory is unchanged (:func:`tests.attacks.helpers.client_refuses`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from tests.attacks.helpers import (
    ANCHOR_V2,
    LONG_LOG_SIZE,
    LONG_NOW,
    NOW,
    OPERATOR_V2,
    client_at,
    client_refuses,
    disk,
    entry_bundle,
    long_log,
    refused,
    v2,
)
from tests.attacks.simulator import SimResponse, Simulator
from tests.factory import T0, fleet, fleet_key
from verifier.checkpoint import Checkpoint, sign_checkpoint
from verifier.client import Client, FetchError
from verifier.cosignature import add_cosignatures
from verifier.errors import (
    ConsistencyError,
    FormatError,
    RollbackError,
    SignatureError,
    StateConflictError,
)
from verifier.statestore import StateStore
from verifier.tiles import TILE_WIDTH
from verifier.update import ClientState

MAX_SIZE = (1 << 63) - 1


# -- freeze through catch-up ---------------------------------------------------------------------------------
#
# The old client verified at most 1,000 epochs a refresh and trusted the API's "latest" to know how far
# behind it was, so a proxy raising that hint could keep it catching up forever. Now the end of the work is
# the verified checkpoint's size, and every batch of 256 entries is saved once verified.


def test_catch_up_of_more_than_1000_entries_completes_in_one_refresh(state_dir: Path) -> None:
    sim = long_log(LONG_LOG_SIZE)
    client = client_at(sim, state_dir, 1, now=LONG_NOW)
    result = client.refresh()
    assert not result.offline and result.epoch == LONG_LOG_SIZE and result.checkpoint_size == LONG_LOG_SIZE
    assert result.epochs_verified == tuple(range(2, LONG_LOG_SIZE + 1))
    assert result.message == f"verified epochs 2..{LONG_LOG_SIZE}"
    assert client.state.bundle == sim.entries[-1] and client.state.checkpoint_root == sim.tree_head().root
    # A handful of files, not one request per entry: 5 entry bundles, the checkpoint and a few hash tiles.
    served = [p for _, p in sim.requests]
    assert result.requests == len(served) <= 12, served
    assert sum(p.startswith("/tile/entries/") for p in served) == -(-(LONG_LOG_SIZE - 1) // TILE_WIDTH)
    assert sim.client(state_dir, now=LONG_NOW).state == client.state


@pytest.mark.parametrize("served", [4, 6])
def test_stalled_catch_up_keeps_verified_progress(state_dir: Path, served: int) -> None:
    """A proxy stalls the catch-up after ``served`` requests: the client is offline on the last batch it
    verified (a 256-entry boundary, the keyset of the entry just before it), and the next refresh goes on
    from there to the newest epoch."""
    sim = long_log(LONG_LOG_SIZE)
    client = client_at(sim, state_dir, 1, now=LONG_NOW)
    sim.stall_after(served)
    stalled = client.refresh()
    size = client.state.checkpoint_size
    assert stalled.offline is True and "stalled by a hostile proxy" in stalled.message
    assert size % TILE_WIDTH == 0 and TILE_WIDTH <= size < LONG_LOG_SIZE, size
    assert stalled.checkpoint_size == size and stalled.epoch == size  # entry size-1 is epoch size
    state = client.state
    assert state.epoch == size and state.bundle == sim.entries[size - 1]
    assert state.checkpoint_root == sim.tree_head(size).root
    assert sim.client(state_dir, now=LONG_NOW).state == state  # the progress is on disk

    sim.stall_after(None)
    done = client.refresh()
    assert not done.offline and done.epoch == LONG_LOG_SIZE
    assert done.epochs_verified == tuple(range(size + 1, LONG_LOG_SIZE + 1))


def test_proxy_cutting_every_refresh_short_cannot_freeze_the_catch_up(state_dir: Path) -> None:
    """Every refresh is cut off after 4 requests (the checkpoint, an entry bundle and two hash tiles): each
    one still saves a batch, so the client reaches the newest epoch in a bounded number of refreshes."""
    sim = long_log(LONG_LOG_SIZE)
    client = client_at(sim, state_dir, 1, now=LONG_NOW)
    sizes = []
    for _ in range(LONG_LOG_SIZE // TILE_WIDTH + 1):
        sim.stall_after(4)
        result = client.refresh()
        sim.stall_after(None)
        sizes.append(client.state.checkpoint_size)
        if not result.offline:
            break
    assert result.epoch == LONG_LOG_SIZE and not result.offline, sizes
    assert sizes == sorted(set(sizes)), f"a refresh made no progress: {sizes}"


# -- hidden rotation -------------------------------------------------------------------------------------------
#
# The old client asked /api/v1/trust-roots/<v+1> and believed a 404: a proxy hiding a rotation kept it on the
# old root, where stolen old keys still work. Now a rotation is an entry of the log like any other: it cannot
# be skipped without changing the tree, and withholding it is an outage, never a verification under the old
# root.


@pytest.fixture
def rotation_pending(sim: Simulator, state_dir: Path) -> Client:
    """A client at epoch 1; then the log holds root v2 (entry 1) and epochs 2 and 3 signed by the v2 keys
    (entries 2, 3): the next refresh reads ``/tile/entries/000.p/4``."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.publish_trust_root(v2(sim.world))
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    sim.requests.clear()
    return client


def test_rotation_logged_before_the_newest_bundle_is_followed(sim: Simulator, rotation_pending: Client) -> None:
    result = rotation_pending.refresh()
    assert result.epochs_verified == (2, 3) and not result.offline
    assert rotation_pending.state.trust_root == sim.entries[1]
    assert rotation_pending.state.rotation_indexes == (1,)
    assert ("client", "/tile/entries/000.p/4") in sim.requests


def _stolen_v1_epochs(sim: Simulator, count: int) -> list[bytes]:
    """Epochs 2.. signed by the retired v1 keys (stolen), chained to the epoch 1 the client holds."""
    out, previous = [], sim.keyset_digests[1]
    for epoch in range(2, 2 + count):
        keyset = sim.world.keyset(epoch, [fleet("fleet-1"), fleet("attacker-fleet")], previous=previous)
        out.append(sim.world.bundle(keyset, epoch))
        previous = hashlib.sha256(keyset).digest()
    return out


@pytest.mark.parametrize("served", [
    "rotation replaced by epoch 1 again",
    "rotation dropped, stolen-v1-key epochs in its place",
    "rotation dropped, stolen-v1-key epoch 2 first",
], ids=["replaced-by-old-entry", "replaced-by-stolen-key-epochs", "reordered"])
def test_entry_bundle_without_the_rotation_is_refused(sim: Simulator, rotation_pending: Client, served: str) -> None:
    e = sim.entries
    if served == "rotation replaced by epoch 1 again":
        entries = [e[0], e[0], e[2], e[3]]
    elif served == "rotation dropped, stolen-v1-key epochs in its place":
        entries = [e[0], *_stolen_v1_epochs(sim, 3)]
    else:
        entries = [e[0], _stolen_v1_epochs(sim, 1)[0], e[1], e[3]]
    sim.override("/tile/entries/000.p/4", SimResponse(200, entry_bundle(entries)))
    with client_refuses(rotation_pending, ConsistencyError, "the entries are not the log's"):
        rotation_pending.refresh()
    assert rotation_pending.state.trust_root is None and rotation_pending.state.epoch == 1


def test_entry_bundle_one_entry_short_of_the_rotation_is_refused(sim: Simulator, rotation_pending: Client) -> None:
    """The rotation simply left out: the bundle no longer holds the width its path names."""
    e = sim.entries
    sim.override("/tile/entries/000.p/4", SimResponse(200, entry_bundle([e[0], e[2], e[3]])))
    with client_refuses(rotation_pending, FormatError, "entry bundle: holds 3 entries, 4 expected"):
        rotation_pending.refresh()


def test_rotation_as_the_only_new_entry_cannot_be_swapped(sim: Simulator, state_dir: Path) -> None:
    """One new entry, the rotation, read as ``/entry/001``: a stolen-v1-key epoch 2 served there is refused."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.publish_trust_root(v2(sim.world))
    sim.override("/entry/001", SimResponse(200, _stolen_v1_epochs(sim, 1)[0]))
    with client_refuses(client, ConsistencyError, "the entries are not the log's"):
        client.refresh()
    sim.heal()
    assert client.refresh().epoch == 1 and client.state.trust_root == sim.entries[1]


def test_withheld_rotation_is_an_outage_never_the_old_root(sim: Simulator, rotation_pending: Client) -> None:
    """404 for the entry bundle (and the per-entry objects): offline on epoch 1 under v1, with nothing saved;
    once the files are served again the rotation is followed."""
    saved, memory = disk(rotation_pending), rotation_pending.state
    for path in ("/tile/entries/000.p/4", "/entry/001", "/entry/002", "/entry/003"):
        sim.override(path, SimResponse.json({"error": "not found"}, 404))
    result = rotation_pending.refresh()
    assert result.offline is True and result.epoch == 1 and result.epochs_verified == ()
    assert disk(rotation_pending) == saved and rotation_pending.state == memory
    sim.heal()
    assert rotation_pending.refresh().epochs_verified == (2, 3)
    assert rotation_pending.state.trust_root == sim.entries[1]


# -- offline instead of refused ----------------------------------------------------------------------------------
#
# Decision: a checkpoint the log signed but cannot back (entries it implies are missing on every mirror) is
# a FetchError for the missing file, naming the size that implies it. The client cannot tell a log that
# withholds entries from mirrors that lag, so a client with a verified state stays on it, offline, and says
# why; a client without one has no keys (the FetchError is raised). In both cases nothing of the hostile
# checkpoint is saved: not its size, root or freshness time, so the next honest checkpoint is accepted.


def _signed_checkpoint(sim: Simulator, size: int, root: bytes, timestamp: int) -> bytes:
    """A checkpoint the log key signs and the log's freshness key cosigns: the log itself misbehaving."""
    cp = Checkpoint(sim.world.origin, size, root)
    return add_cosignatures(sign_checkpoint(cp, sim.world.log_note), [sim.world.freshness_cosigner.cosign(cp.body(),
                                                                                                          timestamp)])


def test_signed_checkpoint_of_size_2_63_minus_1_is_never_an_update(sim3: Simulator, state_dir: Path) -> None:
    sim3.freshness_time = T0 + 10
    client = sim3.client(state_dir, now=T0 + 200)
    client.refresh()
    saved, memory = disk(client), client.state
    sim3.override("/checkpoint", SimResponse(200, _signed_checkpoint(sim3, MAX_SIZE, b"\x11" * 32, T0 + 150)))
    result = client.refresh()
    assert result.offline is True and result.epoch == 3 and result.checkpoint_size == 3
    assert result.epochs_verified == () and result.message.startswith("OFFLINE: ")
    assert f"though the checkpoint of size {MAX_SIZE} implies it" in result.message
    assert disk(client) == saved and client.state == memory and client.state.freshness_time == T0 + 10

    # The hostile freshness time (T0 + 150) was not saved: an honest checkpoint cosigned at T0 + 80 (more than
    # the 60 s slack before it) is accepted, not refused as a replay.
    sim3.heal()
    sim3.freshness_time = T0 + 80
    honest = client.refresh()
    assert not honest.offline and honest.epoch == 3 and client.state.freshness_time == T0 + 80


def test_signed_checkpoint_of_size_2_63_minus_1_leaves_a_new_client_without_keys(sim3: Simulator,
                                                                                  state_dir: Path) -> None:
    sim3.override("/checkpoint", SimResponse(200, _signed_checkpoint(sim3, MAX_SIZE, b"\x11" * 32, T0)))
    client = sim3.client(state_dir)
    with client_refuses(client, FetchError, f"though the checkpoint of size {MAX_SIZE} implies it") as info:
        client.refresh()
    assert str(info.value).startswith("log unreachable and no verified state saved yet: ")
    assert disk(client) is None


def test_checkpoint_with_a_forged_size_is_refused(sim3: Simulator, state_dir: Path) -> None:
    """The honest checkpoint with its size line changed (signatures kept): not signed by the log."""
    client = sim3.client(state_dir)
    client.refresh()
    forged = sim3.checkpoint().replace(b"\n3\n", f"\n{MAX_SIZE}\n".encode(), 1)
    assert forged != sim3.checkpoint()
    sim3.override("/checkpoint", SimResponse(200, forged))
    with client_refuses(client, SignatureError, "Ed25519 signature does not verify under key"):
        client.refresh()


# -- forged output -----------------------------------------------------------------------------------------------


def _printable(text: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or ord(c) in (0x2028, 0x2029)
                   or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in text)


HOSTILE_TEXT = "down\n\x1b[2K\x1b[32mOK: keys verified, epoch 99\x00\r\u202e\u2028"


@pytest.mark.parametrize("body", [
    HOSTILE_TEXT.encode(),
    json.dumps({"error": HOSTILE_TEXT}).encode(),
    b"\xff\xfe" + HOSTILE_TEXT.encode("utf-16-le"),
], ids=["raw", "json-error", "not-utf8"])
def test_error_body_never_reaches_the_offline_message_unsanitised(sim3: Simulator, state_dir: Path,
                                                                  body: bytes) -> None:
    client = sim3.client(state_dir)
    client.refresh()
    sim3.override("/checkpoint", SimResponse(500, body))
    result = client.refresh()
    assert result.offline is True and "HTTP 500" in result.message
    assert _printable(result.message), repr(result.message)

    fresh = sim3.client(state_dir.parent / "fresh")
    with refused(FetchError, "HTTP 500") as info:
        fresh.refresh()
    assert _printable(str(info.value)), repr(str(info.value))


def test_error_body_control_characters_are_escaped_not_dropped(sim3: Simulator, state_dir: Path) -> None:
    client = sim3.client(state_dir)
    client.refresh()
    sim3.override("/checkpoint", SimResponse(500, HOSTILE_TEXT.encode()))
    message = client.refresh().message
    assert "down\\x0a\\x1b[2K\\x1b[32mOK: keys verified, epoch 99\\x00" in message, message


# -- a freshness time ahead of the clock ---------------------------------------------------------------------------


def test_future_freshness_within_the_skew_is_accepted_but_saved_as_now(sim3: Simulator, state_dir: Path) -> None:
    """The log's clock runs 299 s ahead (within the 300 s skew): accepted, but the state saves the client's
    ``now``, so the next honest checkpoint, stamped by a correct clock before that time, is no replay."""
    sim3.freshness_time = NOW + 299
    client = sim3.client(state_dir)
    assert client.refresh().epoch == 3
    assert client.state.freshness_time == NOW
    assert ClientState.from_bytes(disk(client)).freshness_time == NOW

    sim3.freshness_time = NOW + 40
    client.clock = lambda: NOW + 60
    result = client.refresh()
    assert not result.offline and client.state.freshness_time == NOW + 40


# -- a revocation is never undone ----------------------------------------------------------------------------------


@pytest.mark.parametrize("comeback", ["same id and key", "same id, new key", "same key, new id"])
@pytest.mark.parametrize("gap", [False, True], ids=["next-epoch", "two-epochs-later-after-restart"])
def test_revoked_fleet_active_again_in_a_later_epoch_is_refused(sim: Simulator, state_dir: Path, comeback: str,
                                                                gap: bool) -> None:
    one = fleet("fleet-1")
    sim.add_epoch([one, fleet("fleet-2")])
    sim.add_epoch([fleet("fleet-1", "revoked"), fleet("fleet-2")])
    client = sim.client(state_dir)
    assert [f.fleet_id for f in client.refresh().fleets] == ["fleet-2"]
    if gap:
        sim.add_epoch([fleet("fleet-2")])          # epoch 3 no longer lists fleet-1 at all
        assert client.refresh().epoch == 3
        client = sim.client(state_dir)            # the marks come back from state.json
    again = {"same id and key": one,
             "same id, new key": dataclasses.replace(one, public_key=fleet_key("fleet-1 rekeyed")),
             "same key, new id": dataclasses.replace(one, fleet_id="fleet-1b")}[comeback]
    sim.add_epoch([again, fleet("fleet-2")])       # genuinely signed and logged
    with client_refuses(client, RollbackError, "was revoked in an earlier epoch (a revocation is never undone)"):
        client.refresh()
    assert "fleet-1" not in [f.fleet_id for f in client.fleets()]


# -- not a fleetkeys entry -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [b"hello", b"", b'{"format":"example.other/v1"}', b'{"format":"fleetkeys/bundle/v2"}'],
                         ids=["hello", "empty", "other-format", "unknown-version"])
def test_entry_that_is_not_a_fleetkeys_entry_is_refused(sim: Simulator, state_dir: Path, entry: bytes) -> None:
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.append(entry)                              # logged: the tree root matches
    sim.add_epoch()                                # and an honest epoch after it
    with client_refuses(client, FormatError, "log entry is neither a fleetkeys bundle nor a trust-root rotation"):
        client.refresh()


# -- two processes sharing one state directory -------------------------------------------------------------------------


def _states(sim: Simulator, tmp: Path) -> list[ClientState]:
    """Verified states of one log at sizes 1, 2 and 3."""
    return [client_at(sim, tmp / f"at-{size}", size).state for size in (1, 2, 3)]


def test_second_save_of_an_older_tree_head_is_refused(sim3: Simulator, tmp_path: Path) -> None:
    at1, at2, at3 = _states(sim3, tmp_path)
    shared = tmp_path / "shared"
    a, b = StateStore(shared), StateStore(shared)
    a.load()
    a.save(at1)
    assert b.load() == at1                          # both processes now hold size 1
    a.save(at3)                                     # A moves on to size 3
    with refused(StateConflictError, "was changed by another process since it was read"):
        b.save(at2)                                 # B would write an older tree head over it
    assert ClientState.from_bytes((shared / "state.json").read_bytes()) == at3
    assert b.load() == at3                          # B reloads and sees A's state
    b.save(at3)


def test_first_saves_of_two_fresh_stores_conflict(sim3: Simulator, tmp_path: Path) -> None:
    at1, _, at3 = _states(sim3, tmp_path)
    shared = tmp_path / "shared"
    a, b = StateStore(shared), StateStore(shared)
    assert a.load() == b.load() == ClientState()
    a.save(at3)
    with refused(StateConflictError, "reload and refresh again"):
        b.save(at1)
    assert ClientState.from_bytes((shared / "state.json").read_bytes()) == at3


def test_client_sharing_a_state_directory_never_writes_back_an_older_head(sim: Simulator, tmp_path: Path) -> None:
    """Two clients on one directory: B loaded the state at size 1, A then saved size 3. B's refresh must end
    on A's tree head (it reloads on the conflict), not write its older view back."""
    sim.add_epoch()
    shared = tmp_path / "shared"
    a = sim.client(shared, name="a")
    a.refresh()
    b = sim.client(shared, name="b")
    sim.add_epoch()
    sim.add_epoch()
    assert a.refresh().checkpoint_size == 3
    assert b.state.checkpoint_size == 1
    result = b.refresh()
    assert result.epoch == 3 and b.state == a.state
    assert ClientState.from_bytes((shared / "state.json").read_bytes()) == a.state

