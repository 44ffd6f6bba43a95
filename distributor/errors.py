"""The distributor's errors: one base, no HTTP statuses (the app's table in :mod:`distributor.app` maps them).

``DistributorError``
    ``InvalidEntry``       the entry is malformed or does not verify against the trust root in force
    ``EntryTooLarge``      the entry does not fit a C2SP tile entry (65,535 bytes)
    ``RuleViolation``      the entry verifies but breaks a log rule (epoch, chain, conflicting entry)
    ``NotFound``           no such entry, epoch or trust-root version
    ``NotConfigured``      no trust root is configured, so no bundle can be verified
    ``LogConfigError``     the keys, origin or trust root given at start do not match the stored log
    ``IntegrityError``     the stored log does not match its latest signed checkpoint
        ``TreeError``      stored tiles do not form the tree they claim to
    ``StorageError``       the database cannot be opened or used (``reason``: what a client is told)
        ``StorageUnavailable``  a storage failure that may pass: retry later
            ``DiskFull``        no space left (SQLITE_FULL, ENOSPC, EDQUOT, PostgreSQL 53100)
            ``StorageIOError``  the disk failed an operation (SQLITE_IOERR, EIO, PostgreSQL 58030)
            ``StorageBusy``     the writer lock was not obtained in time (SQLITE_BUSY/LOCKED, PostgreSQL
                                lock, serialization and statement timeouts)
            ``ConnectionLost``  the database connection broke (PostgreSQL terminated or closed it; a
                                network error): the connection is replaced at its next use
    ``ExportError``        the static directory cannot be brought up to date
    ``WitnessAnswerError`` a witness's answer cannot be used (never reaches HTTP: the witness loop
                           logs it and asks again later)
"""

from __future__ import annotations


class DistributorError(Exception):
    """Base of every refusal and failure of the distributor's log, storage and export."""


class InvalidEntry(DistributorError):
    """The entry is malformed or does not verify against the trust root in force."""


class EntryTooLarge(InvalidEntry):
    """The entry is larger than one C2SP tile entry (65,535 bytes)."""


class RuleViolation(DistributorError):
    """The entry verifies but breaks a log rule (wrong epoch, broken chain, conflicting entry)."""


class NotFound(DistributorError):
    """The entry, epoch or trust-root version asked for does not exist."""


class NotConfigured(DistributorError):
    """No trust root is configured, so the log cannot accept bundles."""


class LogConfigError(DistributorError):
    """The keys, origin or trust root given at start do not match this log."""


class IntegrityError(DistributorError):
    """The stored log does not match its latest signed checkpoint (tampering or corruption)."""


class TreeError(IntegrityError):
    """Stored tiles do not form the tree they claim to (tampering or corruption)."""


class StorageError(DistributorError):
    """The database cannot be opened or used (bad URL, unreachable server, unknown schema version).

    ``reason`` is the short, fixed diagnostic a client is told; the message (which may name the
    database file or server) is for the operator's log only.
    """

    reason = "storage unavailable"


class StorageUnavailable(StorageError):
    """A storage failure that may pass (the disk, the file system or the database server): retry later.

    A write that fails this way may or may not have been made durable: a COMMIT whose fsync failed
    leaves WAL frames that a later open replays, a PostgreSQL COMMIT whose answer was lost may have
    committed. Re-sending the same entry is safe (the log answers an identical entry with its index).
    """


class StorageDamaged(StorageUnavailable):
    """SQLite reports the file damaged (SQLITE_CORRUPT, SQLITE_NOTADB). It also says so when a read
    fails with EIO (the fault matrix, tests/faults): a passing disk error and real damage look alike
    here, so this is a 503 (retry; the next open's checks, or ``fleetkeys fsck``, tell them apart),
    never a 500 that claims the log is broken."""

    reason = "storage damaged or unreadable (run fleetkeys fsck)"


class DiskFull(StorageUnavailable):
    """No space is left for the database (SQLITE_FULL, ENOSPC/EDQUOT, PostgreSQL ``disk_full``)."""

    reason = "disk full"


class StorageIOError(StorageUnavailable):
    """The disk failed a read, write or fsync of the database (SQLITE_IOERR, EIO, PostgreSQL ``io_error``)."""

    reason = "storage I/O error"


class StorageBusy(StorageUnavailable):
    """The database's writer lock (or a statement) did not complete within its timeout."""

    reason = "storage busy"


class ConnectionLost(StorageUnavailable):
    """The connection to the database server broke (terminated by the server, closed, network error)."""

    reason = "database connection lost"


class ExportError(DistributorError):
    """The static directory cannot be brought up to date (belongs to another log, is ahead, ...)."""


__all__ = [
    "ConnectionLost",
    "DiskFull",
    "DistributorError",
    "EntryTooLarge",
    "ExportError",
    "IntegrityError",
    "InvalidEntry",
    "LogConfigError",
    "NotConfigured",
    "NotFound",
    "RuleViolation",
    "StorageBusy",
    "StorageError",
    "StorageIOError",
    "StorageUnavailable",
    "TreeError",
]


class WitnessAnswerError(DistributorError):
    """A witness answered with something other than a valid cosignature or a usable 409 size."""
