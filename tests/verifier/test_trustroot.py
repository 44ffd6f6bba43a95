"""Trust roots (verifier.trustroot): schema, thresholds, one key per purpose, and rotation.

Tests are named after what they stop: a root rotated by its successor alone, a root rolled back or
skipped, one signer counted twice, a signature made for another purpose, and so on. Everything is built
from tests.factory's fixed-seed World.
"""

from __future__ import annotations

import json

import pytest

from tests.factory import DAY, NAMESPACE, T0, SeedSigner, World
from tests.verifier.helpers import make_root
from verifier.cjson import dumps_canonical
from verifier.errors import ExpiredError, RollbackError, ThresholdError, TrustRootError, VerificationError
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier
from verifier.signatures import SignatureEntry
from verifier.trustroot import (
    encode_envelope,
    load_trust_root,
    parse_envelope,
    sign_trust_root,
    signing_message,
    verify_rotation,
)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


# --- trust roots ----------------------------------------------------------------------------------


def test_world_trust_root_loads(world):
    root = world.trust_root()
    assert root.version == 1 and root.namespace == NAMESPACE
    assert root.anchors.threshold == 1 and root.anchors.keys[0].public_key == world.anchor.public_key
    assert root.log.origin == world.origin and root.log.key == world.log_note.verifier
    assert root.log.freshness_key.alg == ALG_COSIGNATURE_V1
    assert root.witnesses.threshold == 0
    assert root.body == world.trust_root_body()
    assert root.envelope == world.trust_root_bytes()


def test_trust_root_expiry_boundary(world):
    root = world.trust_root()
    root.check_not_expired(root.expires_at - 1)
    with pytest.raises(ExpiredError):
        root.check_not_expired(root.expires_at)


def root_obj(world: World) -> dict:
    return json.loads(world.trust_root_body())


def load_body(body: bytes):
    return load_trust_root(encode_envelope(body))


def test_trust_root_group_thresholds(world):
    with pytest.raises(TrustRootError):
        make_root(world, anchor_threshold=0)
    with pytest.raises(TrustRootError):
        make_root(world, countersigner_threshold=0)
    with pytest.raises(TrustRootError):
        make_root(world, anchor_threshold=2)
    with pytest.raises(TrustRootError):
        make_root(world, countersigners=[world.countersigner, SeedSigner("c2")], countersigner_threshold=3)
    obj = root_obj(world)
    for group, threshold in (("anchors", 0), ("anchors", 2), ("countersigners", 0), ("witnesses", 2),
                             ("anchors", -1), ("anchors", 17)):
        bad = dict(obj, **{group: dict(obj[group], threshold=threshold)})
        with pytest.raises(TrustRootError):
            load_body(dumps_canonical(bad))
    assert load_body(dumps_canonical(dict(obj, witnesses=dict(obj["witnesses"], threshold=1)))).witnesses.threshold == 1


def test_trust_root_duplicate_key_rejected(world):
    obj = root_obj(world)
    key = obj["anchors"]["keys"][0]
    with pytest.raises(TrustRootError):
        load_body(dumps_canonical(dict(obj, anchors={"keys": [key, key], "threshold": 1})))
    renamed = NoteVerifier.from_public_key("another-name", world.anchor.public_key).vkey
    with pytest.raises(TrustRootError):
        load_body(dumps_canonical(dict(obj, anchors={"keys": [key, renamed], "threshold": 2})))


@pytest.mark.parametrize(("desc", "edit"), [
    ("anchor is countersigner", lambda w, o: o["countersigners"].update(keys=o["anchors"]["keys"])),
    ("anchor is log key", lambda w, o: o["anchors"].update(
        keys=[NoteVerifier.from_public_key("a", w.log.public_key).vkey])),
    ("countersigner is log key", lambda w, o: o["countersigners"].update(
        keys=[NoteVerifier.from_public_key("c", w.log.public_key).vkey])),
    ("witness is freshness key", lambda w, o: o["witnesses"].update(
        keys=[NoteVerifier.from_public_key("w", w.freshness.public_key, ALG_COSIGNATURE_V1).vkey])),
    ("freshness key is log key", lambda w, o: o["log"].update(
        freshness_key=NoteVerifier.from_public_key("f", w.log.public_key, ALG_COSIGNATURE_V1).vkey)),
    ("witness is anchor", lambda w, o: o["witnesses"].update(
        keys=[NoteVerifier.from_public_key("w", w.anchor.public_key, ALG_COSIGNATURE_V1).vkey])),
])
def test_one_key_one_purpose(world, desc, edit):
    obj = root_obj(world)
    edit(world, obj)
    with pytest.raises(TrustRootError):
        load_body(dumps_canonical(obj))


@pytest.mark.parametrize(("desc", "edit"), [
    ("version 0", lambda w, o: o.update(version=0)),
    ("version 2**31 + 1", lambda w, o: o.update(version=(1 << 31) + 1)),
    ("namespace with space", lambda w, o: o.update(namespace="a b")),
    ("unknown field", lambda w, o: o.update(extra=1)),
    ("missing witnesses", lambda w, o: o.pop("witnesses")),
    ("log key not named as origin", lambda w, o: o["log"].update(origin="other.example/log")),
    ("log key of cosignature type", lambda w, o: o["log"].update(key=NoteVerifier.from_public_key(
        w.origin, w.log.public_key, ALG_COSIGNATURE_V1).vkey)),
    ("freshness key of note type", lambda w, o: o["log"].update(freshness_key=NoteVerifier.from_public_key(
        "f", w.freshness.public_key).vkey)),
    ("anchor of cosignature type", lambda w, o: o["anchors"].update(keys=[NoteVerifier.from_public_key(
        "a", w.anchor.public_key, ALG_COSIGNATURE_V1).vkey])),
    ("witness of note type", lambda w, o: o["witnesses"].update(keys=[NoteVerifier.from_public_key(
        "w", w.witness.public_key).vkey])),
    ("max_age 59", lambda w, o: o["log"].update(max_age=59)),
    ("max_age above a year", lambda w, o: o["log"].update(max_age=365 * 86400 + 1)),
    ("17 anchors", lambda w, o: o["anchors"].update(keys=[NoteVerifier.from_public_key(
        f"a{i}", SeedSigner(f"a{i}").public_key).vkey for i in range(17)])),
    ("bad vkey", lambda w, o: o["anchors"].update(keys=[o["anchors"]["keys"][0][:-2] + "AA"])),
    ("bad expiry", lambda w, o: o.update(expires_at="soon")),
])
def test_trust_root_schema(world, desc, edit):
    obj = root_obj(world)
    edit(world, obj)
    with pytest.raises(TrustRootError):
        load_body(dumps_canonical(obj))


@pytest.mark.parametrize("data", [b"", b"{}", b"null", b'{"format":"fleetkeys/trust-root/v2","root":"","signatures":[]}',
                                  b'{"format":"fleetkeys/trust-root/v1","root":"e30=","signatures":[]}'])
def test_load_trust_root_reports_trust_root_errors(data):
    with pytest.raises(TrustRootError):
        load_trust_root(data)


# --- trust-root rotation --------------------------------------------------------------------------

NEW_ANCHOR, NEW_OPERATOR = SeedSigner("anchor v2"), SeedSigner("operator v2")


def rotation(world: World, version: int = 2, *, signers=None, namespace: str = NAMESPACE,
             anchors=None, countersigners=None) -> bytes:
    body = make_root(world, version=version, anchors=anchors or [NEW_ANCHOR],
                     countersigners=countersigners or [NEW_OPERATOR], namespace=namespace)
    if signers is None:
        signers = [("anchor", world.anchor), ("countersigner", world.countersigner),
                   ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)]
    return sign_trust_root(body, signers)


def test_rotation_signed_by_old_and_new_is_accepted(world):
    v1 = world.trust_root()
    data = rotation(world)
    v2 = verify_rotation(v1, data)
    assert v2.version == 2 and v2.anchors.keys[0].public_key == NEW_ANCHOR.public_key
    assert v2.envelope == data
    # And the chain continues from v2 with v2's keys.
    v3_body = make_root(world, version=3, anchors=[NEW_ANCHOR], countersigners=[NEW_OPERATOR])
    v3 = verify_rotation(v2, sign_trust_root(v3_body, [("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)]))
    assert v3.version == 3


def test_rotation_signed_only_by_new_keys_is_rejected(world):
    data = rotation(world, signers=[("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    with pytest.raises(ThresholdError):
        verify_rotation(world.trust_root(), data)


@pytest.mark.parametrize("missing", ["old anchor", "old countersigner", "new anchor", "new countersigner"])
def test_rotation_needs_all_four_thresholds(world, missing):
    signers = {"old anchor": ("anchor", world.anchor), "old countersigner": ("countersigner", world.countersigner),
               "new anchor": ("anchor", NEW_ANCHOR), "new countersigner": ("countersigner", NEW_OPERATOR)}
    del signers[missing]
    with pytest.raises(ThresholdError):
        verify_rotation(world.trust_root(), rotation(world, signers=list(signers.values())))


def test_rotation_roles_are_not_interchangeable(world):
    data = rotation(world, signers=[("countersigner", world.anchor), ("anchor", world.countersigner),
                                    ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    with pytest.raises(ThresholdError):
        verify_rotation(world.trust_root(), data)


def test_rotation_version_skip_is_a_rollback_error(world):
    with pytest.raises(RollbackError):
        verify_rotation(world.trust_root(), rotation(world, version=3))


def test_rotation_replay_is_a_rollback_error(world):
    """Keys kept across versions: the signed v1 and a re-sent v2 are both refused at v2."""
    keep = [("anchor", world.anchor), ("countersigner", world.countersigner)]
    v1 = load_trust_root(encode_envelope(make_root(world, version=1)))
    v1_signed = sign_trust_root(make_root(world, version=1), keep)
    v2_data = sign_trust_root(make_root(world, version=2, expires_at=T0 + 700 * DAY), keep)
    v2 = verify_rotation(v1, v2_data)
    with pytest.raises(RollbackError):
        verify_rotation(v2, v1_signed)
    with pytest.raises(RollbackError):
        verify_rotation(v2, v2_data)
    with pytest.raises(RollbackError):
        verify_rotation(v1, v1_signed)


def test_rotation_namespace_change_is_rejected(world):
    with pytest.raises(TrustRootError):
        verify_rotation(world.trust_root(), rotation(world, namespace="other.example/vaults"))


def test_rotation_old_threshold_of_two(world):
    second = SeedSigner("second anchor")
    v1 = load_trust_root(encode_envelope(make_root(world, anchors=[world.anchor, second], anchor_threshold=2)))
    one = rotation(world, signers=[("anchor", world.anchor), ("countersigner", world.countersigner),
                                   ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    with pytest.raises(ThresholdError):
        verify_rotation(v1, one)
    body, entries = parse_envelope(one)
    twice = encode_envelope(body, [entries[0], entries[0], *entries[1:]])
    with pytest.raises(ThresholdError):
        verify_rotation(v1, twice)
    both = rotation(world, signers=[("anchor", world.anchor), ("anchor", second), ("countersigner", world.countersigner),
                                    ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    assert verify_rotation(v1, both).version == 2


def test_rotation_signatures_are_checked_before_the_body_is_parsed(world):
    garbage = encode_envelope(b"not a trust root", [])
    with pytest.raises(ThresholdError):
        verify_rotation(world.trust_root(), garbage)
    signed_garbage = sign_trust_root(b"not a trust root", [("anchor", world.anchor),
                                                           ("countersigner", world.countersigner)])
    with pytest.raises(VerificationError):
        verify_rotation(world.trust_root(), signed_garbage)


def test_rotation_signatures_are_domain_separated(world):
    """A signature over the bare body (or any other purpose's bytes) is not a trust-root signature."""
    body = make_root(world, version=2, anchors=[NEW_ANCHOR], countersigners=[NEW_OPERATOR])
    signers = [("anchor", world.anchor), ("countersigner", world.countersigner),
               ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)]
    bare = encode_envelope(body, [SignatureEntry.make(role, s.public_key, s.sign(body)) for role, s in signers])
    with pytest.raises(ThresholdError):
        verify_rotation(world.trust_root(), bare)
    assert signing_message(body) == b"fleetkeys/trust-root/v1\n" + body


def test_rotation_failures_are_trust_root_errors_as_documented(world):
    keep = [("anchor", world.anchor), ("countersigner", world.countersigner)]
    bad_body = json.loads(make_root(world, version=2))
    bad_body["log"]["max_age"] = 1
    cases = {
        "not JSON": b"garbage",
        "envelope of another format": b'{"format":"x","root":"e30=","signatures":[]}',
        "signed body that is not a trust root": sign_trust_root(b"not a trust root", keep),
        "signed body with max_age 1": sign_trust_root(dumps_canonical(bad_body), keep),
    }
    raised = {}
    for desc, data in cases.items():
        with pytest.raises(VerificationError) as exc:
            verify_rotation(world.trust_root(), data)
        raised[desc] = type(exc.value).__name__
    assert raised == dict.fromkeys(cases, "TrustRootError")
