"""Forged bundles: tampered bytes, untrusted or repeated signers, missing or misplaced countersignatures,
and keys used for another purpose.

The distributor here is the attacker: it *logs* the forged bundle, so the inclusion proof and the
checkpoint are valid and the only thing wrong is the forgery under test. Each attack is checked twice:
in the pure core (the frozen state passed in is unchanged) and through the OTA client (``state.json``
is byte-for-byte unchanged).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.attacks.helpers import assert_next_epoch_refused, core_refuses, replace_bundle, state_at, verify
from tests.attacks.simulator import Simulator
from tests.factory import DAY, T0, SeedSigner, fleet
from verifier.bundle import Bundle, countersignature_message, parse_bundle
from verifier.checkpoint import sign_checkpoint
from verifier.cosignature import CosignatureSigner, add_cosignatures
from verifier.errors import DigestError, FormatError, SignatureError, ThresholdError
from verifier.note import NoteSigner, NoteVerifier
from verifier.signatures import KeyGroup, SignatureEntry
from verifier.trustroot import LogConfig, encode_envelope, encode_trust_root_body, parse_envelope


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def multi_anchor_bundle(sim: Simulator, keyset: bytes, epoch: int, anchors, *, key_ids=None) -> bytes:
    """A bundle with one anchor entry per signer in ``anchors`` (optionally lying key-id hints)."""
    statement = sim.world.statement(keyset, epoch)
    sigs = [a.sign(statement) for a in anchors]
    ids = key_ids or [a.public_key[-1] for a in anchors]
    counter = sim.world.countersigner.sign(countersignature_message(statement, sigs))
    entries = [SignatureEntry("anchor", i, s) for i, s in zip(ids, sigs, strict=True)]
    entries.append(SignatureEntry.make("countersigner", sim.world.countersigner.public_key, counter))
    return Bundle(statement, keyset, tuple(entries)).encode()


@pytest.fixture
def sim1(sim: Simulator) -> Simulator:
    sim.add_epoch()
    return sim


# -- tampered bytes ------------------------------------------------------------------------------------


def test_tampered_keyset_byte_is_refused(sim1: Simulator, state_dir: Path) -> None:
    honest = sim1.world.bundle(sim1.make_keyset(), 2)
    keyset = parse_bundle(honest).keyset
    forged = replace_bundle(honest, keyset=flip(keyset, len(keyset) // 2))
    assert_next_epoch_refused(sim1, state_dir, forged, DigestError, "but the signed statement commits to")


def test_revoked_fleet_flipped_to_active_is_refused(sim1: Simulator, state_dir: Path) -> None:
    honest = sim1.world.bundle(sim1.make_keyset(2, [fleet("fleet-1", "revoked"), fleet("fleet-2")]), 2)
    keyset = parse_bundle(honest).keyset
    assert b'"status":"revoked"' in keyset
    forged = replace_bundle(honest, keyset=keyset.replace(b'"status":"revoked"', b'"status":"active"'))
    assert_next_epoch_refused(sim1, state_dir, forged, DigestError, "keyset SHA-256 is")


def test_tampered_statement_is_refused(sim1: Simulator, state_dir: Path) -> None:
    honest = sim1.world.bundle(sim1.make_keyset(), 2)
    statement = parse_bundle(honest).statement
    forged = replace_bundle(honest, statement=flip(statement, len(statement) - 1))  # last digest byte
    assert_next_epoch_refused(sim1, state_dir, forged, ThresholdError, "signature does not verify")


# -- untrusted, repeated and missing signers -----------------------------------------------------------


def test_anchor_signature_by_unknown_key_is_refused(sim1: Simulator, state_dir: Path) -> None:
    # The operator countersigns whatever a rogue "anchor" signed: the independent third party is bypassed.
    forged = sim1.world.bundle(sim1.make_keyset(), 2, anchor=SeedSigner("rogue anchor"))
    assert_next_epoch_refused(sim1, state_dir, forged, ThresholdError, "0 distinct trusted anchor key(s) signed")


def two_anchor_root(sim: Simulator, second_anchor: SeedSigner) -> bytes:
    """A bootstrap root that requires 2 of 2 distinct anchors."""
    w = sim.world
    body = encode_trust_root_body(
        version=1, namespace=w.namespace,
        anchors=KeyGroup((NoteVerifier.from_public_key("anchor0.example", w.anchor.public_key),
                          NoteVerifier.from_public_key("anchor1.example", second_anchor.public_key)), 2),
        countersigners=KeyGroup((NoteVerifier.from_public_key("operator0.example", w.countersigner.public_key),), 1),
        log=LogConfig(w.origin, w.log_note.verifier, w.freshness_cosigner.verifier, 3600),
        witnesses=KeyGroup((), 0), expires_at=T0 + 5 * 365 * DAY)
    return encode_envelope(body)


@pytest.mark.parametrize("hints", ["honest hints", "second hint lies"])
def test_same_anchor_key_twice_does_not_fake_threshold_of_two(sim: Simulator, state_dir: Path, hints: str) -> None:
    second = SeedSigner("anchor-2")
    root = two_anchor_root(sim, second)
    ref = sim.world.root_ref(parse_envelope(root)[0])  # keysets name the root they are signed under

    def keyset(epoch: int) -> bytes:
        return sim.world.keyset(epoch, [fleet(f"fleet-{i}") for i in range(1, epoch + 1)],
                                previous=sim.keyset_digests.get(epoch - 1), root=ref)

    sim.publish_bundle(multi_anchor_bundle(sim, keyset(1), 1, [sim.world.anchor, second]))  # control
    key_ids = None if hints == "honest hints" else [sim.world.anchor.public_key[-1], second.public_key[-1]]
    forged = multi_anchor_bundle(sim, keyset(2), 2, [sim.world.anchor, sim.world.anchor], key_ids=key_ids)
    assert_next_epoch_refused(sim, state_dir, forged, ThresholdError,
                              "1 distinct trusted anchor key(s) signed, 2 required", trust_root=root)


def test_missing_countersignature_is_refused(sim1: Simulator, state_dir: Path) -> None:
    honest = sim1.world.bundle(sim1.make_keyset(), 2)
    anchor_only = tuple(s for s in parse_bundle(honest).signatures if s.role == "anchor")
    forged = replace_bundle(honest, signatures=anchor_only)
    assert_next_epoch_refused(sim1, state_dir, forged, FormatError, "needs at least one anchor and one countersigner")


def test_countersignature_by_unknown_operator_key_is_refused(sim1: Simulator, state_dir: Path) -> None:
    forged = sim1.world.bundle(sim1.make_keyset(), 2, countersigner=SeedSigner("rogue operator"))
    assert_next_epoch_refused(sim1, state_dir, forged, ThresholdError, "0 distinct trusted countersigner key(s)")


def test_countersignature_over_another_anchor_signature_is_refused(sim1: Simulator, state_dir: Path) -> None:
    # The operator countersigned epoch 2 = X. Someone holding only the anchor key signs epoch 2 = Y
    # and reuses the operator's countersignature from X.
    countersigned = parse_bundle(sim1.world.bundle(sim1.make_keyset(2, [fleet("fleet-1")]), 2))
    anchor_only = parse_bundle(sim1.world.bundle(sim1.make_keyset(2, [fleet("fleet-1"), fleet("evil")]), 2))
    reused = tuple(s for s in countersigned.signatures if s.role == "countersigner")
    anchor_sig = tuple(s for s in anchor_only.signatures if s.role == "anchor")
    forged = dataclasses.replace(anchor_only, signatures=anchor_sig + reused).encode()
    assert_next_epoch_refused(sim1, state_dir, forged, ThresholdError,
                              "0 distinct trusted countersigner key(s) signed, 1 required (key_id")


# -- one key, one purpose --------------------------------------------------------------------------


@pytest.mark.parametrize(("anchor", "countersigner", "role"), [
    ("log", "countersigner", "anchor"),            # log key signs a statement
    ("freshness", "countersigner", "anchor"),      # freshness cosigning key signs a statement
    ("countersigner", "countersigner", "anchor"),  # the operator plays the independent third party
    ("anchor", "anchor", "countersigner"),         # the third party plays the operator
], ids=["log-key-signs-statement", "freshness-key-signs-statement", "operator-key-as-anchor",
        "anchor-key-as-countersigner"])
def test_key_for_another_purpose_cannot_sign_a_bundle(sim1: Simulator, state_dir: Path, anchor: str,
                                                      countersigner: str, role: str) -> None:
    w = sim1.world
    forged = w.bundle(sim1.make_keyset(), 2, anchor=getattr(w, anchor), countersigner=getattr(w, countersigner))
    assert_next_epoch_refused(sim1, state_dir, forged, ThresholdError, f"0 distinct trusted {role} key(s) signed")


def _forged_checkpoint(sim: Simulator, *, log_signer, fresh_signer: CosignatureSigner) -> bytes:
    cp = sim.tree_head()
    signed = sign_checkpoint(cp, NoteSigner.from_signer(sim.world.origin, log_signer))
    return add_cosignatures(signed, [fresh_signer.cosign(cp.body(), sim.freshness_time)])


@pytest.mark.parametrize(("log_key", "fresh_key", "cls", "fragment"), [
    ("anchor", "freshness", SignatureError, "note has no signature by a known key"),
    ("countersigner", "freshness", SignatureError, "note has no signature by a known key"),
    ("freshness", "freshness", SignatureError, "note has no signature by a known key"),
    ("log", "anchor", ThresholdError, "log freshness cosignatures: 0 distinct trusted keys cosigned, 1 required"),
    ("log", "log", ThresholdError, "log freshness cosignatures: 0 distinct trusted keys cosigned, 1 required"),
], ids=["anchor-key-signs-checkpoint", "operator-key-signs-checkpoint", "freshness-key-signs-checkpoint",
        "anchor-key-cosigns-freshness", "log-key-cosigns-freshness"])
def test_key_for_another_purpose_cannot_sign_a_checkpoint(sim1: Simulator, log_key: str, fresh_key: str,
                                                          cls: type[Exception], fragment: str) -> None:
    w = sim1.world
    sim1.add_epoch()
    state = state_at(sim1, 1)
    checkpoint = _forged_checkpoint(sim1, log_signer=getattr(w, log_key),
                                    fresh_signer=CosignatureSigner(w.origin + "/freshness", getattr(w, fresh_key)))
    proof = sim1.tlog_proof(sim1.bundle_index[2], checkpoint=checkpoint)
    with core_refuses(state, cls, fragment):
        verify(sim1, 2, state, checkpoint=checkpoint, proof=proof)
