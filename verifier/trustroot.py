"""Trust roots: the small, app-shipped statement of whom a client trusts, and its rotation.

A trust root travels as a signed envelope (canonical JSON)::

    {"format": "fleetkeys/trust-root/v1",
     "root": "<base64 of the root body bytes>",
     "signatures": [<signature entry>, ...]}        (verifier.signatures; may be empty for the
                                                     bootstrap root, which the app trusts by shipping it)

Each signature is Ed25519 over ``b"fleetkeys/trust-root/v1\\n" || body`` (domain separated from
statements, countersignatures and notes). The body is canonical JSON::

    {"anchors": {"keys": [<vkey>...], "threshold": <1..len>},
     "countersigners": {"keys": [<vkey>...], "threshold": <1..len>},
     "expires_at": "<YYYY-MM-DDTHH:MM:SSZ>",
     "log": {"freshness_key": <cosignature vkey (type 0x04)>, "key": <log vkey (type 0x01)>,
             "max_age": <seconds 60..31536000: oldest acceptable freshness cosignature>,
             "origin": "<checkpoint origin line>"},
     "namespace": "<keyset namespace>",
     "version": <int 1..2**31>,
     "witnesses": {"keys": [<cosignature vkey>...], "threshold": <0..len>}}

Keys are C2SP vkeys (``name+hex8+base64(type || key)``); keys within one group are distinct; one key
serves one purpose only: the same public key may not appear as anchor and as log key, and so on,
except an anchor or countersigner key kept across versions.

Rotation (:func:`verify_rotation`): root N+1 is accepted only if its version is exactly N+1, its
namespace is unchanged, and it is signed by a threshold of root N's anchors, of root N's
countersigners, of its own anchors and of its own countersigners (all distinct-key counts).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from .cjson import dumps_canonical, expect_int, expect_object, expect_str, loads_canonical
from .errors import ExpiredError, FormatError, RollbackError, SizeLimitError, TrustRootError, VerificationError
from .keyset import NAMESPACE_RE, format_time, parse_time
from .note import ALG_COSIGNATURE_V1, ALG_ED25519, NoteVerifier, b64decode_strict
from .signatures import KeyGroup, SignatureEntry, parse_signature_entries, verify_threshold

FORMAT = "fleetkeys/trust-root/v1"
SIGNING_PREFIX = b"fleetkeys/trust-root/v1\n"
MAX_TRUST_ROOT_SIZE = 64 * 1024
MAX_KEYS = 16
MAX_VERSION = 1 << 31


@dataclass(frozen=True)
class LogConfig:
    origin: str
    key: NoteVerifier
    freshness_key: NoteVerifier
    max_age: int

    def to_json(self) -> dict[str, Any]:
        return {"freshness_key": self.freshness_key.vkey, "key": self.key.vkey, "max_age": self.max_age,
                "origin": self.origin}


@dataclass(frozen=True)
class TrustRoot:
    """A parsed trust-root body (``body`` = its exact bytes, ``envelope`` = the signed file)."""

    version: int
    namespace: str
    anchors: KeyGroup
    countersigners: KeyGroup
    log: LogConfig
    witnesses: KeyGroup
    expires_at: int
    body: bytes
    envelope: bytes

    def check_not_expired(self, now: int) -> None:
        if now >= self.expires_at:
            raise ExpiredError(f"trust root version {self.version} expired at {format_time(self.expires_at)} "
                               f"(now {format_time(now)}): the app needs a newer root")


def _parse_group(value: Any, what: str, alg: int, min_threshold: int) -> KeyGroup:
    obj = expect_object(value, {"keys", "threshold"}, what)
    keys_obj = obj["keys"]
    if not isinstance(keys_obj, list) or not len(keys_obj) <= MAX_KEYS:
        raise FormatError(f"{what}.keys: expected a list of at most {MAX_KEYS} keys")
    keys = []
    for i, vkey in enumerate(keys_obj):
        key = NoteVerifier.from_vkey(expect_str(vkey, f"{what}.keys[{i}]", 512))
        if key.alg != alg:
            raise FormatError(f"{what}.keys[{i}]: expected key type {alg:#04x}, found {key.alg:#04x}")
        keys.append(key)
    if len({k.public_key for k in keys}) != len(keys):
        raise TrustRootError(f"{what}: the same public key is listed twice")
    threshold = expect_int(obj["threshold"], f"{what}.threshold", 0, MAX_KEYS)
    if threshold < min_threshold:
        raise TrustRootError(f"{what}.threshold: must be at least {min_threshold}, found {threshold}")
    if threshold > len(keys):
        raise TrustRootError(f"{what}.threshold: {threshold} exceeds the {len(keys)} keys listed")
    return KeyGroup(tuple(keys), threshold)


def parse_trust_root_body(body: bytes, envelope: bytes = b"") -> TrustRoot:
    """Parse a trust-root body strictly (schema in the module docstring)."""
    obj = expect_object(loads_canonical(body, "trust root", MAX_TRUST_ROOT_SIZE),
                        {"anchors", "countersigners", "expires_at", "log", "namespace", "version", "witnesses"},
                        "trust root")
    version = expect_int(obj["version"], "trust root.version", 1, MAX_VERSION)
    namespace = expect_str(obj["namespace"], "trust root.namespace")
    if not NAMESPACE_RE.match(namespace):
        raise FormatError("trust root.namespace: only [A-Za-z0-9._:/-] allowed")
    anchors = _parse_group(obj["anchors"], "trust root.anchors", ALG_ED25519, 1)
    countersigners = _parse_group(obj["countersigners"], "trust root.countersigners", ALG_ED25519, 1)
    witnesses = _parse_group(obj["witnesses"], "trust root.witnesses", ALG_COSIGNATURE_V1, 0)
    log_obj = expect_object(obj["log"], {"freshness_key", "key", "max_age", "origin"}, "trust root.log")
    log_key = NoteVerifier.from_vkey(expect_str(log_obj["key"], "trust root.log.key", 512))
    fresh_key = NoteVerifier.from_vkey(expect_str(log_obj["freshness_key"], "trust root.log.freshness_key", 512))
    if log_key.alg != ALG_ED25519 or fresh_key.alg != ALG_COSIGNATURE_V1:
        raise FormatError("trust root.log: key must be type 0x01 and freshness_key type 0x04")
    origin = expect_str(log_obj["origin"], "trust root.log.origin")
    if log_key.name != origin:
        raise FormatError(f"trust root.log: key name {log_key.name!r} must equal the origin {origin!r}")
    log = LogConfig(origin, log_key, fresh_key,
                    expect_int(log_obj["max_age"], "trust root.log.max_age", 60, 365 * 86400))
    # One key, one purpose: a key trusted as anchor must not also be trusted to sign checkpoints, etc.
    purposes: dict[bytes, str] = {}
    for purpose, keys in (("anchor", anchors.keys), ("countersigner", countersigners.keys),
                          ("log", (log_key,)), ("freshness", (fresh_key,)), ("witness", witnesses.keys)):
        for k in keys:
            if k.public_key in purposes:
                raise TrustRootError(f"trust root: key {k.vkey} is used as both {purposes[k.public_key]} and "
                                     f"{purpose}; one key, one purpose")
            purposes[k.public_key] = purpose
    return TrustRoot(version, namespace, anchors, countersigners, log, witnesses,
                     parse_time(obj["expires_at"], "trust root.expires_at"), bytes(body), bytes(envelope))


def encode_trust_root_body(*, version: int, namespace: str, anchors: KeyGroup, countersigners: KeyGroup,
                           log: LogConfig, witnesses: KeyGroup, expires_at: int) -> bytes:
    """Canonical body bytes (checked by :func:`parse_trust_root_body`)."""
    body = dumps_canonical({
        "anchors": anchors.to_json(),
        "countersigners": countersigners.to_json(),
        "expires_at": format_time(expires_at),
        "log": log.to_json(),
        "namespace": namespace,
        "version": version,
        "witnesses": witnesses.to_json(),
    })
    parse_trust_root_body(body)
    return body


def signing_message(body: bytes) -> bytes:
    return SIGNING_PREFIX + body


def encode_envelope(body: bytes, signatures: tuple[SignatureEntry, ...] | list[SignatureEntry] = ()) -> bytes:
    return dumps_canonical({"format": FORMAT, "root": base64.b64encode(body).decode(),
                            "signatures": [s.to_json() for s in signatures]})


def parse_envelope(data: bytes) -> tuple[bytes, tuple[SignatureEntry, ...]]:
    """Split a trust-root envelope into (body bytes, signature entries) without trusting either."""
    obj = expect_object(loads_canonical(data, "trust root envelope", MAX_TRUST_ROOT_SIZE * 2),
                        {"format", "root", "signatures"}, "trust root envelope")
    if obj["format"] != FORMAT:
        raise FormatError(f"trust root envelope: format must be {FORMAT!r}")
    body = b64decode_strict(expect_str(obj["root"], "trust root envelope.root", MAX_TRUST_ROOT_SIZE * 2),
                            "trust root envelope.root")
    return body, parse_signature_entries(obj["signatures"], "trust root envelope")


def load_trust_root(data: bytes) -> TrustRoot:
    """Load a *bootstrap* trust root (shipped with the app and trusted as is; signatures not needed)."""
    try:
        body, _ = parse_envelope(data)
        return parse_trust_root_body(body, data)
    except TrustRootError:
        raise
    except VerificationError as exc:
        raise TrustRootError(f"invalid trust root: {exc}") from exc


def verify_rotation(current: TrustRoot, data: bytes) -> TrustRoot:
    """Accept root ``current.version + 1`` only if signed by both the old and the new key sets.

    Signatures are checked over the body bytes before the body is believed: the old root's anchors and
    countersigners are checked first (the new body is only parsed to learn its own keys after that).
    Raises :class:`RollbackError` for a version that is not exactly the next one and
    :class:`TrustRootError` (or :class:`ThresholdError`) otherwise.
    """
    try:
        body, entries = parse_envelope(data)
    except VerificationError as exc:
        raise TrustRootError(f"trust root rotation: {exc}") from exc
    message = signing_message(body)
    verify_threshold(message, entries, current.anchors, "anchor", f"trust root rotation from v{current.version}")
    verify_threshold(message, entries, current.countersigners, "countersigner",
                     f"trust root rotation from v{current.version}")
    try:
        new = parse_trust_root_body(body, data)
    except TrustRootError:
        raise
    except VerificationError as exc:
        raise TrustRootError(f"trust root rotation: {exc}") from exc
    if new.version != current.version + 1:
        raise RollbackError(f"trust root rotation: expected version {current.version + 1}, found {new.version} "
                            "(roots are followed one version at a time, never skipped or replayed)")
    if new.namespace != current.namespace:
        raise TrustRootError(f"trust root rotation: namespace changed from {current.namespace!r} to {new.namespace!r}")
    verify_threshold(message, entries, new.anchors, "anchor", f"trust root v{new.version} self-signature")
    verify_threshold(message, entries, new.countersigners, "countersigner", f"trust root v{new.version} self-signature")
    return new


#: Largest per-version trust-root object: a decimal index line and an envelope.
MAX_TRUST_ROOT_OBJECT = 32 + MAX_TRUST_ROOT_SIZE


def trust_root_object_path(version: int) -> str:
    """``trust-root/<version>`` (decimal): the static object locating rotation ``version`` in the log."""
    return f"trust-root/{version}"


def encode_trust_root_object(index: int, envelope: bytes) -> bytes:
    """The per-version object: ``<log index, decimal>\n`` followed by the exact rotation envelope."""
    return b"%d\n" % index + envelope


def parse_trust_root_object(data: bytes) -> tuple[int, bytes]:
    """``(index, envelope)`` of a per-version object (unauthenticated: prove ``envelope`` at ``index``)."""
    if len(data) > MAX_TRUST_ROOT_OBJECT:
        raise SizeLimitError(f"trust-root object: {len(data)} bytes exceeds {MAX_TRUST_ROOT_OBJECT}")
    head, sep, envelope = data.partition(b"\n")
    if not sep or not head.isdigit() or (len(head) > 1 and head[:1] == b"0") or len(head) > 19:
        raise FormatError("trust-root object: expected a canonical decimal log index line, then the envelope")
    return int(head), envelope


def sign_trust_root(body: bytes, signers: list[tuple[str, Any]]) -> bytes:
    """Envelope ``body`` with signatures by ``(role, Signer)`` pairs (deduplicated by key)."""
    message = signing_message(body)
    seen: set[tuple[str, bytes]] = set()
    entries = []
    for role, signer in signers:
        if (role, signer.public_key) in seen:
            continue
        seen.add((role, signer.public_key))
        entries.append(SignatureEntry.make(role, signer.public_key, signer.sign(message)))
    return encode_envelope(body, entries)


__all__ = [
    "MAX_TRUST_ROOT_OBJECT",
    "encode_trust_root_object",
    "parse_trust_root_object",
    "trust_root_object_path",
    "FORMAT",
    "KeyGroup",
    "LogConfig",
    "TrustRoot",
    "encode_envelope",
    "encode_trust_root_body",
    "load_trust_root",
    "parse_envelope",
    "parse_trust_root_body",
    "sign_trust_root",
    "verify_rotation",
]
