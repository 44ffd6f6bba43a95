"""The anchor signer's errors: one base, no HTTP statuses (:data:`signer.app.STATUS_OF_CODE` maps them).

``SignerError``
    ``Refusal``             a request the signer will not act on, with a stable ``code``
    ``SignerConfigError``   the data directory or its configuration is missing, unsafe or malformed
    ``JournalError``        the journal cannot be opened or is not a fleetkeys signer journal
        ``JournalUnavailable``  the journal failed a read or write that may succeed later (retry)
            ``JournalDiskFull``   no space left for the journal (SQLITE_FULL: a write met ENOSPC)
            ``JournalIOError``    the disk failed a read, write or fsync (SQLITE_IOERR: EIO, ...)
            ``JournalBusy``       the journal's write lock was not obtained within the busy timeout

Each ``JournalError`` has a stable ``code`` (``journal-unavailable``, ``disk-full``,
``journal-io-error``, ``journal-busy``) and a fixed ``reason`` for clients; the message, which names
the file, is for the operator's log.
"""

from __future__ import annotations


class SignerError(Exception):
    """Base of every refusal and failure of the anchor signer."""


class Refusal(SignerError):
    """A request the signer will not sign or act on: a short stable ``code`` and a human ``reason``.

    ``record`` says whether the refusal goes into the public journal (rule breaks on a known namespace
    by an authenticated client do; malformed or unauthenticated requests do not). The codes are part
    of the wire protocol (README, "anchor signer"); the HTTP status of each is decided by the app.
    """

    def __init__(self, code: str, reason: str, *, record: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.record = record


class SignerConfigError(SignerError):
    """The data directory or its configuration is missing, unsafe or malformed."""


class JournalError(SignerError):
    """The journal cannot be opened or is not a fleetkeys signer journal."""

    code = "journal-unavailable"
    reason = "the journal is unavailable"


class JournalUnavailable(JournalError):
    """The journal failed a read or a write that may succeed later. Nothing was signed and returned;
    a signing request whose COMMIT failed may still have its signature in the journal (the WAL frames
    were written before the failing fsync): repeating the request answers it (the rules return the
    stored entry) or signs it."""


class JournalDiskFull(JournalUnavailable):
    """No space is left for the journal (SQLITE_FULL)."""

    code = "disk-full"
    reason = "disk full"


class JournalIOError(JournalUnavailable):
    """The disk failed a read, write or fsync of the journal (SQLITE_IOERR)."""

    code = "journal-io-error"
    reason = "journal I/O error"


class JournalBusy(JournalUnavailable):
    """The journal's write lock was not obtained within the busy timeout (SQLITE_BUSY/LOCKED)."""

    code = "journal-busy"
    reason = "journal busy"


__all__ = [
    "JournalBusy",
    "JournalDiskFull",
    "JournalError",
    "JournalIOError",
    "JournalUnavailable",
    "Refusal",
    "SignerConfigError",
    "SignerError",
]
