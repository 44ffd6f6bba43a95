"""The keyset: the payload of one epoch, the fleet public keys in force.

Canonical JSON (:mod:`verifier.cjson`), exactly these fields::

    {"epoch": <int 1..2**63-1>,
     "expires_at": "<YYYY-MM-DDTHH:MM:SSZ>",          after issued_at; clients refuse it after this
     "fleets": [<fleet>, ...],                          0..160, sorted by fleet_id, fleet_ids unique
     "issued_at": "<YYYY-MM-DDTHH:MM:SSZ>",
     "namespace": "<namespace>",                        1..256 chars of [A-Za-z0-9._:/-]
     "previous": "<64 lower-case hex>"}                 SHA-256 of the previous epoch's keyset bytes,
                                                        64 zeros for epoch 1

    fleet = {"algorithm": "x25519" | "ed25519" | "p256",
             "fleet_id": "<1..64 chars of [A-Za-z0-9._-]>",
             "not_after": "<time>", "not_before": "<time>",   not_before < not_after
             "public_key": "<standard padded base64>",        x25519/ed25519: 32 bytes;
                                                              p256: SEC1 uncompressed, 65 bytes (04 || X || Y)
             "status": "active" | "retired" | "revoked"}

The keyset digest is ``SHA-256(keyset bytes)``; the statement carries it, so the bytes are signed.
:func:`parse_keyset` is strict (canonical bytes only, unknown fields rejected) and validates every
fleet key as a point of its curve: a P-256 key must be on the curve, an Ed25519 key a canonical
prime-order point, an X25519 key not a low-order point.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from nacl.bindings import crypto_core_ed25519_is_valid_point

from .cjson import dumps_canonical, expect_int, expect_object, expect_str, loads_canonical
from .errors import ChainError, FormatError
from .note import b64decode_strict

#: Base64 of the keyset must fit, with the statement and signatures, in one 65,535-byte log entry.
MAX_KEYSET_SIZE = 40 * 1024
MAX_FLEETS = 160
#: Largest epoch (a signed 64-bit integer: SQLite and PostgreSQL store it as one).
MAX_EPOCH = (1 << 63) - 1
#: Tolerated clock skew (seconds) for any time ahead of ``now``: a keyset's ``issued_at``, a freshness
#: cosignature. The one allowance of every checker (client, audit, publish, distributor).
CLOCK_SKEW = 300
#: ``previous`` of epoch 1: 32 zero bytes (64 zeros in the keyset's hex).
GENESIS_PREVIOUS = bytes(32)
ALGORITHMS = ("x25519", "ed25519", "p256")
STATUSES = ("active", "retired", "revoked")
_TIME_RE = re.compile(r"\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z\Z", re.ASCII)
_FLEET_ID_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
NAMESPACE_RE = re.compile(r"\A[A-Za-z0-9._:/-]{1,256}\Z")
_HEX64_RE = re.compile(r"\A[0-9a-f]{64}\Z")
_KEYSET_FIELDS = {"epoch", "expires_at", "fleets", "issued_at", "namespace", "previous"}
#: Optional for keysets logged before it existed; every new bundle carries it (FORMAT.md §3.3).
_KEYSET_OPTIONAL = {"trust_root"}
#: Largest trust-root version a keyset can name (the trust root's own bound).
MAX_TRUST_ROOT_VERSION = 1 << 31
_FLEET_FIELDS = {"algorithm", "fleet_id", "not_after", "not_before", "public_key", "status"}

# X25519 u-coordinates of small order (and their non-canonical twins), from the curve25519 literature:
# a key with one of these gives an all-zero or predictable shared secret.
_X25519_LOW_ORDER = {
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
}
_P25519 = (1 << 255) - 19


@functools.lru_cache(maxsize=4096)
def _time_seconds(value: str) -> int:
    """Seconds for a well-formed time string (cached: the same times recur across fleets and epochs)."""
    match = _TIME_RE.match(value)
    if match is None:
        raise ValueError("malformed")
    return int(datetime(*map(int, match.groups()), tzinfo=UTC).timestamp())


def parse_time(value: Any, what: str) -> int:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC, exactly this form) to POSIX seconds."""
    if not isinstance(value, str) or len(value) != 20:
        raise FormatError(f"{what}: expected a time like 2027-01-01T00:00:00Z, found {str(value)[:40]!r}")
    try:
        return _time_seconds(value)
    except ValueError as exc:
        if not _TIME_RE.match(value):
            raise FormatError(f"{what}: expected a time like 2027-01-01T00:00:00Z, found {value!r}") from exc
        raise FormatError(f"{what}: invalid date {value!r}") from exc


def format_time(seconds: int) -> str:
    """POSIX seconds to ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_fleet_key(algorithm: str, key: bytes, what: str) -> None:
    """Raise :class:`FormatError` unless ``key`` is a valid public point for ``algorithm``."""
    if algorithm == "ed25519":
        if len(key) != 32 or not crypto_core_ed25519_is_valid_point(key):
            raise FormatError(f"{what}: not a canonical prime-order Ed25519 point")
    elif algorithm == "x25519":
        if len(key) != 32:
            raise FormatError(f"{what}: X25519 keys are 32 bytes, found {len(key)}")
        u = int.from_bytes(key, "little")
        if key in _X25519_LOW_ORDER or (u & ((1 << 255) - 1)) >= _P25519 or key[31] & 0x80:
            raise FormatError(f"{what}: X25519 key is a low-order or non-canonical point")
    elif algorithm == "p256":
        # One encoding per key: uncompressed only (a compressed twin would give a second keyset digest).
        if len(key) != 65 or key[0] != 0x04:
            raise FormatError(f"{what}: P-256 keys must be SEC1 uncompressed (65 bytes starting 04), found "
                              f"{len(key)} bytes")
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
        except ValueError as exc:
            raise FormatError(f"{what}: not a point on P-256") from exc
    else:
        raise FormatError(f"{what}: unknown algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})")


@dataclass(frozen=True)
class Fleet:
    """One HSM fleet's public key and validity."""

    fleet_id: str
    algorithm: str
    public_key: bytes
    not_before: int
    not_after: int
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "fleet_id": self.fleet_id,
            "not_after": format_time(self.not_after),
            "not_before": format_time(self.not_before),
            "public_key": base64.b64encode(self.public_key).decode(),
            "status": self.status,
        }


@dataclass(frozen=True)
class TrustRootRef:
    """The trust root a keyset was signed under: its ``version`` and the SHA-256 of its body bytes."""

    version: int
    sha256: bytes

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256.hex(), "version": self.version}


@dataclass(frozen=True)
class Keyset:
    """A parsed keyset and the exact bytes it came from (``raw``; ``digest`` = SHA-256(raw)).

    ``trust_root`` is the root it names (``None`` for a keyset logged before the field existed).
    """

    epoch: int
    namespace: str
    issued_at: int
    expires_at: int
    previous: bytes
    fleets: tuple[Fleet, ...]
    raw: bytes
    digest: bytes
    trust_root: TrustRootRef | None = None

    def fleet(self, fleet_id: str) -> Fleet | None:
        return next((f for f in self.fleets if f.fleet_id == fleet_id), None)

    def active_fleets(self, now: int) -> tuple[Fleet, ...]:
        """Fleets with status ``active`` whose validity window contains ``now``."""
        return tuple(f for f in self.fleets if f.status == "active" and f.not_before <= now < f.not_after)


def _parse_fleet(obj: Any, i: int) -> Fleet:
    what = f"keyset fleets[{i}]"
    obj = expect_object(obj, _FLEET_FIELDS, what)
    fleet_id = expect_str(obj["fleet_id"], f"{what}.fleet_id", 64)
    if not _FLEET_ID_RE.match(fleet_id):
        raise FormatError(f"{what}.fleet_id: only [A-Za-z0-9._-]{{1,64}} allowed, found {fleet_id!r}")
    algorithm = obj["algorithm"]
    if algorithm not in ALGORITHMS:
        raise FormatError(f"{what}.algorithm: expected one of {', '.join(ALGORITHMS)}, found {str(algorithm)[:20]!r}")
    status = obj["status"]
    if status not in STATUSES:
        raise FormatError(f"{what}.status: expected one of {', '.join(STATUSES)}, found {str(status)[:20]!r}")
    key = b64decode_strict(expect_str(obj["public_key"], f"{what}.public_key", 200), f"{what}.public_key")
    check_fleet_key(algorithm, key, f"{what} ({fleet_id})")
    not_before = parse_time(obj["not_before"], f"{what}.not_before")
    not_after = parse_time(obj["not_after"], f"{what}.not_after")
    if not not_before < not_after:
        raise FormatError(f"{what}: not_before must be before not_after")
    return Fleet(fleet_id, algorithm, key, not_before, not_after, status)


def parse_keyset(data: bytes) -> Keyset:
    """Parse keyset bytes strictly (canonical JSON, schema above, valid points).

    Precondition for clients: the keyset digest was already checked against a verified statement.
    """
    obj = expect_object(loads_canonical(data, "keyset", MAX_KEYSET_SIZE), _KEYSET_FIELDS, "keyset", _KEYSET_OPTIONAL)
    epoch = expect_int(obj["epoch"], "keyset.epoch", 1, MAX_EPOCH)
    namespace = expect_str(obj["namespace"], "keyset.namespace")
    if not NAMESPACE_RE.match(namespace):
        raise FormatError(f"keyset.namespace: only [A-Za-z0-9._:/-] allowed, found {namespace[:60]!r}")
    previous = obj["previous"]
    if not isinstance(previous, str) or not _HEX64_RE.match(previous):
        raise FormatError("keyset.previous: expected 64 lower-case hex digits")
    if epoch == 1 and previous != GENESIS_PREVIOUS.hex():
        raise ChainError("keyset.previous: epoch 1 must have previous = 64 zeros")
    if epoch > 1 and previous == GENESIS_PREVIOUS.hex():
        raise ChainError(f"keyset.previous: epoch {epoch} must name the digest of epoch {epoch - 1}")
    issued_at = parse_time(obj["issued_at"], "keyset.issued_at")
    expires_at = parse_time(obj["expires_at"], "keyset.expires_at")
    if not issued_at < expires_at:
        raise FormatError("keyset: issued_at must be before expires_at")
    fleets_obj = obj["fleets"]
    if not isinstance(fleets_obj, list) or len(fleets_obj) > MAX_FLEETS:
        raise FormatError(f"keyset.fleets: expected a list of at most {MAX_FLEETS} fleets")
    fleets = tuple(_parse_fleet(f, i) for i, f in enumerate(fleets_obj))
    ids = [f.fleet_id for f in fleets]
    if ids != sorted(set(ids)):
        raise FormatError("keyset.fleets: fleet_ids must be unique and sorted")
    raw = bytes(data)
    return Keyset(epoch, namespace, issued_at, expires_at, bytes.fromhex(previous), fleets, raw,
                  hashlib.sha256(raw).digest(), _parse_root_ref(obj.get("trust_root")))


def _parse_root_ref(value: Any) -> TrustRootRef | None:
    if value is None:
        return None
    obj = expect_object(value, {"sha256", "version"}, "keyset.trust_root")
    digest = obj["sha256"]
    if not isinstance(digest, str) or not _HEX64_RE.match(digest):
        raise FormatError("keyset.trust_root.sha256: expected 64 lower-case hex digits")
    return TrustRootRef(expect_int(obj["version"], "keyset.trust_root.version", 1, MAX_TRUST_ROOT_VERSION),
                        bytes.fromhex(digest))


def encode_keyset(*, epoch: int, namespace: str, issued_at: int, expires_at: int, previous: bytes,
                  fleets: list[Fleet] | tuple[Fleet, ...], trust_root: TrustRootRef | None = None) -> bytes:
    """Build canonical keyset bytes (fleets sorted by id) and check them with :func:`parse_keyset`.

    ``trust_root`` names the root the keyset will be signed under (every new keyset should).
    """
    obj = {
        "epoch": epoch,
        "expires_at": format_time(expires_at),
        "fleets": [f.to_json() for f in sorted(fleets, key=lambda f: f.fleet_id)],
        "issued_at": format_time(issued_at),
        "namespace": namespace,
        "previous": previous.hex(),
    }
    if trust_root is not None:
        obj["trust_root"] = trust_root.to_json()
    data = dumps_canonical(obj)
    parse_keyset(data)
    return data


def canonicalize_keyset(data: bytes) -> bytes:
    """Re-encode a hand-written keyset JSON file (any white space, any key order) canonically.

    For the publish pipeline: operators write readable JSON; what is signed is the canonical form.
    Duplicate keys and floats are still rejected.
    """
    from .cjson import loads_strict

    value = loads_strict(data, "keyset", MAX_KEYSET_SIZE)
    if isinstance(value, dict) and isinstance(value.get("fleets"), list):
        value["fleets"] = sorted(value["fleets"], key=lambda f: str(f.get("fleet_id")) if isinstance(f, dict) else "")
    canonical = dumps_canonical(value)
    parse_keyset(canonical)
    return canonical


class ChainLink(Protocol):
    """What the next-epoch rule needs of the last accepted epoch (a :class:`Keyset`, a log's or a
    signer's record of it). ``issued_at`` is ``None`` where it is not known (a digest-only signature)."""

    @property
    def epoch(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def issued_at(self) -> int | None: ...


class ChainStep(Protocol):
    """What the next-epoch rule needs of the candidate (a :class:`Keyset` or a signing request);
    ``previous`` and ``issued_at`` are ``None`` where they are not known (a digest-only request)."""

    @property
    def epoch(self) -> int: ...
    @property
    def previous(self) -> bytes | None: ...
    @property
    def issued_at(self) -> int | None: ...


def check_next_epoch(last: ChainLink | None, new: ChainStep) -> None:
    """The next-epoch rule (FORMAT.md §3.1), the one implementation every checker uses.

    ``last`` is the last accepted epoch (``None`` before epoch 1). The candidate must be epoch
    ``last.epoch + 1`` (1 first), its ``previous`` must be ``last.digest`` (:data:`GENESIS_PREVIOUS`
    for epoch 1) and its ``issued_at`` must not be earlier than ``last.issued_at``. A ``None`` field
    is not checked (a digest-only signing request carries neither). Raises
    :class:`~verifier.errors.ChainError` whose ``rule`` names the rule broken.
    """
    expected = 1 if last is None else last.epoch + 1
    if new.epoch != expected:
        if last is not None and new.epoch > expected:
            raise ChainError(f"epoch {new.epoch} skips epochs {expected}..{new.epoch - 1}: verify them in order so the "
                             "previous-hash chain is checked", "epoch")
        detail = "the first epoch is 1" if last is None else f"epoch {last.epoch} is the last one"
        raise ChainError(f"epoch {new.epoch} is not the next epoch {expected} ({detail})", "epoch")
    if new.previous is not None:
        want = GENESIS_PREVIOUS if last is None else last.digest
        if new.previous != want:
            raise ChainError(f"keyset epoch {new.epoch}: previous = {new.previous.hex()} but epoch "
                                             f"{new.epoch - 1} has digest {want.hex()} (forked history)", "previous")
    if new.issued_at is not None and last is not None and last.issued_at is not None and new.issued_at < last.issued_at:
        raise ChainError(f"keyset epoch {new.epoch} has issued_at {format_time(new.issued_at)}, "
                                          f"earlier than epoch {last.epoch}'s {format_time(last.issued_at)}: "
                                          "issued_at never goes backwards", "issued_at")


__all__ = [
    "ALGORITHMS",
    "Fleet",
    "GENESIS_PREVIOUS",
    "Keyset",
    "STATUSES",
    "TrustRootRef",
    "canonicalize_keyset",
    "CLOCK_SKEW",
    "ChainLink",
    "ChainStep",
    "MAX_EPOCH",
    "check_next_epoch",
    "check_fleet_key",
    "encode_keyset",
    "format_time",
    "parse_keyset",
    "parse_time",
]
