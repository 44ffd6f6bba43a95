"""C2SP tlog-cosignature v1 (c2sp.org/tlog-cosignature): timestamped Ed25519 cosignatures.

A cosignature is a note signature line on a checkpoint::

    "— " <cosigner name> " " base64(key_id[4] || timestamp[8, big-endian u64] || ed25519_sig[64]) "\\n"

with key id = ``SHA-256(name || "\\n" || 0x04 || pubkey)[:4]`` (vkey type 0x04) and the signature over::

    "cosignature/v1\\n"
    "time " <timestamp, ASCII decimal, no leading zeros> "\\n"
    <the whole checkpoint body, extension lines included>

fleetkeys uses it twice: witnesses (split-view and freeze protection) and the log's own *freshness*
key, a separate key that re-cosigns the latest checkpoint at a fixed interval so a client can tell
"nothing new" from "someone is hiding news" (freeze attack). Thresholds count distinct keys.

:func:`checkpoint_time` is the one place that decides which of them vouches for a checkpoint's time
(``bundles/FORMAT.md`` §9.3): with a witness threshold K > 0, the K-th newest in-window witness
timestamp (:func:`witnessed_time`); with K = 0, the log's freshness cosignature.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ExpiredError, FormatError, ThresholdError
from .keyset import CLOCK_SKEW
from .note import ALG_COSIGNATURE_V1, Note, NoteSigner, NoteVerifier, Signature, parse_note
from .signatures import KeyGroup
from .trustroot import TrustRoot

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


def _lines(signed_note: bytes | Note) -> tuple[bytes, list[Signature]]:
    if isinstance(signed_note, Note):  # already opened: cosignatures are among its unverified lines
        return signed_note.text, [*signed_note.sigs, *signed_note.unverified_sigs]
    return parse_note(signed_note)


def _verify_line(text: bytes, s: Signature, v: NoteVerifier, what: str) -> int:
    """Verify one cosignature line ``s`` by ``v`` over checkpoint ``text``; return its timestamp."""
    if len(s.sig) != 8 + 64:
        raise FormatError(f"{what} cosignature by {s.name}: expected 72 bytes, found {len(s.sig)}")
    (timestamp,) = struct.unpack(">Q", s.sig[:8])
    v.verify(cosigned_message(text, timestamp), s.sig[8:])
    return timestamp


def verify_cosignatures(signed_note: bytes | Note, cosigners: Sequence[NoteVerifier], threshold: int,
                        *, what: str = "witness") -> list[VerifiedCosignature]:
    """Check that at least ``threshold`` distinct ``cosigners`` cosigned the checkpoint note.

    Only lines whose (name, key id) match a configured type-0x04 key are considered; a matching line
    whose signature fails raises :class:`SignatureError`. Returns the verified cosignatures (one per
    key, the first valid line). Raises :class:`ThresholdError` when fewer than ``threshold`` keys
    cosigned. Precondition: the caller has already verified the log's own signature on the note.
    """
    text, sigs = _lines(signed_note)
    by_id = {(v.name, v.key_id): v for v in cosigners if v.alg == ALG_COSIGNATURE_V1}
    found: dict[bytes, VerifiedCosignature] = {}
    for s in sigs:
        v = by_id.get((s.name, s.key_id))
        if v is None or v.public_key in found:
            continue
        found[v.public_key] = VerifiedCosignature(v, _verify_line(text, s, v, what))
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


def witnessed_time(signed_note: bytes | Note, witnesses: KeyGroup, now: int, max_age: int) -> int:
    """The newest time that ``witnesses.threshold`` (K ≥ 1) distinct witnesses vouch for the checkpoint at.

    1. Every line whose (name, key id) matches a type-0x04 key of ``witnesses`` must verify over the
       checkpoint body (:class:`SignatureError`; a wrong length is a :class:`FormatError`).
    2. A cosignature counts only if its timestamp ``t`` lies in ``[now - max_age, now + CLOCK_SKEW]``;
       per key the newest such line counts (keys are counted once).
    3. With at least K counting keys, the result is the K-th newest of their timestamps: K − 1
       witnesses that collude with the operator cannot move it later than an honest witness's clock.
    4. Otherwise :class:`ExpiredError` when K or more keys cosigned but some cosignatures are older than
       ``max_age`` (stale witness cosignatures: the operator re-serving an old tree head, a freeze), else
       :class:`ThresholdError` (too few witnesses cosigned; future-dated lines are counted in the message).

    The result may be ahead of ``now`` by up to ``CLOCK_SKEW``; callers cap what they save
    (:func:`verifier.update.verify_checkpoint_note`). Precondition: the caller verified the log's own
    signature on the note. ``now`` and ``max_age`` are seconds.
    """
    k = witnesses.threshold
    if k < 1:
        raise ValueError("witnessed_time needs a witness threshold of at least 1")
    text, sigs = _lines(signed_note)
    by_id = {(v.name, v.key_id): v for v in witnesses.keys if v.alg == ALG_COSIGNATURE_V1}
    newest: dict[bytes, int | None] = {}  # per key: newest in-window timestamp (None: only out of window)
    stale = future = 0
    for s in sigs:
        v = by_id.get((s.name, s.key_id))
        if v is None:
            continue
        timestamp = _verify_line(text, s, v, "witness")
        best = newest.setdefault(v.public_key, None)
        if timestamp > now + CLOCK_SKEW:
            future += 1
        elif now - timestamp > max_age:
            stale += 1
        elif best is None or timestamp > best:
            newest[v.public_key] = timestamp
    fresh = sorted((t for t in newest.values() if t is not None), reverse=True)
    if len(fresh) >= k:
        return fresh[k - 1]
    if len(newest) >= k and stale:
        raise ExpiredError(f"witness cosignatures: {len(newest)} distinct trusted keys cosigned but only {len(fresh)} "
                           f"within the allowed {max_age} s, {k} required ({stale} stale witness cosignatures: the "
                           "operator may be re-serving an old checkpoint, possible freeze by the operator)")
    ahead = f"; {future} dated more than {CLOCK_SKEW} s in the future do not count" if future else ""
    raise ThresholdError(f"witness cosignatures: {len(fresh)} distinct trusted keys cosigned, {k} required{ahead}")


def checkpoint_time(signed_note: bytes | Note, trust_root: TrustRoot, now: int) -> int:
    """The time a checkpoint is vouched fresh at under ``trust_root`` (``bundles/FORMAT.md`` §9.3).

    With ``witnesses.threshold`` K > 0: :func:`witnessed_time` with the root's ``log.max_age`` (the log's
    own freshness cosignature is neither required nor checked: it is the one signature the operator
    can always make). With K = 0: the log's freshness cosignature, required (:class:`ThresholdError`)
    and within ``[now - max_age, now + CLOCK_SKEW]`` (:func:`check_fresh`, :class:`ExpiredError`).
    Precondition: the caller verified the log's own signature on the note.
    """
    if trust_root.witnesses.threshold:
        return witnessed_time(signed_note, trust_root.witnesses, now, trust_root.log.max_age)
    fresh = verify_cosignatures(signed_note, [trust_root.log.freshness_key], 1, what="log freshness")[0]
    check_fresh(fresh.timestamp, now, trust_root.log.max_age, what="checkpoint freshness cosignature")
    return fresh.timestamp


__all__ = [
    "CosignatureSigner",
    "VerifiedCosignature",
    "add_cosignatures",
    "check_fresh",
    "checkpoint_time",
    "cosigned_message",
    "verify_cosignatures",
    "witnessed_time",
]
