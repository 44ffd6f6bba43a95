"""Canonical JSON, keysets, bundles and trust roots.

Tests are named after what they stop: a second encoding of one value, a keyset swapped under a signed
statement (digest), a statement nobody trusted signed (threshold), a countersignature replayed onto
other anchor signatures, one signer counted twice, a root rotated by its successor alone, a root
rolled back or skipped, and so on. Everything is built from tests.factory's fixed-seed World.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.factory import DAY, NAMESPACE, T0, SeedSigner, World, fleet, fleet_key
from verifier.bundle import (
    Bundle,
    VerifiedBundle,
    countersignature_message,
    parse_bundle,
    verify_bundle,
)
from verifier.cjson import dumps_canonical, loads_canonical
from verifier.errors import (
    ChainError,
    DigestError,
    ExpiredError,
    FormatError,
    MismatchError,
    RollbackError,
    SizeLimitError,
    ThresholdError,
    TrustRootError,
    VerificationError,
)
from verifier.keyset import (
    GENESIS_PREVIOUS,
    canonicalize_keyset,
    check_chain,
    encode_keyset,
    parse_keyset,
    parse_time,
)
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier
from verifier.signatures import KeyGroup, SignatureEntry
from verifier.statement import Statement
from verifier.trustroot import (
    LogConfig,
    encode_envelope,
    encode_trust_root_body,
    load_trust_root,
    parse_envelope,
    sign_trust_root,
    signing_message,
    verify_rotation,
)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def chain(world) -> list[bytes]:
    return world.chain(3)


def loads(data: bytes):
    return loads_canonical(data, "test", 1 << 20)


# --- canonical JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b'{"a":1,"b":[true,false,null,-5,"x"]}',
    b'{}', b'[]', b'0', b'-1', b'"\xc3\xa9"', b'"\\n\\t\\"\\\\"', b'"\\u001f"', b'"/"', b'"\x7f"',
    b'{"":0,"A":1,"a":2,"\xc3\xa9":3}',
])
def test_canonical_json_accepted(data):
    assert dumps_canonical(loads(data)) == data


@pytest.mark.parametrize(("desc", "data"), [
    ("duplicate keys", b'{"a":1,"a":1}'),
    ("duplicate keys nested", b'{"a":{"b":1,"b":2}}'),
    ("float", b'1.0'),
    ("float in object", b'{"a":1.5}'),
    ("exponent", b'1e3'),
    ("upper-case exponent", b'1E3'),
    ("negative zero", b'-0'),
    ("NaN", b'NaN'),
    ("Infinity", b'{"a":Infinity}'),
    ("-Infinity", b'[-Infinity]'),
    ("leading space", b' {}'),
    ("trailing newline", b'{}\n'),
    ("space after colon", b'{"a": 1}'),
    ("space after comma", b'[1, 2]'),
    ("tab", b'[1,\t2]'),
    ("unsorted keys", b'{"b":1,"a":2}'),
    ("unsorted nested keys", b'{"a":{"d":1,"c":2}}'),
    ("escaped letter", b'"\\u0041"'),
    ("escaped slash", b'"\\/"'),
    ("escaped non-ASCII", b'"\\u00e9"'),
    ("upper-case escape", b'"\\u001F"'),
    ("long escape for newline", b'"\\u000a"'),
    ("raw control character", b'"a\x01b"'),
    ("raw newline in string", b'"a\nb"'),
    ("leading zero", b'01'),
    ("plus sign", b'+1'),
    ("trailing comma", b'[1,]'),
    ("single quotes", b"{'a':1}"),
    ("invalid UTF-8", b'"\xff"'),
    ("overlong UTF-8", b'"\xc0\xaf"'),
    ("UTF-8 BOM", b'\xef\xbb\xbf{}'),
    ("UTF-16", '{}'.encode("utf-16")),
    ("empty", b''),
    ("two values", b'{}{}'),
    ("huge integer", b'1' * 5000),
    ("nested deeper than 8", b'[' * 10 + b']' * 10),
    ("very deep nesting", b'[' * 100000 + b']' * 100000),
])
def test_canonical_json_rejected(desc, data):
    with pytest.raises(FormatError):
        loads(data)


@pytest.mark.parametrize("data", [b'"\\ud800"', b'{"a":"\\udfff"}', b'{"\\ud83d":1}'])
def test_lone_surrogate_escape_is_a_format_error(data):
    with pytest.raises(FormatError):
        loads(data)


def test_surrogate_pair_escape_is_non_canonical():
    with pytest.raises(FormatError):
        loads(b'"\\ud83d\\udd11"')  # canonical form is the raw UTF-8 of U+1F511
    assert loads('"\U0001f511"'.encode()) == "\U0001f511"


def test_canonical_json_size_limit_and_type():
    with pytest.raises(SizeLimitError):
        loads_canonical(b"[" + b"1," * 100 + b"1]", "x", 100)
    with pytest.raises(FormatError):
        loads_canonical("{}", "x", 100)


def test_dumps_canonical_refuses_floats_and_odd_types():
    for value in (1.0, {"a": float("nan")}, {1: 2}, b"bytes", object(), [[[[[[[[[[1]]]]]]]]]]):
        with pytest.raises(FormatError):
            dumps_canonical(value)


# --- keysets --------------------------------------------------------------------------------------


def keyset_obj(world: World, epoch: int = 1) -> dict:
    previous = None if epoch == 1 else hashlib.sha256(b"epoch before").digest()
    fleets = [fleet("eu-west-1"), fleet("us-east-1", algorithm="p256"), fleet("zz-ed", "retired", "ed25519")]
    return json.loads(world.keyset(epoch, fleets, previous=previous))


def with_field(obj: dict, path: tuple, value) -> bytes:
    """Canonical bytes of ``obj`` with the field at ``path`` set (``...`` deletes it)."""
    obj = json.loads(json.dumps(obj))
    target = obj
    for p in path[:-1]:
        target = target[p]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return dumps_canonical(obj)


def test_valid_keyset_parses(world):
    data = dumps_canonical(keyset_obj(world))
    ks = parse_keyset(data)
    assert ks.epoch == 1 and ks.namespace == NAMESPACE
    assert ks.raw == data and ks.digest == hashlib.sha256(data).digest()
    assert ks.previous == bytes(32)
    assert [f.fleet_id for f in ks.fleets] == ["eu-west-1", "us-east-1", "zz-ed"]
    assert ks.fleet("us-east-1").algorithm == "p256"
    assert ks.fleet("nope") is None


def test_encode_keyset_is_canonical_and_sorted(world):
    fleets = [fleet("b"), fleet("a")]
    data = encode_keyset(epoch=3, namespace=NAMESPACE, issued_at=T0, expires_at=T0 + DAY,
                         previous=hashlib.sha256(b"2").digest(), fleets=fleets)
    assert data == dumps_canonical(json.loads(data))
    assert [f.fleet_id for f in parse_keyset(data).fleets] == ["a", "b"]
    assert data.startswith(b'{"epoch":3,"expires_at":"2026-11-26T10:00:00Z","fleets":[{"algorithm":"x25519",')


def test_active_fleets_window(world):
    ks = parse_keyset(dumps_canonical(keyset_obj(world)))
    f = ks.fleet("eu-west-1")
    assert f in ks.active_fleets(f.not_before)
    assert f not in ks.active_fleets(f.not_before - 1)
    assert f not in ks.active_fleets(f.not_after)
    assert ks.fleet("zz-ed") not in ks.active_fleets(T0)  # retired


BAD_TIMES = ["2027-01-01T00:00:00", "2027-01-01 00:00:00Z", "2027-1-01T00:00:00Z", "2027-02-30T00:00:00Z",
             "2027-01-01T24:00:00Z", "2027-01-01T00:00:60Z", "2027-01-01T00:00:00+00:00", "2027-01-01T00:00:00.0Z",
             "2027-01-01t00:00:00z", "", " 2027-01-01T00:00:00Z", 1798761600, None, "0000-01-01T00:00:00Z"]

KEYSET_BAD_FIELDS = [
    (("epoch",), 0), (("epoch",), -1), (("epoch",), 1 << 63), (("epoch",), "1"), (("epoch",), True),
    (("epoch",), None), (("epoch",), ...),
    *[(("expires_at",), t) for t in BAD_TIMES],
    *[(("issued_at",), t) for t in BAD_TIMES],
    (("issued_at",), "2046-11-20T10:00:00Z"),          # = expires_at
    (("issued_at",), "2050-01-01T00:00:00Z"),          # after expires_at
    (("namespace",), ""), (("namespace",), "with space"), (("namespace",), "caf\u00e9"), (("namespace",), "n" * 257),
    (("namespace",), 7), (("namespace",), ...),
    (("previous",), "0" * 63), (("previous",), "0" * 65), (("previous",), "A" * 64), (("previous",), "g" * 64),
    (("previous",), None), (("previous",), ...),
    (("fleets",), {}), (("fleets",), "none"), (("fleets",), None), (("fleets",), ...), (("fleets",), [1]),
    (("extra",), 1),
    (("fleets", 0, "fleet_id"), ""), (("fleets", 0, "fleet_id"), "x" * 65), (("fleets", 0, "fleet_id"), "a b"),
    (("fleets", 0, "fleet_id"), "caf\u00e9"), (("fleets", 0, "fleet_id"), "a/b"), (("fleets", 0, "fleet_id"), 1),
    (("fleets", 0, "algorithm"), "X25519"), (("fleets", 0, "algorithm"), "rsa"), (("fleets", 0, "algorithm"), None),
    (("fleets", 0, "status"), "Active"), (("fleets", 0, "status"), "expired"), (("fleets", 0, "status"), ["active"]),
    (("fleets", 0, "public_key"), ""), (("fleets", 0, "public_key"), "not base64!"), (("fleets", 0, "public_key"), 5),
    (("fleets", 0, "public_key"), base64.b64encode(bytes(31) + b"\x09").decode().rstrip("=")),
    (("fleets", 0, "not_before"), "2046-11-20T10:00:00Z"),   # = not_after
    (("fleets", 0, "not_before"), "2050-01-01T00:00:00Z"),   # after not_after
    *[(("fleets", 0, "not_after"), t) for t in BAD_TIMES[:4]],
    (("fleets", 0, "extra"), 1), (("fleets", 0, "status"), ...), (("fleets", 0, "public_key"), ...),
]


@pytest.mark.parametrize(("path", "value"), KEYSET_BAD_FIELDS, ids=lambda x: repr(x)[:40])
def test_keyset_bad_field_values(world, path, value):
    with pytest.raises(FormatError):
        parse_keyset(with_field(keyset_obj(world), path, value))


def test_keyset_fleets_must_be_sorted_and_unique(world):
    obj = keyset_obj(world)
    with pytest.raises(FormatError):
        parse_keyset(with_field(obj, ("fleets",), obj["fleets"][::-1]))
    with pytest.raises(FormatError):
        parse_keyset(with_field(obj, ("fleets",), [obj["fleets"][0], obj["fleets"][0]]))
    dup = dict(obj["fleets"][1], fleet_id=obj["fleets"][0]["fleet_id"])
    with pytest.raises(FormatError):
        parse_keyset(with_field(obj, ("fleets",), [obj["fleets"][0], dup]))
    assert parse_keyset(with_field(obj, ("fleets",), [])).fleets == ()


def test_keyset_too_many_fleets(world):
    obj = keyset_obj(world)
    many = [dict(obj["fleets"][0], fleet_id=f"f{i:05d}") for i in range(1025)]
    with pytest.raises(FormatError):
        parse_keyset(with_field(obj, ("fleets",), many))


def test_keyset_must_be_canonical_bytes(world):
    data = dumps_canonical(keyset_obj(world))
    pretty = json.dumps(json.loads(data), indent=2).encode()
    for variant in (pretty, data + b"\n", b" " + data, data.replace(b'"epoch":1', b'"epoch":1.0')):
        with pytest.raises(FormatError):
            parse_keyset(variant)


@pytest.mark.parametrize("value", ["\u0662\u0660\u0662\u0667-01-01T00:00:00Z", "\uff12\uff10\uff12\uff17-01-01T00:00:00Z",
                                   "2027-01-01T00:00:0\u0665Z"])
def test_keyset_times_are_ascii_digits_only(world, value):
    with pytest.raises(FormatError):
        parse_time(value, "t")
    with pytest.raises(FormatError):
        parse_keyset(with_field(keyset_obj(world), ("expires_at",), value))


def test_keyset_genesis_and_chain_rules(world):
    epoch1 = keyset_obj(world, 1)
    with pytest.raises(ChainError):
        parse_keyset(with_field(epoch1, ("previous",), "11" * 32))
    epoch2 = keyset_obj(world, 2)
    with pytest.raises(ChainError):
        parse_keyset(with_field(epoch2, ("previous",), GENESIS_PREVIOUS))
    ks2 = parse_keyset(dumps_canonical(epoch2))
    check_chain(hashlib.sha256(b"epoch before").digest(), ks2)
    with pytest.raises(ChainError):
        check_chain(hashlib.sha256(b"a forked epoch 1").digest(), ks2)


X25519_LOW_ORDER = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # u >= p
    bytes.fromhex("cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880"),  # top bit set
    fleet_key("x")[:31] + bytes([fleet_key("x")[31] | 0x80]),                           # top bit set
]
ED25519_BAD = [
    bytes([1]) + bytes(31),
    bytes(32),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # non-canonical
    bytes.fromhex("0200000000000000000000000000000000000000000000000000000000000000"),  # not on the curve
]
P256_GOOD = fleet_key("p", "p256")
P256_BAD = [
    P256_GOOD[:-1] + bytes([P256_GOOD[-1] ^ 1]),                 # off the curve
    b"\x04" + bytes(64),                                          # (0, 0) is not on the curve
    b"\x02" + P256_GOOD[1:33] + P256_GOOD[33:],                   # wrong prefix for 65 bytes
    b"\x05" + P256_GOOD[1:],
    b"\x02" + b"\xff" * 32,                                       # x >= p
    b"\x04" + b"\xff" * 64,
    b"\x00",                                                      # point at infinity
    P256_GOOD[1:33],                                              # bare x, 32 bytes
    P256_GOOD[:64],
    P256_GOOD + b"\0",
]


def _compressed_off_curve() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    for x in range(1, 100):
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            return candidate
    raise AssertionError("no x without a y found")


@pytest.mark.parametrize(("algorithm", "key"), [
    *[("x25519", k) for k in X25519_LOW_ORDER],
    ("x25519", bytes(31)), ("x25519", bytes(33)), ("x25519", P256_GOOD),
    *[("ed25519", k) for k in ED25519_BAD],
    ("ed25519", fleet_key("e", "ed25519")[:31]), ("ed25519", fleet_key("e", "ed25519") + b"\0"),
    *[("p256", k) for k in P256_BAD],
    ("p256", _compressed_off_curve()),
    ("p256", fleet_key("x")),
], ids=lambda x: x if isinstance(x, str) else x.hex()[:12])
def test_keyset_refuses_invalid_points(world, algorithm, key):
    obj = keyset_obj(world)
    obj["fleets"][0] = dict(obj["fleets"][0], algorithm=algorithm, public_key=base64.b64encode(key).decode())
    with pytest.raises(FormatError):
        parse_keyset(dumps_canonical(obj))


def test_keyset_accepts_valid_points_of_every_algorithm(world):
    for algorithm, key in (("x25519", fleet_key("x")), ("ed25519", fleet_key("e", "ed25519")),
                           ("p256", P256_GOOD)):
        obj = keyset_obj(world)
        obj["fleets"][0] = dict(obj["fleets"][0], algorithm=algorithm, public_key=base64.b64encode(key).decode())
        assert parse_keyset(dumps_canonical(obj)).fleets[0].public_key == key


def test_keyset_refuses_compressed_p256_twin_of_a_valid_key(world):
    """One encoding per key: the compressed form of a valid P-256 key would give a second digest."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    compressed = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), P256_GOOD).public_bytes(
        Encoding.X962, PublicFormat.CompressedPoint)
    obj = keyset_obj(world)
    obj["fleets"][0] = dict(obj["fleets"][0], algorithm="p256", public_key=base64.b64encode(compressed).decode())
    with pytest.raises(FormatError, match="uncompressed"):
        parse_keyset(dumps_canonical(obj))


def test_canonicalize_keyset(world):
    canonical = dumps_canonical(keyset_obj(world))
    obj = json.loads(canonical)
    obj["fleets"] = obj["fleets"][::-1]
    readable = json.dumps(obj, indent=4, sort_keys=False).encode()
    assert canonicalize_keyset(readable) == canonical
    assert canonicalize_keyset(canonical) == canonical
    for bad in (readable.replace(b'"epoch": 1', b'"epoch": 1.0'), b'{"epoch":1,"epoch":2}',
                readable.replace(b'"namespace"', b'"Namespace"'), b'[]', b'"x"', b'{"fleets":[1,{"a":1}]}'):
        with pytest.raises(FormatError):
            canonicalize_keyset(bad)
    dup = dict(obj)
    dup["fleets"] = [obj["fleets"][0], obj["fleets"][0]]
    with pytest.raises(FormatError):
        canonicalize_keyset(json.dumps(dup).encode())


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


def make_root(world: World, *, version: int = 1, anchors=None, anchor_threshold: int = 1, countersigners=None,
              countersigner_threshold: int = 1, namespace: str = NAMESPACE, expires_at: int = T0 + 365 * DAY) -> bytes:
    anchors = anchors if anchors is not None else [world.anchor]
    countersigners = countersigners if countersigners is not None else [world.countersigner]
    return encode_trust_root_body(
        version=version, namespace=namespace,
        anchors=KeyGroup(tuple(NoteVerifier.from_public_key(f"anchor{i}", a.public_key) for i, a in enumerate(anchors)),
                         anchor_threshold),
        countersigners=KeyGroup(tuple(NoteVerifier.from_public_key(f"operator{i}", c.public_key)
                                      for i, c in enumerate(countersigners)), countersigner_threshold),
        log=LogConfig(world.origin, world.log_note.verifier, world.freshness_cosigner.verifier, 3600),
        witnesses=KeyGroup((), 0),
        expires_at=expires_at,
    )


def test_same_anchor_signature_twice_does_not_meet_threshold_2(world):
    second = SeedSigner("second anchor")
    root = load_trust_root(encode_envelope(make_root(world, anchors=[world.anchor, second], anchor_threshold=2)))
    ks = world.keyset(1, [fleet("a")])
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
    ks = world.keyset(1, [fleet("a")])
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
