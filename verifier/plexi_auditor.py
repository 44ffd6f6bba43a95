"""Checking a Plexi-style third-party auditor's signature responses against pinned keys.

The deployed system's anchor is Cloudflare's Plexi auditor, and our anchor signer speaks the same
API. Its answers are JSON and unauthenticated as such; what can be checked is the signature inside.
A *signature response* (``GET /namespaces/<ns>/audits/<epoch>``, ``bundles/FORMAT.md`` §15.3)::

    {"version": <ciphersuite, optional>, "ciphersuite": 1 | 2, "namespace": "<ns>",
     "timestamp": <ms since the Unix epoch>, "epoch": <u64>, "digest": "<64 hex>",
     "signature": "<128 hex>", "key_id": <0..255>, "serialized_message": "<hex of the signed bytes>"}

and the *auditor keys* are pinned in the shape of the auditor's ``GET /info``::

    {"keys": [{"public_key": "<64 hex>", "not_before": <ms>}, ...], "logs": [...]}   ("logs" optional)

:func:`verify_response` checks one response, in this order (each failure raises the named
:class:`~verifier.errors.VerificationError` subclass):

1. the namespace is the one asked for, and the epoch when one was asked for (``MismatchError``);
2. the message re-encoded from the fields (``verifier.statement.Statement``, ciphersuite 1 protobuf or
   2 bincode) is byte for byte ``serialized_message`` (``MismatchError``): what was signed is what the
   fields say;
3. the Ed25519 signature over those bytes verifies *strictly* (``verifier.ed25519.verify``) under a
   pinned key whose last byte is ``key_id`` and whose ``not_before`` is not after the timestamp
   (``SignatureError``; no pinned key with that id: also ``SignatureError``).

:func:`check_sequence` checks a namespace's responses together: epochs contiguous from the first (or
from the one asked for), one response per epoch, timestamps strictly increasing with the epoch, none
more than ``CLOCK_SKEW`` ahead of ``now``, and, when ``max_age`` is given, the newest signed within
``max_age`` seconds (``ChainError``, ``RollbackError``, ``ExpiredError``). Pure: no I/O, clock passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import ed25519
from .cjson import expect_object, loads_strict
from .errors import ChainError, ExpiredError, FormatError, MismatchError, RollbackError, SignatureError
from .keyset import CLOCK_SKEW
from .statement import CIPHERSUITES, MAX_NAMESPACE_LENGTH, MAX_STATEMENT_SIZE, MAX_U64, Statement

MAX_RESPONSE_SIZE = 8192
MAX_KEYS_SIZE = 64 * 1024
MAX_AUDITOR_KEYS = 64
_HEX = re.compile(r"\A[0-9a-f]*\Z")
_RESPONSE_FIELDS = {"ciphersuite", "namespace", "timestamp", "epoch", "digest", "signature", "key_id",
                    "serialized_message"}


@dataclass(frozen=True)
class AuditorKey:
    """A pinned auditor key: raw 32-byte Ed25519 public key and the first time (ms) it may sign."""

    public_key: bytes
    not_before: int = 0

    @property
    def key_id(self) -> int:
        return self.public_key[-1]


@dataclass(frozen=True)
class SignatureResponse:
    """One parsed auditor response (nothing verified yet)."""

    ciphersuite: int
    namespace: str
    timestamp: int
    epoch: int
    digest: bytes
    signature: bytes
    key_id: int
    serialized_message: bytes

    def statement(self) -> Statement:
        return Statement(self.ciphersuite, self.namespace, self.timestamp, self.epoch, self.digest)


def _hex(value: Any, what: str, size: int | None = None, max_size: int = 4096) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value) or len(value) % 2 or len(value) > 2 * max_size:
        raise FormatError(f"{what}: expected lower-case hex")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise FormatError(f"{what}: expected {size} bytes, found {len(raw)}")
    return raw


def _int(value: Any, what: str, hi: int) -> int:
    if type(value) is not int or not 0 <= value <= hi:
        raise FormatError(f"{what}: expected an integer in 0..{hi}")
    return value


def parse_auditor_keys(data: bytes) -> tuple[AuditorKey, ...]:
    """Pinned keys from a JSON file in the shape of the auditor's ``GET /info`` (module docstring)."""
    obj = expect_object(loads_strict(data, "auditor keys", MAX_KEYS_SIZE), {"keys"}, "auditor keys", {"logs"})
    keys = obj["keys"]
    if not isinstance(keys, list) or not 0 < len(keys) <= MAX_AUDITOR_KEYS:
        raise FormatError(f"auditor keys: expected 1..{MAX_AUDITOR_KEYS} keys")
    out = []
    for i, item in enumerate(keys):
        k = expect_object(item, {"public_key"}, f"auditor keys[{i}]", {"not_before"})
        pk = ed25519.check_public_key(_hex(k["public_key"], f"auditor keys[{i}].public_key", 32))
        out.append(AuditorKey(pk, _int(k.get("not_before", 0), f"auditor keys[{i}].not_before", MAX_U64)))
    if len({k.public_key for k in out}) != len(out):
        raise FormatError("auditor keys: a key is listed twice")
    return tuple(out)


def parse_response(value: Any) -> SignatureResponse:
    """A response from its parsed JSON object; exact field set (``version`` optional and equal to
    ``ciphersuite``), lower-case hex of the right lengths, integers in range (:class:`FormatError`)."""
    obj = expect_object(value, _RESPONSE_FIELDS, "auditor response", {"version"})
    cs = _int(obj["ciphersuite"], "auditor response.ciphersuite", 255)
    if cs not in CIPHERSUITES:
        raise FormatError(f"auditor response.ciphersuite: expected 1 or 2, found {cs}")
    if "version" in obj and obj["version"] != cs:
        raise FormatError("auditor response: version and ciphersuite disagree")
    ns = obj["namespace"]
    if not isinstance(ns, str) or not 0 < len(ns.encode("utf-8", "surrogatepass")) <= MAX_NAMESPACE_LENGTH:
        raise FormatError(f"auditor response.namespace: expected 1..{MAX_NAMESPACE_LENGTH} bytes of UTF-8")
    return SignatureResponse(
        cs, ns, _int(obj["timestamp"], "auditor response.timestamp", MAX_U64),
        _int(obj["epoch"], "auditor response.epoch", MAX_U64),
        _hex(obj["digest"], "auditor response.digest", 32), _hex(obj["signature"], "auditor response.signature", 64),
        _int(obj["key_id"], "auditor response.key_id", 255),
        _hex(obj["serialized_message"], "auditor response.serialized_message", max_size=MAX_STATEMENT_SIZE))


def parse_response_bytes(data: bytes) -> SignatureResponse:
    return parse_response(loads_strict(data, "auditor response", MAX_RESPONSE_SIZE))


def verify_response(resp: SignatureResponse, keys: Sequence[AuditorKey], *, namespace: str,
                    epoch: int | None = None) -> AuditorKey:
    """Steps 1-3 of the module docstring; returns the pinned key that signed, raises otherwise."""
    if resp.namespace != namespace:                                                          # 1
        raise MismatchError(f"auditor response is for namespace {resp.namespace!r}, not {namespace!r}")
    if epoch is not None and resp.epoch != epoch:
        raise MismatchError(f"auditor response is for epoch {resp.epoch}, but epoch {epoch} was asked for")
    try:                                                                                     # 2
        expected = resp.statement().encode()
    except FormatError as exc:
        raise MismatchError(f"auditor response: its fields do not form a message ({exc})") from exc
    if expected != resp.serialized_message:
        raise MismatchError(f"auditor response epoch {resp.epoch}: serialized_message is not the encoding of its "
                            f"fields (expected {expected.hex()}, found {resp.serialized_message.hex()})")
    candidates = [k for k in keys if k.key_id == resp.key_id]                                # 3
    if not candidates:
        raise SignatureError(f"auditor response epoch {resp.epoch}: no pinned auditor key has key_id {resp.key_id}")
    for key in candidates:
        try:
            ed25519.verify(key.public_key, expected, resp.signature, what="auditor signature")
        except SignatureError:
            continue
        if resp.timestamp < key.not_before:
            raise SignatureError(f"auditor response epoch {resp.epoch}: signed at {resp.timestamp} ms by key "
                                 f"{key.public_key.hex()}, which is pinned valid only from {key.not_before} ms")
        return key
    raise SignatureError(f"auditor response epoch {resp.epoch}: the signature does not verify under the pinned "
                         f"key(s) with key_id {resp.key_id}")


@dataclass(frozen=True)
class SequenceProblem:
    epoch: int | None
    error: str
    message: str


def check_sequence(responses: Sequence[SignatureResponse], *, now_ms: int, max_age: int | None = None,
                   start_epoch: int | None = None) -> list[SequenceProblem]:
    """The checks across responses (module docstring), in epoch order; returns every problem found."""
    problems: list[SequenceProblem] = []

    def add(epoch: int | None, exc: Exception) -> None:
        problems.append(SequenceProblem(epoch, type(exc).__name__, str(exc)))

    ordered = sorted(responses, key=lambda r: r.epoch)
    if not ordered:
        if max_age is not None:
            add(None, ExpiredError("no auditor response at all: nothing is fresh"))
        return problems
    expected = ordered[0].epoch if start_epoch is None else start_epoch
    previous: SignatureResponse | None = None
    for r in ordered:
        if previous is not None and r.epoch == previous.epoch:
            add(r.epoch, RollbackError(f"two responses for epoch {r.epoch}" + (
                " with different digests (equivocation)" if r.digest != previous.digest else "")))
            continue
        if r.epoch != expected:
            add(r.epoch, ChainError(f"epochs are not contiguous: epoch {r.epoch} follows "
                                    f"{'nothing' if previous is None else previous.epoch}, expected {expected}"))
        if previous is not None and r.timestamp <= previous.timestamp:
            add(r.epoch, RollbackError(f"epoch {r.epoch} is signed at {r.timestamp} ms, not after epoch "
                                       f"{previous.epoch}'s {previous.timestamp} ms (timestamps must increase)"))
        if r.timestamp > now_ms + CLOCK_SKEW * 1000:
            add(r.epoch, ExpiredError(f"epoch {r.epoch} is signed at {r.timestamp} ms, in the future (now {now_ms} ms)"))
        previous, expected = r, r.epoch + 1
    if max_age is not None and previous is not None and previous.timestamp < now_ms - max_age * 1000:
        add(previous.epoch, ExpiredError(f"the newest response (epoch {previous.epoch}) was signed at "
                                         f"{previous.timestamp} ms, more than {max_age} s before now ({now_ms} ms)"))
    return problems


__all__ = [
    "MAX_RESPONSE_SIZE",
    "AuditorKey",
    "SequenceProblem",
    "SignatureResponse",
    "check_sequence",
    "parse_auditor_keys",
    "parse_response",
    "parse_response_bytes",
    "verify_response",
]
