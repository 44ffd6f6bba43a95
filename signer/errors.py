"""The anchor signer's errors: one base, no HTTP statuses (:data:`signer.app.STATUS_OF_CODE` maps them).

``SignerError``
    ``Refusal``             a request the signer will not act on, with a stable ``code``
    ``SignerConfigError``   the data directory or its configuration is missing, unsafe or malformed
    ``JournalError``        the journal cannot be opened or is not a fleetkeys signer journal
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


__all__ = ["JournalError", "Refusal", "SignerConfigError", "SignerError"]
