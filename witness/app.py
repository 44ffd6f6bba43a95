"""The witness's HTTP service: a Flask app factory speaking c2sp.org/tlog-witness@v1.0.0.

The version implemented is the released one (git tag ``tlog-witness/v1.0.0`` of github.com/C2SP/C2SP),
with the cosignatures of c2sp.org/tlog-cosignature (Ed25519, ``cosignature/v1``, key type 0x04). Where
v1.0.0 is silent, the answers follow the later editor's draft when it does not contradict v1.0.0 (a
size-0 checkpoint must carry the empty tree's root: 422; a proof sent with old size 0: 422; a failing
signature by a trusted key: 403). Where the draft changed v1.0.0 (same size, other root: 422 there)
v1.0.0 is kept (409). The optional ``sign-subtree`` and the monitoring ``GET <origin hash>/checkpoint``
of the draft are not served. The submission prefix is the server root.

``POST /add-checkpoint`` (the spec's API; :mod:`witness.core` does the work)
    Body: ``old <size>\\n``, 0..63 base64 proof lines, ``\\n``, the checkpoint note
    (:mod:`witness.wire`). Answers, exactly as the spec states them:

    =====  =====================================  =====================================================
    200    ``text/plain; charset=utf-8``          the cosignature line(s): ``— <name> <base64>\\n``
                                                  (tlog-cosignature/v1, timestamp = the request time)
    400    ``text/plain; charset=utf-8``          malformed body; old size larger than the checkpoint's
    403    ``text/plain; charset=utf-8``          no signature by a trusted key of the origin verifies,
                                                  or one by a trusted key fails
    404    ``text/plain; charset=utf-8``          the checkpoint's origin is not a configured log
    409    ``text/x.tlog.size`` (exactly)         ``<size>\\n``, the size of the latest checkpoint
                                                  cosigned for the origin (0 if none): the old size is
                                                  not that size, or it is and so is the checkpoint's but
                                                  the root differs
    413    ``text/plain; charset=utf-8``          body over :data:`witness.wire.MAX_BODY` (68 KiB)
    422    ``text/plain; charset=utf-8``          the consistency proof does not verify; a proof with old
                                                  size 0 or between equal sizes; a size-0 checkpoint
                                                  whose root is not the empty tree's
    405    ``text/plain; charset=utf-8``          not a POST (``Allow: POST``)
    503    ``text/plain; charset=utf-8``          the witness key or state store failed (nothing cosigned),
                                                  with ``Retry-After`` (:data:`RETRY_AFTER`); a state
                                                  failure says only which (``disk full``, ``witness
                                                  state I/O error``, ``witness state busy``, ``witness
                                                  state unavailable``): the file is named in the log
    =====  =====================================  =====================================================

    The spec gives a body only to 200 and 409; every other refusal here carries one line of plain
    text saying why, for people (clients act on the status alone). A body the server cannot read (a
    malformed chunked encoding, shorter than its ``Content-Length``) is a malformed request: 400.

``GET /`` (not in the spec: the witness's identity, JSON)
    ``{"name": "<witness name>", "vkey": "<name>+<key id>+<base64(0x04 || key)>",
    "submission": "/add-checkpoint", "logs": [{"origin": "<origin>", "keys": ["<vkey>", ...]}, ...]}``

Every other path or method outside ``/add-checkpoint`` answers a JSON error
``{"error": "<reason>", "code": "<slug>", "status": N}`` (400, 404, 405, 500). A repeated query
parameter is refused (400) on every path (the witness takes none, and never guesses which one was
meant). Every answer carries ``X-Content-Type-Options: nosniff``.

The status of each refusal is decided in one place, :data:`STATUS_OF`.

Operations (JSON, :mod:`serving.metrics`): ``GET /metrics`` (Prometheus text), ``GET /healthz`` (the
process answers) and ``GET /readyz`` (state store readable, key loaded; 503 naming the failing check).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from keys import load_signer
from serving import edges
from serving import metrics as ops
from serving.body import BodyTooLarge, BodyUnreadable, read_body
from serving.edges import RETRY_AFTER
from serving.openapi import openapi_document

from .config import WitnessConfig
from .core import Witness
from .errors import (
    InconsistentCheckpoint,
    MalformedRequest,
    OldSizeTooLarge,
    RequestTooLarge,
    RootConflict,
    SizeConflict,
    StateUnavailable,
    UnknownOrigin,
    UntrustedCheckpoint,
    WitnessError,
    WitnessUnavailable,
)
from .state import WitnessState
from .wire import SIZE_CONTENT_TYPE, encode_size_body

log = logging.getLogger("fleetkeys.witness")

ADD_CHECKPOINT = "/add-checkpoint"
TEXT = "text/plain; charset=utf-8"
#: Seconds a client is asked to wait (``Retry-After``) after a 503.

#: The one place where a witness error becomes an HTTP status (c2sp.org/tlog-witness@v1.0.0; see the
#: module docstring). Looked up along the exception's class hierarchy, most specific first.
STATUS_OF: dict[type[WitnessError], int] = {
    MalformedRequest: 400,
    OldSizeTooLarge: 400,
    UntrustedCheckpoint: 403,
    UnknownOrigin: 404,
    SizeConflict: 409,
    RootConflict: 409,
    RequestTooLarge: 413,
    InconsistentCheckpoint: 422,
    WitnessUnavailable: 503,
}


def status_of(exc: WitnessError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def _text(status: int, body: str, content_type: str = TEXT, headers: dict[str, str] | None = None) -> Response:
    # content_type= is sent as given: werkzeug adds "; charset=utf-8" only to a bare mimetype=.
    resp = Response(body.encode("utf-8"), status=status, content_type=content_type)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _json_error(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"error": reason, "code": code, "status": status})
    resp.status_code = status
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500] + "\n"


def _read_body(limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (:class:`RequestTooLarge` beyond, chunked bodies too)."""
    try:
        return read_body(limit)
    except BodyTooLarge as exc:
        raise RequestTooLarge(str(exc)) from None
    except BodyUnreadable as exc:
        raise MalformedRequest(str(exc)) from None


def _routes(witness: Witness) -> Blueprint:
    bp = Blueprint("witness", __name__)

    @bp.post(ADD_CHECKPOINT)
    def add_checkpoint() -> Response:
        body = _read_body(witness.config.max_body)
        line = witness.add_checkpoint(body)
        ops.counter("fleetkeys_witness_cosignatures", "Checkpoints cosigned.").inc()
        return _text(200, line.decode("utf-8"))

    def state_samples() -> list[ops.Sample]:
        now = witness.config.clock()
        out = []
        for st in witness.state.all():
            labels = (("origin", st.origin),)
            out.append(ops.Sample("fleetkeys_witness_log_size", "Tree size of the newest checkpoint cosigned, per "
                                  "configured log.", st.size, labels))
            out.append(ops.Sample("fleetkeys_witness_cosignature_age_seconds", "Age of the newest cosignature, "
                                  "per configured log.", now - st.timestamp, labels))
        return out

    @bp.get("/metrics")
    def metrics() -> Response:
        return ops.metrics_response([ops.StateCollector("witness", state_samples)])

    @bp.get("/healthz")
    def healthz() -> Response:
        return ops.health_response("witness")

    @bp.get("/readyz")
    def readyz() -> Response:
        def state() -> str:
            try:
                return f"{len(witness.state.all())} logs cosigned"
            except StateUnavailable as exc:
                raise ops.NotReady(exc.reason) from None

        checks = [ops.Check("state", state), ops.Check("key", lambda: f"loaded at start ({witness.verifier.name})")]
        return ops.readiness_response("witness", checks, code="not-ready", status=503)

    @bp.get("/api/v1/openapi.json")
    def openapi() -> Response:
        """This service's OpenAPI 3.1 document (``witness/openapi.json``), byte for byte."""
        return Response(openapi_document(__package__), mimetype="application/json")

    @bp.get("/")
    def info() -> Response:
        logs: list[dict[str, Any]] = [{"origin": origin, "keys": [k.vkey for k in keys]}
                                      for origin, keys in sorted(witness.config.logs.items())]
        return jsonify({"name": witness.config.name, "vkey": witness.vkey, "submission": ADD_CHECKPOINT,
                        "logs": logs})

    return bp


def create_app(config: WitnessConfig) -> Flask:
    """Build the witness app: load the key (``config.signer`` or ``config.key_ref``), open the state.

    Call it in the process that serves (each gunicorn worker): PKCS#11 sessions and SQLite
    connections do not survive a ``fork()``. Raises :class:`keys.KeyBackendError`,
    :class:`witness.errors.WitnessConfigError` or :class:`witness.errors.WitnessUnavailable`.
    """
    signer = config.signer if config.signer is not None else load_signer(config.key_ref)
    state = WitnessState(config.state_path)
    witness = Witness(config, signer, state)

    app = Flask("witness")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(_routes(witness))
    app.extensions["fleetkeys.witness"] = witness

    edges.install(app, MalformedRequest)

    ops.instrument(app, "witness", timed=(ADD_CHECKPOINT,))
    refusals = ops.counter("fleetkeys_witness_refusals", "add-checkpoint requests refused, by kind (the "
                           "error class).", ("kind",))

    @app.errorhandler(WitnessError)
    def witness_error(exc: WitnessError) -> Response:
        status = status_of(exc)
        refusals.labels(type(exc).__name__).inc()
        if isinstance(exc, StateUnavailable):
            ops.storage_errors().labels("witness", type(exc).__name__).inc()
        if status >= 500:
            log.error("add-checkpoint failed: %s", exc)
        if isinstance(exc, SizeConflict):
            return _text(status, encode_size_body(exc.known_size).decode(), SIZE_CONTENT_TYPE)
        retry = {"Retry-After": str(RETRY_AFTER)} if status == 503 else None
        line = exc.reason if isinstance(exc, StateUnavailable) else str(exc)
        if request.path != ADD_CHECKPOINT:
            return _json_error(status, "malformed" if status == 400 else "unavailable", line, retry)
        return _text(status, _one_line(line), headers=retry)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        if request.path == ADD_CHECKPOINT:
            return _text(status, _one_line(exc.description or exc.name), headers=headers)
        code = {400: "malformed", 404: "not-found", 405: "method-not-allowed", 413: "too-large",
                414: "uri-too-long", 431: "headers-too-large"}.get(status, "http-error")
        return _json_error(status, code, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response:
        log.exception("internal error")
        if request.path == ADD_CHECKPOINT:
            return _text(500, "internal error\n")
        return _json_error(500, "internal", "internal error")

    return app


def get_witness(app: Flask) -> Witness:
    return app.extensions["fleetkeys.witness"]


__all__ = ["RETRY_AFTER", "STATUS_OF", "create_app", "get_witness", "status_of"]
