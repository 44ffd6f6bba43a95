"""Bundles (verifier.bundle): the envelope, anchor signatures and countersignatures.

Tests are named after what they stop: a keyset swapped under a signed statement (digest), a statement
nobody trusted signed (threshold), a countersignature replayed onto other anchor signatures, one signer
counted twice, and so on. Everything is built from tests.factory's fixed-seed World.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.factory import NAMESPACE, T0, SeedSigner, World, fleet
from tests.verifier.helpers import make_root
from verifier.bundle import (
    Bundle,
    VerifiedBundle,
    countersignature_message,
    parse_bundle,
    verify_bundle,
)
from verifier.cjson import dumps_canonical
from verifier.errors import DigestError, FormatError, MismatchError, SizeLimitError, ThresholdError
from verifier.signatures import SignatureEntry
from verifier.statement import Statement
from verifier.trustroot import encode_envelope, load_trust_root


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def chain(world) -> list[bytes]:
    return world.chain(3)


# --- bundles --------------------------------------------------------------------------------------


def sign_bundle(st: bytes, ks: bytes, anchors, countersigners, *, anchor_sigs=None, cs_message=None) -> bytes:
    a_sigs = anchor_sigs if anchor_sigs is not None else [a.sign(st) for a in anchors]
    message = cs_message if cs_message is not None else countersignature_message(st, a_sigs)
    entries = [SignatureEntry.make("anchor", a.public_key, s) for a, s in zip(anchors, a_sigs, strict=True)]
    entries += [SignatureEntry.make("countersigner", c.public_key, c.sign(message)) for c in countersigners]
    return Bundle(st, ks, tuple(entries)).encode()


def test_chain_verifies(world, chain):
    root = world.trust_root()
    previous = bytes(32)
    for epoch, data in enumerate(chain, start=1):
        verified = verify_bundle(data, root)
        assert isinstance(verified, VerifiedBundle)
        assert verified.statement.epoch == verified.keyset.epoch == epoch
        assert len(verified.keyset.fleets) == epoch
        assert verified.raw == data
        assert verified.keyset.previous == previous
        previous = verified.keyset.digest


def test_bundle_encoding_round_trips(chain):
    for data in chain:
        assert parse_bundle(data).encode() == data


def test_ciphersuite_2_bundle_verifies(world):
    ks = world.keyset(1, [fleet("a")])
    verified = verify_bundle(world.bundle(ks, 1, ciphersuite=2), world.trust_root())
    assert verified.statement.ciphersuite == 2


def test_tampered_keyset_is_a_digest_error(world, chain):
    bundle = parse_bundle(chain[0])
    tampered = bundle.keyset.replace(b"fleet-1", b"fleet-X")
    assert tampered != bundle.keyset
    with pytest.raises(DigestError):
        verify_bundle(Bundle(bundle.statement, tampered, bundle.signatures).encode(), world.trust_root())


def test_swapped_keyset_of_another_epoch_is_a_digest_error(world, chain):
    one, two = parse_bundle(chain[0]), parse_bundle(chain[1])
    with pytest.raises(DigestError):
        verify_bundle(Bundle(two.statement, one.keyset, two.signatures).encode(), world.trust_root())


def test_tampered_statement_fails_the_anchor_threshold(world, chain):
    bundle = parse_bundle(chain[0])
    for i in range(len(bundle.statement)):
        st = bytearray(bundle.statement)
        st[i] ^= 0x01
        with pytest.raises(ThresholdError):
            verify_bundle(Bundle(bytes(st), bundle.keyset, bundle.signatures).encode(), world.trust_root())


def test_unknown_anchor_key_fails_the_threshold(world):
    ks = world.keyset(1, [fleet("a")])
    with pytest.raises(ThresholdError):
        verify_bundle(world.bundle(ks, 1, anchor=SeedSigner("rogue anchor")), world.trust_root())


def test_unknown_countersigner_fails_the_threshold(world):
    ks = world.keyset(1, [fleet("a")])
    with pytest.raises(ThresholdError):
        verify_bundle(world.bundle(ks, 1, countersigner=SeedSigner("rogue operator")), world.trust_root())


def test_anchor_signature_cannot_stand_in_for_the_countersignature(world):
    ks = world.keyset(1, [fleet("a")])
    st = world.statement(ks, 1)
    sig = world.anchor.sign(st)
    entries = (SignatureEntry.make("anchor", world.anchor.public_key, sig),
               SignatureEntry.make("countersigner", world.anchor.public_key, sig))
    with pytest.raises(ThresholdError):
        verify_bundle(Bundle(st, ks, entries).encode(), world.trust_root())


def test_same_anchor_signature_twice_does_not_meet_threshold_2(world):
    second = SeedSigner("second anchor")
    root = load_trust_root(encode_envelope(make_root(world, anchors=[world.anchor, second], anchor_threshold=2)))
    ks = world.keyset(1, [fleet("a")], root=world.root_ref(root.body))
    st = world.statement(ks, 1)
    good = sign_bundle(st, ks, [world.anchor, second], [world.countersigner])
    assert verify_bundle(good, root).statement.epoch == 1
    sig = world.anchor.sign(st)
    twice = sign_bundle(st, ks, [world.anchor, world.anchor], [world.countersigner], anchor_sigs=[sig, sig])
    with pytest.raises(ThresholdError):
        verify_bundle(twice, root)
    # A second, different, valid signature by the same key (Ed25519 is deterministic, so forge the hint)
    # is still the same key.
    hinted = Bundle(st, ks, (SignatureEntry("anchor", world.anchor.public_key[-1], sig),
                             SignatureEntry("anchor", second.public_key[-1], sig),
                             SignatureEntry.make("countersigner", world.countersigner.public_key,
                                                 world.countersigner.sign(countersignature_message(st, [sig, sig])))))
    with pytest.raises(ThresholdError):
        verify_bundle(hinted.encode(), root)


def test_same_countersigner_twice_does_not_meet_threshold_2(world):
    second = SeedSigner("second operator")
    root = load_trust_root(encode_envelope(make_root(world, countersigners=[world.countersigner, second],
                                                     countersigner_threshold=2)))
    ks = world.keyset(1, [fleet("a")], root=world.root_ref(root.body))
    st = world.statement(ks, 1)
    assert verify_bundle(sign_bundle(st, ks, [world.anchor], [world.countersigner, second]), root)
    with pytest.raises(ThresholdError):
        verify_bundle(sign_bundle(st, ks, [world.anchor], [world.countersigner, world.countersigner]), root)


def test_countersignature_over_another_anchor_signature_is_rejected(world):
    ks = world.keyset(1, [fleet("a")])
    st = world.statement(ks, 1)
    other_st = world.statement(world.keyset(1, [fleet("b")]), 1)
    message = countersignature_message(st, [world.anchor.sign(other_st)])
    with pytest.raises(ThresholdError):
        verify_bundle(sign_bundle(st, ks, [world.anchor], [world.countersigner], cs_message=message),
                      world.trust_root())


def test_countersignature_replayed_from_another_bundle_is_rejected(world, chain):
    one, two = parse_bundle(chain[0]), parse_bundle(chain[1])
    entries = (two.signatures[0], one.signatures[1])
    with pytest.raises(ThresholdError):
        verify_bundle(Bundle(two.statement, two.keyset, entries).encode(), world.trust_root())


def test_countersignature_binds_every_anchor_signature(world):
    """An extra anchor entry (even a bogus one) changes the countersigned message."""
    ks = world.keyset(1, [fleet("a")])
    good = parse_bundle(world.bundle(ks, 1))
    extra = SignatureEntry("anchor", 7, bytes(64))
    with pytest.raises(ThresholdError):
        verify_bundle(Bundle(good.statement, ks, (good.signatures[0], extra, good.signatures[1])).encode(),
                      world.trust_root())


def test_statement_namespace_mismatch(world):
    other = World(namespace="other.example/vaults")
    ks = other.keyset(1, [fleet("a")])
    with pytest.raises(MismatchError):
        verify_bundle(other.bundle(ks, 1), world.trust_root())


def test_keyset_namespace_and_epoch_must_match_the_statement(world):
    other_ns = World(namespace="other.example/vaults").keyset(1, [fleet("a")])
    st = Statement(1, NAMESPACE, T0 * 1000, 1, hashlib.sha256(other_ns).digest()).encode()
    with pytest.raises(MismatchError):
        verify_bundle(sign_bundle(st, other_ns, [world.anchor], [world.countersigner]), world.trust_root())
    ks = world.keyset(1, [fleet("a")])
    st = Statement(1, NAMESPACE, T0 * 1000, 2, hashlib.sha256(ks).digest()).encode()
    with pytest.raises(MismatchError):
        verify_bundle(sign_bundle(st, ks, [world.anchor], [world.countersigner]), world.trust_root())


def test_signatures_are_checked_before_anything_is_parsed(world):
    """Garbage statement and keyset under bad signatures: the signature failure is what is reported."""
    bad = Bundle(b"\xff" * 10, b"not json", (SignatureEntry("anchor", world.anchor.public_key[-1], bytes(64)),
                                             SignatureEntry("countersigner", 0, bytes(64)))).encode()
    with pytest.raises(ThresholdError):
        verify_bundle(bad, world.trust_root())


def test_signed_garbage_statement_is_a_format_error(world):
    with pytest.raises(FormatError):
        verify_bundle(sign_bundle(b"\x08\x01garbage", b"{}", [world.anchor], [world.countersigner]),
                      world.trust_root())


def test_signed_statement_over_an_invalid_keyset_is_a_format_error(world):
    ks = b'{"epoch":1}'
    st = Statement(1, NAMESPACE, 0, 1, hashlib.sha256(ks).digest()).encode()
    with pytest.raises(FormatError):
        verify_bundle(sign_bundle(st, ks, [world.anchor], [world.countersigner]), world.trust_root())


def bundle_obj(data: bytes) -> dict:
    return json.loads(data)


@pytest.mark.parametrize(("desc", "edit"), [
    ("format v2", lambda o: o.update(format="fleetkeys/bundle/v2")),
    ("unknown field", lambda o: o.update(extra=1)),
    ("missing keyset", lambda o: o.pop("keyset")),
    ("missing signatures", lambda o: o.pop("signatures")),
    ("empty statement", lambda o: o.update(statement="")),
    ("statement not base64", lambda o: o.update(statement="!!!!")),
    ("statement base64 missing padding", lambda o: o.update(statement=o["statement"].rstrip("="))),
    ("keyset as object", lambda o: o.update(keyset={})),
    ("no countersigner", lambda o: o.update(signatures=o["signatures"][:1])),
    ("no anchor", lambda o: o.update(signatures=o["signatures"][1:])),
    ("no signatures", lambda o: o.update(signatures=[])),
    ("countersigner first", lambda o: o.update(signatures=o["signatures"][::-1])),
    ("role witness", lambda o: o["signatures"][0].update(role="witness")),
    ("key_id 256", lambda o: o["signatures"][0].update(key_id=256)),
    ("key_id -1", lambda o: o["signatures"][0].update(key_id=-1)),
    ("key_id string", lambda o: o["signatures"][0].update(key_id="1")),
    ("sig 63 bytes", lambda o: o["signatures"][0].update(sig=base64.b64encode(bytes(63)).decode())),
    ("sig 65 bytes", lambda o: o["signatures"][0].update(sig=base64.b64encode(bytes(65)).decode())),
    ("sig not a string", lambda o: o["signatures"][0].update(sig=None)),
    ("extra field in an entry", lambda o: o["signatures"][0].update(note="x")),
    ("33 signatures", lambda o: o.update(signatures=o["signatures"][:1] * 32 + o["signatures"][1:])),
    ("signatures not a list", lambda o: o.update(signatures={})),
])
def test_bundle_envelope_strictness(world, chain, desc, edit):
    obj = bundle_obj(chain[0])
    edit(obj)
    with pytest.raises(FormatError):
        parse_bundle(dumps_canonical(obj))
    with pytest.raises(FormatError):
        verify_bundle(dumps_canonical(obj), world.trust_root())


def test_bundle_must_be_canonical(chain):
    pretty = json.dumps(json.loads(chain[0]), indent=1).encode()
    for variant in (pretty, chain[0] + b"\n", chain[0].replace(b'{"format"', b'{ "format"')):
        with pytest.raises(FormatError):
            parse_bundle(variant)


def test_bundle_size_limit(world):
    with pytest.raises(SizeLimitError):
        parse_bundle(b" " * (512 * 1024 + 1))
