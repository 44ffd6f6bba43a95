"""C2SP signed-note (c2sp.org/signed-note) with Ed25519, byte-compatible with Go's
``golang.org/x/mod/sumdb/note``.

A signed note is::

    <text, UTF-8, ending in "\\n", no ASCII control characters but "\\n">
    "\\n"                                          (one blank line)
    "— " <key name> " " base64(key_id[4] || signature) "\\n"   (one or more lines; U+2014 EM DASH)

Keys:

* verifier key (vkey): ``<name>+<hex8 key id>+base64(type || public key)``
* signer key (skey):   ``PRIVATE+KEY+<name>+<hex8 key id>+base64(type || 32-byte seed)``
* key id = ``SHA-256(name || "\\n" || type || public key)[:4]`` read big-endian.

Key type 0x01 is a plain Ed25519 note signature over the text. Key type 0x04 is a
c2sp.org/tlog-cosignature v1 timestamped cosignature (see :mod:`verifier.cosignature`); its vkeys are
parsed here, its signatures are checked there. A key name is non-empty UTF-8 with no ``+`` and no
white space.

:func:`open_note` mirrors Go's ``note.Open``: the whole message is checked for valid UTF-8 and
control characters, the text is everything up to the last blank line, at most 100 signature lines are
read, repeated signatures by one key are ignored, a signature by a known key that does not verify is an
error, signatures by unknown keys are kept as unverified, and a note with no verified signature is
rejected. The text is returned only after a signature over it verified.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import ed25519
from .errors import FormatError, SignatureError, SizeLimitError

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100
#: Bound on the whole note: checkpoints and their cosignatures are far smaller.
MAX_NOTE_SIZE = 64 * 1024
_SIG_PREFIX = "\u2014 ".encode()  # "— "
_CONTROL_RE = re.compile("[\x00-\x09\x0b-\x1f]")


def b64decode_strict(text: str | bytes, what: str) -> bytes:
    """Decode standard padded base64 (RFC 4648 §4) and require the canonical encoding.

    Rejects missing padding, characters outside the alphabet, and non-zero trailing bits (the
    re-encoding must equal the input), so each value has exactly one accepted encoding.
    """
    if isinstance(text, str):
        try:
            raw_text = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise FormatError(f"{what}: base64 is not ASCII") from exc
    else:
        raw_text = bytes(text)
    try:
        data = binascii.a2b_base64(raw_text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: invalid base64 ({exc})") from exc
    if binascii.b2a_base64(data, newline=False) != raw_text:
        raise FormatError(f"{what}: non-canonical base64")
    return data


@functools.lru_cache(maxsize=1024)
def is_valid_name(name: str) -> bool:
    """A key name: non-empty valid UTF-8, no ``+``, no Unicode white space (Go's ``isValidName``)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """``SHA-256(name || "\\n" || alg || public_key)[:4]`` as a big-endian integer."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return struct.unpack(">I", digest[:4])[0]


def _split_key(key: str, parts: int, what: str) -> list[str]:
    if not isinstance(key, str) or len(key) > 4096:
        raise FormatError(f"{what}: expected a short string")
    fields = key.split("+", parts - 1)
    if len(fields) != parts:
        raise FormatError(f"{what}: expected {parts} '+'-separated fields, found {len(fields)}")
    return fields


def _parse_key_fields(name: str, hash_hex: str, b64: str, what: str) -> tuple[str, int, int, bytes]:
    if not is_valid_name(name):
        raise FormatError(f"{what}: invalid key name {name!r}")
    if len(hash_hex) != 8 or any(c not in "0123456789abcdef" for c in hash_hex):
        raise FormatError(f"{what}: key id must be 8 lower-case hex digits, found {hash_hex!r}")
    raw = b64decode_strict(b64, what)
    if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
        raise FormatError(f"{what}: expected type 0x01 or 0x04 and a 32-byte Ed25519 key")
    return name, int(hash_hex, 16), raw[0], raw[1:]


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted note key: name, key id, algorithm (0x01 or 0x04) and Ed25519 public key."""

    name: str
    key_id: int
    alg: int
    public_key: bytes

    @classmethod
    def from_vkey(cls, vkey: str, alg: int | None = None) -> NoteVerifier:
        """Parse ``name+hex8+base64(alg || pubkey)``; the key id must match the key; with ``alg``, the
        key must be of that type (:data:`ALG_ED25519` note signatures, :data:`ALG_COSIGNATURE_V1`)."""
        name, kid, found, pub = _parse_key_fields(*_split_key(vkey, 3, "verifier key"), "verifier key")
        ed25519.check_public_key(pub)
        if key_id(name, found, pub) != kid:
            raise FormatError(f"verifier key {name}: key id {kid:08x} does not match the key "
                              f"(expected {key_id(name, found, pub):08x})")
        if alg is not None and found != alg:
            what = {ALG_ED25519: "an Ed25519 note-signature", ALG_COSIGNATURE_V1: "a cosignature"}.get(alg, "a")
            raise FormatError(f"verifier key {name}: expected {what} key (type {alg:#04x}), found type {found:#04x}")
        return cls(name, kid, found, pub)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes, alg: int = ALG_ED25519) -> NoteVerifier:
        if not is_valid_name(name):
            raise FormatError(f"invalid key name {name!r}")
        ed25519.check_public_key(public_key)
        return cls(name, key_id(name, alg, public_key), alg, bytes(public_key))

    @property
    def vkey(self) -> str:
        """The C2SP verifier-key string."""
        b64 = base64.b64encode(bytes([self.alg]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify a plain Ed25519 signature over ``message`` (raises :class:`SignatureError`)."""
        ed25519.verify(self.public_key, message, signature, what=f"signature by {self.name}+{self.key_id:08x}")


class NoteSigner:
    """Signs note text with an Ed25519 key (alg 0x01). ``sign_fn`` may be an HSM-backed callable."""

    def __init__(self, name: str, public_key: bytes, sign_fn, alg: int = ALG_ED25519) -> None:
        if not is_valid_name(name):
            raise FormatError(f"invalid key name {name!r}")
        self.name = name
        self.alg = alg
        self.public_key = ed25519.check_public_key(public_key)
        self.key_id = key_id(name, alg, self.public_key)
        self._sign = sign_fn

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+name+hex8+base64(0x01 || seed32)``; the key id must match."""
        fields = _split_key(skey, 5, "signer key")
        if fields[0] != "PRIVATE" or fields[1] != "KEY":
            raise FormatError("signer key: must start with PRIVATE+KEY+")
        name, kid, alg, seed = _parse_key_fields(fields[2], fields[3], fields[4], "signer key")
        if alg != ALG_ED25519:
            raise FormatError("signer key: only type 0x01 (Ed25519 note signatures) is supported")
        pub = ed25519.public_key_from_seed(seed)
        if key_id(name, alg, pub) != kid:
            raise FormatError(f"signer key {name}: key id {kid:08x} does not match the key")
        return cls(name, pub, lambda msg: ed25519.sign_with_seed(seed, msg))

    @classmethod
    def from_signer(cls, name: str, signer) -> NoteSigner:
        """Wrap a :class:`keys.Signer` (file or PKCS#11 key) as a note signer."""
        return cls(name, signer.public_key, signer.sign)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_id, self.alg, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._sign(message)

    def signature_line(self, text: bytes) -> bytes:
        """``"— " name " " base64(key_id || Ed25519(text)) "\\n"``."""
        sig = self.sign(text)
        return _SIG_PREFIX + self.name.encode() + b" " + base64.b64encode(struct.pack(">I", self.key_id) + sig) + b"\n"


def generate_key(name: str) -> tuple[str, str]:
    """Return a fresh ``(skey, vkey)`` pair in Go's ``note.GenerateKey`` format."""
    if not is_valid_name(name):
        raise FormatError(f"invalid key name {name!r}")
    seed = os.urandom(32)
    pub = ed25519.public_key_from_seed(seed)
    kid = key_id(name, ALG_ED25519, pub)
    skey = f"PRIVATE+KEY+{name}+{kid:08x}+{base64.b64encode(bytes([ALG_ED25519]) + seed).decode()}"
    vkey = f"{name}+{kid:08x}+{base64.b64encode(bytes([ALG_ED25519]) + pub).decode()}"
    return skey, vkey


@dataclass(frozen=True)
class Signature:
    """One signature line of a note: key name, key id and the raw bytes after the 4-byte id."""

    name: str
    key_id: int
    sig: bytes

    @property
    def line(self) -> bytes:
        return _SIG_PREFIX + self.name.encode() + b" " + base64.b64encode(struct.pack(">I", self.key_id) + self.sig) + b"\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and the signatures that verified / were by unknown keys."""

    text: bytes
    sigs: tuple[Signature, ...]
    unverified_sigs: tuple[Signature, ...] = field(default=())

    def verified_by(self, verifier: NoteVerifier) -> bool:
        return any(s.name == verifier.name and s.key_id == verifier.key_id for s in self.sigs)


def sign_note(text: str | bytes, signers: Sequence[NoteSigner]) -> bytes:
    """Return the signed note for ``text`` (must end in ``\\n``, valid UTF-8, no control chars)."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    _check_text(data)
    if not data.endswith(b"\n"):
        raise FormatError("note text must end with a newline")
    if not signers:
        raise FormatError("a note needs at least one signer")
    return data + b"\n" + b"".join(s.signature_line(data) for s in signers)


def _check_text(msg: bytes) -> None:
    if len(msg) > MAX_NOTE_SIZE:
        raise SizeLimitError(f"note: {len(msg)} bytes exceeds the {MAX_NOTE_SIZE}-byte limit")
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"note: not valid UTF-8 at byte {exc.start}") from exc
    bad = _CONTROL_RE.search(decoded)
    if bad:
        raise FormatError(f"note: control character {ord(bad.group()):#04x} at character {bad.start()}")


def parse_note(msg: bytes) -> tuple[bytes, list[Signature]]:
    """Split a note into text and signature lines without verifying anything (Go's rules).

    Use :func:`open_note` to believe the text; this exists for tools that must show a note whose keys
    they do not have, and for adding cosignatures.
    """
    if not isinstance(msg, bytes | bytearray):
        raise FormatError("note: expected bytes")
    msg = bytes(msg)
    _check_text(msg)
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise FormatError("note: no blank line before the signatures")
    text, sig_block = msg[: split + 1], msg[split + 2 :]
    if not sig_block or not sig_block.endswith(b"\n"):
        raise FormatError("note: signature block missing or not newline-terminated")
    sigs: list[Signature] = []
    for line in sig_block[:-1].split(b"\n"):
        if not line.startswith(_SIG_PREFIX):
            raise FormatError("note: signature line does not start with '— '")
        body = line[len(_SIG_PREFIX) :].decode()
        name, sep, b64 = body.partition(" ")
        if not sep or not b64 or not is_valid_name(name):
            raise FormatError(f"note: malformed signature line {body[:80]!r}")
        raw = b64decode_strict(b64, f"note: signature by {name}")
        if len(raw) < 5:
            raise FormatError(f"note: signature by {name} is too short")
        if len(sigs) >= MAX_SIGNATURES:
            raise SizeLimitError(f"note: more than {MAX_SIGNATURES} signatures")
        sigs.append(Signature(name, struct.unpack(">I", raw[:4])[0], raw[4:]))
    return text, sigs


def open_note(msg: bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Verify a signed note against known ``verifiers`` (alg 0x01 keys) and return it.

    Raises :class:`FormatError` for a malformed note, :class:`SignatureError` when a known key's
    signature does not verify or when no known key signed.
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known and known[(v.name, v.key_id)] != v:
            raise SignatureError(f"ambiguous key {v.name}+{v.key_id:08x}")
        known[(v.name, v.key_id)] = v
    text, sigs = parse_note(msg)
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None or v.alg != ALG_ED25519:
            if s not in unverified:
                unverified.append(s)
            continue
        if (s.name, s.key_id) in seen:
            continue
        seen.add((s.name, s.key_id))
        v.verify(text, s.sig)
        verified.append(s)
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in sigs)
        raise SignatureError(f"note has no signature by a known key (found: {names})")
    return Note(text, tuple(verified), tuple(unverified))


__all__ = [
    "ALG_ED25519",
    "ALG_COSIGNATURE_V1",
    "MAX_SIGNATURES",
    "Note",
    "NoteSigner",
    "NoteVerifier",
    "Signature",
    "b64decode_strict",
    "generate_key",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]
