"""The anchor statement (Plexi's SignatureMessage) and strict Ed25519.

* Cloudflare Plexi's published test vectors (``plexi_core/tests/test-vectors.json``, copied below and
  checked against ``../shared/vectors/plexi/`` when present) are reproduced byte for byte: same message
  encoding, same deterministic signature, same one-byte key id.
* The decoder accepts exactly one encoding per value: every other spelling is a :class:`FormatError`.
* Ed25519 verification is strict (ed25519-dalek ``verify_strict``): the forgeries used here are shown to
  pass a lax RFC 8032 verifier written in this file, and must fail :func:`verifier.ed25519.verify`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from verifier import ed25519
from verifier.errors import FormatError, SignatureError, SizeLimitError
from verifier.statement import Statement, parse_statement, statement_hash

SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "plexi" / "test-vectors.json"
VECTORS = [
    {
        "signing_key": "d6af1bca3db4fc2766b0c483706c20bf4837a46d54c1d39c2a34a9088572d712",
        "verifying_key": "606a878700158d92b3a14a0fd37ec82e0f05f92fcf23146abfda2e3a2f10a9bc",
        "key_id": 188,
        "namespace": "log1.example.com",
        "timestamp": 1717084639921,
        "epoch": 1,
        "digest": "1111111111111111111111111111111111111111111111111111111111111111",
        "signature": "769d1ae73792dd8da1515793ba29f2f33f2fca84ba7386f9a01d8272e67c4379"
                     "bdcfd91ea4fa49eafd8f243ac36fe3a7aae90ae92f1729c3c468ddf4e6d2a309",
        "ciphersuite": 1,
    },
    {
        "signing_key": "d6af1bca3db4fc2766b0c483706c20bf4837a46d54c1d39c2a34a9088572d712",
        "verifying_key": "606a878700158d92b3a14a0fd37ec82e0f05f92fcf23146abfda2e3a2f10a9bc",
        "key_id": 188,
        "namespace": "log2.example.com",
        "timestamp": 1717084639921,
        "epoch": 1,
        "digest": "1111111111111111111111111111111111111111111111111111111111111111",
        "signature": "a73807da5d7e12f7ed6328c918e2071173793fea3af96d98f0a649a5f498b5bf"
                     "ebbe96ce7b21b027ccc04e69ac8cf40c2ed2d45ee23b0c30c00abca9753f7909",
        "ciphersuite": 2,
    },
]


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def statement_of(vector: dict) -> Statement:
    return Statement(vector["ciphersuite"], vector["namespace"], vector["timestamp"], vector["epoch"],
                     bytes.fromhex(vector["digest"]))


# --- Plexi's vectors ------------------------------------------------------------------------------


def test_vectors_cover_both_ciphersuites():
    assert sorted(v["ciphersuite"] for v in VECTORS) == [1, 2]


def test_vectors_are_the_published_file():
    if not SHARED_VECTORS.is_file():
        pytest.skip(f"{SHARED_VECTORS} not present")
    assert json.loads(SHARED_VECTORS.read_text()) == VECTORS


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"ciphersuite{v['ciphersuite']}")
def test_plexi_vector_signature_is_reproduced(vector):
    seed = bytes.fromhex(vector["signing_key"])
    public_key = bytes.fromhex(vector["verifying_key"])
    assert ed25519.public_key_from_seed(seed) == public_key
    assert public_key[-1] == vector["key_id"]
    message = statement_of(vector).encode()
    signature = ed25519.sign_with_seed(seed, message)
    assert signature.hex() == vector["signature"]
    ed25519.verify(public_key, message, signature)
    assert parse_statement(message) == statement_of(vector)


def test_protobuf_layout_is_byte_exact():
    vector = next(v for v in VECTORS if v["ciphersuite"] == 1)
    digest = bytes.fromhex(vector["digest"])
    expected = (b"\x08\x01" + b"\x12\x10" + b"log1.example.com" + b"\x18" + varint(1717084639921)
                + b"\x22\x02\x08\x01" + b"\x2a\x20" + digest)
    assert statement_of(vector).encode() == expected
    assert varint(1717084639921) == bytes.fromhex("b1a5e1d1fc31")


def test_bincode_layout_is_byte_exact():
    vector = next(v for v in VECTORS if v["ciphersuite"] == 2)
    digest = bytes.fromhex(vector["digest"])
    expected = (struct.pack("<I", 2) + struct.pack("<Q", 16) + b"log2.example.com" + struct.pack("<Q", 1717084639921)
                + struct.pack("<Q", 1) + struct.pack("<Q", 32) + digest)
    assert statement_of(vector).encode() == expected


def test_signature_over_one_encoding_does_not_verify_the_other():
    vector = VECTORS[0]
    seed = bytes.fromhex(vector["signing_key"])
    st = statement_of(vector)
    sig = ed25519.sign_with_seed(seed, st.encode())
    other = Statement(2, st.namespace, st.timestamp, st.epoch, st.digest).encode()
    with pytest.raises(SignatureError):
        ed25519.verify(ed25519.public_key_from_seed(seed), other, sig)


def test_statement_hash():
    data = statement_of(VECTORS[0]).encode()
    assert statement_hash(data) == hashlib.sha256(data).digest()


# --- strict decoding ------------------------------------------------------------------------------

DIGEST = bytes(range(32))
NS = b"example.messenger/backup-vaults/v1"


NS_FIELD = b"\x12" + varint(len(NS)) + NS
TS_FIELD = b"\x18" + varint(1717084639921)


def pb(*, cs=b"\x08\x01", ns=NS_FIELD, ts=TS_FIELD,
       epoch=b"\x22\x02\x08\x07", digest=b"\x2a\x20" + DIGEST, order=("cs", "ns", "ts", "epoch", "digest"),
       tail=b"") -> bytes:
    fields = {"cs": cs, "ns": ns, "ts": ts, "epoch": epoch, "digest": digest}
    return b"".join(fields[f] for f in order) + tail


def bc(*, cs=2, ns=NS, ns_len=None, ts=1717084639921, epoch=7, dlen=32, digest=DIGEST, tail=b"") -> bytes:
    return (struct.pack("<IQ", cs, len(ns) if ns_len is None else ns_len) + ns
            + struct.pack("<QQQ", ts, epoch, dlen) + digest + tail)


def test_helpers_build_valid_statements():
    assert parse_statement(pb()) == Statement(1, NS.decode(), 1717084639921, 7, DIGEST)
    assert parse_statement(bc()) == Statement(2, NS.decode(), 1717084639921, 7, DIGEST)


def test_extreme_values_round_trip():
    top = (1 << 64) - 1
    for cs in (1, 2):
        st = Statement(cs, "n", top, top, DIGEST)
        assert parse_statement(st.encode()) == st
        st = Statement(cs, "\u00e9" * 128, 0, 0, DIGEST)
        assert parse_statement(st.encode()) == st
    assert len(Statement(1, "n", top, top, DIGEST).encode()) == 2 + 3 + 11 + 2 + 11 + 34


@pytest.mark.parametrize(("desc", "data"), [
    # Non-minimal varints, in every varint of the protobuf encoding.
    ("ciphersuite varint", pb(cs=b"\x08\x81\x00")),
    ("namespace length varint", pb(ns=b"\x12" + bytes([len(NS) | 0x80, 0x00]) + NS)),
    ("timestamp varint", pb(ts=b"\x18" + varint(1717084639921)[:-1] + bytes([varint(1717084639921)[-1] | 0x80, 0]))),
    ("timestamp zero as two bytes", pb(ts=b"\x18\x80\x00")),
    ("epoch message length varint", pb(epoch=b"\x22\x82\x00\x08\x07")),
    ("epoch inner varint", pb(epoch=b"\x22\x03\x08\x87\x00")),
    ("digest length varint", pb(digest=b"\x2a\xa0\x00" + DIGEST)),
    ("varint above 2**64 - 1", pb(ts=b"\x18" + b"\xff" * 9 + b"\x02")),
    ("varint of 11 bytes", pb(ts=b"\x18" + b"\xff" * 10 + b"\x01")),
    ("truncated varint", pb(ts=b"\x18\xff")),
    # Field order, unknown, missing, duplicated fields.
    ("namespace before ciphersuite", pb(order=("ns", "cs", "ts", "epoch", "digest"))),
    ("timestamp before namespace", pb(order=("cs", "ts", "ns", "epoch", "digest"))),
    ("digest before epoch", pb(order=("cs", "ns", "ts", "digest", "epoch"))),
    ("unknown field 6 at the end", pb(tail=b"\x30\x01")),
    ("unknown field between", pb(order=("cs", "ns", "ts", "epoch", "digest"), ts=b"\x18\x01\x30\x01")),
    ("unknown field inside epoch", pb(epoch=b"\x22\x04\x08\x07\x10\x05")),
    ("epoch message empty", pb(epoch=b"\x22\x00")),
    ("epoch message too short", pb(epoch=b"\x22\x01\x08\x07")),
    ("epoch message too long", pb(epoch=b"\x22\x03\x08\x07")),
    ("missing ciphersuite", pb(order=("ns", "ts", "epoch", "digest"))),
    ("missing namespace", pb(order=("cs", "ts", "epoch", "digest"))),
    ("missing timestamp", pb(order=("cs", "ns", "epoch", "digest"))),
    ("missing epoch", pb(order=("cs", "ns", "ts", "digest"))),
    ("missing digest", pb(order=("cs", "ns", "ts", "epoch"))),
    ("repeated timestamp", pb(order=("cs", "ns", "ts", "ts", "epoch", "digest"))),
    ("repeated digest", pb(order=("cs", "ns", "ts", "epoch", "digest", "digest"))),
    ("wrong wire type", pb(cs=b"\x0a\x01")),
    ("trailing byte", pb(tail=b"\x00")),
    ("trailing digest byte", pb(digest=b"\x2a\x20" + DIGEST + b"\x00")),
    ("digest 31 bytes", pb(digest=b"\x2a\x1f" + DIGEST[:31])),
    ("digest 33 bytes", pb(digest=b"\x2a\x21" + DIGEST + b"\x00")),
    ("digest 0 bytes", pb(digest=b"\x2a\x00")),
    ("digest truncated", pb(digest=b"\x2a\x20" + DIGEST[:31])),
    ("namespace not UTF-8", pb(ns=b"\x12\x03ab\xff")),
    ("namespace overlong UTF-8", pb(ns=b"\x12\x03a\xc0\xaf")),
    ("namespace surrogate UTF-8", pb(ns=b"\x12\x03\xed\xa0\x80")),
    ("namespace empty", pb(ns=b"\x12\x00")),
    ("namespace 257 bytes", pb(ns=b"\x12" + varint(257) + b"n" * 257)),
    ("namespace runs past the end", pb(ns=b"\x12\x7fabc", order=("cs", "ns"))),
    ("protobuf carrying ciphersuite 2", pb(cs=b"\x08\x02")),
    ("protobuf carrying ciphersuite 0", pb(cs=b"\x08\x00")),
    ("protobuf carrying ciphersuite 3", pb(cs=b"\x08\x03")),
    ("empty input", b""),
    ("one byte", b"\x08"),
    # Bincode.
    ("bincode carrying ciphersuite 1", bc(cs=1)),
    ("bincode carrying ciphersuite 3", bc(cs=3)),
    ("bincode carrying ciphersuite 8", bc(cs=8)),
    ("bincode namespace length too big", bc(ns_len=len(NS) + 1)),
    ("bincode namespace length too small", bc(ns_len=len(NS) - 1)),
    ("bincode namespace length 2**64 - 1", bc(ns_len=(1 << 64) - 1)),
    ("bincode namespace empty", bc(ns=b"")),
    ("bincode namespace not UTF-8", bc(ns=b"ab\xff")),
    ("bincode digest length 31", bc(dlen=31, digest=DIGEST[:31])),
    ("bincode digest length 33", bc(dlen=33, digest=DIGEST + b"\0")),
    ("bincode digest length field wrong", bc(dlen=33)),
    ("bincode trailing byte", bc(tail=b"\x00")),
    ("bincode truncated", bc()[:-1]),
    ("bincode header only", bc()[:12]),
    ("bincode shorter than its header", bc()[:11]),
])
def test_strict_decoder_rejects(desc, data):
    with pytest.raises(FormatError):
        parse_statement(data)


def test_oversized_statement_is_a_size_limit_error():
    with pytest.raises(SizeLimitError):
        parse_statement(pb(tail=b"\0" * 600))


@pytest.mark.parametrize("value", ["08", None, [8, 1]])
def test_statement_must_be_bytes(value):
    with pytest.raises(FormatError):
        parse_statement(value)


def test_bytearray_is_accepted():
    assert parse_statement(bytearray(pb())) == parse_statement(pb())


@pytest.mark.parametrize("kwargs", [
    {"ciphersuite": 3}, {"ciphersuite": 0}, {"namespace": ""}, {"namespace": "n" * 257}, {"namespace": b"bytes"},
    {"timestamp": -1}, {"timestamp": 1 << 64}, {"epoch": -1}, {"epoch": 1 << 64}, {"epoch": 1.0},
    {"digest": DIGEST[:31]}, {"digest": DIGEST + b"\0"}, {"digest": DIGEST.hex()},
])
def test_statement_constructor_validates(kwargs):
    args = {"ciphersuite": 1, "namespace": "n", "timestamp": 0, "epoch": 1, "digest": DIGEST, **kwargs}
    with pytest.raises(FormatError):
        Statement(**args)


# --- strict Ed25519 -------------------------------------------------------------------------------
# A lax RFC 8032 verifier (cofactorless, no canonicity or small-order checks), from RFC 8032 §6, to
# show the forged signatures below are "valid" for a lax implementation.

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
BASE_Y = 4 * pow(5, P - 2, P) % P


def _recover_x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


BASE = (_recover_x(BASE_Y, 0), BASE_Y, 1, _recover_x(BASE_Y, 0) * BASE_Y % P)


def _add(p1, p2):
    a = (p1[1] - p1[0]) * (p2[1] - p2[0]) % P
    b = (p1[1] + p1[0]) * (p2[1] + p2[0]) % P
    c = 2 * p1[3] * p2[3] * D % P
    d = 2 * p1[2] * p2[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s: int, point):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, point)
        point = _add(point, point)
        s >>= 1
    return q


def _equal(p1, p2) -> bool:
    return (p1[0] * p2[2] - p2[0] * p1[2]) % P == 0 and (p1[1] * p2[2] - p2[1] * p1[2]) % P == 0


def _decompress(data: bytes):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


def _compress(point) -> bytes:
    zinv = pow(point[2], P - 2, P)
    x, y = point[0] * zinv % P, point[1] * zinv % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def lax_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")  # no s < L check
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    return _equal(_mul(s, BASE), _add(r, _mul(k, a)))


SEED = hashlib.sha256(b"strict ed25519 test seed").digest()
PUB = ed25519.public_key_from_seed(SEED)
MSG = pb()
IDENTITY = bytes([1]) + bytes(31)
ORDER8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
SMALL_ORDER = [
    IDENTITY,
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
    bytes(32),                                                                            # order 4
    bytes(31) + b"\x80",                                                                  # order 4, sign bit
    ORDER8,
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),  # order 8, sign bit
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),  # order 8, sign bit
]
NON_CANONICAL = [
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # y = p
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # y = p + 1
    bytes.fromhex("feffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
]


def _secret_scalar(seed: bytes) -> int:
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little")


def test_lax_verifier_agrees_on_honest_signatures():
    sig = ed25519.sign_with_seed(SEED, MSG)
    assert lax_verify(PUB, MSG, sig)
    assert not lax_verify(PUB, MSG + b"x", sig)
    assert _compress(_mul(_secret_scalar(SEED), BASE)) == PUB
    ed25519.verify(PUB, MSG, sig)


@pytest.mark.parametrize("point", SMALL_ORDER + NON_CANONICAL, ids=lambda p: p.hex()[:8] + p.hex()[-4:])
def test_small_order_and_non_canonical_public_keys_are_refused(point):
    with pytest.raises(FormatError):
        ed25519.check_public_key(point)


def test_small_order_points_really_are_small_order():
    for point in SMALL_ORDER:
        decoded = _decompress(point)
        assert decoded is not None
        assert _equal(_mul(8, decoded), (0, 1, 1, 0))


def test_mixed_order_public_key_is_refused():
    """A + T (T of order 8) is on the curve and canonical but not in the prime-order subgroup."""
    mixed = _compress(_add(_decompress(PUB), _decompress(ORDER8)))
    assert _decompress(mixed) is not None
    with pytest.raises(FormatError):
        ed25519.check_public_key(mixed)


@pytest.mark.parametrize("value", [PUB[:31], PUB + b"\0", b"", PUB.hex(), None])
def test_public_key_wrong_length_or_type(value):
    with pytest.raises(FormatError):
        ed25519.check_public_key(value)


def test_valid_public_key_is_returned():
    assert ed25519.check_public_key(PUB) == PUB
    assert ed25519.check_public_key(bytearray(PUB)) == PUB


def test_non_canonical_s_is_refused():
    """S + L verifies under a verifier that reduces S mod L (signature malleability)."""
    sig = ed25519.sign_with_seed(SEED, MSG)
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    assert malleated != sig and lax_verify(PUB, MSG, malleated)
    with pytest.raises(SignatureError):
        ed25519.verify(PUB, MSG, malleated)
    high_bit = sig[:32] + (s + 8 * L).to_bytes(32, "little") if s + 8 * L < 2**256 else None
    if high_bit is not None:
        with pytest.raises(SignatureError):
            ed25519.verify(PUB, MSG, high_bit)


def test_small_order_r_is_refused():
    """R = identity, S = k*a: satisfies [S]B = R + [k]A, so a cofactorless lax verifier accepts it."""
    a = _secret_scalar(SEED)
    k = int.from_bytes(hashlib.sha512(IDENTITY + PUB + MSG).digest(), "little") % L
    forged = IDENTITY + (k * a % L).to_bytes(32, "little")
    assert lax_verify(PUB, MSG, forged)
    with pytest.raises(SignatureError):
        ed25519.verify(PUB, MSG, forged)


def test_small_order_r_of_order_8_is_refused():
    a = _secret_scalar(SEED)
    k = int.from_bytes(hashlib.sha512(ORDER8 + PUB + MSG).digest(), "little") % L
    forged = ORDER8 + (k * a % L).to_bytes(32, "little")
    # A cofactored verifier accepts: [8S]B == [8]R + [8k]A.
    assert _equal(_mul(8 * (k * a % L), BASE), _add(_mul(8, _decompress(ORDER8)), _mul(8 * k, _decompress(PUB))))
    with pytest.raises(SignatureError):
        ed25519.verify(PUB, MSG, forged)


def test_small_order_public_key_signature_for_every_message_is_refused():
    """A = identity: (R = [r]B, S = r) verifies for *any* message under a lax verifier."""
    r = 12345
    forged = _compress(_mul(r, BASE)) + r.to_bytes(32, "little")
    for message in (MSG, b"anything at all"):
        assert lax_verify(IDENTITY, message, forged)
        with pytest.raises(SignatureError):
            ed25519.verify(IDENTITY, message, forged)


@pytest.mark.parametrize(("public_key", "signature"), [
    (PUB, bytes(63)), (PUB, bytes(65)), (PUB, b""), (PUB[:31], bytes(64)), (PUB + b"\0", bytes(64)),
])
def test_verify_refuses_wrong_lengths(public_key, signature):
    with pytest.raises(SignatureError):
        ed25519.verify(public_key, MSG, signature)


def test_verify_refuses_bit_flips():
    sig = ed25519.sign_with_seed(SEED, MSG)
    for bit in range(0, 512, 3):
        flipped = bytearray(sig)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SignatureError):
            ed25519.verify(PUB, MSG, bytes(flipped))
