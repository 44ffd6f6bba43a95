"""The countersigner's errors: one base, :class:`CountersignerError`.

``CountersignerError``
    ``PublishError``         the publish pipeline refused or failed (the message names the step)
    ``CountersignRefused``   the anchor's answer is not exactly what was asked for; nothing is signed.
                             It is also a :class:`verifier.errors.VerificationError` of the kind that
                             failed (a signature, a mismatch, a digest, a format), so a caller can tell
                             which check of the anchor's answer failed:
        ``AnchorSignatureRefused``  (:class:`~verifier.errors.SignatureError`)
        ``StatementMismatch``       (:class:`~verifier.errors.MismatchError`)
        ``KeysetMismatch``          (:class:`~verifier.errors.DigestError`)
        ``MalformedStatement``      (:class:`~verifier.errors.FormatError`)
"""

from __future__ import annotations

from verifier.errors import DigestError, FormatError, MismatchError, SignatureError, VerificationError


class CountersignerError(Exception):
    """Base of every refusal and failure of the countersigner and the publish pipeline."""


class PublishError(CountersignerError):
    """The pipeline refused or failed; the message says at which step and why."""


class CountersignRefused(CountersignerError, VerificationError):
    """The countersigner will not sign: the anchor's answer is not exactly what was asked for."""


class AnchorSignatureRefused(CountersignRefused, SignatureError):
    """An anchor signature does not verify under any trusted anchor key, or too few keys signed."""


class StatementMismatch(CountersignRefused, MismatchError):
    """The signed statement names another namespace, epoch or digest than the one requested."""


class KeysetMismatch(CountersignRefused, DigestError):
    """The keyset bytes do not hash to the signed digest, or carry another namespace/epoch/previous."""


class MalformedStatement(CountersignRefused, FormatError):
    """The signed bytes are not a canonical statement, or the keyset is not a canonical keyset."""


__all__ = [
    "AnchorSignatureRefused",
    "CountersignRefused",
    "CountersignerError",
    "KeysetMismatch",
    "MalformedStatement",
    "PublishError",
    "StatementMismatch",
]
