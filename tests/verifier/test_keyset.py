"""Keysets (verifier.keyset): strict parsing, one encoding per keyset and per key, the epoch chain.

Tests are named after what they stop: a second encoding of one value, an invalid or non-canonical
public key (low-order X25519 points, non-canonical Ed25519, compressed P-256 twins), a broken
``previous`` chain, and so on. Everything is built from tests.factory's fixed-seed World.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import pytest

from tests.factory import DAY, NAMESPACE, T0, World, fleet, fleet_key
from verifier.cjson import dumps_canonical
from verifier.errors import ChainError, FormatError
from verifier.keyset import (
    GENESIS_PREVIOUS,
    canonicalize_keyset,
    check_next_epoch,
    encode_keyset,
    parse_keyset,
    parse_time,
)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


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
        parse_keyset(with_field(epoch2, ("previous",), GENESIS_PREVIOUS.hex()))
    ks2 = parse_keyset(dumps_canonical(epoch2))
    check_next_epoch(Link(1, hashlib.sha256(b"epoch before").digest(), ks2.issued_at), ks2)
    with pytest.raises(ChainError) as info:
        check_next_epoch(Link(1, hashlib.sha256(b"a forked epoch 1").digest(), ks2.issued_at), ks2)
    assert info.value.rule == "previous" and "forked history" in str(info.value)


@dataclass(frozen=True)
class Link:
    """The last accepted epoch as the next-epoch rule sees it (a Keyset, a log row, a signer entry)."""

    epoch: int
    digest: bytes
    issued_at: int | None


@dataclass(frozen=True)
class Step:
    epoch: int
    previous: bytes | None
    issued_at: int | None


D = hashlib.sha256(b"epoch 4").digest()


@pytest.mark.parametrize(("last", "new", "rule", "fragment"), [
    (None, Step(2, GENESIS_PREVIOUS, 10), "epoch", "epoch 2 is not the next epoch 1 (the first epoch is 1)"),
    (Link(4, D, 10), Step(4, D, 10), "epoch", "epoch 4 is not the next epoch 5 (epoch 4 is the last one)"),
    (Link(4, D, 10), Step(7, D, 10), "epoch", "epoch 7 skips epochs 5..6"),
    (None, Step(1, D, 10), "previous", "previous = "),
    (Link(4, D, 10), Step(5, GENESIS_PREVIOUS, 10), "previous", "(forked history)"),
    (Link(4, D, 10), Step(5, D, 9), "issued_at", "issued_at never goes backwards"),
])
def test_next_epoch_rule_names_the_rule_broken(last, new, rule, fragment):
    with pytest.raises(ChainError) as info:
        check_next_epoch(last, new)
    assert type(info.value) is ChainError and info.value.rule == rule and fragment in str(info.value)


@pytest.mark.parametrize(("last", "new"), [
    (None, Step(1, GENESIS_PREVIOUS, 10)),
    (Link(4, D, 10), Step(5, D, 10)),                 # issued_at may stay equal
    (Link(4, D, None), Step(5, D, 1)),                # the last issued_at unknown (digest-only signature)
    (Link(4, D, 10), Step(5, None, None)),            # a digest-only request: only the epoch rule applies
])
def test_next_epoch_rule_accepts(last, new):
    check_next_epoch(last, new)


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
