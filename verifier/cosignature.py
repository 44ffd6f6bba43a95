"""C2SP tlog-cosignature v1 (c2sp.org/tlog-cosignature): timestamped Ed25519 cosignatures.

A cosignature is a note signature line on a checkpoint::

    "— " <cosigner name> " " base64(key_id[4] || timestamp[8, big-endian u64] || ed25519_sig[64]) "\\n"

with key id = ``SHA-256(name || "\\n" || 0x04 || pubkey)[:4]`` (vkey type 0x04) and the signature over::

    "cosignature/v1\\n"
    "time " <timestamp, ASCII decimal, no leading zeros> "\\n"
    <the whole checkpoint body, extension lines included>

fleetkeys uses it twice: witnesses (split-view protection) and the log's own *freshness* key, a
separate key that re-cosigns the latest checkpoint at a fixed interval so a client can tell "nothing
new" from "someone is hiding news" (freeze attack). Thresholds count distinct keys.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ExpiredError, FormatError, ThresholdError
from .keyset import CLOCK_SKEW
from .note import ALG_COSIGNATURE_V1, Note, NoteSigner, NoteVerifier, Signature, parse_note

MAX_TIMESTAMP = (1 << 63) - 1


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """The bytes a v1 cosigner signs for checkpoint ``body`` at ``timestamp`` (POSIX seconds)."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise FormatError(f"cosignature timestamp {timestamp} out of range")
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body


class CosignatureSigner:
    """A cosigner key (vkey type 0x04) over a :class:`keys.Signer`-like object."""

    def __init__(self, name: str, signer) -> None:
        self._note_signer = NoteSigner(name, signer.public_key, signer.sign, alg=ALG_COSIGNATURE_V1)

    @property
    def verifier(self) -> NoteVerifier:
        return self._note_signer.verifier

    @property
    def name(self) -> str:
        return self._note_signer.name

    def cosign(self, body: bytes, timestamp: int) -> Signature:
        """Return the cosignature of checkpoint ``body`` at ``timestamp``."""
        sig = self._note_signer.sign(cosigned_message(body, timestamp))
        return Signature(self.name, self._note_signer.key_id, struct.pack(">Q", timestamp) + sig)


def add_cosignatures(signed_note: bytes, cosignatures: Sequence[Signature]) -> bytes:
    """Append cosignature lines to a signed checkpoint, replacing older ones by the same keys."""
    text, sigs = parse_note(signed_note)
    replaced = {(c.name, c.key_id) for c in cosignatures}
    kept = [s for s in sigs if (s.name, s.key_id) not in replaced]
    return text + b"\n" + b"".join(s.line for s in [*kept, *cosignatures])


@dataclass(frozen=True)
class VerifiedCosignature:
    verifier: NoteVerifier
    timestamp: int


def verify_cosignatures(signed_note: bytes | Note, cosigners: Sequence[NoteVerifier], threshold: int,
                        *, what: str = "witness") -> list[VerifiedCosignature]:
    """Check that at least ``threshold`` distinct ``cosigners`` cosigned the checkpoint note.

    Only lines whose (name, key id) match a configured type-0x04 key are considered; a matching line
    whose signature fails raises :class:`SignatureError`. Returns the verified cosignatures (one per
    key, the first valid line). Raises :class:`ThresholdError` when fewer than ``threshold`` keys
    cosigned. Precondition: the caller has already verified the log's own signature on the note.
    """
    if isinstance(signed_note, Note):  # already opened: cosignatures are among its unverified lines
        text, sigs = signed_note.text, [*signed_note.sigs, *signed_note.unverified_sigs]
    else:
        text, sigs = parse_note(signed_note)
    by_id = {(v.name, v.key_id): v for v in cosigners if v.alg == ALG_COSIGNATURE_V1}
    found: dict[bytes, VerifiedCosignature] = {}
    for s in sigs:
        v = by_id.get((s.name, s.key_id))
        if v is None or v.public_key in found:
            continue
        if len(s.sig) != 8 + 64:
            raise FormatError(f"{what} cosignature by {s.name}: expected 72 bytes, found {len(s.sig)}")
        (timestamp,) = struct.unpack(">Q", s.sig[:8])
        v.verify(cosigned_message(text, timestamp), s.sig[8:])
        found[v.public_key] = VerifiedCosignature(v, timestamp)
    if len(found) < threshold:
        raise ThresholdError(f"{what} cosignatures: {len(found)} distinct trusted keys cosigned, "
                             f"{threshold} required")
    return list(found.values())


def check_fresh(timestamp: int, now: int, max_age: int, *, what: str) -> None:
    """Raise :class:`ExpiredError` unless ``now - max_age <= timestamp <= now + CLOCK_SKEW`` (seconds)."""
    if timestamp > now + CLOCK_SKEW:
        raise ExpiredError(f"{what}: timestamp {timestamp} is in the future (now {now})")
    if now - timestamp > max_age:
        raise ExpiredError(f"{what}: timestamp {timestamp} is {now - timestamp} s old, more than the "
                           f"allowed {max_age} s (stale checkpoint: possible freeze attack)")


__all__ = [
    "CosignatureSigner",
    "VerifiedCosignature",
    "add_cosignatures",
    "check_fresh",
    "cosigned_message",
    "verify_cosignatures",
]
