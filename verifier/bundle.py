"""Validation bundles: one log entry carrying a signed keyset, and their verification.

Bundle bytes are canonical JSON (:mod:`verifier.cjson`)::

    {"format": "fleetkeys/bundle/v1",
     "keyset": "<base64 of the keyset bytes, verbatim>",
     "signatures": [<anchor entries...>, <countersigner entries...>],   (verifier.signatures)
     "statement": "<base64 of the statement bytes, verbatim>"}

Signatures:

* anchor: Ed25519 over the statement bytes (:mod:`verifier.statement`), exactly as Plexi signs;
* countersigner: Ed25519 over ``b"fleetkeys/countersignature/v1\\n" || SHA-256(statement) ||
  anchor_sig_1 || ... || anchor_sig_k``, the anchor signatures in bundle order (with the usual single
  anchor this is exactly ``anchor_signature[64]``). The countersigner thereby vouches for the very
  anchor signatures it checked, and cannot be replayed onto another statement.

All anchor entries come before all countersigner entries. :func:`verify_bundle` runs the steps of
``bundles/FORMAT.md`` §6 in order: size; envelope; anchor threshold over the statement bytes;
countersigner threshold; statement parse; namespace; keyset digest; keyset parse; namespace and epoch
match. Signatures are checked over bytes before those bytes are parsed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .cjson import dumps_canonical, expect_object, expect_str, loads_canonical
from .errors import DigestError, FormatError, MismatchError, SignatureError, TrustRootError
from .keyset import MAX_KEYSET_SIZE, Keyset, parse_keyset
from .note import b64decode_strict
from .signatures import SignatureEntry, parse_signature_entries, verify_threshold
from .statement import MAX_STATEMENT_SIZE, Statement, parse_statement
from .trustroot import TrustRoot

FORMAT = "fleetkeys/bundle/v1"
COUNTERSIGNATURE_PREFIX = b"fleetkeys/countersignature/v1\n"
#: A bundle is one log entry, and a C2SP entry bundle stores each entry with a uint16 length.
MAX_BUNDLE_SIZE = 0xFFFF


def countersignature_message(statement_bytes: bytes, anchor_signatures: Sequence[bytes]) -> bytes:
    """``"fleetkeys/countersignature/v1\\n" || SHA-256(statement) || anchor signatures``."""
    if not anchor_signatures:
        raise FormatError("countersignature: at least one anchor signature is required")
    return COUNTERSIGNATURE_PREFIX + hashlib.sha256(statement_bytes).digest() + b"".join(anchor_signatures)


@dataclass(frozen=True)
class Bundle:
    """A bundle envelope: the carried bytes and the signature entries (nothing verified yet)."""

    statement: bytes
    keyset: bytes
    signatures: tuple[SignatureEntry, ...]

    @property
    def anchor_signatures(self) -> tuple[bytes, ...]:
        return tuple(s.sig for s in self.signatures if s.role == "anchor")

    def encode(self) -> bytes:
        return dumps_canonical({
            "format": FORMAT,
            "keyset": base64.b64encode(self.keyset).decode(),
            "signatures": [s.to_json() for s in self.signatures],
            "statement": base64.b64encode(self.statement).decode(),
        })


def parse_bundle(data: bytes) -> Bundle:
    """Parse the envelope only (canonical JSON, bounded); the carried bytes are not interpreted."""
    obj = expect_object(loads_canonical(data, "bundle", MAX_BUNDLE_SIZE),
                        {"format", "keyset", "signatures", "statement"}, "bundle")
    if obj["format"] != FORMAT:
        raise FormatError(f"bundle: format must be {FORMAT!r}, found {str(obj['format'])[:40]!r}")
    statement = b64decode_strict(expect_str(obj["statement"], "bundle.statement", MAX_STATEMENT_SIZE * 2),
                                 "bundle.statement")
    keyset = b64decode_strict(expect_str(obj["keyset"], "bundle.keyset", MAX_KEYSET_SIZE * 2), "bundle.keyset")
    signatures = parse_signature_entries(obj["signatures"], "bundle")
    roles = [s.role for s in signatures]
    if roles != sorted(roles):  # "anchor" < "countersigner"
        raise FormatError("bundle.signatures: anchor entries must come before countersigner entries")
    if "anchor" not in roles or "countersigner" not in roles:
        raise FormatError("bundle.signatures: needs at least one anchor and one countersigner entry")
    return Bundle(statement, keyset, signatures)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signatures, digest and formats all verified against a trust root."""

    bundle: Bundle
    statement: Statement
    keyset: Keyset
    raw: bytes


def verify_bundle(data: bytes, trust_root: TrustRoot) -> VerifiedBundle:
    """Verify bundle bytes against ``trust_root``; return the verified parts or raise.

    Steps (FORMAT.md §6, steps 1-8): size bound and envelope; anchor threshold over the statement
    bytes; countersigner threshold over the countersignature message; statement parse; statement
    namespace = trust root namespace; SHA-256(keyset) = statement digest; keyset parse; keyset
    namespace and epoch = statement's. Pure: no I/O, no clock (expiry is checked by the caller).
    """
    return verify_parsed_bundle(parse_bundle(data), trust_root, bytes(data))


def verify_parsed_bundle(bundle: Bundle, trust_root: TrustRoot, raw: bytes) -> VerifiedBundle:
    """:func:`verify_bundle` after the envelope parse (``raw`` = the bytes ``bundle`` came from)."""
    anchors = verify_threshold(bundle.statement, bundle.signatures, trust_root.anchors, "anchor", "bundle")
    counters = verify_threshold(countersignature_message(bundle.statement, bundle.anchor_signatures),
                                bundle.signatures, trust_root.countersigners, "countersigner", "bundle")
    # One bundle encoding per keyset and signer set: every signature entry must be one that counted (no
    # unverifiable extra, no second signature by a key already counted), so the log cannot hold the
    # same signed content twice under different bytes.
    for role, counted in (("anchor", anchors), ("countersigner", counters)):
        carried = sum(1 for e in bundle.signatures if e.role == role)
        if carried != len(counted):
            raise SignatureError(f"bundle: {carried - len(counted)} {role} signature(s) verify under no trusted key "
                                 "(or repeat one already counted): a bundle carries only signatures that count")
    statement = parse_statement(bundle.statement)
    if statement.namespace != trust_root.namespace:
        raise MismatchError(f"bundle: statement namespace {statement.namespace!r} is not the trusted namespace "
                            f"{trust_root.namespace!r}")
    digest = hashlib.sha256(bundle.keyset).digest()
    if digest != statement.digest:
        raise DigestError(f"bundle: keyset SHA-256 is {digest.hex()} but the signed statement commits to "
                          f"{statement.digest.hex()}")
    keyset = parse_keyset(bundle.keyset)
    if keyset.namespace != statement.namespace or keyset.epoch != statement.epoch:
        raise MismatchError(f"bundle: keyset is {keyset.namespace!r} epoch {keyset.epoch} but the statement "
                            f"signs {statement.namespace!r} epoch {statement.epoch}")
    check_names_root(keyset, trust_root)
    return VerifiedBundle(bundle, statement, keyset, raw)


def check_names_root(keyset: Keyset, trust_root: TrustRoot) -> None:
    """The keyset's ``trust_root`` name against the root verifying it (FORMAT.md §3.3).

    Naming this root's version requires this root's body digest (:class:`MismatchError`); naming a
    newer version means a rotation this verifier was not shown (:class:`TrustRootError`); naming an
    older one is accepted, because the signatures were just checked under the newer root (an app
    whose bootstrap root is newer than the log's position). A keyset without the name (logged
    before it existed) is not checked here: log writers refuse new ones (``require_root_name``).
    """
    ref = keyset.trust_root
    if ref is None or ref.version < trust_root.version:
        return
    if ref.version > trust_root.version:
        raise TrustRootError(f"keyset epoch {keyset.epoch} names trust root v{ref.version}, but it is being verified "
                             f"under v{trust_root.version}: a rotation was not shown to this verifier")
    digest = hashlib.sha256(trust_root.body).digest()
    if ref.sha256 != digest:
        raise MismatchError(f"keyset epoch {keyset.epoch} names trust root v{ref.version} with body SHA-256 "
                            f"{ref.sha256.hex()}, but v{trust_root.version} in force has {digest.hex()}")


def require_root_name(keyset: Keyset, trust_root: TrustRoot) -> None:
    """What a log writer (the distributor, ``publish``) demands of a new keyset: it names exactly the
    root in force, version and body digest (:class:`MismatchError` otherwise)."""
    ref = keyset.trust_root
    digest = hashlib.sha256(trust_root.body).digest()
    if ref is None or ref.version != trust_root.version or ref.sha256 != digest:
        named = "no trust root" if ref is None else f"trust root v{ref.version} ({ref.sha256.hex()[:16]}…)"
        raise MismatchError(f"keyset epoch {keyset.epoch} names {named}; a new keyset must name the trust root in "
                            f"force, v{trust_root.version} ({digest.hex()[:16]}…)")


__all__ = [
    "Bundle",
    "COUNTERSIGNATURE_PREFIX",
    "FORMAT",
    "VerifiedBundle",
    "check_names_root",
    "require_root_name",
    "countersignature_message",
    "parse_bundle",
    "verify_bundle",
]
