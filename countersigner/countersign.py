"""The operator's countersignature (docs/DESIGN.md §4): check the anchor's signature, then vouch for it.

The countersigner asked the anchor signer for one exact statement: namespace, epoch, the digest of the
keyset it means to publish and (inside that keyset) the ``previous`` digest. :func:`countersign`
signs only if what came back is exactly that, checked in this order:

1. every anchor signature verifies (strictly) over the statement bytes under a distinct trusted
   anchor key, and at least the group's threshold of distinct keys signed (an unverifiable signature
   is refused, not skipped: the countersignature covers every anchor signature it is given). A
   signature that comes with a one-byte key id (Plexi's ``key_id``, the last byte of the key) is
   tried only under trusted keys with that last byte, as
   :func:`verifier.signatures.verify_threshold` does for bundles; one without is tried under every
   trusted key. The hint only narrows the search, it never makes a key trusted;
2. the statement bytes parse strictly (:func:`verifier.statement.parse_statement`), only now that a
   trusted signature over them verified;
3. the statement's namespace, epoch and digest equal the expected ones;
4. with the keyset bytes: SHA-256(keyset) is the digest, and the keyset's namespace, epoch and
   ``previous`` are the expected ones (an expected ``previous`` without keyset bytes is refused).

Only then it signs ``countersignature_message(statement, anchor_signatures)``
(:func:`verifier.bundle.countersignature_message`). Every refusal is a :class:`CountersignRefused`
subclass (itself a :class:`verifier.errors.VerificationError`) saying what was expected and found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from keys import Signer
from verifier import ed25519
from verifier.bundle import Bundle, countersignature_message
from verifier.errors import (
    SignatureError,
    ThresholdError,
    VerificationError,
)
from verifier.keyset import Keyset, parse_keyset
from verifier.note import NoteVerifier
from verifier.signatures import KeyGroup, SignatureEntry
from verifier.statement import Statement, parse_statement

from .errors import AnchorSignatureRefused, CountersignRefused, KeysetMismatch, MalformedStatement, StatementMismatch


@dataclass(frozen=True)
class ExpectedStatement:
    """What the countersigner asked the anchor to sign. ``previous`` needs the keyset to be checked."""

    namespace: str
    epoch: int
    digest: bytes
    previous: bytes | None = None

    @classmethod
    def for_keyset(cls, keyset: bytes | Keyset) -> ExpectedStatement:
        """The statement expected for publishing ``keyset`` (canonical bytes, or parsed)."""
        if not isinstance(keyset, Keyset):
            try:
                keyset = parse_keyset(keyset)
            except VerificationError as exc:
                raise MalformedStatement(f"countersign: keyset refused: {exc}") from None
        return cls(keyset.namespace, keyset.epoch, keyset.digest, keyset.previous)


AnchorKeys = KeyGroup | Sequence[NoteVerifier | bytes]


def _anchor_group(anchor_keys: AnchorKeys) -> tuple[tuple[bytes, ...], int]:
    if isinstance(anchor_keys, KeyGroup):
        return tuple(k.public_key for k in anchor_keys.keys), anchor_keys.threshold
    keys = tuple(k.public_key if isinstance(k, NoteVerifier) else bytes(k) for k in anchor_keys)
    return keys, 1


def verify_anchor_signatures(statement_bytes: bytes, anchor_signatures: Sequence[bytes],
                             anchor_keys: AnchorKeys, key_ids: Sequence[int | None] | None = None
                             ) -> list[tuple[bytes, bytes]]:
    """Return ``[(anchor public key, signature), ...]`` in the given order, or raise.

    Each signature must verify (strictly) under a trusted key not already used by an earlier one, and
    at least the threshold of distinct keys (1 for a plain key list) must have signed. ``key_ids``
    (one per signature, ``None`` for unknown) are the signer's one-byte hints: a signature with a hint
    is tried only under trusted keys whose last byte equals it (as
    :func:`verifier.signatures.verify_threshold` does), one without a hint under every trusted key.
    """
    keys, threshold = _anchor_group(anchor_keys)
    if not keys or threshold < 1:
        raise AnchorSignatureRefused("countersign: no trusted anchor key configured")
    if not anchor_signatures:
        raise AnchorSignatureRefused("countersign: no anchor signature given")
    hints = list(key_ids) if key_ids is not None else [None] * len(anchor_signatures)
    if len(hints) != len(anchor_signatures):
        raise ValueError("verify_anchor_signatures: one key id (or None) per signature")
    out: list[tuple[bytes, bytes]] = []
    used: set[bytes] = set()
    for i, sig in enumerate(anchor_signatures):
        hint = hints[i]
        for key in keys:
            if key in used or (hint is not None and key[-1] != hint):
                continue
            try:
                ed25519.verify(key, statement_bytes, sig, what="anchor signature")
            except SignatureError:
                continue
            used.add(key)
            out.append((key, bytes(sig)))
            break
        else:
            with_hint = "" if hint is None else f" with key id {hint}"
            raise AnchorSignatureRefused(
                f"countersign: anchor signature #{i + 1} does not verify under any trusted anchor key{with_hint} not "
                f"already counted ({', '.join(k.hex()[:16] + '…' for k in keys)})")
    if len(used) < threshold:
        raise AnchorSignatureRefused(f"countersign: {len(used)} distinct trusted anchor key(s) signed, "
                                     f"{threshold} required")
    return out


def check_statement(statement_bytes: bytes, expected: ExpectedStatement, keyset: bytes | None = None) -> Statement:
    """Steps 2, 3 and 4 of the module docstring (the caller verified a signature over the bytes)."""
    try:
        statement = parse_statement(statement_bytes)
    except VerificationError as exc:
        raise MalformedStatement(f"countersign: the signed bytes are not a statement: {exc}") from None
    for name in ("namespace", "epoch", "digest"):
        want, got = getattr(expected, name), getattr(statement, name)
        if want != got:
            show = (lambda v: v.hex()) if name == "digest" else repr
            raise StatementMismatch(f"countersign: the anchor signed {name} {show(got)} but {show(want)} was "
                                    "requested")
    if expected.previous is not None and keyset is None:
        raise KeysetMismatch("countersign: cannot check the expected previous digest without the keyset bytes")
    if keyset is not None:
        digest = hashlib.sha256(keyset).digest()
        if digest != statement.digest:
            raise KeysetMismatch(f"countersign: the keyset's SHA-256 is {digest.hex()} but the anchor signed "
                                 f"{statement.digest.hex()}")
        try:
            parsed = parse_keyset(keyset)
        except VerificationError as exc:
            raise MalformedStatement(f"countersign: keyset refused: {exc}") from None
        if (parsed.namespace, parsed.epoch) != (statement.namespace, statement.epoch):
            raise KeysetMismatch(f"countersign: keyset is {parsed.namespace!r} epoch {parsed.epoch}, the statement "
                                 f"{statement.namespace!r} epoch {statement.epoch}")
        if expected.previous is not None and parsed.previous != expected.previous:
            raise KeysetMismatch(f"countersign: keyset previous is {parsed.previous.hex()} but "
                                 f"{expected.previous.hex()} was requested")
    return statement


def countersign(statement_bytes: bytes, anchor_signature: bytes | Sequence[bytes], *, expected: ExpectedStatement,
                anchor_keys: AnchorKeys, signer: Signer, keyset: bytes | None = None,
                key_ids: Sequence[int | None] | None = None) -> bytes:
    """Verify the anchor's answer (module docstring, steps 1-4), then return the countersignature.

    ``anchor_signature`` is one 64-byte signature or several (bundle order); ``key_ids`` their
    one-byte hints, if known (see :func:`verify_anchor_signatures`). Raises a
    :class:`CountersignRefused` subclass and signs nothing if any check fails.
    """
    sigs = [anchor_signature] if isinstance(anchor_signature, bytes | bytearray) else list(anchor_signature)
    statement_bytes = bytes(statement_bytes)
    verify_anchor_signatures(statement_bytes, sigs, anchor_keys, key_ids)
    check_statement(statement_bytes, expected, keyset)
    return signer.sign(countersignature_message(statement_bytes, [bytes(s) for s in sigs]))


def build_bundle(statement_bytes: bytes, keyset_bytes: bytes, anchors: Sequence[tuple[bytes, bytes]],
                 countersigners: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Bundle bytes (``verifier.bundle.Bundle``) from ``(public key, signature)`` pairs per role.

    Anchor signatures must be in the order they were countersigned. Nothing is verified here; the
    publish pipeline verifies the finished bundle with :func:`verifier.bundle.verify_bundle`.
    """
    if not anchors or not countersigners:
        raise ThresholdError("bundle: needs at least one anchor and one countersigner signature")
    entries = tuple(SignatureEntry.make("anchor", pk, sig) for pk, sig in anchors) + tuple(
        SignatureEntry.make("countersigner", pk, sig) for pk, sig in countersigners)
    return Bundle(bytes(statement_bytes), bytes(keyset_bytes), entries).encode()


__all__ = [
    "AnchorSignatureRefused",
    "CountersignRefused",
    "ExpectedStatement",
    "KeysetMismatch",
    "MalformedStatement",
    "StatementMismatch",
    "build_bundle",
    "check_statement",
    "countersign",
    "verify_anchor_signatures",
]
