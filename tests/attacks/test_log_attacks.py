"""Attacks on the log (docs/DESIGN.md §5, §7): mix-and-match across logs, proofs for other entries, a log
that goes backwards, and forks shown to different clients (split view)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attacks.helpers import LONG_NOW, client_at, client_refuses, core_refuses, long_log, state_at, v2, verify
from tests.attacks.simulator import SimResponse, Simulator, Witness
from tests.factory import SeedSigner, World, fleet
from verifier.checkpoint import Checkpoint
from verifier.cosignature import add_cosignatures
from verifier.errors import (
    ConsistencyError,
    MismatchError,
    ProofError,
    SignatureError,
    ThresholdError,
)
from verifier.note import sign_note
from verifier.update import ClientState

OTHER_ORIGIN = "log.elsewhere.example/v1"


@pytest.fixture
def other_log(world: World) -> Simulator:
    """Another log (its own origin and keys) that logged the same genuine bundles and one more."""
    other = Simulator(World(origin=OTHER_ORIGIN, log=SeedSigner("other log"), freshness=SeedSigner("other fresh")))
    for bundle in world.chain(3):  # our anchor's and operator's bundles, naming our trust root
        other.publish_bundle(bundle)
    other.append(b"an entry only the other log has")
    return other


# -- mix and match ---------------------------------------------------------------------------------------


def test_bundle_and_checkpoint_from_another_log_are_refused(sim3: Simulator, other_log: Simulator,
                                                            state_dir: Path) -> None:
    state = state_at(sim3, 2)
    bundle, proof, checkpoint = other_log.material(3)
    with core_refuses(state, SignatureError, "note has no signature by a known key (found: log.elsewhere.example/v1+"):
        verify(sim3, 3, state, bundle=bundle, proof=proof, checkpoint=checkpoint)

    client = sim3.client(state_dir)
    client.refresh()
    sim3.split_view("client", other_log)  # every answer now comes from the other log
    with client_refuses(client, SignatureError, "note has no signature by a known key"):
        client.refresh()


def test_inclusion_proof_from_another_log_is_refused(sim3: Simulator, other_log: Simulator) -> None:
    state = state_at(sim3, 2)
    # Our log's checkpoint, the other log's proof (and its tree head) for the same bundle.
    _, proof, _ = other_log.material(3)
    with core_refuses(state, ProofError, "it is relative to another tree head than the verified checkpoint"):
        verify(sim3, 3, state, proof=proof)


def test_our_log_key_over_another_origin_is_refused(sim3: Simulator) -> None:
    # The log key signs a tree head whose origin line names another log (key reused across logs).
    state = state_at(sim3, 2)
    head = sim3.tree_head()
    body = Checkpoint(OTHER_ORIGIN, head.size, head.root).body()
    signed = sign_note(body, [sim3.world.log_note])
    checkpoint = add_cosignatures(signed, [sim3.world.freshness_cosigner.cosign(body, sim3.freshness_time)])
    proof = sim3.tlog_proof(sim3.bundle_index[3], checkpoint=checkpoint)
    with core_refuses(state, MismatchError, f"checkpoint origin {OTHER_ORIGIN!r} is not the trusted log"):
        verify(sim3, 3, state, checkpoint=checkpoint, proof=proof)


def test_bundle_for_another_namespace_is_refused(sim: Simulator, world: World) -> None:
    # Genuinely signed by our anchor and operator, but for another app's namespace.
    other_app = World(namespace="example.other-app/fleet-keys/v1")
    keyset = other_app.keyset(1, [])
    assert other_app.anchor.public_key == world.anchor.public_key
    sim.publish_bundle(other_app.bundle(keyset, 1))
    with core_refuses(ClientState(), MismatchError, "is not the trusted namespace"):
        verify(sim, 1, ClientState())


# -- inclusion --------------------------------------------------------------------------------------------


def test_inclusion_proof_for_another_entry_is_refused(sim3: Simulator, state_dir: Path) -> None:
    state = state_at(sim3, 2)
    wrong = sim3.tlog_proof(sim3.bundle_index[2])  # the path of epoch 2's leaf, offered for epoch 3
    with core_refuses(state, ProofError, "inclusion proof: computed root"):
        verify(sim3, 3, state, proof=wrong)

    # The client proves entries by the tree root they give with its saved frontier: another entry's bytes
    # at entry 2's position are refused.
    client = client_at(sim3, state_dir, 1)
    sim3.override("/entry/002", SimResponse(200, sim3.entries[1]))
    with client_refuses(client, ConsistencyError, "the entries are not the log's"):
        client.refresh()


def test_hash_tile_of_other_entries_is_refused(tmp_path: Path) -> None:
    """The consistency proof that a catch-up batch (entries 1..255 of a log of 258) is a prefix of the checkpoint
    is computed from ``tile/0/001.p/2``: the hashes of entries 0 and 1 served there (real leaf hashes of the
    log, at the wrong place) or a fabricated hash do not prove it."""
    sim = long_log(258)
    honest = sim.static_file("tile/0/001.p/2")
    for label, lie in [("other entries", sim.static_file("tile/0/000.p/2")), ("one hash flipped", honest[:-1] +
                                                                              bytes([honest[-1] ^ 1]))]:
        client = client_at(sim, tmp_path / label, 1, now=LONG_NOW)
        sim.override("/tile/0/001.p/2", SimResponse(200, lie))
        with client_refuses(client, ConsistencyError, "consistency proof: computed new root"):
            client.refresh()
        assert sim.requests[-1] == ("client", "/tile/0/001.p/2")


def test_bundle_not_in_the_log_is_refused(sim3: Simulator) -> None:
    # A validly signed epoch 4 that the log never included, with epoch 3's proof and the real checkpoint.
    state = state_at(sim3, 3)
    unlogged = sim3.world.bundle(sim3.make_keyset(), 4)
    _, proof, checkpoint = sim3.material(3)
    with core_refuses(state, ProofError, "inclusion proof: computed root"):
        verify(sim3, 3, state, bundle=unlogged, proof=proof, checkpoint=checkpoint)


# -- a log that goes backwards or forks ---------------------------------------------------------------------


def test_checkpoint_smaller_than_saved_is_refused(sim3: Simulator, state_dir: Path) -> None:
    sim3.publish_trust_root(v2(sim3.world))        # size 4, epoch 3 still the latest bundle
    client = sim3.client(state_dir)
    client.refresh()
    state = state_at(sim3, 3)
    assert state.checkpoint_size == 4
    sim3.view_size = 3                              # freshly cosigned, validly signed, but smaller
    with core_refuses(state, ConsistencyError, "checkpoint size 3 is smaller than the size 4 already seen"):
        verify(sim3, 3, state)
    with client_refuses(client, ConsistencyError, "the log went backwards"):
        client.refresh()


def forked_pair(world: World, witness: Witness | None = None, *, extra: int = 0) -> tuple[Simulator, Simulator]:
    """Two views of one log (same keys): the same epochs 1..2, then a different epoch 3 (and more in B)."""
    a, b = Simulator(world, witness=witness), Simulator(world, witness=witness)
    for sim in (a, b):
        for _ in range(2):
            sim.add_epoch()
    a.add_epoch(fleets=[fleet("shown-to-a")])
    b.add_epoch(fleets=[fleet("shown-to-b")])
    for _ in range(extra):
        b.add_epoch()
    return a, b


@pytest.mark.parametrize("extra", [0, 2], ids=["same-size-other-root", "larger-inconsistent-tree"])
def test_forked_checkpoint_split_view_is_refused(world: World, tmp_path: Path, extra: int) -> None:
    view_a, view_b = forked_pair(world, extra=extra)
    client_a = view_a.client(tmp_path / "a", name="a")
    client_b = view_b.client(tmp_path / "b", name="b")
    # Without witnesses each view verifies on its own: the log key signs both histories.
    assert client_a.refresh().checkpoint_size == 3
    assert client_b.refresh().checkpoint_size == 3 + extra

    # The moment client A is shown B's history, the fork is detected from the tree alone, before any entry
    # is applied: B's checkpoint has another root at the size A saw, or B's entries 3.. appended to the tree
    # A saved do not give B's root.
    view_a.split_view("a", view_b)
    if extra == 0:
        with client_refuses(client_a, ConsistencyError, "at that size: the log forked (split view)"):
            client_a.refresh()
    else:
        with client_refuses(client_a, ConsistencyError, "the entries are not the log's, or the log forked"):
            client_a.refresh()
    fragment = "the log forked (split view)" if extra == 0 else "consistency proof: computed"

    state = state_at(view_a, 2)                       # client A's view: size 3, root of A
    assert (state.checkpoint_size, state.checkpoint_root) == (3, view_a.tree_head().root)
    bundle, proof, checkpoint = view_b.material(2)
    with core_refuses(state, ConsistencyError, fragment):
        verify(view_a, 2, state, bundle=bundle, proof=proof, checkpoint=checkpoint,
               consistency=view_b.consistency(3, 3 + extra))


def test_split_view_without_witness_cosignature_is_refused(tmp_path: Path) -> None:
    world = World(witness_threshold=1)
    witness = Witness(world)
    view_a, view_b = forked_pair(world, witness)
    client_a = view_a.client(tmp_path / "a", name="a")
    client_b = view_b.client(tmp_path / "b", name="b")
    assert client_a.refresh().epoch == 3              # the honest witness cosigned A's tree head
    # The witness refuses to cosign B (not consistent with A), so a client requiring 1 witness refuses B.
    with client_refuses(client_b, ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 1 required"):
        client_b.refresh()
    with core_refuses(ClientState(), ThresholdError, "witness cosignatures: 0 distinct"):
        verify(view_b, 2, ClientState(), trust_root=world.trust_root())
