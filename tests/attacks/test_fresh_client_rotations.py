"""A fresh client starts at the newest bundle and follows the rotations its keyset names (FORMAT.md §7.4
step 2, §9.7): from ``trust-root/<v>`` objects, each proven by inclusion below that bundle. Attacks on
those objects and on the bundle's name are refused, and nothing is saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks.helpers import ANCHOR_V2, ANCHOR_V3, OPERATOR_V2, OPERATOR_V3, client_refuses, root_envelope, v2
from tests.attacks.simulator import SimResponse, Simulator
from tests.factory import SeedSigner, World
from verifier.errors import FetchError, FormatError, MismatchError, ProofError, ThresholdError, TrustRootError
from verifier.keyset import TrustRootRef
from verifier.trustroot import encode_trust_root_object


def v3(sim: Simulator) -> bytes:
    return root_envelope(sim.world, 3, ANCHOR_V3, OPERATOR_V3,
                         [("anchor", ANCHOR_V2), ("countersigner", OPERATOR_V2), ("anchor", ANCHOR_V3),
                          ("countersigner", OPERATOR_V3)])


@pytest.fixture
def rotated(sim: Simulator) -> Simulator:
    """Epochs 1-2 under v1, rotation to v2, epoch 3 under v2, rotation to v3, epochs 4-5 under v3."""
    sim.add_epoch()
    sim.add_epoch()
    sim.publish_trust_root(v2(sim.world))
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    sim.publish_trust_root(v3(sim))
    sim.add_epoch(anchor=ANCHOR_V3, countersigner=OPERATOR_V3)
    sim.add_epoch(anchor=ANCHOR_V3, countersigner=OPERATOR_V3)
    return sim


def test_fresh_client_follows_the_named_rotations_without_reading_the_log(rotated: Simulator, state_dir: Path) -> None:
    client = rotated.client(state_dir, name="fresh")
    result = client.refresh()
    assert (result.epoch, result.offline, result.epochs_verified) == (5, False, (5,))
    assert client.state.trust_root_in_force(rotated.world.trust_root()).version == 3
    paths = [p for n, p in rotated.requests if n == "fresh"]
    assert "/trust-root/2" in paths and "/trust-root/3" in paths
    assert not any(p.startswith("/api/") for p in paths)
    # Only the newest entry and the rotations' objects are read, never the older bundles.
    assert not any(p in paths for p in ("/entry/000", "/entry/001", "/entry/003")), paths
    rotated.add_epoch(anchor=ANCHOR_V3, countersigner=OPERATOR_V3)
    assert client.refresh().epoch == 6  # and then it follows the log as usual


def test_a_rotation_object_for_another_envelope_is_refused(rotated: Simulator, state_dir: Path) -> None:
    client = rotated.client(state_dir, name="fresh")
    v2_index = rotated.trust_root_index[2]
    rotated.override("/trust-root/2", SimResponse(200, encode_trust_root_object(v2_index, v3(rotated))))
    with client_refuses(client, ProofError, "inclusion proof: computed root"):
        client.refresh()


def test_a_rotation_object_pointing_after_the_bundle_is_refused(rotated: Simulator, state_dir: Path) -> None:
    client = rotated.client(state_dir, name="fresh")
    late = rotated.size - 1
    rotated.override("/trust-root/2", SimResponse(200, encode_trust_root_object(late, rotated.entries[late])))
    with client_refuses(client, TrustRootError, "not before the newest bundle"):
        client.refresh()


def test_a_withheld_rotation_object_is_an_outage_not_a_trust_decision(rotated: Simulator, state_dir: Path) -> None:
    client = rotated.client(state_dir, name="fresh")
    rotated.override("/trust-root/3", SimResponse(404, b'{"error": "gone"}'))
    with pytest.raises(FetchError, match="trust-root/3: not found"):
        client.refresh()
    assert client.state.checkpoint_size == 0 and not client.state_path.exists()


def test_a_newest_bundle_naming_an_unlogged_root_is_refused(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch()
    sim.root_bodies[2] = sim.world.trust_root_body(2)  # the log names v2 but never logged its rotation
    sim.add_epoch()
    client = sim.client(state_dir, name="fresh")
    with pytest.raises(FetchError, match="trust-root/2: not found"):
        client.refresh()


def test_a_newest_bundle_naming_the_bootstrap_version_with_another_body_is_refused(sim: Simulator,
                                                                                  state_dir: Path) -> None:
    sim.add_epoch()
    keyset = sim.world.keyset(2, [], previous=sim.keyset_digests[1], root=TrustRootRef(1, bytes(32)))
    sim.publish_bundle(sim.world.bundle(keyset, 2))
    client = sim.client(state_dir, name="fresh")
    with client_refuses(client, MismatchError, "names trust root v1 with body SHA-256"):
        client.refresh()


def test_an_entry_after_the_newest_bundle_must_be_a_rotation(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch()
    sim.append(b'{"format":"something else"}')
    client = sim.client(state_dir, name="fresh")
    with client_refuses(client, FormatError, "neither a fleetkeys bundle nor a trust-root rotation"):
        client.refresh()


def test_a_newer_bootstrap_verifies_an_older_named_bundle_itself(sim: Simulator, state_dir: Path) -> None:
    """An app shipping root v2 while the log's newest bundle still names v1 (FORMAT.md §3.3): the bundle
    is verified under the app's own, newer root. Accepted when v2 still trusts the keys that signed it;
    refused when v2 replaced them (the app no longer trusts those keys, whatever the log says)."""
    sim.add_epoch()
    same_keys = root_envelope(sim.world, 2, sim.world.anchor, sim.world.countersigner,
                              [("anchor", sim.world.anchor), ("countersigner", sim.world.countersigner)])
    app = sim.client(state_dir / "same", trust_root=same_keys, name="same-keys")
    assert app.refresh().epoch == 1
    moved = sim.client(state_dir / "moved", trust_root=v2(sim.world), name="new-keys")
    with client_refuses(moved, ThresholdError, "distinct trusted anchor key(s) signed"):
        moved.refresh()


def test_a_rotation_that_moves_the_log_key_rechecks_the_checkpoint_under_it(sim: Simulator, state_dir: Path) -> None:
    """FORMAT.md §7.4 step 4: after following a rotation that changes the log's key, the checkpoint of
    this refresh must verify under the new key too; one signed by the old key only is refused."""
    from verifier.errors import SignatureError
    from verifier.trustroot import sign_trust_root

    sim.add_epoch()
    client = sim.client(state_dir)
    assert client.refresh().epoch == 1
    other = World(log=SeedSigner("another log key"))
    body = other.trust_root_body(2)
    sim.publish_trust_root(sign_trust_root(body, [("anchor", sim.world.anchor),
                                                  ("countersigner", sim.world.countersigner)]))
    with client_refuses(client, SignatureError, "note has no signature by a known key"):
        client.refresh()
