"""Role-tagged signature entries and distinct-key threshold checks, shared by bundles and trust roots.

A signature entry in canonical JSON::

    {"key_id": <int 0..255: last byte of the signer's Ed25519 public key, a hint only>,
     "role": "anchor" | "countersigner",
     "sig": "<standard padded base64 of the 64-byte Ed25519 signature>"}

:func:`verify_threshold` tries every trusted key whose last byte equals the hint, counts each
*distinct public key* at most once, and requires ``threshold`` of them: the same key listed twice, or
the same signature repeated, never counts twice.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import ed25519
from .cjson import expect_int, expect_object
from .errors import FormatError, SignatureError, ThresholdError
from .note import NoteVerifier, b64decode_strict

ROLES = ("anchor", "countersigner")
MAX_SIGNATURES = 32


@dataclass(frozen=True)
class SignatureEntry:
    role: str
    key_id: int
    sig: bytes

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "role": self.role, "sig": base64.b64encode(self.sig).decode()}

    @classmethod
    def make(cls, role: str, public_key: bytes, sig: bytes) -> SignatureEntry:
        return cls(role, public_key[-1], sig)


def parse_signature_entries(value: Any, what: str) -> tuple[SignatureEntry, ...]:
    if not isinstance(value, list) or len(value) > MAX_SIGNATURES:
        raise FormatError(f"{what}.signatures: expected a list of at most {MAX_SIGNATURES} entries")
    out = []
    for i, item in enumerate(value):
        obj = expect_object(item, {"key_id", "role", "sig"}, f"{what}.signatures[{i}]")
        role = obj["role"]
        if role not in ROLES:
            raise FormatError(f"{what}.signatures[{i}].role: expected anchor or countersigner, found {str(role)[:20]!r}")
        key_id = expect_int(obj["key_id"], f"{what}.signatures[{i}].key_id", 0, 255)
        if not isinstance(obj["sig"], str):
            raise FormatError(f"{what}.signatures[{i}].sig: expected base64")
        sig = b64decode_strict(obj["sig"], f"{what}.signatures[{i}].sig")
        if len(sig) != ed25519.SIGNATURE_SIZE:
            raise FormatError(f"{what}.signatures[{i}].sig: expected 64 bytes, found {len(sig)}")
        out.append(SignatureEntry(role, key_id, sig))
    return tuple(out)


@dataclass(frozen=True)
class KeyGroup:
    """Trusted keys for one role and how many distinct ones must sign."""

    keys: tuple[NoteVerifier, ...]
    threshold: int

    def to_json(self) -> dict[str, Any]:
        return {"keys": [k.vkey for k in self.keys], "threshold": self.threshold}


def verify_threshold(message: bytes, entries: Sequence[SignatureEntry], group: KeyGroup, role: str,
                     what: str) -> list[NoteVerifier]:
    """Verify ``entries`` of ``role`` over ``message``; return the distinct keys that signed.

    Raises :class:`ThresholdError` when fewer than ``group.threshold`` distinct trusted keys signed.
    An entry whose hint matches no trusted key, or whose signature fails under every matching key,
    does not count (and is reported in the error message).
    """
    signed: dict[bytes, NoteVerifier] = {}
    failures = []
    for entry in entries:
        if entry.role != role:
            continue
        candidates = [k for k in group.keys if k.public_key[-1] == entry.key_id and k.public_key not in signed]
        for key in candidates:
            try:
                ed25519.verify(key.public_key, message, entry.sig, what=f"{what} {role} signature")
            except SignatureError:
                continue
            signed[key.public_key] = key
            break
        else:
            failures.append(f"key_id {entry.key_id}: " + ("no trusted key with this id" if not candidates
                                                           else "signature does not verify"))
    if len(signed) < group.threshold:
        detail = f" ({'; '.join(failures[:4])})" if failures else ""
        raise ThresholdError(f"{what}: {len(signed)} distinct trusted {role} key(s) signed, "
                             f"{group.threshold} required{detail}")
    return list(signed.values())
