"""The witness's errors: one base, no HTTP statuses (the one table, :data:`witness.app.STATUS_OF`, maps them).

``WitnessError``
    ``MalformedRequest``      the add-checkpoint body is not an old size line, proof lines, an empty
                              line and a checkpoint note, each as the spec writes them
        ``RequestTooLarge``   the body is larger than the witness reads (:data:`witness.wire.MAX_BODY`)
        ``OldSizeTooLarge``   the old size is larger than the checkpoint's size
    ``UnknownOrigin``         no log with the checkpoint's origin is configured
    ``UntrustedCheckpoint``   no signature by a trusted key of the origin verifies, or one by a trusted
                              key fails
    ``SizeConflict``          the old size is not the size this witness last cosigned (``known_size``)
        ``RootConflict``      the old size is that size and the checkpoint's, but the roots differ
    ``InconsistentCheckpoint`` the consistency proof does not verify, a proof is sent where none may
                              be, or a size-0 checkpoint does not carry the empty tree's root
    ``WitnessUnavailable``    the witness key or the state store failed; nothing was cosigned
        ``StateUnavailable``  the state store failed a read or write that may succeed later
            ``StateDiskFull``     no space left for it (SQLITE_FULL: a write met ENOSPC)
            ``StateIOError``      the disk failed a read, write or fsync (SQLITE_IOERR: EIO, ...)
            ``StateBusy``         its write lock was not obtained within the busy timeout
    ``WitnessConfigError``    the configuration given at start is unusable (never reaches HTTP)
"""

from __future__ import annotations


class WitnessError(Exception):
    """Base of every refusal and failure of the witness."""


class MalformedRequest(WitnessError):
    """The add-checkpoint request body does not follow the spec's syntax."""


class RequestTooLarge(MalformedRequest):
    """The request body is larger than the witness reads."""


class OldSizeTooLarge(MalformedRequest):
    """The old size is larger than the submitted checkpoint's size."""


class UnknownOrigin(WitnessError):
    """The checkpoint's origin is not a log this witness is configured for."""


class UntrustedCheckpoint(WitnessError):
    """No trusted key of the origin signed the checkpoint, or a trusted key's signature fails."""


class SizeConflict(WitnessError):
    """The old size is not the size of the latest checkpoint this witness cosigned for the origin."""

    def __init__(self, known_size: int, reason: str) -> None:
        super().__init__(reason)
        self.known_size = known_size


class RootConflict(SizeConflict):
    """Same size as the latest cosigned checkpoint, another root: a fork at that size."""


class InconsistentCheckpoint(WitnessError):
    """The checkpoint is not proven consistent with the latest one this witness cosigned."""


class WitnessUnavailable(WitnessError):
    """The witness key or the state store failed; no cosignature was made or released."""


class StateUnavailable(WitnessUnavailable):
    """The state store failed a read or write that may succeed later; nothing was cosigned or released.

    ``reason`` is the fixed line a client is told; the message (naming the file) is for the log.
    """

    reason = "witness state unavailable"


class StateDiskFull(StateUnavailable):
    """No space is left for the state store (SQLITE_FULL)."""

    reason = "disk full"


class StateIOError(StateUnavailable):
    """The disk failed a read, write or fsync of the state store (SQLITE_IOERR)."""

    reason = "witness state I/O error"


class StateBusy(StateUnavailable):
    """The state store's write lock was not obtained within the busy timeout (SQLITE_BUSY/LOCKED)."""

    reason = "witness state busy"


class WitnessConfigError(WitnessError):
    """The witness configuration (name, key, logs, data directory) is unusable."""


__all__ = [
    "InconsistentCheckpoint",
    "MalformedRequest",
    "OldSizeTooLarge",
    "RequestTooLarge",
    "RootConflict",
    "SizeConflict",
    "StateBusy",
    "StateDiskFull",
    "StateIOError",
    "StateUnavailable",
    "UnknownOrigin",
    "UntrustedCheckpoint",
    "WitnessConfigError",
    "WitnessError",
    "WitnessUnavailable",
]
