"""The countersigner library: it signs only the statement it asked for, under a trusted anchor key."""

from __future__ import annotations

import hashlib

import pytest

from countersigner.countersign import (
    AnchorSignatureRefused,
    CountersignRefused,
    ExpectedStatement,
    KeysetMismatch,
    MalformedStatement,
    StatementMismatch,
    build_bundle,
    countersign,
    verify_anchor_signatures,
)
from countersigner.publish import parse_anchor_response
from tests.factory import NAMESPACE, SeedSigner, World
from tests.signer.keysets import chain, make_keyset
from verifier.bundle import countersignature_message, verify_bundle
from verifier.errors import FormatError, MismatchError, SignatureError, VerificationError
from verifier.note import NoteVerifier
from verifier.signatures import KeyGroup
from verifier.statement import Statement

W = World()
ANCHOR, OPERATOR = W.anchor, W.countersigner
KS1, KS2 = chain(NAMESPACE, 2)


def statement_for(keyset: bytes, epoch: int, namespace: str = NAMESPACE, ts: int = 1_795_000_000_000) -> bytes:
    return Statement(1, namespace, ts, epoch, hashlib.sha256(keyset).digest()).encode()


def test_countersigns_exactly_the_requested_statement_and_the_bundle_verifies():
    st = statement_for(KS2, 2)
    sig = ANCHOR.sign(st)
    csig = countersign(st, sig, expected=ExpectedStatement.for_keyset(KS2), anchor_keys=[ANCHOR.public_key],
                       signer=OPERATOR, keyset=KS2)
    assert csig == OPERATOR.sign(countersignature_message(st, [sig]))
    bundle = build_bundle(st, KS2, [(ANCHOR.public_key, sig)], [(OPERATOR.public_key, csig)])
    verified = verify_bundle(bundle, W.trust_root())
    assert verified.keyset.raw == KS2 and verified.statement.epoch == 2


@pytest.mark.parametrize(("statement", "error"), [
    (statement_for(KS2, 2, namespace="other.namespace"), StatementMismatch),  # another log's statement
    (statement_for(KS2, 3), StatementMismatch),                               # replayed onto another epoch
    (statement_for(KS1, 2), StatementMismatch),                               # anchor signed other keyset bytes
])
def test_anchor_answer_for_another_statement_is_refused(statement, error):
    sig = ANCHOR.sign(statement)
    with pytest.raises(error) as info:
        countersign(statement, sig, expected=ExpectedStatement.for_keyset(KS2), anchor_keys=[ANCHOR.public_key],
                    signer=OPERATOR, keyset=KS2)
    assert isinstance(info.value, MismatchError) and "requested" in str(info.value)


def test_forked_previous_is_refused():
    forked = make_keyset(NAMESPACE, 2, previous=b"\x07" * 32)
    st = statement_for(forked, 2)
    expected = ExpectedStatement(NAMESPACE, 2, hashlib.sha256(forked).digest(), previous=hashlib.sha256(KS1).digest())
    with pytest.raises(KeysetMismatch, match="previous"):
        countersign(st, ANCHOR.sign(st), expected=expected, anchor_keys=[ANCHOR.public_key], signer=OPERATOR,
                    keyset=forked)


def test_keyset_bytes_that_do_not_hash_to_the_signed_digest_are_refused():
    st = statement_for(KS2, 2)
    expected = ExpectedStatement(NAMESPACE, 2, hashlib.sha256(KS2).digest())
    with pytest.raises(KeysetMismatch, match="SHA-256"):
        countersign(st, ANCHOR.sign(st), expected=expected, anchor_keys=[ANCHOR.public_key], signer=OPERATOR,
                    keyset=KS1)


def test_expected_previous_without_the_keyset_is_refused():
    st = statement_for(KS2, 2)
    with pytest.raises(KeysetMismatch, match="without the keyset"):
        countersign(st, ANCHOR.sign(st), expected=ExpectedStatement.for_keyset(KS2),
                    anchor_keys=[ANCHOR.public_key], signer=OPERATOR)


def test_signature_by_an_untrusted_key_is_refused():
    st = statement_for(KS2, 2)
    impostor = SeedSigner("impostor")
    with pytest.raises(AnchorSignatureRefused) as info:
        countersign(st, impostor.sign(st), expected=ExpectedStatement.for_keyset(KS2),
                    anchor_keys=[ANCHOR.public_key], signer=OPERATOR, keyset=KS2)
    assert isinstance(info.value, SignatureError)


def test_an_extra_junk_anchor_signature_is_refused_not_skipped():
    st = statement_for(KS2, 2)
    with pytest.raises(AnchorSignatureRefused, match="#2"):
        countersign(st, [ANCHOR.sign(st), bytes(64)], expected=ExpectedStatement.for_keyset(KS2),
                    anchor_keys=[ANCHOR.public_key], signer=OPERATOR, keyset=KS2)


def test_threshold_counts_distinct_anchor_keys():
    st = statement_for(KS2, 2)
    second = SeedSigner("anchor-2")
    group = KeyGroup((*W.trust_root().anchors.keys, NoteVerifier.from_public_key("a2", second.public_key)), 2)
    sig = ANCHOR.sign(st)
    with pytest.raises(AnchorSignatureRefused):  # the same signature twice is one key, not two
        countersign(st, [sig, sig], expected=ExpectedStatement.for_keyset(KS2), anchor_keys=group, signer=OPERATOR,
                    keyset=KS2)
    csig = countersign(st, [sig, second.sign(st)], expected=ExpectedStatement.for_keyset(KS2), anchor_keys=group,
                       signer=OPERATOR, keyset=KS2)
    assert csig == OPERATOR.sign(countersignature_message(st, [sig, second.sign(st)]))


def test_signed_bytes_that_are_not_a_statement_are_refused():
    junk = b"\x08\x01" + b"not a statement"
    with pytest.raises(MalformedStatement):
        countersign(junk, ANCHOR.sign(junk), expected=ExpectedStatement.for_keyset(KS2),
                    anchor_keys=[ANCHOR.public_key], signer=OPERATOR, keyset=KS2)


def test_every_refusal_is_a_verification_error_and_nothing_is_signed():
    class Recorder(SeedSigner):
        calls = 0

        def sign(self, message: bytes) -> bytes:
            Recorder.calls += 1
            return super().sign(message)

    st = statement_for(KS1, 2)
    with pytest.raises(CountersignRefused) as info:
        countersign(st, ANCHOR.sign(st), expected=ExpectedStatement.for_keyset(KS2),
                    anchor_keys=[ANCHOR.public_key], signer=Recorder("countersigner"), keyset=KS2)
    assert isinstance(info.value, VerificationError) and Recorder.calls == 0


def test_anchor_response_fields_must_match_the_serialized_message():
    st = statement_for(KS1, 1)
    body = {"version": 1, "ciphersuite": 1, "namespace": NAMESPACE, "timestamp": 1_795_000_000_000, "epoch": 1,
            "digest": hashlib.sha256(KS1).hexdigest(), "signature": ANCHOR.sign(st).hex(),
            "key_id": ANCHOR.public_key[-1], "serialized_message": st.hex()}
    assert parse_anchor_response(body).statement == st
    for field, value in (("epoch", 2), ("timestamp", 1), ("namespace", "x"), ("ciphersuite", 2)):
        with pytest.raises(FormatError):
            parse_anchor_response({**body, field: value})
    with pytest.raises(FormatError):
        parse_anchor_response({**body, "signature": "00" * 63})
    without = dict(body)
    del without["serialized_message"]
    assert parse_anchor_response(without).statement == st


def test_anchor_signature_is_tried_only_under_keys_matching_its_key_id_hint():
    """As verifier.signatures.verify_threshold: a hint narrows the keys tried, it never widens trust."""
    st = statement_for(KS2, 2)
    sig = ANCHOR.sign(st)
    hint = ANCHOR.public_key[-1]
    expected = ExpectedStatement.for_keyset(KS2)
    for key_ids in (None, [None], [hint]):
        countersign(st, sig, expected=expected, anchor_keys=[ANCHOR.public_key], signer=OPERATOR, keyset=KS2,
                    key_ids=key_ids)
    with pytest.raises(AnchorSignatureRefused, match=f"key id {(hint + 1) % 256}"):
        countersign(st, sig, expected=expected, anchor_keys=[ANCHOR.public_key], signer=OPERATOR, keyset=KS2,
                    key_ids=[(hint + 1) % 256])
    with pytest.raises(ValueError, match="one key id"):
        verify_anchor_signatures(st, [sig], [ANCHOR.public_key], [hint, hint])
