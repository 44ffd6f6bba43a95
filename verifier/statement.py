"""The anchor statement: exactly the message Cloudflare's Plexi auditor signs.

A bundle signed by that auditor verifies here unchanged, and our signer can stand in for it.

Ciphersuite 1 (protobuf, proto2, every field present, ascending field order, minimal varints)::

    08 <varint ciphersuite=1>
    12 <varint len(namespace)> <namespace, UTF-8>
    18 <varint timestamp>                   milliseconds since the Unix epoch, set by the signer
    22 <varint len(epoch msg)> 08 <varint epoch>
    2a 20 <digest, 32 bytes>                SHA-256 of the keyset bytes

Ciphersuite 2 (bincode, legacy, accepted when verifying)::

    u32le ciphersuite=2 || u64le len(namespace) || namespace || u64le timestamp || u64le epoch
    || u64le 32 || digest[32]

Ed25519 signs these bytes directly (no prehash, no context). On the wire the signer's key id is one
byte, the last byte of its public key: a hint only.

:func:`parse_statement` accepts exactly the bytes :meth:`Statement.encode` produces for the values
it returns (one valid encoding per value): any other varint length, field order, unknown field,
missing field, non-UTF-8 namespace, wrong digest length or trailing byte is a :class:`FormatError`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import FormatError, SizeLimitError

CIPHERSUITE_PROTOBUF = 1
CIPHERSUITE_BINCODE = 2
CIPHERSUITES = (CIPHERSUITE_PROTOBUF, CIPHERSUITE_BINCODE)
MAX_NAMESPACE_LENGTH = 256
MAX_STATEMENT_SIZE = 512
MAX_U64 = (1 << 64) - 1
DIGEST_SIZE = 32


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    value, shift, start = 0, 0, pos
    while True:
        if pos >= len(data):
            raise FormatError(f"statement: truncated varint for {what}")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise FormatError(f"statement: varint for {what} too long")
    if value > MAX_U64:
        raise FormatError(f"statement: {what} exceeds 64 bits")
    if pos - start > 1 and data[pos - 1] == 0:  # a final 0x00 group adds nothing: not the shortest form
        raise FormatError(f"statement: non-minimal varint for {what}")
    return value, pos


def _expect(data: bytes, pos: int, tag: int, what: str) -> int:
    if pos >= len(data) or data[pos] != tag:
        found = f"{data[pos]:#04x}" if pos < len(data) else "end of data"
        raise FormatError(f"statement: expected field tag {tag:#04x} ({what}) at byte {pos}, found {found}")
    return pos + 1


@dataclass(frozen=True)
class Statement:
    """Plexi's ``SignatureMessage``: what the anchor signer signs for one epoch of a namespace."""

    ciphersuite: int
    namespace: str
    timestamp: int
    epoch: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.ciphersuite not in CIPHERSUITES:
            raise FormatError(f"statement: unknown ciphersuite {self.ciphersuite} (expected 1 or 2)")
        ns = self.namespace.encode("utf-8") if isinstance(self.namespace, str) else None
        if ns is None or not 0 < len(ns) <= MAX_NAMESPACE_LENGTH:
            raise FormatError(f"statement: namespace must be 1..{MAX_NAMESPACE_LENGTH} bytes of UTF-8")
        for name in ("timestamp", "epoch"):
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v <= MAX_U64:
                raise FormatError(f"statement: {name} must be an unsigned 64-bit integer, found {v!r}")
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_SIZE:
            raise FormatError(f"statement: digest must be {DIGEST_SIZE} bytes")

    def encode(self) -> bytes:
        """The exact signed bytes for this statement's ciphersuite."""
        ns = self.namespace.encode("utf-8")
        if self.ciphersuite == CIPHERSUITE_PROTOBUF:
            epoch_msg = b"\x08" + _varint(self.epoch)
            return (b"\x08" + _varint(self.ciphersuite) + b"\x12" + _varint(len(ns)) + ns
                    + b"\x18" + _varint(self.timestamp) + b"\x22" + _varint(len(epoch_msg)) + epoch_msg
                    + b"\x2a\x20" + self.digest)
        return (struct.pack("<IQ", self.ciphersuite, len(ns)) + ns
                + struct.pack("<QQQ", self.timestamp, self.epoch, DIGEST_SIZE) + self.digest)

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()


def statement_hash(statement_bytes: bytes) -> bytes:
    """SHA-256 of the statement bytes (bound into the countersignature)."""
    return hashlib.sha256(statement_bytes).digest()


def _decode_namespace(raw: bytes) -> str:
    if not 0 < len(raw) <= MAX_NAMESPACE_LENGTH:
        raise FormatError(f"statement: namespace must be 1..{MAX_NAMESPACE_LENGTH} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError("statement: namespace is not valid UTF-8") from exc


def _parse_protobuf(data: bytes) -> Statement:
    pos = _expect(data, 0, 0x08, "ciphersuite")
    cs, pos = _read_varint(data, pos, "ciphersuite")
    if cs != CIPHERSUITE_PROTOBUF:
        raise FormatError(f"statement: protobuf encoding must carry ciphersuite 1, found {cs}")
    pos = _expect(data, pos, 0x12, "namespace")
    n, pos = _read_varint(data, pos, "namespace length")
    if pos + n > len(data):
        raise FormatError("statement: namespace runs past the end")
    namespace = _decode_namespace(data[pos : pos + n])
    pos += n
    pos = _expect(data, pos, 0x18, "timestamp")
    timestamp, pos = _read_varint(data, pos, "timestamp")
    pos = _expect(data, pos, 0x22, "epoch")
    m, pos = _read_varint(data, pos, "epoch length")
    end = pos + m
    if end > len(data):
        raise FormatError("statement: epoch message runs past the end")
    pos = _expect(data, pos, 0x08, "epoch.inner")
    epoch, pos = _read_varint(data[:end], pos, "epoch.inner")
    if pos != end:
        raise FormatError("statement: unexpected data inside the epoch message")
    pos = _expect(data, pos, 0x2A, "digest")
    if data[pos : pos + 1] != b"\x20":
        raise FormatError(f"statement: digest must be {DIGEST_SIZE} bytes")
    digest = data[pos + 1 : pos + 1 + DIGEST_SIZE]
    if len(digest) != DIGEST_SIZE:
        raise FormatError("statement: digest truncated")
    if pos + 1 + DIGEST_SIZE != len(data):
        raise FormatError(f"statement: {len(data) - pos - 1 - DIGEST_SIZE} bytes of trailing data")
    return Statement(cs, namespace, timestamp, epoch, digest)


def _parse_bincode(data: bytes) -> Statement:
    if len(data) < 12:
        raise FormatError("statement: bincode encoding truncated")
    cs, n = struct.unpack_from("<IQ", data, 0)
    if cs != CIPHERSUITE_BINCODE:
        raise FormatError(f"statement: bincode encoding must carry ciphersuite 2, found {cs}")
    if n > MAX_NAMESPACE_LENGTH or 12 + n + 24 + DIGEST_SIZE != len(data):
        raise FormatError("statement: bincode lengths do not match the data")
    namespace = _decode_namespace(data[12 : 12 + n])
    timestamp, epoch, dlen = struct.unpack_from("<QQQ", data, 12 + n)
    if dlen != DIGEST_SIZE:
        raise FormatError(f"statement: digest must be {DIGEST_SIZE} bytes, found {dlen}")
    return Statement(cs, namespace, timestamp, epoch, bytes(data[12 + n + 24 :]))


def parse_statement(data: bytes) -> Statement:
    """Decode statement bytes strictly (ciphersuite 1 or 2, canonical, no trailing data).

    Precondition: the caller verified the anchor signature over ``data`` first.
    """
    if not isinstance(data, bytes | bytearray):
        raise FormatError("statement: expected bytes")
    data = bytes(data)
    if len(data) > MAX_STATEMENT_SIZE:
        raise SizeLimitError(f"statement: {len(data)} bytes exceeds {MAX_STATEMENT_SIZE}")
    if not data:
        raise FormatError("statement: empty")
    # Both decoders check every byte (fixed tags and order, minimal varints, exact lengths, no trailing
    # data), so they accept exactly the bytes Statement.encode() produces: one encoding per value.
    return _parse_protobuf(data) if data[0] == 0x08 else _parse_bincode(data)


__all__ = [
    "CIPHERSUITE_BINCODE",
    "CIPHERSUITE_PROTOBUF",
    "Statement",
    "parse_statement",
    "statement_hash",
]
