"""The C2SP tlog-witness v1.0.0 wire format: the add-checkpoint request body and the 409 size body.

Both sides use it: the witness (``witness``) parses requests, the distributor (its client) encodes
them and reads the ``text/x.tlog.size`` answer. Strictly as the spec writes them.

The body is, each line ending in U+000A::

    "old " <old size: ASCII decimal, no leading zeros ("0" for zero)>     the old size line
    <base64 of a 32-byte hash>                                          0 to 63 consistency proof lines
    ""                                                                  the empty line
    <a checkpoint: a signed note, c2sp.org/tlog-checkpoint>             the rest of the body

:func:`parse_add_checkpoint` accepts exactly that and nothing else, with bounded work:

* at most :data:`MAX_BODY` bytes (a larger body is :class:`SizeLimitError`, checked first);
* the old size line is exactly ``old``, one space and a canonical decimal below ``2**63``
  (:func:`verifier.checkpoint.parse_decimal`): no sign, no second space, no ``\\r``;
* each proof line is the canonical padded base64 (RFC 4648 §4, :func:`verifier.note.b64decode_strict`)
  of exactly 32 bytes; more than :data:`MAX_PROOF_LINES` lines is malformed (the spec forbids the
  client to send more);
* after the empty line, the note must parse as a signed note (:func:`verifier.note.parse_note`: UTF-8,
  no control characters, a blank line, one or more signature lines) whose text is a checkpoint body
  (:func:`verifier.checkpoint.parse_checkpoint_body`). Nothing is verified here: the witness verifies
  the log's signature afterwards, against the keys it trusts for the origin this parse found.

Every refusal is a :class:`~verifier.errors.FormatError` (a body over the limit its subclass
:class:`~verifier.errors.SizeLimitError`), whatever the bytes: the parser never raises anything else
(``tests/witness/test_wire.py`` feeds it arbitrary bytes).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .checkpoint import Checkpoint, parse_checkpoint_body, parse_decimal
from .errors import FormatError, SizeLimitError, VerificationError
from .merkle import HASH_SIZE
from .note import MAX_NOTE_SIZE, b64decode_strict, parse_note

#: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
#: The old size line and 63 proof lines take at most 24 + 63 * 45 + 1 = 2,860 bytes; the note is
#: bounded by :data:`verifier.note.MAX_NOTE_SIZE`.
MAX_BODY = MAX_NOTE_SIZE + 4096
#: The 409 body's media type (c2sp.org/tlog-witness: "MUST have a Content-Type of text/x.tlog.size").
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_PREFIX = b"old "
#: ``old `` and at most 20 digits (``parse_decimal`` then bounds the value).
_MAX_OLD_LINE = len(_OLD_PREFIX) + 20
#: 32 bytes in padded base64 are 44 characters.
_PROOF_LINE = 44


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint request: nothing in it is verified yet."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes
    """The checkpoint note exactly as sent (text, blank line, signature lines)."""
    checkpoint: Checkpoint
    """Its body, parsed (not verified: the witness reads only the origin before checking signatures)."""


def _line(body: bytes, start: int, limit: int, what: str) -> tuple[bytes, int]:
    """The line at ``start`` (without its newline, at most ``limit`` bytes) and where the next begins."""
    end = body.find(b"\n", start, start + limit + 1)
    if end < 0:
        if body.find(b"\n", start) < 0:
            raise FormatError(f"{what}: not terminated by a newline")
        raise FormatError(f"{what}: longer than {limit} bytes")
    return body[start:end], end + 1


def parse_size_line(line: bytes) -> int:
    """``old <size>`` → size (the spec's old size line, without its newline)."""
    if not line.startswith(_OLD_PREFIX):
        raise FormatError("the first line must be the old size line: 'old <size>'")
    digits = line[len(_OLD_PREFIX):]
    if not digits.isascii():
        raise FormatError("old size: expected an ASCII decimal")
    try:
        return parse_decimal(digits.decode("ascii"), "old size")
    except VerificationError as exc:
        raise FormatError(str(exc)) from None


def parse_size_body(body: bytes) -> int:
    """The body of a 409 answer (``text/x.tlog.size``): the witness's size in ASCII decimal and a newline."""
    if not isinstance(body, bytes | bytearray) or len(body) > 22 or not body.endswith(b"\n"):
        raise FormatError("tlog size body: expected an ASCII decimal and a newline")
    digits = bytes(body[:-1])
    if not digits.isascii():
        raise FormatError("tlog size body: expected an ASCII decimal")
    return parse_decimal(digits.decode("ascii"), "tlog size")


def encode_size_body(size: int) -> bytes:
    """The 409 answer's body for ``size``."""
    return f"{size}\n".encode()


def parse_add_checkpoint(body: bytes, max_body: int = MAX_BODY) -> AddCheckpoint:
    """Parse an add-checkpoint request body (module docstring); raise :class:`FormatError`."""
    if not isinstance(body, bytes | bytearray):
        raise FormatError("request body: expected bytes")
    body = bytes(body)
    if len(body) > max_body:
        raise SizeLimitError(f"request body of {len(body)} bytes exceeds {max_body}")
    line, pos = _line(body, 0, _MAX_OLD_LINE, "old size line")
    old_size = parse_size_line(line)
    proof: list[bytes] = []
    while True:
        line, pos = _line(body, pos, _PROOF_LINE, f"consistency proof line {len(proof) + 1}")
        if not line:
            break  # the empty line: the checkpoint follows
        if len(proof) == MAX_PROOF_LINES:
            raise FormatError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        try:
            digest = b64decode_strict(line, f"consistency proof line {len(proof) + 1}")
        except VerificationError as exc:
            raise FormatError(str(exc)) from None
        if len(digest) != HASH_SIZE:
            raise FormatError(f"consistency proof line {len(proof) + 1}: expected a {HASH_SIZE}-byte hash, "
                                   f"found {len(digest)} bytes")
        proof.append(digest)
    note = body[pos:]
    try:
        text, _ = parse_note(note)
        checkpoint = parse_checkpoint_body(text)
    except VerificationError as exc:
        raise FormatError(f"checkpoint: {exc}") from None
    return AddCheckpoint(old_size, tuple(proof), note, checkpoint)


def encode_add_checkpoint(old_size: int, proof: list[bytes] | tuple[bytes, ...], note: bytes) -> bytes:
    """The request body for ``old_size``, ``proof`` and a checkpoint ``note`` (what a log sends)."""
    lines = [f"old {old_size}".encode(), *(base64.b64encode(h) for h in proof), b""]
    return b"\n".join(lines) + b"\n" + note


__all__ = [
    "MAX_BODY",
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "encode_add_checkpoint",
    "parse_add_checkpoint",
    "encode_size_body",
    "parse_size_body",
    "parse_size_line",
]
