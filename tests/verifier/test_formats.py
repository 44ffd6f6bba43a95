"""C2SP formats: tlog-checkpoint, tlog-cosignature v1, tlog-tiles paths and entry bundles, tlog-proof.

Each format has one accepted encoding; every test here either checks the exact bytes or feeds a
second spelling of a valid value and expects a :class:`FormatError`.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.factory import ORIGIN, T0, SeedSigner, World
from verifier.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_body, sign_checkpoint
from verifier.cosignature import (
    CosignatureSigner,
    add_cosignatures,
    check_fresh,
    cosigned_message,
    verify_cosignatures,
)
from verifier.errors import (
    ExpiredError,
    FormatError,
    MismatchError,
    ProofError,
    SignatureError,
    SizeLimitError,
    ThresholdError,
)
from verifier.merkle import inclusion_proof, leaf_hash, leaves_reader, root, verify_inclusion
from verifier.note import ALG_COSIGNATURE_V1, NoteSigner, NoteVerifier, Signature, open_note, parse_note, sign_note
from verifier.tiles import (
    TileRef,
    decode_entry_bundle,
    encode_entry_bundle,
    encode_index,
    entries_path,
    parse_tile_path,
    tile_hashes,
    tile_path,
    tile_width_at,
    tiles_for_size,
)
from verifier.tlogproof import TlogProof, parse_tlog_proof

ROOT = hashlib.sha256(b"some root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def body(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


# --- checkpoint -----------------------------------------------------------------------------------


def test_checkpoint_body_is_byte_exact_and_round_trips():
    cp = Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert cp.body() == b"example.com/behind-the-sofa\n20852163\n" + ROOT_B64.encode() + b"\n"
    assert parse_checkpoint_body(cp.body()) == cp
    ext = Checkpoint(ORIGIN, 0, ROOT, ("ext one", "\u2014 two"))
    assert ext.body().endswith(b"\next one\n\xe2\x80\x94 two\n")
    assert parse_checkpoint_body(ext.body()) == ext


def test_c2sp_example_checkpoint_body_parses():
    cp = parse_checkpoint_body(b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(cp.root) == b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize("size", [0, 1, 10, (1 << 63) - 1])
def test_checkpoint_sizes_accepted(size):
    assert parse_checkpoint_body(body(ORIGIN, str(size), ROOT_B64)).size == size


@pytest.mark.parametrize("size_line", ["05", "00", "007", str(1 << 63), str(1 << 64), "9" * 30, "-1", "+5", " 5",
                                       "5 ", "", "1e3", "0x10", "\u0665", "\uff15", "5.0", "1_000"])
def test_checkpoint_size_must_be_canonical_decimal(size_line):
    with pytest.raises(FormatError):
        parse_checkpoint_body(body(ORIGIN, size_line, ROOT_B64))


@pytest.mark.parametrize("root_line", [
    base64.b64encode(ROOT[:31]).decode(),
    base64.b64encode(ROOT + b"\0").decode(),
    "",
    ROOT_B64.rstrip("="),
    ROOT_B64[:-2] + chr(ord(ROOT_B64[-2]) + 1) + "=",  # non-zero trailing bits: same 32 bytes
    ROOT_B64.replace("=", "") + "==",
    ROOT.hex(),
    " " + ROOT_B64,
])
def test_checkpoint_root_must_be_32_bytes_of_canonical_base64(root_line):
    with pytest.raises(FormatError):
        parse_checkpoint_body(body(ORIGIN, "5", root_line))


@pytest.mark.parametrize("text", [
    body(ORIGIN, "5", ROOT_B64)[:-1],                  # missing trailing newline
    body(ORIGIN, "5", ROOT_B64) + b"\n",               # empty extension line
    body(ORIGIN, "5", ROOT_B64, "ext", ""),            # empty extension line after a good one
    body(ORIGIN, "5"),                                 # no root
    body(ORIGIN),
    b"",
    b"\n",
    body("", "5", ROOT_B64),                           # empty origin
    body(" " + ORIGIN, "5", ROOT_B64),                 # origin with surrounding white space
    body(ORIGIN + " ", "5", ROOT_B64),
    body("o" * 257, "5", ROOT_B64),                    # origin too long
    body(ORIGIN, "5", ROOT_B64).replace(b"\n", b"\r\n"),
    b"\xff" + body(ORIGIN, "5", ROOT_B64),
])
def test_checkpoint_body_strictness(text):
    with pytest.raises(FormatError):
        parse_checkpoint_body(text)


def test_checkpoint_extension_lines_are_bounded():
    parse_checkpoint_body(body(ORIGIN, "5", ROOT_B64, *[f"e{i}" for i in range(16)]))
    with pytest.raises(SizeLimitError):
        parse_checkpoint_body(body(ORIGIN, "5", ROOT_B64, *[f"e{i}" for i in range(17)]))
    with pytest.raises(SizeLimitError):
        parse_checkpoint_body(body(ORIGIN, "5", ROOT_B64, "x" * 5000))


def test_signed_checkpoint_opens(world):
    entries = [b"a", b"b", b"c"]
    msg = world.checkpoint(entries)
    signed = open_checkpoint(msg, world.log_note.verifier)
    assert signed.checkpoint == Checkpoint(ORIGIN, 3, root([leaf_hash(e) for e in entries]))
    assert signed.raw == msg
    assert signed.note.verified_by(world.log_note.verifier)
    # The freshness cosignature is not a note signature: it rides along unverified.
    assert [s.name for s in signed.note.unverified_sigs] == [ORIGIN + "/freshness"]


def test_checkpoint_origin_mismatch_is_a_mismatch_error(world):
    msg = world.checkpoint([b"a"])
    with pytest.raises(MismatchError):
        open_checkpoint(msg, world.log_note.verifier, origin="log.fleetkeys.example/v2")


def test_checkpoint_of_another_log_signed_by_a_trusted_key_is_refused():
    """Mix-and-match: a key trusted for one log signs a body naming another origin."""
    signer = NoteSigner.from_signer(ORIGIN, SeedSigner("log"))
    msg = sign_note(Checkpoint("other.example/log", 1, ROOT).body(), [signer])
    with pytest.raises(MismatchError):
        open_checkpoint(msg, signer.verifier)


def test_checkpoint_signed_by_another_key_is_a_signature_error(world):
    impostor = NoteSigner.from_signer(ORIGIN, SeedSigner("not the log"))
    msg = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), impostor)
    with pytest.raises(SignatureError):
        open_checkpoint(msg, world.log_note.verifier)


def test_checkpoint_with_only_cosignatures_is_refused(world):
    msg = world.checkpoint([b"a"], witness=True)
    text, sigs = parse_note(msg)
    without_log = text + b"\n" + b"".join(s.line for s in sigs if s.name != ORIGIN)
    with pytest.raises(SignatureError):
        open_checkpoint(without_log, world.log_note.verifier)


def test_checkpoint_tampered_after_signing_is_refused(world):
    msg = world.checkpoint([b"a", b"b"])
    with pytest.raises(SignatureError):
        open_checkpoint(msg.replace(b"\n2\n", b"\n3\n", 1), world.log_note.verifier)


def test_malformed_body_is_refused_even_when_signed(world):
    msg = sign_note(body(ORIGIN, "05", ROOT_B64), [world.log_note])
    with pytest.raises(FormatError):
        open_checkpoint(msg, world.log_note.verifier)


def test_sign_checkpoint_requires_key_name_equal_to_origin():
    with pytest.raises(FormatError):
        sign_checkpoint(Checkpoint("other.example/log", 1, ROOT), NoteSigner.from_signer(ORIGIN, SeedSigner("log")))


# --- cosignature v1 -------------------------------------------------------------------------------

CP_BODY = Checkpoint(ORIGIN, 7, ROOT, ("ext",)).body()


def test_cosigned_message_layout_is_byte_exact():
    assert cosigned_message(CP_BODY, 1234) == b"cosignature/v1\ntime 1234\n" + CP_BODY
    assert cosigned_message(CP_BODY, 0) == b"cosignature/v1\ntime 0\n" + CP_BODY
    top = (1 << 63) - 1
    assert cosigned_message(CP_BODY, top) == b"cosignature/v1\ntime 9223372036854775807\n" + CP_BODY


@pytest.mark.parametrize("timestamp", [-1, 1 << 63, 1 << 64])
def test_cosigned_message_timestamp_range(timestamp):
    with pytest.raises(FormatError):
        cosigned_message(CP_BODY, timestamp)


def test_cosignature_line_is_independently_verifiable():
    """Rebuild the line from the spec and verify it with OpenSSL, not with the code under test."""
    key = SeedSigner("witness")
    sig = CosignatureSigner("witness.example/w1", key).cosign(CP_BODY, 1700000000)
    kid = hashlib.sha256(b"witness.example/w1\n\x04" + key.public_key).digest()[:4]
    assert struct.pack(">I", sig.key_id) == kid
    assert sig.sig[:8] == struct.pack(">Q", 1700000000)
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(
        sig.sig[8:], b"cosignature/v1\ntime 1700000000\n" + CP_BODY)
    expected_line = "\u2014 witness.example/w1 ".encode() + base64.b64encode(kid + sig.sig) + b"\n"
    assert sig.line == expected_line


def cosigners(*labels: str) -> list[CosignatureSigner]:
    return [CosignatureSigner(f"{label}.example/w", SeedSigner(label)) for label in labels]


def cosigned(signers, timestamp: int = T0, *, text: bytes = CP_BODY) -> bytes:
    log = NoteSigner.from_signer(ORIGIN, SeedSigner("log"))
    return add_cosignatures(sign_note(text, [log]), [c.cosign(text, timestamp) for c in signers])


def test_threshold_counts_distinct_keys():
    a, b, c = cosigners("a", "b", "c")
    trusted = [a.verifier, b.verifier, c.verifier]
    msg = cosigned([a, b])
    found = verify_cosignatures(msg, trusted, 2)
    assert {f.verifier for f in found} == {a.verifier, b.verifier}
    assert {f.timestamp for f in found} == {T0}
    with pytest.raises(ThresholdError):
        verify_cosignatures(msg, trusted, 3)
    verify_cosignatures(msg, trusted, 0)
    verify_cosignatures(cosigned([]), trusted, 0)


def test_same_cosigner_twice_counts_once():
    (a,) = cosigners("a")
    line = a.cosign(CP_BODY, T0).line
    msg = cosigned([a]) + line
    assert len(parse_note(msg)[1]) == 3
    assert len(verify_cosignatures(msg, [a.verifier], 1)) == 1
    with pytest.raises(ThresholdError):
        verify_cosignatures(msg, [a.verifier], 2)
    # Two lines by one key at different times are still one key.
    msg2 = cosigned([a]) + a.cosign(CP_BODY, T0 + 60).line
    with pytest.raises(ThresholdError):
        verify_cosignatures(msg2, [a.verifier, a.verifier], 2)


def test_one_key_under_two_names_counts_once():
    key = SeedSigner("a")
    w1, w2 = CosignatureSigner("w1.example", key), CosignatureSigner("w2.example", key)
    msg = cosigned([w1, w2])
    with pytest.raises(ThresholdError):
        verify_cosignatures(msg, [w1.verifier, w2.verifier], 2)


def test_untrusted_and_wrong_type_cosigners_do_not_count():
    a, b = cosigners("a", "b")
    msg = cosigned([a, b])
    with pytest.raises(ThresholdError):
        verify_cosignatures(msg, [a.verifier], 2)
    plain = NoteVerifier.from_public_key(b.name, SeedSigner("b").public_key)  # type 0x01, same key
    with pytest.raises(ThresholdError):
        verify_cosignatures(msg, [a.verifier, plain], 2)


def test_wrong_length_cosignature_is_a_format_error():
    (a,) = cosigners("a")
    good = a.cosign(CP_BODY, T0)
    for sig in (good.sig[:-1], good.sig + b"\0", good.sig[:8]):
        msg = cosigned([]) + Signature(good.name, good.key_id, sig).line
        with pytest.raises(FormatError):
            verify_cosignatures(msg, [a.verifier], 1)


def test_bad_cosignature_by_trusted_key_is_a_signature_error():
    (a,) = cosigners("a")
    good = a.cosign(CP_BODY, T0)
    wrong_time = Signature(good.name, good.key_id, struct.pack(">Q", T0 + 1) + good.sig[8:])
    with pytest.raises(SignatureError):
        verify_cosignatures(cosigned([]) + wrong_time.line, [a.verifier], 1)
    replayed = a.cosign(Checkpoint(ORIGIN, 6, ROOT, ("ext",)).body(), T0)  # an older checkpoint's cosignature
    with pytest.raises(SignatureError):
        verify_cosignatures(cosigned([]) + replayed.line, [a.verifier], 1)
    out_of_range = Signature(good.name, good.key_id, struct.pack(">Q", 1 << 63) + good.sig[8:])
    with pytest.raises(FormatError):
        verify_cosignatures(cosigned([]) + out_of_range.line, [a.verifier], 1)


def test_cosignature_covers_extension_lines():
    (a,) = cosigners("a")
    sig = a.cosign(CP_BODY, T0)
    other_text = Checkpoint(ORIGIN, 7, ROOT, ("other",)).body()
    log = NoteSigner.from_signer(ORIGIN, SeedSigner("log"))
    with pytest.raises(SignatureError):
        verify_cosignatures(sign_note(other_text, [log]) + sig.line, [a.verifier], 1)


def test_add_cosignatures_replaces_older_lines_by_the_same_key():
    a, b = cosigners("a", "b")
    msg = cosigned([a, b], T0)
    newer = add_cosignatures(msg, [a.cosign(CP_BODY, T0 + 100)])
    _, sigs = parse_note(newer)
    assert [s.name for s in sigs] == [ORIGIN, b.name, a.name]
    assert {f.verifier.name: f.timestamp for f in verify_cosignatures(newer, [a.verifier, b.verifier], 2)} == {
        a.name: T0 + 100, b.name: T0}
    log = NoteVerifier.from_public_key(ORIGIN, SeedSigner("log").public_key)
    assert open_note(newer, [log]).text == CP_BODY


def test_cosigner_vkey_is_type_4():
    (a,) = cosigners("a")
    assert a.verifier.alg == ALG_COSIGNATURE_V1
    assert NoteVerifier.from_vkey(a.verifier.vkey) == a.verifier


@pytest.mark.parametrize(("timestamp", "fresh"), [
    (1000, True), (900, True), (899, False), (1300, True), (1301, False), (0, False), (10**12, False)])
def test_check_fresh_boundaries(timestamp, fresh):
    if fresh:
        check_fresh(timestamp, 1000, 100, what="freshness")
    else:
        with pytest.raises(ExpiredError):
            check_fresh(timestamp, 1000, 100, what="freshness")


# --- tiles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "text"), [
    (0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
    (1000000, "x001/x000/000"), (123456789, "x123/x456/789"), (1 << 40, "x001/x099/x511/x627/776"),
])
def test_encode_index(n, text):
    assert encode_index(n) == text


def test_encode_index_refuses_negative():
    with pytest.raises(FormatError):
        encode_index(-1)


@pytest.mark.parametrize(("path", "ref"), [
    ("tile/0/000", TileRef(0, 0, 256)),
    ("tile/0/005", TileRef(0, 5, 256)),
    ("tile/0/005.p/1", TileRef(0, 5, 1)),
    ("tile/0/005.p/255", TileRef(0, 5, 255)),
    ("tile/1/x001/x234/067", TileRef(1, 1234067, 256)),
    ("tile/3/x001/x234/067.p/17", TileRef(3, 1234067, 17)),
    ("tile/63/000", TileRef(63, 0, 256)),
    ("tile/entries/000", TileRef(None, 0, 256)),
    ("tile/entries/x001/x234/067.p/128", TileRef(None, 1234067, 128)),
])
def test_tile_paths_round_trip(path, ref):
    assert parse_tile_path(path) == ref
    assert ref.path == path
    assert ref.is_entries == (ref.level is None)
    if ref.level is None:
        assert entries_path(ref.index, ref.width) == path
    else:
        assert tile_path(ref.level, ref.index, ref.width) == path


def test_every_small_tile_path_round_trips():
    for index in list(range(0, 2100, 7)) + [999999, 1000000, 10**15]:
        for width in (1, 2, 100, 255, 256):
            for level in (None, 0, 1, 2, 10):
                ref = TileRef(level, index, width)
                assert parse_tile_path(ref.path) == ref


@pytest.mark.parametrize("path", [
    "tile/0/5", "tile/0/05", "tile/0/0005", "tile/0/x000/005", "tile/0/x005", "tile/0/005/", "tile/0/x1/005",
    "tile/0/005.p/256", "tile/0/005.p/0", "tile/0/005.p/00", "tile/0/005.p/07", "tile/0/005.p/", "tile/0/005.p",
    "tile/0/005.p/1000", "tile/0/005.p/+5", "tile/0/005.p/\u0665", "tile/0/005.p/5/", "tile/0/.p/5",
    "tile/00/005", "tile/01/005", "tile/-1/005", "tile/64/005", "tile//005", "tile/a/005", "tile/\u0660/005",
    "tile/0/\u0660\u0660\u0665", "tile/0/00a", "tile/0/y001/005", "tile/0/X001/005",
    "tile/Entries/005", "tile/entries/5", "tile/entries/005.p/256",
    "tile/0", "tile/", "tile", "", "/tile/0/005", "tiles/0/005", "tile/0/005 ", "tile/0//005",
    "tile/0/x001/x000/000/" + "x" * 300,
])
def test_non_canonical_tile_paths_are_rejected(path):
    with pytest.raises(FormatError):
        parse_tile_path(path)


@pytest.mark.parametrize("width", [0, 257, -1])
def test_tile_paths_refuse_bad_widths(width):
    with pytest.raises(FormatError):
        tile_path(0, 5, width)
    with pytest.raises(FormatError):
        entries_path(5, width)


def test_tile_widths_and_listing():
    assert tile_width_at(0, 0, 300) == 256
    assert tile_width_at(0, 1, 300) == 44
    assert tile_width_at(0, 2, 300) == 0
    assert tile_width_at(1, 0, 300) == 1
    assert tile_width_at(1, 0, 255) == 0
    assert tiles_for_size(0) == []
    assert tiles_for_size(256) == [TileRef(0, 0, 256), TileRef(1, 0, 1)]
    refs = tiles_for_size(70000)
    assert len(refs) == 274 + 2 + 1
    assert refs[273] == TileRef(0, 273, 112)
    assert refs[-3:] == [TileRef(1, 0, 256), TileRef(1, 1, 17), TileRef(2, 0, 1)]


def test_tile_hashes_need_exact_length():
    data = bytes(range(64))
    assert tile_hashes(data, 2) == [data[:32], data[32:]]
    for bad in (data[:-1], data + b"\0", b""):
        with pytest.raises(FormatError):
            tile_hashes(bad, 2)


def test_entry_bundle_round_trip():
    entries = [b"", b"a", b"\x00" * 300, bytes(range(256)) * 255 + b"x" * 255]
    data = encode_entry_bundle(entries)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert decode_entry_bundle(data, len(entries)) == entries
    full = [b"e%d" % i for i in range(256)]
    assert decode_entry_bundle(encode_entry_bundle(full), 256) == full


def test_entry_bundle_trailing_data_and_truncation():
    entries = [b"one", b"two", b"three"]
    data = encode_entry_bundle(entries)
    for extra in (b"\0", b"\0\0", b"\0\x01x"):
        with pytest.raises(FormatError):
            decode_entry_bundle(data + extra, 3)
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            decode_entry_bundle(data[:cut], 3)
    with pytest.raises(FormatError):
        decode_entry_bundle(data, 2)  # one entry left over
    with pytest.raises(FormatError):
        decode_entry_bundle(data, 4)  # one entry missing
    assert decode_entry_bundle(data + b"\0\0", 4) == [*entries, b""]


def test_entry_bundle_bounds():
    with pytest.raises(SizeLimitError):
        encode_entry_bundle([b"x" * 65536])
    assert decode_entry_bundle(encode_entry_bundle([b"x" * 65535]), 1) == [b"x" * 65535]
    for n in (0, 257):
        with pytest.raises(FormatError):
            encode_entry_bundle([b"x"] * n)
        with pytest.raises(FormatError):
            decode_entry_bundle(b"\0\0" * n, n)


# --- tlog-proof -----------------------------------------------------------------------------------

HASHES = tuple(hashlib.sha256(bytes([i])).digest() for i in range(5))
CHECKPOINT = b"example.com/fancylog\n109482\n" + ROOT_B64.encode() + b"\n\n\xe2\x80\x94 example.com/fancylog AAAA\n"


def proof_text(*lines: str, checkpoint: bytes = CHECKPOINT) -> bytes:
    return ("\n".join(lines) + "\n\n").encode() + checkpoint


def test_tlog_proof_layout_and_round_trip():
    proof = TlogProof(73894, HASHES, CHECKPOINT)
    encoded = proof.encode()
    assert encoded == proof_text("c2sp.org/tlog-proof@v1", "index 73894",
                                 *(base64.b64encode(x).decode() for x in HASHES))
    assert parse_tlog_proof(encoded) == proof


def test_tlog_proof_with_extra_round_trips():
    for extra in (b"age-v1.2.1-darwin-arm64.tar.gz", b"", bytes(4096)):
        proof = TlogProof(0, (), CHECKPOINT, extra)
        encoded = proof.encode()
        assert encoded.startswith(b"c2sp.org/tlog-proof@v1\nextra " + base64.b64encode(extra) + b"\nindex 0\n\n")
        assert parse_tlog_proof(encoded) == proof


def test_tlog_proof_allows_64_hashes():
    proof = TlogProof(5, HASHES[:1] * 64, CHECKPOINT)
    assert parse_tlog_proof(proof.encode()) == proof


H0 = base64.b64encode(HASHES[0]).decode()


@pytest.mark.parametrize(("data", "error"), [
    (proof_text("c2sp.org/tlog-proof@v2", "index 5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1 ", "index 5"), FormatError),
    (proof_text("C2SP.org/tlog-proof@v1", "index 5"), FormatError),
    (proof_text("index 5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 05"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 00"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index -1"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index  5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5 "), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index "), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index \u0665"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", f"index {1 << 63}"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index=5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", H0), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", "index 5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", "extra AAAA"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "extra AAAA", "extra AAAA", "index 5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "extra AAA", "index 5"), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "extra AB==", "index 5"), FormatError),  # non-canonical
    (proof_text("c2sp.org/tlog-proof@v1", "extra " + base64.b64encode(bytes(4097)).decode(), "index 5"),
     SizeLimitError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", base64.b64encode(HASHES[0][:31]).decode()), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", base64.b64encode(HASHES[0] + b"\0").decode()), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", H0.rstrip("=")), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", H0[:-2] + chr(ord(H0[-2]) + 1) + "="), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", H0 + " "), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", HASHES[0].hex()), FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", *[H0] * 65), SizeLimitError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", checkpoint=b""), FormatError),
    (b"c2sp.org/tlog-proof@v1\nindex 5\n", FormatError),
    (b"c2sp.org/tlog-proof@v1\nindex 5", FormatError),
    (b"", FormatError),
    (b"\n\n" + CHECKPOINT, FormatError),
    (proof_text("c2sp.org/tlog-proof@v1", "index 5", checkpoint=b"x" * (128 * 1024)), SizeLimitError),
    ("c2sp.org/tlog-proof@v1\nindex 5\n\ncheckpoint", FormatError),
])
def test_tlog_proof_strictness(data, error):
    with pytest.raises(error):
        parse_tlog_proof(data)


def test_tlog_proof_end_to_end(world):
    """A proof built from a real log verifies: checkpoint signature, then inclusion of the entry."""
    entries = world.chain(5)
    leaves = [leaf_hash(e) for e in entries]
    cp_msg = world.checkpoint(entries)
    encoded = TlogProof(3, tuple(inclusion_proof(3, 5, leaves_reader(leaves))), cp_msg).encode()
    proof = parse_tlog_proof(encoded)
    cp = open_checkpoint(proof.checkpoint, world.log_note.verifier).checkpoint
    verify_inclusion(proof.index, cp.size, leaf_hash(entries[3]), list(proof.hashes), cp.root)
    with pytest.raises(ProofError):
        verify_inclusion(proof.index, cp.size, leaf_hash(entries[2]), list(proof.hashes), cp.root)
