"""The witness's rules: may the checkpoint be cosigned, given the latest one cosigned for its origin?

Pure functions, no I/O; :mod:`witness.state` runs :func:`check_update` inside the write transaction
that also records the new state, so the check and the update are one atomic step.

:func:`check_update` applies c2sp.org/tlog-witness@v1.0.0 "add-checkpoint" in the order the spec
states its rules (the signature checks, 404 and 403, come before, in :mod:`witness.core`):

1. "The old size MUST be equal to or lower than the checkpoint size. Otherwise, the witness MUST
   respond with a 400 Bad Request": :class:`OldSizeTooLarge`.
2. "The witness MUST check that the old size matches the size of the latest checkpoint it cosigned for
   the checkpoint's origin (or zero if it never cosigned a checkpoint for that origin). If it doesn't
   match, the witness MUST respond with a 409 Conflict", the body being that size:
   :class:`SizeConflict`.
3. A size-0 checkpoint must carry the empty tree's root, SHA-256 of the empty string (RFC 6962 §2.1):
   :class:`InconsistentCheckpoint` (422). v1.0.0 leaves this case unstated; the editor's draft after
   it (commit 95978ca) makes it 422, which v1.0.0 does not contradict.
4. "The proof MUST be empty if the old size is zero": a proof sent with old size 0 is
   :class:`InconsistentCheckpoint` (422, as the same draft states).
5. "If the old size matches the checkpoint size, the witness MUST check that the root hashes are also
   identical. If they don't match, the witness MUST respond with a 409 Conflict": :class:`RootConflict`
   (a :class:`SizeConflict`, with the same body). The proof from a size to itself is empty (RFC 6962
   §2.1.2), so a non-empty one is :class:`InconsistentCheckpoint` first. (The editor's draft after
   v1.0.0, commit 95978ca of 2026-07-06, not released as a version, moves this case to 422; this
   witness implements v1.0.0 as released.) The same old size and root
   again is accepted: it is how a log renews a cosignature's freshness (a new timestamp, same tree).
6. Otherwise "the consistency proof lines MUST encode a Merkle Consistency Proof from the old size to
   the checkpoint size according to RFC 6962, Section 2.1.2 ... If the Merkle Consistency Proof doesn't
   verify, the witness MUST respond with a 422 Unprocessable Entity" (:func:`verifier.merkle.verify_consistency`):
   :class:`InconsistentCheckpoint`.

So the recorded state only ever moves to a checkpoint proven to extend it: never to a smaller size,
never to another root at the same size, never to a larger tree that does not contain it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from verifier.checkpoint import Checkpoint
from verifier.errors import ConsistencyError
from verifier.merkle import EMPTY_ROOT, verify_consistency

from .errors import InconsistentCheckpoint, OldSizeTooLarge, RootConflict, SizeConflict, WitnessUnavailable


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint this witness cosigned for one origin."""

    origin: str
    size: int
    root: bytes
    timestamp: int
    """The timestamp (POSIX seconds) of the cosignature made for it."""


def check_update(stored: LogState | None, old_size: int, proof: Sequence[bytes], checkpoint: Checkpoint) -> None:
    """Raise unless ``checkpoint`` may be cosigned and become the new state (module docstring)."""
    known = stored.size if stored is not None else 0
    if old_size > checkpoint.size:
        raise OldSizeTooLarge(f"old size {old_size} is larger than the checkpoint's size {checkpoint.size}")
    if old_size != known:
        raise SizeConflict(known, f"old size {old_size} is not {known}, the size of the latest checkpoint "
                                  f"cosigned for {checkpoint.origin}")
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        raise InconsistentCheckpoint("a checkpoint of size 0 must carry the empty tree's root")
    if old_size == 0:
        if proof:
            raise InconsistentCheckpoint(f"old size 0 takes no consistency proof, found {len(proof)} lines")
        return
    if stored is None:  # unreachable: old_size == known > 0 means a state was read
        raise WitnessUnavailable(f"no state for {checkpoint.origin} although its size is {known}")
    if old_size == checkpoint.size:
        if proof:
            raise InconsistentCheckpoint(f"the proof from size {old_size} to itself is empty, found {len(proof)} lines")
        if checkpoint.root != stored.root:
            raise RootConflict(known, f"size {known} was cosigned for {checkpoint.origin} with another root hash")
        return
    try:
        verify_consistency(old_size, checkpoint.size, proof, stored.root, checkpoint.root)
    except ConsistencyError as exc:
        raise InconsistentCheckpoint(str(exc)) from None


def cosignature_timestamp(stored: LogState | None, now: int) -> int:
    """The timestamp for the next cosignature of the origin: the current time, never before the last one.

    A v1 cosignature states that "as of the specified time, the consistent tree head with the largest
    size the cosigner has observed ... has the specified root hash" (c2sp.org/tlog-cosignature), and the
    state only grows, so timestamps must not go back when the clock does. A clock at or before the
    epoch is refused: the editor's draft of c2sp.org/tlog-witness after v1.0.0 says "the timestamp
    MUST NOT be zero", and a time before 1970 is no time at which anything was observed.
    """
    if now <= 0:
        raise WitnessUnavailable(f"the clock reads {now}: no cosignature can carry a timestamp of zero or less")
    return max(now, stored.timestamp) if stored is not None else now


__all__ = ["LogState", "check_update", "cosignature_timestamp"]
