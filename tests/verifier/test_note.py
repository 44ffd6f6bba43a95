"""C2SP signed notes (verifier.note), checked against Go's golang.org/x/mod/sumdb/note.

The vectors are Go's own (``note_test.go``): the PeterNeumann and EnochRoot keys and signatures, its
table of malformed messages, its verification-semantics cases (repeated signatures, ambiguous keys,
the 100-signature limit) and its key manglings. On top of Go's rules fleetkeys is stricter in a few
documented places (canonical base64, lower-case key ids), tested here too.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from verifier import ed25519
from verifier.errors import FormatError, SignatureError, SizeLimitError, VerificationError
from verifier.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_SIGNATURES,
    NoteSigner,
    NoteVerifier,
    Signature,
    b64decode_strict,
    generate_key,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
PETER_SIG = ("\u2014 PeterNeumann " + PETER_B64 + "\n").encode()
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
ENOCH_SIG = ("\u2014 EnochRoot " + ENOCH_B64 + "\n").encode()
NOTE = TEXT + b"\n" + PETER_SIG

PETER = NoteVerifier.from_vkey(VKEY)
ENOCH = NoteVerifier.from_vkey(ENOCH_VKEY)
PETER_SIGNATURE = Signature("PeterNeumann", 0xC74F20A3, base64.b64decode(PETER_B64)[4:])
ENOCH_SIGNATURE = Signature("EnochRoot", 0xAF0CFE78, base64.b64decode(ENOCH_B64)[4:])


def vkey_for(name: str, public_key: bytes, alg: int = ALG_ED25519) -> str:
    """A verifier key with the *correct* key id for whatever name and key bytes (for mangling tests)."""
    kid = struct.unpack(">I", hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4])[0]
    return f"{name}+{kid:08x}+{base64.b64encode(bytes([alg]) + public_key).decode()}"


# --- Go's known answers ---------------------------------------------------------------------------


def test_go_keys_parse_and_agree():
    assert (PETER.name, PETER.key_id, PETER.alg) == ("PeterNeumann", 0xC74F20A3, ALG_ED25519)
    assert PETER.vkey == VKEY
    signer = NoteSigner.from_skey(SKEY)
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier == PETER
    assert key_id("PeterNeumann", ALG_ED25519, PETER.public_key) == 0xC74F20A3
    assert ENOCH.vkey == ENOCH_VKEY


def test_go_sign_is_byte_exact():
    signer = NoteSigner.from_skey(SKEY)
    assert sign_note(TEXT, [signer]) == NOTE
    assert sign_note(TEXT.decode(), [signer]) == NOTE
    assert signer.signature_line(TEXT) == PETER_SIG


def test_go_note_opens():
    note = open_note(NOTE, [PETER])
    assert note.text == TEXT
    assert note.sigs == (PETER_SIGNATURE,)
    assert note.unverified_sigs == ()
    assert note.verified_by(PETER) and not note.verified_by(ENOCH)
    assert PETER_SIGNATURE.line == PETER_SIG


def test_go_one_verified_one_unverified():
    note = open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert note.sigs == (PETER_SIGNATURE,)
    assert note.unverified_sigs == (ENOCH_SIGNATURE,)


def test_go_both_verified():
    note = open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [PETER, ENOCH])
    assert note.sigs == (PETER_SIGNATURE, ENOCH_SIGNATURE)
    assert note.unverified_sigs == ()


def test_go_no_known_key_is_rejected():
    with pytest.raises(SignatureError):
        open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [])
    with pytest.raises(SignatureError):
        open_note(NOTE, [ENOCH])


def test_go_duplicated_verifier_is_harmless():
    open_note(TEXT + b"\n" + ENOCH_SIG, [ENOCH, PETER, ENOCH])
    open_note(NOTE, [ENOCH, PETER, ENOCH])


def test_ambiguous_verifiers_are_refused():
    """Two different keys under one (name, key id): the verifier cannot know which one is meant."""
    impostor = NoteVerifier("EnochRoot", ENOCH.key_id, ALG_ED25519, PETER.public_key)
    with pytest.raises(SignatureError, match="ambiguous"):
        open_note(TEXT + b"\n" + ENOCH_SIG, [ENOCH, impostor])


def test_go_too_many_signatures():
    for verifiers in ([PETER], []):
        with pytest.raises(SizeLimitError):
            open_note(TEXT + b"\n" + PETER_SIG * (MAX_SIGNATURES + 1), verifiers)
    with pytest.raises(SizeLimitError):
        parse_note(TEXT + b"\n" + PETER_SIG * 101)
    assert open_note(TEXT + b"\n" + PETER_SIG * MAX_SIGNATURES, [PETER]).sigs == (PETER_SIGNATURE,)


def test_go_invalid_signature_by_known_key():
    bad = PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]  # Go slices bytes: "—" is three of them
    with pytest.raises(SignatureError):
        open_note(TEXT + b"\n" + bad, [PETER])


def test_go_duplicated_signatures_counted_once():
    enoch_abcd = ENOCH_SIG[:60] + b"ABCD" + ENOCH_SIG[60:]
    note = open_note(TEXT + b"\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd, [PETER])
    assert note.sigs == (PETER_SIGNATURE,)
    abcd = base64.b64decode(ENOCH_B64[:46] + "ABCD" + ENOCH_B64[46:])[4:]
    assert note.unverified_sigs == (ENOCH_SIGNATURE, Signature("EnochRoot", 0xAF0CFE78, abcd))


def test_repeated_line_by_known_key_is_ignored_after_the_first():
    """Go's semantics: only the first line by a key is checked; later ones by the same key are dropped."""
    bad = PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]
    assert open_note(TEXT + b"\n" + PETER_SIG + bad, [PETER]).sigs == (PETER_SIGNATURE,)
    with pytest.raises(SignatureError):
        open_note(TEXT + b"\n" + bad + PETER_SIG, [PETER])


@pytest.mark.parametrize("msg", [
    TEXT,
    TEXT + b"\n",
    TEXT + b"\n" + PETER_SIG[:-1],
    b"\x01" + TEXT + b"\n" + PETER_SIG,
    b"\xff" + TEXT + b"\n" + PETER_SIG,
    TEXT + b"\n" + "\u2014 Bad Name ".encode() + PETER_B64.encode(),
    TEXT + b"\n" + "\u2014 Bad Name ".encode() + PETER_B64.encode() + b"\n",
    TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n",
], ids=["no-signatures", "blank-line-only", "no-final-newline", "control-char", "invalid-utf8", "bad-name",
        "bad-name-newline", "unexpected-line"])
def test_go_malformed_messages(msg):
    with pytest.raises(FormatError):
        open_note(msg, [PETER])


# --- fleetkeys' own rejections --------------------------------------------------------------------


def test_tampered_text_is_rejected():
    with pytest.raises(SignatureError):
        open_note(NOTE.replace(b"cryptography", b"cryptographY"), [PETER])
    with pytest.raises(SignatureError):
        open_note(b"X" + NOTE, [PETER])


def test_text_is_only_what_was_signed():
    """Everything up to the *last* blank line is text: a blank line inside the text is signed too."""
    signer = NoteSigner.from_skey(SKEY)
    text = b"first\n\nsecond\n"
    assert open_note(sign_note(text, [signer]), [PETER]).text == text


@pytest.mark.parametrize("b64", [
    PETER_B64.rstrip("="),                         # missing padding
    PETER_B64[:-2] + "N=",                         # non-zero trailing bits: same bytes, second spelling
    PETER_B64[:-1],                                # wrong padding
    PETER_B64 + "=",                               # excess padding
    PETER_B64.replace("/", "_"),                   # URL-safe alphabet
    PETER_B64[:20] + " " + PETER_B64[20:],         # space inside
    PETER_B64[:20] + "!" + PETER_B64[21:],         # outside the alphabet
    "",                                            # empty
    base64.b64encode(bytes(4)).decode(),           # key id only, no signature
])
def test_bad_signature_base64_is_rejected(b64):
    with pytest.raises(FormatError):
        open_note(TEXT + b"\n" + ("\u2014 PeterNeumann " + b64 + "\n").encode(), [PETER])


def test_non_canonical_base64_decodes_to_the_same_bytes():
    """The non-canonical spelling above really is a second encoding of the same signature."""
    assert base64.b64decode(PETER_B64[:-2] + "N=") == base64.b64decode(PETER_B64)
    with pytest.raises(FormatError):
        b64decode_strict(PETER_B64[:-2] + "N=", "sig")
    assert b64decode_strict(PETER_B64, "sig") == base64.b64decode(PETER_B64)


def test_missing_final_newline():
    signer = NoteSigner.from_skey(SKEY)
    with pytest.raises(FormatError):
        sign_note(TEXT[:-1], [signer])
    with pytest.raises(FormatError):
        sign_note(b"", [signer])
    with pytest.raises(FormatError):
        open_note(NOTE[:-1], [PETER])


@pytest.mark.parametrize("char", [b"\r", b"\t", b"\x00", b"\x1b", b"\x0b", b"\x0c", b"\x1f"])
def test_control_characters_are_rejected(char):
    text = b"log.example\n" + char + b"42\n"
    with pytest.raises(FormatError):
        sign_note(text, [NoteSigner.from_skey(SKEY)])
    # Even if a signature over those bytes exists, the message is refused before it is checked.
    sig = NoteSigner.from_skey(SKEY).signature_line(text)
    with pytest.raises(FormatError):
        open_note(text + b"\n" + sig, [PETER])
    with pytest.raises(FormatError):
        open_note(NOTE + char + b"\n", [PETER])


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x80", b"\xf4\x90\x80\x80"],
                         ids=["ff", "overlong", "surrogate", "truncated", "above-U+10FFFF"])
def test_invalid_utf8_is_rejected(bad):
    text = b"log.example\n" + bad + b"\n"
    with pytest.raises(FormatError):
        sign_note(text, [NoteSigner.from_skey(SKEY)])
    with pytest.raises(FormatError):
        open_note(text + b"\n" + PETER_SIG, [PETER])


def test_non_ascii_text_is_fine():
    signer = NoteSigner.from_skey(SKEY)
    text = "caf\u00e9 \u2014 \U0001f511\n".encode()
    assert open_note(sign_note(text, [signer]), [PETER]).text == text


def test_oversized_note_is_refused():
    with pytest.raises(SizeLimitError):
        open_note(b"a" * (64 * 1024) + b"\n\n" + PETER_SIG, [PETER])


def test_signature_by_known_key_that_fails_is_a_signature_error():
    other = NoteSigner.from_skey(generate_key("PeterNeumann")[0])
    # Another key's signature, re-labelled with Peter's key id.
    forged = Signature("PeterNeumann", PETER.key_id, other.sign(TEXT)).line
    with pytest.raises(SignatureError):
        open_note(TEXT + b"\n" + forged, [PETER])
    truncated = Signature("PeterNeumann", PETER.key_id, PETER_SIGNATURE.sig[:63]).line
    with pytest.raises(SignatureError):
        open_note(TEXT + b"\n" + truncated, [PETER])


def test_cosignature_type_key_does_not_verify_plain_signatures():
    """A type-0x04 (cosignature) key under the same name is not a note key: one key, one purpose."""
    cosigner = NoteVerifier.from_public_key("PeterNeumann", PETER.public_key, ALG_COSIGNATURE_V1)
    assert cosigner.key_id != PETER.key_id
    forced = NoteVerifier("PeterNeumann", PETER.key_id, ALG_COSIGNATURE_V1, PETER.public_key)
    with pytest.raises(SignatureError):
        open_note(NOTE, [forced])


def test_parse_note_does_not_verify():
    text, sigs = parse_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG)
    assert text == TEXT
    assert sigs == [PETER_SIGNATURE, ENOCH_SIGNATURE]


@pytest.mark.parametrize("value", ["not bytes", None, 42])
def test_parse_note_wants_bytes(value):
    with pytest.raises(FormatError):
        parse_note(value)


# --- keys -----------------------------------------------------------------------------------------


def test_go_vkey_manglings_are_rejected():
    """Go's TestNewVerifier: every proper substring and every one-byte increment of the key fails."""
    accepted = []
    b = VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                try:
                    NoteVerifier.from_vkey(b[i:j].decode())
                    accepted.append(b[i:j])
                except FormatError:
                    pass
    for i in range(len(b)):
        mangled = b[:i] + bytes([b[i] + 1]) + b[i + 1:]
        try:
            NoteVerifier.from_vkey(mangled.decode())
            accepted.append(mangled)
        except FormatError:
            pass
    assert accepted == []


def test_go_skey_manglings_are_rejected():
    accepted = []
    b = SKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                try:
                    NoteSigner.from_skey(b[i:j].decode())
                    accepted.append(b[i:j])
                except FormatError:
                    pass
    for i in range(len(b)):
        mangled = b[:i] + bytes([b[i] + 1]) + b[i + 1:]
        try:
            NoteSigner.from_skey(mangled.decode())
            accepted.append(mangled)
        except FormatError:
            pass
    assert accepted == []


@pytest.mark.parametrize("vkey", [
    # Go's: wrong length key with adjusted key hash, and unknown algorithm with adjusted key hash.
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    # Key id mismatch.
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumanN+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    # Key id spelling: upper case, short, long, non-hex.
    "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+0c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20g3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+-74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    # Names: empty, with space; fields missing.
    "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3",
    "PeterNeumann",
    "",
    # Trailing white space, non-canonical base64.
    VKEY + "\n",
    VKEY + " ",
    " " + VKEY,
])
def test_bad_vkeys_are_rejected(vkey):
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize("value", [None, b"PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                                   "x" * 5000])
def test_vkey_must_be_a_short_string(value):
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(value)


@pytest.mark.parametrize("name", ["Peter Neumann", "Peter+Neumann", "", "tab\tname", "nbsp\u00a0name",
                                  "line\u2028sep", "em\u2003space", "new\nline"])
def test_invalid_key_names(name):
    with pytest.raises(FormatError):
        generate_key(name)
    with pytest.raises(FormatError):
        NoteVerifier.from_public_key(name, PETER.public_key)
    with pytest.raises(FormatError):
        NoteSigner(name, PETER.public_key, lambda m: b"")
    if "+" not in name and name:
        with pytest.raises(FormatError):
            NoteVerifier.from_vkey(vkey_for(name, PETER.public_key))


@pytest.mark.parametrize("name", ["lone\ud800surrogate", "\udcff"])
def test_key_name_must_be_valid_utf8(name):
    vkey = f"{name}+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(vkey)
    with pytest.raises(FormatError):
        generate_key(name)
    with pytest.raises(FormatError):
        NoteVerifier.from_public_key(name, PETER.public_key)


def test_names_may_be_any_other_utf8():
    for name in ("log.example/v1", "caf\u00e9", "\U0001f511", "a/b:c#d"):
        skey, vkey = generate_key(name)
        assert NoteVerifier.from_vkey(vkey).name == name


SMALL_ORDER_POINTS = [
    bytes([1]) + bytes(31),                                  # identity
    bytes(32),                                               # order 4
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
]


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS)
def test_vkey_with_small_order_key_is_rejected(point):
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(vkey_for("weak", point))
    with pytest.raises(FormatError):
        NoteVerifier.from_public_key("weak", point)


@pytest.mark.parametrize("skey", [
    SKEY.replace("c74f20a3", "c74f20a4"),                    # key id mismatch
    SKEY.replace("PRIVATE+KEY+", "PUBLIC+KEY+"),
    SKEY.replace("PRIVATE+KEY+", "private+key+"),
    SKEY[len("PRIVATE+KEY+"):],
    "PRIVATE+KEY+PeterNeumann+c74f20a3+" + base64.b64encode(b"\x01" + bytes(31)).decode(),   # short seed
    VKEY,
])
def test_bad_skeys_are_rejected(skey):
    with pytest.raises(FormatError):
        NoteSigner.from_skey(skey)


def test_skey_of_cosignature_type_is_rejected():
    seed = bytes(range(32))
    pub = ed25519.public_key_from_seed(seed)
    kid = key_id("witness", ALG_COSIGNATURE_V1, pub)
    skey = f"PRIVATE+KEY+witness+{kid:08x}+{base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()}"
    with pytest.raises(FormatError):
        NoteSigner.from_skey(skey)


def test_generate_key_round_trip():
    skey, vkey = generate_key("EnochRoot")
    assert skey.startswith("PRIVATE+KEY+EnochRoot+") and vkey.startswith("EnochRoot+")
    signer = NoteSigner.from_skey(skey)
    verifier = NoteVerifier.from_vkey(vkey)
    assert signer.verifier == verifier and verifier.vkey == vkey
    assert skey.split("+")[3] == vkey.split("+")[1]
    note = sign_note(b"hi\n", [signer])
    assert open_note(note, [verifier]).text == b"hi\n"
    with pytest.raises(SignatureError):
        open_note(note, [PETER])
    assert generate_key("EnochRoot") != (skey, vkey)


def test_sign_needs_a_signer():
    with pytest.raises(FormatError):
        sign_note(TEXT, [])


def test_two_signers_both_verify():
    enoch_skey, enoch_vkey = generate_key("EnochRoot")
    note = sign_note(TEXT, [NoteSigner.from_skey(SKEY), NoteSigner.from_skey(enoch_skey)])
    opened = open_note(note, [PETER, NoteVerifier.from_vkey(enoch_vkey)])
    assert [s.name for s in opened.sigs] == ["PeterNeumann", "EnochRoot"]


def test_all_failures_are_verification_errors():
    for call in (lambda: open_note(b"", [PETER]), lambda: NoteVerifier.from_vkey("x"),
                 lambda: open_note(TEXT + b"\n" + ENOCH_SIG, [PETER])):
        with pytest.raises(VerificationError):
            call()
