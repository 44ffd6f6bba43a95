"""Typed verification errors.

One base, :class:`VerifierError`. Every failure the protocol core can detect raises a subclass of
:class:`VerificationError`; nothing else escapes a decoder or a verification function. The client's
I/O raises :class:`FetchError`, and a log with nothing in it yet is :class:`EmptyLogError`. Each
message names what was expected and what was found, so a client can log one line that tells an
operator which check failed and why.

The classes mirror the numbered verification steps in ``bundles/FORMAT.md``.
"""

from __future__ import annotations


class VerifierError(Exception):
    """Base of every error of the verifier package (verification failures and the client's I/O)."""


class VerificationError(VerifierError):
    """Something did not verify. Never caught-and-ignored by the library itself."""


class FormatError(VerificationError):
    """Bytes are malformed or non-canonical (bad JSON, bad varint, trailing data, wrong field...)."""


class SizeLimitError(FormatError):
    """An input is larger than the bound the format allows."""


class SignatureError(VerificationError):
    """A signature does not verify, or was made by a key that is not trusted for this purpose."""


class ThresholdError(SignatureError):
    """Fewer distinct trusted keys signed than the threshold requires."""


class DigestError(VerificationError):
    """A carried digest does not match the bytes it commits to."""


class MismatchError(VerificationError):
    """Two fields that must agree do not (namespace, epoch, origin, requested statement...)."""


class RollbackError(VerificationError):
    """An update is older than, or conflicts with, what the client already accepted."""


class ChainError(VerificationError):
    """The ``previous`` hash chain of keysets is broken, or an epoch gap cannot be bridged.

    ``rule`` names the next-epoch rule broken (``verifier.keyset.check_next_epoch``): ``"epoch"``,
    ``"previous"`` or ``"issued_at"``; ``None`` for other chain failures.
    """

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule


class ExpiredError(VerificationError):
    """Data is expired or too old (freeze attack), or not yet valid."""


class FreezeError(ExpiredError):
    """The bundle offered as current is not the newest entry of the checkpoint (a newer epoch is held back)."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


class ConsistencyError(ProofError):
    """A checkpoint is not consistent with one seen before (smaller tree, or a fork)."""


class TrustRootError(VerificationError):
    """A trust root is malformed, expired, or a rotation is not properly authorised."""


class FetchError(VerifierError):
    """The log or a mirror could not be read (unreachable, deadline, refused redirect, HTTP error)."""


class StateConflictError(VerifierError):
    """Another process saved the client state since this one read it (compare-and-swap refused)."""


class EmptyLogError(VerifierError):
    """The log holds no bundle yet: there is nothing to verify (not a verification failure)."""


__all__ = [
    "EmptyLogError",
    "FetchError",
    "StateConflictError",
    "VerifierError",
    "VerificationError",
    "FormatError",
    "SizeLimitError",
    "SignatureError",
    "ThresholdError",
    "DigestError",
    "MismatchError",
    "RollbackError",
    "ChainError",
    "ExpiredError",
    "FreezeError",
    "ProofError",
    "ConsistencyError",
    "TrustRootError",
]
