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
    ``StorageError``       the database cannot be opened or used
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
    """The database cannot be opened or used (bad URL, unreachable server, unknown schema version)."""


class ExportError(DistributorError):
    """The static directory cannot be brought up to date (belongs to another log, is ahead, ...)."""


__all__ = [
    "DistributorError",
    "EntryTooLarge",
    "ExportError",
    "IntegrityError",
    "InvalidEntry",
    "LogConfigError",
    "NotConfigured",
    "NotFound",
    "RuleViolation",
    "StorageError",
    "TreeError",
]


class WitnessAnswerError(DistributorError):
    """A witness answered with something other than a valid cosignature or a usable 409 size."""
