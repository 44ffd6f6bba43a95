"""The publish pipeline: keyset file → anchor signature → countersignature → verified bundle → log.

:func:`publish` runs these steps and stops at the first that fails, raising :class:`PublishError`
(or a :class:`verifier.errors.VerificationError` subclass) with the reason:

1. **keyset**: read the (possibly hand-written) JSON file; name the trust root it is signed under
   (bundles/FORMAT.md §3.3): with ``trust_root``, a file without a ``trust_root`` field gets
   ``{"sha256": SHA-256(trust root body), "version": v}`` inserted, and a file with one must name
   exactly that root (:func:`verifier.bundle.require_root_name`); with ``anchor_keys`` (no trust root
   file to name) the file must carry the field already. Then canonicalise it
   (:func:`verifier.keyset.canonicalize_keyset`: schema, key encodings, curve points, epoch,
   ``previous`` rules), check that its bundle fits in one log entry
   (:data:`verifier.bundle.MAX_BUNDLE_SIZE`) and check its dates against the clock (not expired,
   not issued in the future);
2. **countersign key**: load it (``file:`` or ``pkcs11:``);
3. **trust**: read the signer's ``/info``; with ``trust_root``, require the keyset's namespace, the
   countersign key and one of the signer's keys to be in it; with explicit ``anchor_keys`` instead,
   require one of the signer's keys to be among them and check the bundle against those keys and the
   countersign key. One of the two is required: the signer's unauthenticated ``/info`` is never
   trusted to say which anchor key the operator vouches for;
4. **log chain** (with a distributor): ``GET /api/v1/bundles/latest`` must be epoch ``epoch - 1`` with
   the keyset digest our ``previous`` names (404: the log is empty, so epoch must be 1); the same
   keyset as the latest is allowed, so an interrupted publish can be re-run;
5. **anchor**: ``POST /api/v1/sign-keyset`` (or, with ``digest_only``, Plexi's
   ``POST /namespaces/<ns>/audits``, which the signer accepts only for a ``digest``-mode namespace),
   retried on connection errors and 502/503/504 — safe, because
   the signer answers a repeat with the journalled signature;
6. **countersign**: :func:`countersigner.countersign.countersign` over exactly the requested statement;
7. **bundle**: assemble it and verify it with :func:`verifier.bundle.verify_bundle`, as a client would;
   write it to ``out`` atomically (temp file, fsync, rename);
8. **post** (with a distributor): ``POST /api/v1/bundles`` with the bearer token; 201 new or 200
   already present.

Steps 1-4 run before the signer is asked, because an anchor signature is final: its journal will never
sign another digest for that epoch.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys import KeyBackendError, Signer, load_signer
from keys.privatefile import read_private_file
from verifier.atomicfile import write_atomic
from verifier.bundle import MAX_BUNDLE_SIZE, parse_bundle, require_root_name, verify_bundle
from verifier.cjson import dumps_canonical, loads_strict
from verifier.errors import ChainError, FetchError, FormatError, SizeLimitError, VerificationError
from verifier.http import HttpClient, sanitize
from verifier.keyset import (
    CLOCK_SKEW,
    MAX_KEYSET_SIZE,
    Keyset,
    TrustRootRef,
    canonicalize_keyset,
    check_next_epoch,
    format_time,
    parse_keyset,
)
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier
from verifier.signatures import KeyGroup
from verifier.statement import Statement, parse_statement
from verifier.trustroot import (
    MAX_VERSION,
    LogConfig,
    TrustRoot,
    encode_trust_root_body,
    load_trust_root,
    parse_trust_root_body,
)

from .countersign import ExpectedStatement, build_bundle, countersign, verify_anchor_signatures
from .errors import PublishError

SIGNER_TOKEN_ENV = "FLEETKEYS_SIGNER_TOKEN"  # noqa: S105 - the variable's name, not a secret
PUBLISH_TOKEN_ENV = "FLEETKEYS_PUBLISH_TOKEN"  # noqa: S105
MAX_KEYSET_FILE = 1024 * 1024
MAX_RESPONSE = 2 * 1024 * 1024
MAX_TOKEN_FILE = 4096
TIMEOUT = 30.0
#: Bytes added to a measured bundle size (see ``_check_fits_in_a_bundle``).
BUNDLE_SIZE_MARGIN = 64
RETRIES = 3


# -- small I/O helpers -------------------------------------------------------------------------------


def read_token(path: str | os.PathLike[str] | None, env: str) -> str | None:
    """A bearer token from ``path`` (mode 0600 or stricter, one line) or the environment, or None."""
    if path is None:
        return os.environ.get(env) or None
    try:
        data = read_private_file(os.fspath(path), what="token file", max_size=MAX_TOKEN_FILE)
    except KeyBackendError as exc:
        raise PublishError(str(exc)) from None
    token = data.decode("utf-8", "replace").strip()
    if not token or any(c.isspace() for c in token):
        raise PublishError(f"token file {path}: expected one token on one line")
    return token


def write_atomically(path: Path, data: bytes) -> None:
    """Write a (public) bundle file crash-safely: :func:`verifier.atomicfile.write_atomic`, mode 0644."""
    write_atomic(path, data, mode=0o644)


def _error_reason(body: bytes) -> str:
    try:
        obj = loads_strict(body, "error", MAX_RESPONSE)
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            return obj["error"][:500]
    except VerificationError:
        pass
    return sanitize(body) or "(empty body)"


def _request(http: HttpClient, method: str, url: str, what: str, *, retry: bool = False, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request through :class:`verifier.http.HttpClient` (capped, deadline-bounded; ``retry`` for the
    idempotent ones); ``(status, body)``, or :class:`PublishError` naming ``what`` could not be reached."""
    try:
        resp = http.request(method, url, limit=MAX_RESPONSE, body=data, headers=headers, retry=retry)
    except FetchError as exc:
        raise PublishError(f"{what} unreachable: {exc}") from None
    except SizeLimitError as exc:
        raise PublishError(f"{what}: {exc}") from None
    return resp.status, resp.body


def parse_json_body(body: bytes, what: str) -> Any:
    """Strict JSON of a response body, or :class:`PublishError`."""
    try:
        return loads_strict(body, what, MAX_RESPONSE)
    except VerificationError as exc:
        raise PublishError(f"{what}: {exc}") from None


# -- the anchor's answer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorResponse:
    """A Plexi signature response, checked for internal consistency (not yet for trust)."""

    statement: bytes
    signature: bytes
    key_id: int | None
    parsed: Statement


def parse_anchor_response(obj: Any) -> AnchorResponse:
    """Parse Plexi's signature response JSON (:mod:`signer.wire` documents the shape).

    The statement bytes are rebuilt from the fields; ``serialized_message``, when present, must be
    exactly those bytes. Raises :class:`verifier.errors.FormatError`.
    """
    if not isinstance(obj, dict):
        raise FormatError("signer response: expected a JSON object")
    cs = obj.get("ciphersuite", obj.get("version"))
    if "version" in obj and "ciphersuite" in obj and obj["version"] != obj["ciphersuite"]:
        raise FormatError("signer response: version and ciphersuite disagree")

    def hexfield(name: str, size: int | None) -> bytes:
        value = obj.get(name)
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) and len(value) <= 2048 else None
        except ValueError:
            raw = None
        if raw is None or (size is not None and len(raw) != size):
            raise FormatError(f"signer response: {name} must be hex" + (f" of {size} bytes" if size else ""))
        return raw

    for name in ("timestamp", "epoch"):
        if type(obj.get(name)) is not int:
            raise FormatError(f"signer response: {name} must be an integer")
    if type(cs) is not int or not isinstance(obj.get("namespace"), str):
        raise FormatError("signer response: ciphersuite and namespace are required")
    statement = Statement(cs, obj["namespace"], obj["timestamp"], obj["epoch"], hexfield("digest", 32)).encode()
    if obj.get("serialized_message") is not None and hexfield("serialized_message", None) != statement:
        raise FormatError("signer response: serialized_message is not the statement its fields describe")
    key_id = obj.get("key_id")
    if key_id is not None and (type(key_id) is not int or not 0 <= key_id <= 255):
        raise FormatError("signer response: key_id must be an integer 0..255")
    return AnchorResponse(statement, hexfield("signature", 64), key_id, parse_statement(statement))


# -- trust ------------------------------------------------------------------------------------------


def derived_trust_root(namespace: str, anchor_keys: list[bytes], countersigner_key: bytes, now: int,
                       names: TrustRootRef | None = None) -> TrustRoot:
    """A trust root of the given anchor keys and the countersign key, for checking a bundle.

    Used with explicit ``--anchor-key`` instead of ``--trust-root``: the anchors are the operator's own
    choice, never the keys a signer advertises. The log and freshness keys are random placeholders
    (a trust root must name them; a bundle check never reads them). ``names`` is the root the keyset
    names: without its body that name cannot be checked here, so the derived root is numbered one past
    it (``verify_bundle``'s name check accepts a keyset naming an older root, FORMAT.md §3.3); the
    distributor checks the name against the root in force (``require_root_name``).
    """
    def placeholder(name: str, alg: int) -> NoteVerifier:
        from verifier.ed25519 import public_key_from_seed

        return NoteVerifier.from_public_key(name, public_key_from_seed(secrets.token_bytes(32)), alg)

    origin = "publish-check.invalid"
    version = 1 if names is None else names.version + 1
    if version > MAX_VERSION:
        raise PublishError(f"keyset names trust root v{names.version if names else 0}: without --trust-root that name "
                           "cannot be checked")
    body = encode_trust_root_body(
        version=version, namespace=namespace,
        anchors=KeyGroup(tuple(NoteVerifier.from_public_key(f"anchor{i}", k) for i, k in enumerate(anchor_keys)), 1),
        countersigners=KeyGroup((NoteVerifier.from_public_key("countersigner", countersigner_key),), 1),
        log=LogConfig(origin, placeholder(origin, 1), placeholder(origin + "/freshness", ALG_COSIGNATURE_V1), 3600),
        witnesses=KeyGroup((), 0), expires_at=now + 86400)
    return parse_trust_root_body(body)


# -- the pipeline -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishRequest:
    """Inputs of :func:`publish` (the CLI fills it from its options)."""

    keyset_path: Path
    signer_url: str
    countersign_key: str
    signer_token: str
    out: Path
    trust_root_path: Path | None = None
    distributor_url: str | None = None
    publish_token: str | None = None
    digest_only: bool = False
    #: Trusted anchor public keys (32 bytes each), used when there is no ``trust_root_path``.
    anchor_keys: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class PublishResult:
    """What was published: the bundle and where it went."""

    bundle: bytes
    out: Path
    keyset: Keyset
    statement: Statement
    anchor_key: bytes
    countersigner_key: bytes
    log_entry: dict[str, Any] | None


def _load_trust_root(path: Path) -> TrustRoot:
    try:
        return load_trust_root(Path(path).read_bytes())
    except OSError as exc:
        raise PublishError(f"trust root: cannot read {path} ({exc.strerror})") from None


def root_name(trust_root: TrustRoot) -> TrustRootRef:
    """The name a keyset signed under ``trust_root`` carries: its version and body SHA-256 (FORMAT.md §3.3)."""
    return TrustRootRef(trust_root.version, hashlib.sha256(trust_root.body).digest())


def _named_keyset(raw: bytes, trust_root: TrustRoot | None) -> tuple[Keyset, str]:
    """Step 1: the canonical keyset naming its trust root, and how the name got there.

    With ``trust_root``: a file without a ``trust_root`` field gets the root's name inserted before
    canonicalising; one with the field must name exactly that root. Without (``--anchor-key``): the
    file must carry the field (there is no root body here to name).
    """
    value = loads_strict(raw, "keyset", MAX_KEYSET_SIZE)
    inserted = isinstance(value, dict) and "trust_root" not in value
    if inserted and trust_root is not None:
        value["trust_root"] = root_name(trust_root).to_json()
        raw = dumps_canonical(value)
    keyset = parse_keyset(canonicalize_keyset(raw))
    if trust_root is not None:
        require_root_name(keyset, trust_root)
        return keyset, "inserted from --trust-root" if inserted else "as written, the --trust-root's"
    if keyset.trust_root is None:
        raise PublishError("keyset: it has no trust_root field, and without --trust-root publish has no trust root to "
                           "name (every new keyset must name the root it is signed under, bundles/FORMAT.md §3.3): "
                           'add "trust_root": {"sha256": "<SHA-256 of the trust root body>", "version": <v>} to the '
                           "keyset, or give --trust-root")
    return keyset, "as written (not checked without --trust-root; the distributor checks it)"


def _check_dates(keyset: Keyset, now: int, progress: Callable[[str], None]) -> None:
    if keyset.expires_at <= now:
        raise PublishError(f"keyset: expires_at {format_time(keyset.expires_at)} is not in the future "
                           f"(now {format_time(now)}); clients would refuse it on arrival")
    if keyset.issued_at > now + CLOCK_SKEW:  # what every client tolerates, no more
        raise PublishError(f"keyset: issued_at {format_time(keyset.issued_at)} is in the future (now "
                           f"{format_time(now)})")
    for fleet in keyset.fleets:
        if fleet.status == "active" and fleet.not_after <= now:
            progress(f"      warning: active fleet {fleet.fleet_id} expired at {format_time(fleet.not_after)}")


def _check_fits_in_a_bundle(keyset: Keyset, now: int) -> None:
    """Refuse a keyset whose bundle would exceed ``MAX_BUNDLE_SIZE``, before an epoch is spent on it.

    The bundle's size depends only on the byte lengths of its parts (and the key-id digits), so a
    bundle with a same-length statement and placeholder signatures measures it. The namespace's
    ciphersuite is the signer's to say, so the larger statement of the two ciphersuites is measured
    (bincode's, ciphersuite 2), plus :data:`BUNDLE_SIZE_MARGIN` bytes for the key-id digits (the
    placeholders' ids are one digit, real ones up to three) and a longer timestamp.
    """
    size = 0
    for ciphersuite in (1, 2):
        statement = Statement(ciphersuite, keyset.namespace, now * 1000, keyset.epoch, keyset.digest).encode()
        bundle = build_bundle(statement, keyset.raw, [(bytes(32), bytes(64))], [(bytes(32), bytes(64))])
        size = max(size, len(bundle) + BUNDLE_SIZE_MARGIN)
    if size > MAX_BUNDLE_SIZE:
        raise PublishError(f"keyset: its bundle would be about {size} bytes, over the {MAX_BUNDLE_SIZE}-byte limit of "
                           f"one log entry ({len(keyset.raw)} keyset bytes, {len(keyset.fleets)} fleets)")


def _latest_in_log(http: HttpClient, url: str) -> tuple[Keyset, int | None] | None:
    """``(keyset, index)`` of the distributor's latest bundle (unverified: a hint to fail early), or None
    for an empty log."""
    status, body = _request(http, "GET", url.rstrip("/") + "/api/v1/bundles/latest", "distributor", retry=True)
    if status == 404:
        return None
    if status != 200:
        raise PublishError(f"distributor: GET latest bundle answered {status}: {_error_reason(body)}")
    obj = parse_json_body(body, "distributor latest bundle")
    if not isinstance(obj, dict) or not isinstance(obj.get("bundle"), str):
        raise PublishError("distributor latest bundle: expected {\"bundle\": <base64>, ...}")
    try:
        bundle = parse_bundle(base64.b64decode(obj["bundle"], validate=True))
        statement = parse_statement(bundle.statement)
        keyset = parse_keyset(bundle.keyset)
    except (VerificationError, ValueError) as exc:
        raise PublishError(f"distributor latest bundle: {exc}") from None
    if hashlib.sha256(bundle.keyset).digest() != statement.digest or keyset.epoch != statement.epoch:
        raise PublishError("distributor latest bundle: its keyset does not match its statement")
    index = obj.get("index")
    return keyset, index if type(index) is int else None


def _awaiting_witnesses(http: HttpClient, url: str) -> int:
    """How many entries the distributor appended that are not visible yet (awaiting witnesses; its
    unauthenticated ``/api/v1/info`` hint: only used to explain a chain check that cannot be made)."""
    status, body = _request(http, "GET", url.rstrip("/") + "/api/v1/info", "distributor", retry=True)
    if status != 200:
        return 0
    info = parse_json_body(body, "distributor info")
    if not isinstance(info, dict) or type(info.get("size")) is not int or type(info.get("appended_size")) is not int:
        return 0
    return max(0, info["appended_size"] - info["size"])


def _ask_anchor(http: HttpClient, req: PublishRequest, keyset: Keyset) -> AnchorResponse:
    headers = {"Authorization": f"Bearer {req.signer_token}", "Content-Type": "application/json"}
    base = req.signer_url.rstrip("/")
    if req.digest_only:
        from urllib.parse import quote

        url = f"{base}/namespaces/{quote(keyset.namespace, safe='/')}/audits"
        body = f'{{"epoch":{keyset.epoch},"digest":"{keyset.digest.hex()}"}}'.encode()
    else:
        url, body = f"{base}/api/v1/sign-keyset", keyset.raw
    status, resp = _request(http, "POST", url, "signer", retry=True, data=body, headers=headers)
    if status != 200:
        raise PublishError(f"signer refused ({status}): {_error_reason(resp)}")
    try:
        return parse_anchor_response(parse_json_body(resp, "signer response"))
    except VerificationError as exc:
        raise PublishError(f"signer response: {exc}") from None


def publish(req: PublishRequest, *, progress: Callable[[str], None] = print, now: int | None = None,
            http: HttpClient | None = None) -> PublishResult:
    """Run the pipeline (module docstring); return the result or raise :class:`PublishError`."""
    now = int(time.time()) if now is None else now
    http = http or HttpClient(timeout=TIMEOUT, retries=RETRIES - 1)
    if req.distributor_url and not req.publish_token:
        raise PublishError(f"distributor: no publish token ({PUBLISH_TOKEN_ENV} or --token-file)")
    if req.trust_root_path is None and not req.anchor_keys:
        raise PublishError("trust: give a trust root (--trust-root) or the trusted anchor keys (--anchor-key); "
                           "the signer's own /info is not a reason to trust its key")
    if req.trust_root_path is not None and req.anchor_keys:
        raise PublishError("trust: give a trust root or anchor keys, not both")

    # 1. keyset
    try:
        raw = Path(req.keyset_path).read_bytes()
    except OSError as exc:
        raise PublishError(f"keyset: cannot read {req.keyset_path} ({exc.strerror})") from None
    if len(raw) > MAX_KEYSET_FILE:
        raise PublishError(f"keyset: {req.keyset_path} is larger than {MAX_KEYSET_FILE} bytes")
    trust_root = _load_trust_root(req.trust_root_path) if req.trust_root_path is not None else None
    try:
        keyset, how = _named_keyset(raw, trust_root)
    except VerificationError as exc:
        raise PublishError(f"keyset refused: {exc}") from None
    _check_fits_in_a_bundle(keyset, now)
    assert keyset.trust_root is not None
    progress(f"[1/8] keyset {keyset.namespace} epoch {keyset.epoch}: {len(keyset.fleets)} fleet(s), "
             f"names trust root v{keyset.trust_root.version} ({how}), digest {keyset.digest.hex()}, "
             f"previous {keyset.previous.hex()[:16]}…")
    _check_dates(keyset, now, progress)

    # 2. countersign key
    cs_signer: Signer = load_signer(req.countersign_key)
    progress(f"[2/8] countersign key {cs_signer.public_key.hex()} loaded")

    # 3. trust
    status, body = _request(http, "GET", req.signer_url.rstrip("/") + "/info", "signer", retry=True)
    if status != 200:
        raise PublishError(f"signer: GET /info answered {status}: {_error_reason(body)}")
    info = parse_json_body(body, "signer /info")
    try:
        signer_keys = [bytes.fromhex(k["public_key"]) for k in info["keys"]]
    except (TypeError, KeyError, ValueError):
        raise PublishError("signer /info: expected {\"keys\": [{\"public_key\": <hex>, ...}]}") from None
    if trust_root is not None:
        trust_root.check_not_expired(now)
        if trust_root.namespace != keyset.namespace:
            raise PublishError(f"keyset namespace {keyset.namespace!r} is not the trust root's "
                               f"{trust_root.namespace!r}")
        if cs_signer.public_key not in {k.public_key for k in trust_root.countersigners.keys}:
            raise PublishError("the countersign key is not one of the trust root's countersigners; clients "
                               "would refuse the bundle")
        trusted = {k.public_key for k in trust_root.anchors.keys}
        if not trusted & set(signer_keys):
            raise PublishError("none of the signer's keys (/info) is a trusted anchor in the trust root")
        progress(f"[3/8] trust root v{trust_root.version}: signer key and countersign key are trusted")
    else:
        if not set(req.anchor_keys) & set(signer_keys):
            raise PublishError("none of the signer's keys (/info: "
                               f"{', '.join(k.hex()[:16] + '…' for k in signer_keys) or 'none'}) is a trusted "
                               "--anchor-key")
        trust_root = derived_trust_root(keyset.namespace, list(req.anchor_keys), cs_signer.public_key, now,
                                        keyset.trust_root)
        progress("[3/8] no --trust-root: checking against the given anchor key(s) "
                 f"({', '.join(k.hex()[:16] + '…' for k in req.anchor_keys)}) and the countersign key")

    # 4. log chain
    if req.distributor_url:
        latest = _latest_in_log(http, req.distributor_url)
        last, index = latest if latest is not None else (None, None)
        if last is not None and (last.epoch, last.digest) == (keyset.epoch, keyset.digest):
            progress(f"[4/8] this keyset is already the log's latest (index {index}): re-running idempotently")
        else:
            try:
                check_next_epoch(last, keyset)
            except ChainError as exc:
                where = "the log is empty" if last is None else f"the log's latest is epoch {last.epoch}"
                pending = _awaiting_witnesses(http, req.distributor_url)
                if not pending:
                    raise PublishError(f"{where}: {exc}") from None
                progress(f"[4/8] {where} among the entries clients see, but {pending} more await witness "
                         "cosignatures: the signer and the distributor check the chain against them")
            else:
                progress("[4/8] log is empty: publishing epoch 1" if last is None else
                         f"[4/8] log's latest is epoch {last.epoch} (index {index}); previous matches")
    else:
        progress("[4/8] no --distributor: log chain not checked")

    # 5. anchor
    anchor = _ask_anchor(http, req, keyset)
    progress(f"[5/8] anchor signed {anchor.parsed.namespace} epoch {anchor.parsed.epoch} at "
             f"{format_time(anchor.parsed.timestamp // 1000)} (key_id {anchor.key_id})")

    # 6. countersign
    expected = ExpectedStatement.for_keyset(keyset)
    csig = countersign(anchor.statement, anchor.signature, expected=expected, anchor_keys=trust_root.anchors,
                       signer=cs_signer, keyset=keyset.raw, key_ids=[anchor.key_id])
    (anchor_key, _), = verify_anchor_signatures(anchor.statement, [anchor.signature], trust_root.anchors,
                                                [anchor.key_id])
    progress("[6/8] anchor signature verified over exactly the requested statement; countersigned")

    # 7. bundle
    bundle = build_bundle(anchor.statement, keyset.raw, [(anchor_key, anchor.signature)],
                          [(cs_signer.public_key, csig)])
    verified = verify_bundle(bundle, trust_root)
    if verified.keyset.raw != keyset.raw:
        raise PublishError("bundle: the verified keyset is not the one requested")
    write_atomically(req.out, bundle)
    progress(f"[7/8] bundle verified as a client would and written to {req.out} ({len(bundle)} bytes)")

    # 8. post
    log_entry = None
    if req.distributor_url:
        status, body = _request(http, "POST", req.distributor_url.rstrip("/") + "/api/v1/bundles", "distributor",
                                retry=True, data=bundle, headers={"Authorization": f"Bearer {req.publish_token}",
                                                                  "Content-Type": "application/json"})
        if status not in (200, 201):
            raise PublishError(f"distributor refused the bundle ({status}): {_error_reason(body)}")
        log_entry = parse_json_body(body, "distributor response")
        if not isinstance(log_entry, dict):
            raise PublishError("distributor response: expected a JSON object")
        pending = " (visible to clients once the log's witnesses cosign it)" if log_entry.get("visible") is False else ""
        progress(f"[8/8] distributor {'appended' if status == 201 else 'already had'} it at index "
                 f"{log_entry.get('index')}{pending}")
    else:
        progress("[8/8] no --distributor: bundle not posted")
    return PublishResult(bundle, Path(req.out), keyset, verified.statement, anchor_key, cs_signer.public_key,
                         log_entry)


__all__ = [
    "AnchorResponse",
    "PUBLISH_TOKEN_ENV",
    "PublishError",
    "PublishRequest",
    "PublishResult",
    "SIGNER_TOKEN_ENV",
    "derived_trust_root",
    "parse_anchor_response",
    "parse_json_body",
    "publish",
    "read_token",
    "root_name",
    "write_atomically",
]
