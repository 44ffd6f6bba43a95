"""JSON shapes of the signer's HTTP API, field for field those of Cloudflare's Plexi auditor.

Signature response (``POST /namespaces/<ns>/audits``, ``GET /namespaces/<ns>/audits/<epoch>``,
``POST /api/v1/sign-keyset``)::

    {"version": <ciphersuite>, "ciphersuite": <1|2>, "namespace": "<ns>", "timestamp": <ms>,
     "epoch": <n>, "digest": "<hex32>", "signature": "<hex64>", "key_id": <last byte of the key>,
     "serialized_message": "<hex of the exact signed statement bytes>"}

(``version`` mirrors ``ciphersuite``, as Plexi does while its clients move to the new name.)

Namespace record (``GET /namespaces``: ``{"namespaces": [...]}``; ``GET /namespaces/<ns>``)::

    {"name", "ciphersuite", "signature_version", "status": "Online"|"Initialization"|"Disabled",
     "root": "<first epoch>/<hex digest>" | null, "last_verified_epoch": <last signed epoch> (if any),
     "log_directory": <str|null>, "audits_uri", "reports_uri", "mode": "keyset"|"digest"}

(``mode`` is this signer's extra field: ``keyset`` namespaces sign only through
``POST /api/v1/sign-keyset``, ``digest`` namespaces also through Plexi's digest-only path.)

Requests are parsed strictly: exact field sets, integers only, hex of the right length, bounded sizes.
Every parser raises :class:`~signer.rules.Refusal` (400) with the reason.
"""

from __future__ import annotations

import re
from typing import Any

from verifier.cjson import expect_object, loads_strict
from verifier.errors import VerificationError
from verifier.keyset import MAX_EPOCH, NAMESPACE_RE

from .errors import Refusal
from .journal import Event
from .rules import (
    MODE_KEYSET,
    MODES,
    STATUS_DISABLED,
    STATUS_INITIALIZATION,
    STATUS_ONLINE,
    Namespace,
    SignedEntry,
)

MAX_U64 = (1 << 64) - 1
MAX_LOG_DIRECTORY = 512
_HEX64 = re.compile(r"\A[0-9a-fA-F]{64}\Z")


def bad_request(reason: str, code: str = "malformed") -> Refusal:
    return Refusal(code, reason)


def parse_json(body: bytes, what: str, max_size: int) -> Any:
    """Strict JSON (UTF-8, no duplicate keys, no floats, no NaN)."""
    try:
        return loads_strict(body, what, max_size)
    except VerificationError as exc:
        raise bad_request(str(exc)) from None


def _object(value: Any, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    try:
        return expect_object(value, required, what, optional)
    except VerificationError as exc:
        raise bad_request(str(exc)) from None


def check_namespace_name(name: Any) -> str:
    if not isinstance(name, str) or not NAMESPACE_RE.match(name):
        raise bad_request("namespace name: 1..256 characters of [A-Za-z0-9._:/-]")
    return name


def parse_epoch(value: Any) -> int:
    """An epoch: a JSON integer 1..2**63-1 (Plexi's u64; the journal stops at the signed 64-bit limit)."""
    if type(value) is not int or not 0 <= value <= MAX_U64:
        raise bad_request(f"epoch: expected an unsigned 64-bit integer, found {str(value)[:40]!r}")
    if value < 1:
        raise bad_request("epoch: epochs start at 1")
    if value > MAX_EPOCH:
        raise bad_request(f"epoch: {value} is beyond the largest epoch this signer stores ({MAX_EPOCH})")
    return value


def parse_digest(value: Any) -> bytes:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise bad_request("digest: expected 32 bytes as 64 hex digits")
    return bytes.fromhex(value)


def parse_sign_request(body: bytes, max_size: int) -> tuple[int, bytes]:
    """Plexi's ``SignatureRequest``: exactly ``{"epoch": <u64>, "digest": "<hex32>"}``."""
    obj = _object(parse_json(body, "signature request", max_size), {"epoch", "digest"}, set(), "signature request")
    return parse_epoch(obj["epoch"]), parse_digest(obj["digest"])


def _ciphersuite(obj: dict[str, Any]) -> int:
    given = [obj[k] for k in ("ciphersuite", "signature_version") if obj.get(k) is not None]
    if any(type(v) is not int for v in given):
        raise bad_request("ciphersuite: expected 1 (protobuf) or 2 (bincode)")
    values = set(given)
    if not values:
        return 1
    if len(values) != 1:
        raise bad_request("ciphersuite and signature_version disagree")
    cs = values.pop()
    if type(cs) is not int or cs not in (1, 2):
        raise bad_request("ciphersuite: expected 1 (protobuf) or 2 (bincode)")
    return cs


def parse_namespace_request(body: bytes, max_size: int) -> tuple[str, int, str, str | None, str]:
    """Plexi's ``Namespace`` creation body → ``(name, ciphersuite, status, log_directory, mode)``.

    ``{"name", "ciphersuite"?: 1|2 (default 1), "signature_version"?: same, "log_directory"?: str|null,
    "root"?: null, "status"?: "Online"|"Initialization", "mode"?: "keyset" (default)|"digest"}``. A
    ``root`` other than null is refused: this signer starts every namespace at epoch 1 and cannot vouch
    for an earlier history. ``mode`` is this signer's extension (:mod:`signer.rules`).
    """
    obj = _object(parse_json(body, "namespace", max_size), {"name"},
                  {"ciphersuite", "signature_version", "log_directory", "root", "status", "mode"}, "namespace")
    name = check_namespace_name(obj["name"])
    if obj.get("root") is not None:
        raise bad_request("namespace.root: this signer starts every namespace at epoch 1; give no root",
                          "root-not-supported")
    log_directory = obj.get("log_directory")
    if log_directory is not None and (not isinstance(log_directory, str) or not 0 < len(log_directory)
                                      <= MAX_LOG_DIRECTORY or not log_directory.isprintable()):
        raise bad_request(f"namespace.log_directory: expected a printable string of at most {MAX_LOG_DIRECTORY} "
                          "characters, or null")
    status = obj.get("status", STATUS_ONLINE)
    if status not in (STATUS_ONLINE, STATUS_INITIALIZATION):
        raise bad_request("namespace.status: a new namespace is Online (default) or Initialization")
    mode = obj.get("mode", MODE_KEYSET)
    if mode not in MODES:
        raise bad_request("namespace.mode: expected \"keyset\" (default) or \"digest\"")
    return name, _ciphersuite(obj), status, log_directory, mode


def parse_status_request(body: bytes, max_size: int) -> str:
    """``PATCH /namespaces/<ns>`` body: ``{"status": "Online" | "Disabled"}``."""
    obj = _object(parse_json(body, "namespace update", max_size), {"status"}, set(), "namespace update")
    if obj["status"] not in (STATUS_ONLINE, STATUS_DISABLED):
        raise bad_request("status: expected Online or Disabled")
    return obj["status"]


def signature_response(entry: SignedEntry) -> dict[str, Any]:
    return {
        "version": entry.ciphersuite,
        "ciphersuite": entry.ciphersuite,
        "namespace": entry.namespace,
        "timestamp": entry.timestamp,
        "epoch": entry.epoch,
        "digest": entry.digest.hex(),
        "signature": entry.signature.hex(),
        "key_id": entry.public_key[-1],
        "serialized_message": entry.statement.hex(),
    }


def namespace_info(ns: Namespace, first: SignedEntry | None, last: SignedEntry | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": ns.name,
        "log_directory": ns.log_directory,
        "root": f"{first.epoch}/{first.digest.hex()}" if first else None,
        "status": ns.status,
        "reports_uri": f"/namespaces/{ns.name}/reports",
        "audits_uri": f"/namespaces/{ns.name}/audits",
        "signature_version": ns.ciphersuite,
        "ciphersuite": ns.ciphersuite,
        "mode": ns.mode,
    }
    if last is not None:
        obj["last_verified_epoch"] = last.epoch
    return obj


def event_json(event: Event) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": event.id, "time": event.time, "kind": event.kind, "namespace": event.namespace}
    for name in ("epoch", "client", "reason"):
        if getattr(event, name) is not None:
            obj[name] = getattr(event, name)
    for name in ("digest", "previous"):
        if getattr(event, name) is not None:
            obj[name] = getattr(event, name).hex()
    if event.entry is not None:
        obj["signature"] = signature_response(event.entry)
    return obj


__all__ = [
    "bad_request",
    "event_json",
    "namespace_info",
    "parse_digest",
    "parse_epoch",
    "parse_json",
    "parse_namespace_request",
    "parse_sign_request",
    "parse_status_request",
    "signature_response",
]
