"""The ``c2sp.org/tlog-proof@v1`` text format: an offline-verifiable inclusion proof.

::

    c2sp.org/tlog-proof@v1\\n
    [extra <base64 opaque data>\\n]             optional, unauthenticated
    index <decimal, no leading zeros>\\n
    <base64 hash>\\n ...                        0..63 inclusion-proof hashes, leaf's sibling first
    \\n
    <the checkpoint, a signed note, verbatim>

Parsing is strict (canonical base64 and decimals, every hash 32 bytes, bounded sizes). The parsed
proof is *not* verified: :func:`verifier.merkle.verify_inclusion` and
:func:`verifier.checkpoint.open_checkpoint` do that.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .checkpoint import parse_decimal
from .errors import FormatError, SizeLimitError
from .merkle import HASH_SIZE, MAX_PROOF_HASHES
from .note import b64decode_strict

HEADER = b"c2sp.org/tlog-proof@v1"
MAX_PROOF_SIZE = 128 * 1024
MAX_EXTRA_SIZE = 4096


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(b"extra " + base64.b64encode(self.extra))
        lines.append(b"index " + str(self.index).encode())
        lines.extend(base64.b64encode(h) for h in self.hashes)
        return b"\n".join(lines) + b"\n\n" + self.checkpoint


def parse_tlog_proof(data: bytes) -> TlogProof:
    """Parse a tlog-proof strictly; raises :class:`FormatError` / :class:`SizeLimitError`."""
    if not isinstance(data, bytes | bytearray):
        raise FormatError("tlog-proof: expected bytes")
    if len(data) > MAX_PROOF_SIZE:
        raise SizeLimitError(f"tlog-proof: {len(data)} bytes exceeds {MAX_PROOF_SIZE}")
    head, sep, checkpoint = bytes(data).partition(b"\n\n")
    if not sep or not checkpoint:
        raise FormatError("tlog-proof: missing blank line and checkpoint")
    lines = head.split(b"\n")
    if lines[0] != HEADER:
        raise FormatError("tlog-proof: first line must be c2sp.org/tlog-proof@v1")
    pos = 1
    extra = None
    if pos < len(lines) and lines[pos].startswith(b"extra "):
        extra = b64decode_strict(lines[pos][6:], "tlog-proof extra")
        if len(extra) > MAX_EXTRA_SIZE:
            raise SizeLimitError("tlog-proof: extra data too large")
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith(b"index "):
        raise FormatError("tlog-proof: missing index line")
    try:
        index_text = lines[pos][6:].decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError("tlog-proof: index is not ASCII") from exc
    index = parse_decimal(index_text, "tlog-proof index")
    hash_lines = lines[pos + 1 :]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise SizeLimitError(f"tlog-proof: more than {MAX_PROOF_HASHES} proof hashes")
    hashes = []
    for i, line in enumerate(hash_lines):
        h = b64decode_strict(line, f"tlog-proof hash {i}")
        if len(h) != HASH_SIZE:
            raise FormatError(f"tlog-proof hash {i}: expected {HASH_SIZE} bytes, found {len(h)}")
        hashes.append(h)
    return TlogProof(index, tuple(hashes), checkpoint, extra)


__all__ = ["HEADER", "TlogProof", "parse_tlog_proof"]
