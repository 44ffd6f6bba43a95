"""The anchor signer's HTTP service: a Flask app factory, wire-compatible with Cloudflare's Plexi.

Public, no authentication:

=======================================  =========================================================
``GET /info``                            ``{"keys": [{"public_key": hex, "not_before": ms}], "logs": [ns]}``
``GET /namespaces``                      ``{"namespaces": [<namespace record>]}``
``GET /namespaces/<ns>``                 the namespace record, or 404
``GET /namespaces/<ns>/audits/<epoch>``  the signature response, or 404 for an epoch never signed
``GET /api/v1/journal``                  ``?namespace=&limit=(1..1000, 100)&before=<id>``: what was
                                         signed and refused, newest first, ``{"entries", "next_before"}``
=======================================  =========================================================

Bearer token (``Authorization: Bearer <token>``, see :mod:`signer.config`):

==========================================  ==========  =================================================
``POST /namespaces/<ns>/audits``            write       ``{"epoch": N, "digest": "<hex32>"}`` → signature
                                                        response (Plexi's digest-only path; only for
                                                        ``digest``-mode namespaces, else 409
                                                        ``keyset-required``)
``POST /api/v1/sign-keyset``                write       body = canonical keyset bytes; the signer
                                                        recomputes the digest and checks namespace,
                                                        epoch, ``previous``, ``issued_at`` and the
                                                        revocations against its journal
``POST /namespaces``                        admin       create a namespace (201; 200 if it exists alike);
                                                        ``"mode": "keyset"`` (default) or ``"digest"``
``PATCH /namespaces/<ns>``                  admin       ``{"status": "Disabled"|"Online"}``
==========================================  ==========  =================================================

Rules: :mod:`signer.rules`; storage: :mod:`signer.journal`; JSON shapes: :mod:`signer.wire`.
A new signature and a repeat of a signed request both answer 200 with the same body. Every failure
is JSON ``{"error": "<reason>", "code": "<slug>", "status": N}``: 400 malformed, 401 no or unknown
token, 403 token not allowed here, 404 unknown, 405, 409 rule refused (recorded in the journal),
413 body over ``max_body`` (64 KiB), 503 signing key or journal unavailable. Responses to signing
requests carry ``Server-Timing: lock;dur=, sign;dur=, commit;dur=`` (milliseconds).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from keys import KeyBackendError, Signer, load_signer
from verifier.errors import VerificationError
from verifier.keyset import MAX_EPOCH, parse_keyset

from . import wire
from .config import SignerConfig, Token, authenticate
from .errors import JournalError, Refusal
from .journal import Journal
from .rules import SignedEntry, SignRequest

log = logging.getLogger("fleetkeys.signer")


#: The one place where a refusal becomes an HTTP status: by its stable code; every other code
#: (``malformed``, ``malformed-keyset``, ...) is a malformed request, 400.
STATUS_OF_CODE: dict[str, int] = {
    "unknown-namespace": 404,
    "unknown-epoch": 404,
    "keyset-required": 409,
    "equivocation": 409,
    "namespace-not-online": 409,
    "namespace-exists": 409,
    "namespace-disabled": 409,
    "wrong-epoch": 409,
    "digest-reused": 409,
    "broken-chain": 409,
    "issued-at-regressed": 409,
    "revoked-reused": 409,
    "too-many-revocations": 409,
    "key-unavailable": 503,
}


class ApiError(Exception):
    """An HTTP-level refusal of this app (no or a wrong token, a body too large): not a domain error."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


def _error(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"error": reason, "code": code, "status": status})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class _Service:
    """The request handlers' shared state: configuration, key and journal (one per worker process)."""

    def __init__(self, config: SignerConfig, signer: Signer, journal: Journal) -> None:
        self.config = config
        self.signer = signer
        self.journal = journal

    def body(self) -> bytes:
        """The request body, at most ``max_body`` bytes (413 beyond, also for chunked bodies)."""
        limit = self.config.max_body
        length = request.content_length
        if length is not None:
            if length > limit:
                raise ApiError(413, "too-large", f"request body of {length} bytes exceeds {limit}")
            return request.get_data(cache=False)
        if not request.environ.get("wsgi.input_terminated"):
            return b""  # no length and a server that does not frame the body: nothing safe to read
        # Chunked: read one byte past the limit ourselves (werkzeug's own limit silently truncates).
        data = request.environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "too-large", f"request body exceeds {limit} bytes")
        return data

    def token(self, role: str, namespace: str | None = None) -> Token:
        token = authenticate(self.config.tokens, request.headers.get("Authorization"))
        if token is None:
            raise ApiError(401, "unauthenticated", "a valid bearer token is required (Authorization: Bearer <token>)")
        if role == "admin" and token.role != "admin":
            raise ApiError(403, "forbidden", f"token {token.name!r} is not an admin token")
        if role == "write" and token.role != "write":
            raise ApiError(403, "forbidden", f"token {token.name!r} is not a write token")
        if namespace is not None:
            self.authorize(token, namespace)
        return token

    def authorize(self, token: Token, namespace: str) -> None:
        if not token.allows(namespace):
            raise ApiError(403, "forbidden", f"token {token.name!r} may not sign in namespace {namespace!r}")

    def sign(self, req: SignRequest, token: Token) -> Response:
        try:
            entry, created, timing = self.journal.sign(req, self.signer.sign, self.signer.public_key,
                                                       now_ms=self.config.clock(), client=token.name,
                                                       clock=time.perf_counter)
        except (KeyBackendError, VerificationError) as exc:
            # VerificationError: the key returned a signature that does not verify; nothing was stored.
            log.error("signing failed: %s", exc)
            raise Refusal("key-unavailable", f"the anchor key failed: {exc}") from None
        if created and self.config.after_commit is not None:
            self.config.after_commit()
        resp = jsonify(wire.signature_response(entry))
        resp.headers["Server-Timing"] = (f"lock;dur={timing.lock * 1000:.3f}, sign;dur={timing.sign * 1000:.3f}, "
                                         f"commit;dur={timing.commit * 1000:.3f}")
        return resp

    def namespace_json(self, name: str) -> dict[str, Any]:
        ns = self.journal.namespace(name)
        if ns is None:
            raise Refusal("unknown-namespace", f"namespace {name!r} does not exist")
        first, last = self.journal.first_and_last(name)
        return wire.namespace_info(ns, first, last)


def _parse_query_int(name: str, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise wire.bad_request(f"query parameter {name}: expected an integer in {lo}..{hi}")
    return int(raw)


def _routes(svc: _Service) -> Blueprint:
    bp = Blueprint("signer", __name__)

    @bp.get("/info")
    def info() -> Response:
        return jsonify({"keys": [{"public_key": pk.hex(), "not_before": nb} for pk, nb in svc.journal.anchor_keys()],
                        "logs": [ns.name for ns in svc.journal.namespaces()]})

    @bp.get("/namespaces")
    def namespaces() -> Response:
        return jsonify({"namespaces": [svc.namespace_json(ns.name) for ns in svc.journal.namespaces()]})

    @bp.post("/namespaces")
    def create_namespace() -> Response:
        body = svc.body()
        token = svc.token("admin")
        name, ciphersuite, status, log_directory, mode = wire.parse_namespace_request(body, svc.config.max_body)
        _, created = svc.journal.create_namespace(name, ciphersuite=ciphersuite, status=status,
                                                  log_directory=log_directory, now_ms=svc.config.clock(),
                                                  client=token.name, mode=mode)
        resp = jsonify(svc.namespace_json(name))
        resp.status_code = 201 if created else 200
        return resp

    @bp.get("/namespaces/<path:name>")
    def namespace(name: str) -> Response:
        return jsonify(svc.namespace_json(name))

    @bp.patch("/namespaces/<path:name>")
    def update_namespace(name: str) -> Response:
        body = svc.body()
        token = svc.token("admin")
        status = wire.parse_status_request(body, svc.config.max_body)
        svc.journal.set_status(name, status, now_ms=svc.config.clock(), client=token.name)
        return jsonify(svc.namespace_json(name))

    @bp.get("/namespaces/<path:name>/audits/<epoch>")
    def audit(name: str, epoch: str) -> Response:
        if not epoch.isascii() or not epoch.isdigit() or len(epoch) > 20:
            raise wire.bad_request("epoch: expected a decimal integer")
        if svc.journal.namespace(name) is None:
            raise Refusal("unknown-namespace", f"namespace {name!r} does not exist")
        entry: SignedEntry | None = None
        if int(epoch) <= MAX_EPOCH:
            entry = svc.journal.entry(name, int(epoch))
        if entry is None:
            raise Refusal("unknown-epoch", f"{name} epoch {epoch} has not been signed")
        return jsonify(wire.signature_response(entry))

    @bp.post("/namespaces/<path:name>/audits")
    def sign_digest(name: str) -> Response:
        body = svc.body()
        token = svc.token("write", name)
        epoch, digest = wire.parse_sign_request(body, svc.config.max_body)
        return svc.sign(SignRequest(name, epoch, digest), token)

    @bp.post("/api/v1/sign-keyset")
    def sign_keyset() -> Response:
        body = svc.body()
        token = svc.token("write")
        try:
            keyset = parse_keyset(body)
        except VerificationError as exc:
            raise wire.bad_request(f"keyset refused: {exc}", "malformed-keyset") from None
        svc.authorize(token, keyset.namespace)
        return svc.sign(SignRequest(keyset.namespace, keyset.epoch, keyset.digest, keyset.previous,
                                    keyset.issued_at, keyset), token)

    @bp.get("/api/v1/journal")
    def journal() -> Response:
        ns = request.args.get("namespace") or None
        if ns is not None:
            wire.check_namespace_name(ns)
        limit = _parse_query_int("limit", 1, 1000) or 100
        before = _parse_query_int("before", 1, (1 << 63) - 1)
        events = svc.journal.events(namespace=ns, limit=limit, before=before)
        return jsonify({"entries": [wire.event_json(e) for e in events],
                        "next_before": events[-1].id if len(events) == limit else None})

    return bp


def create_app(config: SignerConfig) -> Flask:
    """Build the signer app: load the key (``config.signer`` or ``config.key_ref``), open the journal.

    Call it in the process that serves (each gunicorn worker): PKCS#11 keys and SQLite connections
    do not survive a ``fork()``. Raises :class:`keys.KeyBackendError` or
    :class:`signer.journal.JournalError` when the key or the journal cannot be used.
    """
    signer = config.signer if config.signer is not None else load_signer(config.key_ref)
    journal = Journal(config.journal_path)
    journal.register_key(signer.public_key, config.clock())
    svc = _Service(config, signer, journal)

    app = Flask("signer")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Plexi's field order
    app.register_blueprint(_routes(svc))
    app.extensions["fleetkeys.signer"] = svc

    @app.errorhandler(Refusal)
    def refusal(exc: Refusal) -> Response:
        return _error(STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.reason)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.reason, headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(status, "http-error")
        return _error(status, code, exc.description or exc.name)

    @app.errorhandler(sqlite3.OperationalError)
    @app.errorhandler(JournalError)
    def journal_error(exc: Exception) -> Response:
        log.error("journal unavailable: %s", exc)
        return _error(503, "journal-unavailable", "the journal is unavailable; retry later")

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response:
        log.exception("internal error")
        return _error(500, "internal", "internal error")

    return app


__all__ = ["create_app"]
