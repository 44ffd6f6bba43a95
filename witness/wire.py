"""The add-checkpoint request as the witness reads it: :mod:`verifier.tlogwitness` with the witness's errors.

The wire format has one home, :mod:`verifier.tlogwitness` (the distributor, the witness's client,
encodes with it). Here its :class:`~verifier.errors.FormatError` becomes :class:`MalformedRequest`
(400) and its :class:`~verifier.errors.SizeLimitError` :class:`RequestTooLarge` (413), so that the
witness's one status table (:data:`witness.app.STATUS_OF`) sees only witness errors.
"""

from __future__ import annotations

from verifier.errors import SizeLimitError, VerificationError
from verifier.tlogwitness import (
    MAX_BODY,
    MAX_PROOF_LINES,
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    encode_add_checkpoint,
    encode_size_body,
)
from verifier.tlogwitness import parse_add_checkpoint as _parse

from .errors import MalformedRequest, RequestTooLarge


def parse_add_checkpoint(body: bytes, max_body: int = MAX_BODY) -> AddCheckpoint:
    """:func:`verifier.tlogwitness.parse_add_checkpoint`, raising :class:`MalformedRequest` (or
    :class:`RequestTooLarge`) and nothing else."""
    try:
        return _parse(body, max_body)
    except SizeLimitError as exc:
        raise RequestTooLarge(str(exc)) from None
    except VerificationError as exc:
        raise MalformedRequest(str(exc)) from None


__all__ = [
    "MAX_BODY",
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "encode_add_checkpoint",
    "encode_size_body",
    "parse_add_checkpoint",
]
