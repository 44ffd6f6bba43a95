"""Attacks on trust-root rotation (docs/DESIGN.md §4 "Rotation"): root N+1 must be exactly the next version,
keep the namespace, and be signed by a threshold of root N's anchors and countersigners *and* of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks.helpers import (
    ANCHOR_V2,
    ANCHOR_V3,
    NOW,
    OPERATOR_V2,
    OPERATOR_V3,
    client_refuses,
    core_refuses,
    disk,
    root_envelope,
    state_at,
    v2,
)
from tests.attacks.simulator import Simulator
from tests.factory import World
from verifier.client import Client
from verifier.errors import RollbackError, ThresholdError, TrustRootError
from verifier.trustroot import sign_trust_root
from verifier.update import ClientState, verify_trust_root_update


def core_rotate(sim: Simulator, version: int, state: ClientState) -> ClientState:
    envelope, proof, checkpoint = sim.trust_root_material(version)
    consistency = sim.consistency(state.checkpoint_size, sim.size) if state.checkpoint_size else []
    return verify_trust_root_update(envelope, proof, checkpoint, trust_root=sim.world.trust_root(), state=state,
                                    now=NOW, consistency=consistency)


@pytest.fixture
def client1(sim: Simulator, state_dir: Path) -> Client:
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    return client


# -- the honest rotation (positive control) ------------------------------------------------------------------


def test_rotation_is_followed_and_new_keys_sign_later_epochs(sim: Simulator, client1: Client, state_dir: Path) -> None:
    envelope = v2(sim.world)
    sim.publish_trust_root(envelope)
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    result = client1.refresh()
    assert result.epochs_verified == (2, 3) and not result.offline
    assert client1.state.trust_root == envelope
    reloaded = sim.client(state_dir)
    assert reloaded.state == client1.state and reloaded.state.trust_root_in_force(sim.world.trust_root()).version == 2


def test_old_keys_are_refused_after_rotation(sim: Simulator, client1: Client) -> None:
    sim.publish_trust_root(v2(sim.world))
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    client1.refresh()
    # The retired anchor and operator keys (say, stolen) sign epoch 3: no longer trusted.
    sim.add_epoch()
    with client_refuses(client1, ThresholdError, "0 distinct trusted anchor key(s) signed"):
        client1.refresh()


# -- attacks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "fragment"), [
    (False, True, "trust root rotation from v1: 0 distinct trusted anchor key(s) signed, 1 required"),
    (True, False, "trust root v2 self-signature: 0 distinct trusted anchor key(s) signed, 1 required"),
], ids=["signed-only-by-new-keys", "signed-only-by-old-keys"])
def test_rotation_without_both_key_sets_is_refused(sim: Simulator, client1: Client, state_dir: Path, old: bool,
                                                   new: bool, fragment: str) -> None:
    sim.publish_trust_root(v2(sim.world, old=old, new=new))
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    state = state_at(sim, 1)
    with core_refuses(state, ThresholdError, fragment):
        core_rotate(sim, 2, state)
    with client_refuses(client1, ThresholdError, fragment):
        client1.refresh()
    # The client keeps the old root: nothing rotated on disk, and a restarted client is still on v1.
    restarted = sim.client(state_dir)
    assert restarted.state.trust_root is None
    assert restarted.state.trust_root_in_force(sim.world.trust_root()).version == 1


def test_trust_root_version_skip_is_refused(sim: Simulator, client1: Client) -> None:
    # v3 carries every needed signature (v1's keys and its own), but skips v2. The client reads it as the
    # next log entry (no version number outside the signed body steers it).
    v3 = root_envelope(sim.world, 3, ANCHOR_V3, OPERATOR_V3, [
        ("anchor", sim.world.anchor), ("countersigner", sim.world.countersigner),
        ("anchor", ANCHOR_V3), ("countersigner", OPERATOR_V3)])
    sim.publish_trust_root(v3)
    with client_refuses(client1, RollbackError, "expected version 2, found 3"):
        client1.refresh()


def test_trust_root_replay_is_refused(sim: Simulator, client1: Client) -> None:
    envelope = v2(sim.world)
    sim.publish_trust_root(envelope)
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    client1.refresh()
    assert client1.state.trust_root == envelope
    state = client1.state
    # v2 again, offered as v3: v2's own keys did sign it, so only the version check stops it.
    with core_refuses(state, RollbackError, "expected version 3, found 2"):
        core_rotate(sim, 2, state)
    sim.append(envelope)  # logged again after v2 is in force: the next entry the client reads
    with client_refuses(client1, RollbackError, "expected version 3, found 2") as info:
        client1.refresh()
    assert "never skipped or replayed" in str(info.value)


def test_bootstrap_root_replayed_as_rotation_is_refused(sim: Simulator, client1: Client) -> None:
    w = sim.world
    v1_signed = sign_trust_root(w.trust_root_body(1), [("anchor", w.anchor), ("countersigner", w.countersigner)])
    sim.publish_trust_root(v1_signed)
    with client_refuses(client1, RollbackError, "expected version 2, found 1"):
        client1.refresh()


def test_rotation_to_another_namespace_is_refused(sim: Simulator, client1: Client) -> None:
    hijack = World(namespace="example.other-app/fleet-keys/v1")
    body = hijack.trust_root_body(2)
    w = sim.world
    sim.publish_trust_root(sign_trust_root(body, [("anchor", w.anchor), ("countersigner", w.countersigner)]))
    with client_refuses(client1, TrustRootError, "namespace changed from"):
        client1.refresh()


# -- bugs found -------------------------------------------------------------------------------------------------


def test_client_offline_across_rotation_catches_up(sim: Simulator, client1: Client) -> None:
    sim.add_epoch()                                             # epoch 2: signed by the v1 keys
    envelope = v2(sim.world)
    sim.publish_trust_root(envelope)                            # then the keys are replaced
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)  # epoch 3: signed by the v2 keys
    result = client1.refresh()
    assert result.epochs_verified == (2, 3)
    assert client1.state.trust_root == envelope


def test_rotation_before_next_epoch_does_not_break_refresh(sim: Simulator, client1: Client) -> None:
    envelope = v2(sim.world)
    sim.publish_trust_root(envelope)                            # no epoch signed by the v2 keys yet
    result = client1.refresh()
    assert result.epoch == 1 and not result.offline
    assert client1.state.trust_root == envelope


def test_app_update_shipping_the_rotated_root_keeps_working(sim: Simulator, client1: Client, state_dir: Path) -> None:
    envelope = v2(sim.world)
    sim.publish_trust_root(envelope)
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    client1.refresh()
    saved = disk(client1)
    updated_app = sim.client(state_dir, trust_root=envelope)     # the next app release ships root v2
    assert disk(updated_app) == saved
    assert updated_app.refresh().epoch == 2
