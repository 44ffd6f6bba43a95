"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the signed tree head of the log.

The checkpoint body is the text of a signed note (:mod:`verifier.note`)::

    <origin>\\n                 non-empty, unique name of the log (e.g. "fleetkeys.example/log")
    <size>\\n                   tree size, ASCII decimal, no leading zeros, < 2**63
    <base64 root>\\n            standard padded base64 of the 32-byte RFC 9162 root hash
    [<extension line>\\n]*      optional, non-empty lines (no meaning is given to them here)

followed by the note's blank line and signature lines: first the log key's Ed25519 signature (type
0x01), then any tlog-cosignature v1 lines (type 0x04, :mod:`verifier.cosignature`).

:func:`open_checkpoint` checks the log's signature over the body bytes *before* parsing the body, and
checks the origin line against the origin the caller trusts (mix-and-match across logs).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .errors import FormatError, MismatchError, SizeLimitError
from .note import Note, NoteSigner, NoteVerifier, b64decode_strict, open_note, sign_note

MAX_SIZE = (1 << 63) - 1
MAX_EXTENSION_LINES = 16
MAX_ORIGIN_LENGTH = 256


@dataclass(frozen=True)
class Checkpoint:
    """A parsed (not necessarily verified) checkpoint body."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        """The canonical note text: origin, size, base64 root and extension lines, each ``\\n``-ended."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return ("\n".join(lines) + "\n").encode()


def parse_decimal(text: str, what: str, maximum: int = MAX_SIZE) -> int:
    """Parse an ASCII decimal with no sign and no leading zeros (``0`` itself allowed)."""
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise FormatError(f"{what}: expected a canonical decimal number, found {text[:40]!r}")
    if len(text) > 20 or int(text) > maximum:
        raise FormatError(f"{what}: {text[:40]} exceeds the maximum {maximum}")
    return int(text)


def parse_checkpoint_body(text: bytes) -> Checkpoint:
    """Parse checkpoint note text strictly (one valid encoding, no trailing data)."""
    if len(text) > 4096:
        raise SizeLimitError(f"checkpoint body: {len(text)} bytes exceeds 4096")
    if not text.endswith(b"\n"):
        raise FormatError("checkpoint body: must end with a newline")
    try:
        lines = text[:-1].decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise FormatError("checkpoint body: not UTF-8") from exc
    if len(lines) < 3:
        raise FormatError(f"checkpoint body: expected at least 3 lines, found {len(lines)}")
    origin, size_text, root_text, *extensions = lines
    if not origin or len(origin) > MAX_ORIGIN_LENGTH or origin != origin.strip():
        raise FormatError(f"checkpoint: invalid origin line {origin[:80]!r}")
    size = parse_decimal(size_text, "checkpoint size")
    root = b64decode_strict(root_text, "checkpoint root")
    if len(root) != 32:
        raise FormatError(f"checkpoint root: expected 32 bytes, found {len(root)}")
    if len(extensions) > MAX_EXTENSION_LINES:
        raise SizeLimitError(f"checkpoint: more than {MAX_EXTENSION_LINES} extension lines")
    if any(not line for line in extensions):
        raise FormatError("checkpoint: empty extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose log signature verified, with the opened note (for cosignatures)."""

    checkpoint: Checkpoint
    note: Note
    raw: bytes


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """Sign a checkpoint with the log key; the signer's name must equal the origin (C2SP)."""
    if signer.name != checkpoint.origin:
        raise FormatError(f"log key name {signer.name!r} must equal the origin {checkpoint.origin!r}")
    return sign_note(checkpoint.body(), [signer])


def open_checkpoint(msg: bytes, log_key: NoteVerifier, origin: str | None = None) -> SignedCheckpoint:
    """Verify the log's signature over ``msg``, then parse the body and check the origin.

    ``origin`` defaults to the log key's name. Raises :class:`SignatureError` (bad or missing log
    signature), :class:`FormatError` (malformed), :class:`MismatchError` (another log's checkpoint).
    """
    expected_origin = origin if origin is not None else log_key.name
    note = open_note(msg, [log_key])
    checkpoint = parse_checkpoint_body(note.text)
    if checkpoint.origin != expected_origin:
        raise MismatchError(f"checkpoint origin {checkpoint.origin!r} is not the trusted log "
                            f"{expected_origin!r}")
    return SignedCheckpoint(checkpoint, note, bytes(msg))


__all__ = [
    "Checkpoint",
    "SignedCheckpoint",
    "open_checkpoint",
    "parse_checkpoint_body",
    "parse_decimal",
    "sign_checkpoint",
]
