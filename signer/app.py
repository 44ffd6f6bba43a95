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

Namespace paths (``<ns>`` may hold ``/``: the namespace grammar is ``[A-Za-z0-9._:/-]{1,256}``).
A path under ``/namespaces/`` is read from its end, on the ``/`` characters of the request target as
sent: ``GET .../audits/<epoch>`` is always an audit, ``POST .../audits`` always a signing request,
anything else the namespace record, whose name is the whole rest (``PATCH`` always). A ``/`` sent
escaped as ``%2F`` is part of a name, never a separator (RFC 3986: ``%2F`` is data), so every name
has exactly one record URL and the two can never collide: the record of ``x/audits/1`` is
``GET /namespaces/x%2Faudits%2F1`` (or ``x/audits%2F1``; Plexi's clients escape every ``/`` anyway),
while ``GET /namespaces/x/audits/1`` is epoch 1 of ``x``. Only a name whose last two ``/``-parts are
``audits`` and something needs the escape (:func:`namespace_path`). The raw target comes from the
WSGI server (``RAW_URI`` or ``REQUEST_URI``: gunicorn, werkzeug).

Rules: :mod:`signer.rules`; storage: :mod:`signer.journal`; JSON shapes: :mod:`signer.wire`.
A new signature and a repeat of a signed request both answer 200 with the same body. Every failure
is JSON ``{"error": "<reason>", "code": "<slug>", "status": N}``: 400 malformed (also a body the
server cannot read, e.g. a malformed chunked encoding; a repeated, unknown or empty query parameter;
a number that is not canonical decimal, e.g. epoch ``01``), 401 no or unknown token (checked before
any body is read), 403 token not allowed here, 404 unknown, 405, 409 rule refused (recorded in the
journal), 413 body over ``max_body`` (64 KiB), 503 signing key or journal unavailable (the journal's
``journal-unavailable``, ``disk-full``, ``journal-io-error`` and ``journal-busy`` carry
``Retry-After``: :data:`RETRY_AFTER`). Every answer carries ``X-Content-Type-Options: nosniff``.
Responses to signing requests carry ``Server-Timing: lock;dur=, sign;dur=, commit;dur=`` (milliseconds).

Operations: ``GET /healthz`` (the process answers) and ``GET /readyz`` (journal readable, key loaded;
503 naming the failing check) on the API listener; ``GET /metrics`` only on the separate metrics
listener (:class:`signer.server.SignerServer`'s ``metrics_port``, 127.0.0.1 by default), never here.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from keys import KeyBackendError, Signer, load_signer
from serving import edges
from serving import metrics as ops
from serving.body import BodyTooLarge, BodyUnreadable, read_body
from serving.edges import RETRY_AFTER
from serving.openapi import openapi_document
from verifier.checkpoint import parse_decimal
from verifier.errors import VerificationError
from verifier.keyset import MAX_EPOCH, parse_keyset

from . import wire
from .config import SignerConfig, Token, authenticate
from .errors import JournalError, Refusal
from .journal import Journal, journal_error
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
    "journal-unavailable": 503,
    "disk-full": 503,
    "journal-io-error": 503,
    "journal-busy": 503,
}

#: Seconds a client is asked to wait (``Retry-After``) after a journal failure (503).
NAMESPACES_PREFIX = "/namespaces/"


class ApiError(Exception):
    """An HTTP-level refusal of this app (no or a wrong token, a body too large): not a domain error."""

    def __init__(self, status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason
        self.headers = headers


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
        """The request body, at most ``max_body`` bytes (413 beyond, also for chunked bodies); 400 for a
        body the server cannot read. Called only once the token was checked."""
        try:
            return read_body(self.config.max_body)
        except BodyTooLarge as exc:
            raise ApiError(413, "too-large", str(exc)) from None
        except BodyUnreadable as exc:
            raise ApiError(400, "malformed-body", str(exc)) from None

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
        ops.counter("fleetkeys_signer_signatures", "Signing requests answered with a signature: new, or a "
                    "repeat of a signed request.", ("result",)).labels("new" if created else "repeat").inc()
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
    """A canonical decimal (FORMAT.md §1.4: no sign, no leading zeros) in ``lo..hi``, or ``None`` if absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = parse_decimal(raw, f"query parameter {name}")
    except VerificationError:
        value = None
    if value is None or not lo <= value <= hi:
        raise wire.bad_request(f"query parameter {name}: expected a canonical decimal integer in {lo}..{hi}")
    return value


def _parse_epoch_segment(text: str) -> int:
    """The ``<epoch>`` of an audit path: a canonical decimal of at most 20 digits (``01`` is refused;
    one beyond the epochs this signer stores names nothing: 404)."""
    try:
        return parse_decimal(text, "epoch", 10**20 - 1)
    except VerificationError:
        raise wire.bad_request("epoch: expected a canonical decimal integer (no sign, no leading zeros, "
                               "at most 20 digits)") from None


def namespace_path(name: str) -> str:
    """The path of namespace ``name``'s record: ``/namespaces/`` and the name as it is, or with every
    ``/`` escaped (``x/audits/1`` → ``x%2Faudits%2F1``) when the name as it is reads as an audit path."""
    plain = NAMESPACES_PREFIX + quote(name, safe="/")
    if resolve_namespace_path("GET", split_namespace_path(plain[len(NAMESPACES_PREFIX):]))[0] == "record":
        return plain
    return NAMESPACES_PREFIX + quote(name, safe="")


def split_namespace_path(raw_rest: str) -> list[str]:
    """The ``/``-separated parts of a raw request path after ``/namespaces/``, each percent-decoded
    (an escaped ``%2F`` stays inside its part)."""
    return [unquote(part, errors="strict") for part in raw_rest.split("/")]


def resolve_namespace_path(method: str, parts: list[str]) -> tuple[str, str, str | None]:
    """What a request under ``/namespaces/`` is for, from the method and the path's parts (read from the
    end; module docstring): ``("audit", ns, epoch)`` (GET/HEAD ``<ns>/audits/<epoch>``), ``("sign", ns,
    None)`` (POST ``<ns>/audits``), ``("update", ns, None)`` (PATCH of a path that does not read as an
    audit), ``("record", ns, None)`` (any other GET/HEAD), or ``("none", "", None)`` (a POST to anything
    but ``.../audits``, a PATCH of an audit path)."""
    reads_as_audit = len(parts) >= 3 and parts[-2] == "audits" and "/".join(parts[:-2])
    if method == "PATCH":  # an audit path is never a name to update (escape its slashes as %2F for that)
        return ("none", "", None) if reads_as_audit else ("update", "/".join(parts), None)
    if method == "POST":
        if len(parts) >= 2 and parts[-1] == "audits" and "/".join(parts[:-1]):
            return "sign", "/".join(parts[:-1]), None
        return "none", "", None
    if reads_as_audit:
        return "audit", "/".join(parts[:-2]), parts[-1]
    return "record", "/".join(parts), None


def allowed_methods(parts: list[str]) -> list[str]:
    """The methods a path under ``/namespaces/`` takes (:func:`resolve_namespace_path`)."""
    return ["GET", "HEAD", *(m for m in ("PATCH", "POST") if resolve_namespace_path(m, parts)[0] != "none")]


def _request_parts() -> list[str]:
    """The parts of this request's path after ``/namespaces/``, read from the raw request target when
    the server gives it (and it agrees with the decoded path); from the decoded path otherwise."""
    decoded_rest = request.path[len(NAMESPACES_PREFIX):]
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        path = urlsplit(raw).path if "://" in raw.split("?", 1)[0] else raw.split("?", 1)[0]
        at = path.find(NAMESPACES_PREFIX, len(request.script_root) if path.startswith(request.script_root) else 0)
        if at >= 0:
            try:
                parts = split_namespace_path(path[at + len(NAMESPACES_PREFIX):])
            except UnicodeDecodeError:
                raise wire.bad_request("namespace path: not UTF-8") from None
            if "/".join(parts) == decoded_rest:
                return parts
    return decoded_rest.split("/")


class _RestConverter(BaseConverter):
    """Everything after the prefix, slashes and empty parts included (the app reads the raw target)."""

    regex = ".*"
    part_isolating = False


def _routes(svc: _Service) -> Blueprint:
    bp = Blueprint("signer", __name__)

    @bp.get("/api/v1/openapi.json")
    def openapi() -> Response:
        """This service's OpenAPI 3.1 document (``signer/openapi.json``), byte for byte."""
        return Response(openapi_document(__package__), mimetype="application/json")

    @bp.get("/healthz")
    def healthz() -> Response:
        return ops.health_response("signer")

    @bp.get("/readyz")
    def readyz() -> Response:
        def journal() -> str:
            try:
                return f"{len(svc.journal.namespaces())} namespaces"
            except (JournalError, sqlite3.Error) as exc:
                raise ops.NotReady(getattr(exc, "reason", "journal unavailable")) from None

        checks = [ops.Check("journal", journal), ops.Check("key", lambda: "loaded at start")]
        return ops.readiness_response("signer", checks, code="not-ready", status=503)

    @bp.get("/info")
    def info() -> Response:
        return jsonify({"keys": [{"public_key": pk.hex(), "not_before": nb} for pk, nb in svc.journal.anchor_keys()],
                        "logs": [ns.name for ns in svc.journal.namespaces()]})

    @bp.get("/namespaces")
    def namespaces() -> Response:
        return jsonify({"namespaces": [svc.namespace_json(ns.name) for ns in svc.journal.namespaces()]})

    @bp.post("/namespaces")
    def create_namespace() -> Response:
        token = svc.token("admin")
        name, ciphersuite, status, log_directory, mode = wire.parse_namespace_request(svc.body(), svc.config.max_body)
        _, created = svc.journal.create_namespace(name, ciphersuite=ciphersuite, status=status,
                                                  log_directory=log_directory, now_ms=svc.config.clock(),
                                                  client=token.name, mode=mode)
        resp = jsonify(svc.namespace_json(name))
        resp.status_code = 201 if created else 200
        return resp

    def namespace_record(name: str) -> Response:
        return jsonify(svc.namespace_json(name))

    def update_namespace(name: str) -> Response:
        token = svc.token("admin")
        status = wire.parse_status_request(svc.body(), svc.config.max_body)
        svc.journal.set_status(name, status, now_ms=svc.config.clock(), client=token.name)
        return jsonify(svc.namespace_json(name))

    def audit(name: str, epoch_text: str) -> Response:
        epoch = _parse_epoch_segment(epoch_text)
        if svc.journal.namespace(name) is None:
            raise Refusal("unknown-namespace", f"namespace {name!r} does not exist")
        entry: SignedEntry | None = None
        if 1 <= epoch <= MAX_EPOCH:
            entry = svc.journal.entry(name, epoch)
        if entry is None:
            raise Refusal("unknown-epoch", f"{name} epoch {epoch} has not been signed")
        return jsonify(wire.signature_response(entry))

    def sign_digest(name: str) -> Response:
        token = svc.token("write", name)
        epoch, digest = wire.parse_sign_request(svc.body(), svc.config.max_body)
        return svc.sign(SignRequest(name, epoch, digest), token)

    @bp.route("/namespaces/<rest:rest>", methods=["GET", "POST", "PATCH", "OPTIONS"], provide_automatic_options=False)
    def namespace_paths(rest: str) -> Response:
        # The whole path decides, read from its end (module docstring): never a name prefix.
        parts = _request_parts()
        if request.method == "OPTIONS":  # the methods this very path takes
            return Response(status=204, headers={"Allow": ", ".join([*allowed_methods(parts), "OPTIONS"])})
        kind, name, epoch = resolve_namespace_path(request.method, parts)
        if kind == "update":
            return update_namespace(name)
        if kind == "sign":
            return sign_digest(name)
        if kind == "audit":
            assert epoch is not None
            return audit(name, epoch)
        if kind == "record":
            return namespace_record(name)
        allowed = allowed_methods(parts)
        raise ApiError(405, "method-not-allowed", f"{request.method} is not taken here: POST is for "
                       "/namespaces/<ns>/audits, PATCH for a namespace record (escape a name's slashes as %2F)",
                       {"Allow": ", ".join(allowed)})

    @bp.post("/api/v1/sign-keyset")
    def sign_keyset() -> Response:
        token = svc.token("write")
        body = svc.body()
        try:
            keyset = parse_keyset(body)
        except VerificationError as exc:
            raise wire.bad_request(f"keyset refused: {exc}", "malformed-keyset") from None
        svc.authorize(token, keyset.namespace)
        return svc.sign(SignRequest(keyset.namespace, keyset.epoch, keyset.digest, keyset.previous,
                                    keyset.issued_at, keyset), token)

    @bp.get("/api/v1/journal")
    def journal() -> Response:
        unknown = sorted(set(request.args) - {"namespace", "limit", "before"})
        if unknown:
            raise wire.bad_request(f"unknown query parameter {unknown[0][:40]!r} (namespace, limit, before)")
        ns = request.args.get("namespace")
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
    app.url_map.converters["rest"] = _RestConverter
    app.url_map.merge_slashes = False  # "a//b" is a namespace name, not a path to redirect
    app.register_blueprint(_routes(svc))
    app.extensions["fleetkeys.signer"] = svc

    edges.install(app, wire.bad_request)

    ops.instrument(app, "signer", timed=("/api/v1/sign-keyset", "/namespaces/<rest:rest>"))
    refusals = ops.counter("fleetkeys_signer_refusals", "Requests refused, by code (a rule of signer.rules, "
                           "or unauthenticated, forbidden, too-large, ...).", ("code",))

    @app.errorhandler(Refusal)
    def refusal(exc: Refusal) -> Response:
        refusals.labels(exc.code).inc()
        return _error(STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.reason)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        refusals.labels(exc.code).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return _error(exc.status, exc.code, exc.reason, headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {400: "malformed", 404: "not-found", 405: "method-not-allowed", 413: "too-large",
                414: "uri-too-long", 431: "headers-too-large"}.get(status, "http-error")
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "location")}
        return _error(status, code, exc.description or exc.name, headers)

    @app.errorhandler(JournalError)
    def journal_unavailable(exc: JournalError) -> Response:
        # The message names the journal file: the operator's log gets it, the client the fixed reason.
        log.error("journal unavailable on %s %s: %s", request.method, request.path, exc)
        ops.storage_errors().labels("signer", exc.code).inc()
        return _error(STATUS_OF_CODE.get(exc.code, 503), exc.code, f"{exc.reason}; retry later",
                      {"Retry-After": str(RETRY_AFTER)})

    @app.errorhandler(sqlite3.Error)
    def journal_read_failed(exc: sqlite3.Error) -> Response:
        # A read outside Journal._write (which translates its own failures); a bug if not the storage's.
        error = journal_error(exc, svc.journal.path, "a read")
        if error is None:
            return internal(exc)
        return journal_unavailable(error)

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response:
        log.exception("internal error")
        return _error(500, "internal", "internal error")

    return app


__all__ = ["create_app"]
