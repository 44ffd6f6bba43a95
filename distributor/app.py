"""The distributor's HTTP service: a Flask application factory with one blueprint per area.

Endpoints (DESIGN.md §5; every error is JSON ``{"error": "<reason>"}``, every answer carries
``X-Content-Type-Options: nosniff``):

``GET /checkpoint``
    The served checkpoint (``text/plain; charset=utf-8``): log signature + freshness cosignature, one
    object for every worker and replica, kept in the database (:mod:`distributor.freshness`).
``GET /tile/<L>/<N>[.p/<W>]``, ``GET /tile/entries/<N>[.p/<W>]``
    C2SP hash tiles and entry bundles (``application/octet-stream``), full or partial.
``GET /entry/<N>``
    The exact bytes of entry ``N`` (``application/octet-stream``; ``<N>`` encoded like a tile index;
    bundles/FORMAT.md §9.6); 404 at or beyond the current size.
``GET /trust-root/<version>``
    The per-version object of logged trust-root rotation ``version`` (``application/octet-stream``:
    its log index in decimal, a line feed, the exact envelope; FORMAT.md §9.7); 404 for a version
    never logged (the bootstrap root included).
``POST /api/v1/bundles`` (``Authorization: Bearer <token>``, body = bundle bytes, at most 1 MiB)
    201 ``{"index", "epoch", "checkpoint", "proof"}`` for a new entry, 200 (same shape) for an
    identical re-publish; 400 malformed or does not verify; 401 missing/bad token; 409 rule break
    (wrong epoch or chain, another bundle for a logged epoch, a keyset not naming the trust root in
    force, an active fleet whose id or key was revoked before); 413 too large; 503 no trust root.
``POST /api/v1/trust-roots`` (same token; body = rotation envelope)
    201/200 ``{"index", "version", "checkpoint", "proof"}``; 400/401/409/413/503 as above.
``GET /api/v1/bundles/latest``, ``GET /api/v1/bundles/<epoch>``
    ``{"bundle": "<base64>", "epoch", "index", "proof": "<c2sp.org/tlog-proof@v1 text>"}``; the proof
    embeds the current cosigned checkpoint. 404 if none.
``GET /api/v1/trust-roots/<version>``
    ``{"trust_root": "<base64 envelope>", "version", "index", "proof"}``; 404 for versions never logged.
``GET /api/v1/proof/consistency?from=A[&to=B]``
    ``{"from", "to", "proof": ["<base64 hash>", ...]}``; ``to`` defaults to the current size.
``GET /api/v1/epochs?limit=&before=``
    ``{"epochs": [{"epoch", "index", "digest", "fleet_ids", "issued_at", "expires_at"}, ...],
    "next_before": <epoch or null>}``, newest first, ``limit`` 1..100 (default 20).
``GET /api/v1/info``
    ``{"origin", "log_vkey", "freshness_vkey", "size", "trust_root", "trust_root_version"}``.
``GET /``
    The audit web page (:mod:`distributor.web`), verifying the log in the browser.
``GET /metrics``, ``GET /healthz``, ``GET /readyz``
    Prometheus metrics, liveness and readiness (:mod:`serving.metrics`; the checks: :func:`_readiness_checks`).

Strict input (400 ``{"error"}``): a repeated query parameter anywhere; on the two endpoints that take
parameters, an unknown or empty one, or a number that is not canonical decimal (no sign, no leading
zeros; FORMAT.md §1.4); a request body the server cannot read (a malformed chunked encoding, a body
shorter than its ``Content-Length``). Static-layout paths (``/tile/...``, ``/entry/...``,
``/trust-root/...``) answer 404 for a non-canonical name, as a static file server would.

Storage failures (:class:`~distributor.errors.StorageError`) answer 503 with a fixed reason
(``disk full``, ``storage I/O error``, ``storage busy``, ``database connection lost``, ``storage
unavailable``) and ``Retry-After`` (:data:`RETRY_AFTER`); the details go to the log only. A request
that met a lost database connection is run once more on a new connection before that answer: reads,
and the two publish endpoints, which are idempotent (the same bytes re-posted answer 200 with the
entry's index: the antispam rule). A 5xx on a publish (a COMMIT whose fsync failed, a connection lost
during COMMIT, a server killed) does **not** mean "not appended": the entry may be in the log, and
re-posting the same bytes is always safe (200 if it is there, 201 if it was not).

Caching (what a CDN in front may do). Every successful response carries a strong ``ETag`` (SHA-256
of the body, truncated to 128 bits) and answers ``If-None-Match`` with 304; ``Cache-Control``:

* ``public, max-age=31536000, immutable`` (:data:`CACHE_IMMUTABLE`): every ``/tile/...`` response,
  full or partial (a partial tile's URL names its width, so its bytes never change), every
  ``/entry/<N>`` and ``/trust-root/<version>``, a consistency proof between two explicit sizes
  (``from`` and ``to``: an append-only log's proof between two sizes is fixed), and an epochs page
  whose content is complete and fixed (``before`` given and every epoch below it logged: epochs are
  contiguous from 1 and never change);
* ``public, max-age=5`` (:data:`CACHE_CHECKPOINT`): ``/checkpoint``, the one mutable read (C2SP
  tlog-tiles: no caching beyond a few seconds; short against the freshness interval, 60 s);
* ``no-cache`` (:data:`CACHE_API`, store but revalidate: the ETag makes that a 304): everything else,
  i.e. ``/api/v1/info``, ``/api/v1/bundles/latest``, ``/api/v1/bundles/<epoch>`` and
  ``/api/v1/trust-roots/<version>`` (the entry never changes, but its proof is to the current
  checkpoint, which does), a consistency proof to the current size, other epochs pages, publish
  answers and ``/``;
* ``no-store``: every error (a missing tile or entry exists later; a refusal is not content).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from serving import edges
from serving import metrics as ops
from serving.body import BodyTooLarge, BodyUnreadable, read_body
from serving.edges import RETRY_AFTER
from serving.openapi import openapi_document
from verifier.checkpoint import parse_decimal
from verifier.cosignature import witnessed_time
from verifier.errors import VerificationError
from verifier.note import NoteSigner
from verifier.signatures import KeyGroup
from verifier.tiles import parse_tile_path
from verifier.trustroot import MAX_VERSION, load_trust_root

from .config import Config
from .errors import (
    ConnectionLost,
    DistributorError,
    EntryTooLarge,
    InvalidEntry,
    NotConfigured,
    NotFound,
    RuleViolation,
    StorageError,
)
from .export import BackgroundWriter, Refresher, StaticWriter, parse_entry_path
from .freshness import Freshness, ServedCheckpoint, visible_head
from .log import Log, Published, epoch_json
from .storage import Storage, open_storage
from .web import web_bp
from .witnessing import WitnessEndpoint, Witnessing, parse_witness_option

log = logging.getLogger("fleetkeys.distributor")

CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_CHECKPOINT = "public, max-age=5"
CACHE_API = "no-cache"
CACHE_ERROR = "no-store"
MAX_EPOCHS_PAGE = 100
#: Seconds a client is asked to wait (``Retry-After``) after a storage failure (503).
DEFAULT_EPOCHS_PAGE = 20
_EXTENSION = "fleetkeys.distributor"


def _load_key(ref: str | None, signer: Any, what: str) -> Any:
    if (ref is None) == (signer is None):
        raise ValueError(f"distributor configuration needs exactly one of {what}_key and {what}_signer")
    if signer is not None:
        return signer
    from keys import load_signer

    return load_signer(ref)


def _read_token(cfg: Config) -> str | None:
    if cfg.token is not None and cfg.token_file is not None:
        raise ValueError("distributor configuration: give token or token_file, not both")
    if cfg.token_file is not None:
        with open(cfg.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    else:
        token = cfg.token
    if token is not None and len(token) < 16:
        raise ValueError("the publish token must be at least 16 characters")
    return token


def _trust_root(cfg: Config):
    if cfg.trust_root is not None and cfg.trust_root_file is not None:
        raise ValueError("distributor configuration: give trust_root or trust_root_file, not both")
    data = cfg.trust_root
    if cfg.trust_root_file is not None:
        with open(cfg.trust_root_file, "rb") as f:
            data = f.read()
    return None if data is None else load_trust_root(data)


class Service:
    """Everything one process serves from: storage, the log, the static writer and its refresher."""

    def __init__(self, cfg: Config) -> None:
        self.config = cfg
        self.token = _read_token(cfg)
        log_signer = _load_key(cfg.log_key, cfg.log_signer, "log")
        freshness_signer = _load_key(cfg.freshness_key, cfg.freshness_signer, "freshness")
        self.writer: StaticWriter | None = None
        self.static: BackgroundWriter | None = None
        self.storage: Storage = open_storage(cfg.database, schema=cfg.schema)
        try:
            if cfg.static_dir is not None:
                log_key = NoteSigner.from_signer(cfg.origin, log_signer).verifier
                freshness = Freshness(cfg.origin, freshness_signer, interval=cfg.freshness_interval, clock=cfg.clock)
                self.writer = StaticWriter(cfg.static_dir, log_key=log_key, freshness=freshness,
                                           entry_objects=cfg.export_entry_objects)
                self.writer.exported_size()  # refuses a directory that holds another log's checkpoint
                self.static = BackgroundWriter(self.writer, self.storage)
            endpoints = [w if isinstance(w, WitnessEndpoint) else parse_witness_option(w) for w in cfg.witnesses]
            self.log = Log(self.storage, origin=cfg.origin, log_signer=log_signer, freshness_signer=freshness_signer,
                           trust_root=_trust_root(cfg), freshness_interval=cfg.freshness_interval, clock=cfg.clock,
                           static=self.static, witnesses=[ep.key for ep in endpoints])
            self.witnessing = Witnessing(self.log, endpoints, interval=cfg.freshness_interval,
                                         timeout=cfg.witness_timeout, clock=cfg.clock)
        except BaseException:
            self.storage.close()
            raise
        self._refresher: Refresher | None = None
        self.verified_size = self.log.head().size  # the open checked the stored tree against its checkpoint
        cosigned = ops.counter("fleetkeys_distributor_witness_exchanges", "Exchanges with each witness by "
                               "outcome (cosigned, failed).", ("witness", "outcome"))
        self.witnessing.on_exchange = lambda ep, ok: cosigned.labels(ep.key.name, "cosigned" if ok else "failed").inc()

    def start_background(self) -> None:
        """Start the static refresher (one per process; a file lock elects the one that works) and the
        witness loop (one per process; a database lease elects the one that asks)."""
        if self.writer is not None and self._refresher is None:
            self._refresher = Refresher(self.writer, self.storage, period=min(1.0, self.config.freshness_interval / 4))
            self._refresher.start()
        self.witnessing.start()

    def close(self) -> None:
        self.witnessing.stop()
        if self._refresher is not None:
            self._refresher.stop()
        if self.static is not None:
            self.static.close()
        self.storage.close()


def service() -> Service:
    return current_app.extensions[_EXTENSION]


def _storage_error(exc: StorageError) -> None:
    ops.storage_errors().labels("distributor", type(exc).__name__).inc()


def _etag(resp: Response) -> None:
    """A strong ETag over the exact body."""
    resp.set_etag(hashlib.sha256(resp.get_data()).hexdigest()[:32])


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    resp.headers["Cache-Control"] = CACHE_ERROR  # never cache a missing tile or a refusal
    _etag(resp)  # never made conditional: an error is never answered with 304
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class ApiError(Exception):
    """An HTTP-level refusal of this app (a malformed query, a missing token): not a domain error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _bad_request(message: str) -> ApiError:
    return ApiError(400, message)


#: The one place where a domain error becomes an HTTP status (looked up along the class's MRO, so
#: a subclass such as ``EntryTooLarge`` takes its own row before its base's). A ``StorageError``
#: (``DiskFull``, ``StorageIOError``, ``StorageBusy``, ``ConnectionLost``, ...) answers its fixed
#: ``reason`` with ``Retry-After``. Anything not listed, e.g. ``IntegrityError``, is a 500 whose
#: reason is logged and answered.
STATUS_OF: dict[type[DistributorError], int] = {
    InvalidEntry: 400,
    NotFound: 404,
    RuleViolation: 409,
    EntryTooLarge: 413,
    NotConfigured: 503,
    StorageError: 503,
}


def status_of(exc: DistributorError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def _only_args(*names: str) -> None:
    """Refuse a query parameter this endpoint does not take (a misspelt one would be silently ignored)."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise _bad_request(f"unknown query parameter {unknown[0][:40]!r} (this endpoint takes "
                           f"{', '.join(names)})")


def _int_arg(name: str, default: int | None = None, *, required: bool = False) -> int | None:
    value = request.args.get(name)
    if value is None:
        if required:
            raise _bad_request(f"query parameter {name!r} is required")
        return default
    try:
        return parse_decimal(value, f"query parameter {name!r}")
    except VerificationError as exc:
        raise _bad_request(str(exc)) from exc


def _path_int(value: str, what: str) -> int:
    try:
        return parse_decimal(value, what)
    except VerificationError as exc:
        raise _bad_request(str(exc)) from exc


def _conditional(resp: Response, cache_control: str) -> Response:
    """Cache-Control, a strong ETag over the body, and 304 for a matching ``If-None-Match`` (GET/HEAD)."""
    resp.headers["Cache-Control"] = cache_control
    _etag(resp)
    return resp.make_conditional(request)


def _cached(data: bytes, mimetype: str, cache_control: str) -> Response:
    return _conditional(Response(data, mimetype=mimetype), cache_control)


def _api(payload: dict[str, Any], status: int = 200, cache_control: str = CACHE_API) -> Response:
    resp = jsonify(payload)
    resp.status_code = status
    return _conditional(resp, cache_control)


# -- tiles and checkpoint -------------------------------------------------------------------------
tiles_bp = Blueprint("tiles", __name__)


@tiles_bp.get("/checkpoint")
def checkpoint() -> Response:
    return _cached(service().log.checkpoint(), "text/plain", CACHE_CHECKPOINT)


@tiles_bp.get("/tile/<path:rest>")
def tile(rest: str) -> Response:
    try:
        ref = parse_tile_path("tile/" + rest)
    except VerificationError as exc:
        return _error(404, f"not a tile: {exc}")
    data = service().log.tile(ref)
    if data is None:
        return _error(404, f"{ref.path} does not exist at the current tree size")
    return _cached(data, "application/octet-stream", CACHE_IMMUTABLE)  # full or partial: never changes


@tiles_bp.get("/entry/<path:rest>")
def entry(rest: str) -> Response:
    try:
        index = parse_entry_path("entry/" + rest)
    except ValueError as exc:
        return _error(404, f"not an entry object: {exc}")
    data = service().log.entry(index)
    if data is None:
        return _error(404, f"entry {index} does not exist at the current tree size")
    return _cached(data, "application/octet-stream", CACHE_IMMUTABLE)


@tiles_bp.get("/trust-root/<path:rest>")
def trust_root_object(rest: str) -> Response:
    try:
        version = parse_decimal(rest, "trust-root version", MAX_VERSION)
    except VerificationError as exc:
        return _error(404, f"not a trust-root object: {exc}")
    data = service().log.trust_root_object(version)
    if data is None:
        return _error(404, f"trust root version {version} was never logged")
    return _cached(data, "application/octet-stream", CACHE_IMMUTABLE)  # written once, never changes


# -- read API --------------------------------------------------------------------------------------
read_bp = Blueprint("read", __name__)


@read_bp.get("/api/v1/info")
def info() -> Response:
    return _api(service().log.info())


@read_bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    """This service's OpenAPI 3.1 document (``distributor/openapi.json``), byte for byte."""
    return _cached(openapi_document(__package__), "application/json", CACHE_API)


@read_bp.get("/api/v1/bundles/latest")
def latest_bundle() -> Response:
    return _bundle(None)


@read_bp.get("/api/v1/bundles/<epoch>")
def bundle_by_epoch(epoch: str) -> Response:
    return _bundle(_path_int(epoch, "epoch"))


def _bundle(epoch: int | None) -> Response:
    row, proven = service().log.bundle(epoch)
    return _api({"bundle": base64.b64encode(proven.data).decode(), "epoch": row.epoch, "index": row.index,
                 "proof": proven.proof.decode()})


@read_bp.get("/api/v1/trust-roots/<version>")
def trust_root(version: str) -> Response:
    row, proven = service().log.logged_trust_root(_path_int(version, "version"))
    return _api({"trust_root": base64.b64encode(row.envelope).decode(), "version": row.version, "index": row.index,
                 "proof": proven.proof.decode()})


@read_bp.get("/api/v1/proof/consistency")
def consistency() -> Response:
    _only_args("from", "to")
    first = _int_arg("from", required=True)
    second = _int_arg("to")
    assert first is not None
    try:
        to, proof = service().log.consistency(first, second)
    except InvalidEntry as exc:
        raise _bad_request(str(exc)) from exc
    # Between two explicit sizes the proof never changes; to the current size it follows the log.
    return _api({"from": first, "to": to, "proof": [base64.b64encode(h).decode() for h in proof]},
                cache_control=CACHE_API if second is None else CACHE_IMMUTABLE)


@read_bp.get("/api/v1/epochs")
def epochs() -> Response:
    _only_args("limit", "before")
    limit = _int_arg("limit", DEFAULT_EPOCHS_PAGE)
    before = _int_arg("before")
    assert limit is not None
    if not 1 <= limit <= MAX_EPOCHS_PAGE:
        raise _bad_request(f"limit must be 1..{MAX_EPOCHS_PAGE}, got {limit}")
    rows, next_before = service().log.epochs(before, limit)
    # Epochs are logged contiguously from 1 and never change: a page below ``before`` is fixed once
    # epoch before - 1 is logged (or when there can be none below it).
    fixed = before is not None and (before <= 1 or (bool(rows) and rows[0].epoch == before - 1))
    return _api({"epochs": [epoch_json(r) for r in rows], "next_before": next_before},
                cache_control=CACHE_IMMUTABLE if fixed else CACHE_API)


# -- publish API ------------------------------------------------------------------------------------
publish_bp = Blueprint("publish", __name__)


def _authorize() -> None:
    expected = service().token
    if expected is None:
        raise ApiError(503, "publishing is disabled: no publish token is configured")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant-time comparison (hmac.compare_digest) so the token cannot be guessed byte by byte.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "missing or invalid bearer token")


def _body() -> bytes:
    """The request body, read once (kept in ``g`` for the one retry of :func:`_retry_once`)."""
    data = g.get("body")
    if data is None:
        try:
            data = read_body(service().config.max_body)
        except BodyTooLarge as exc:
            raise ApiError(413, str(exc)) from None
        except BodyUnreadable as exc:
            raise _bad_request(str(exc)) from None
        g.body = data
    if not data:
        raise _bad_request("empty request body")
    return data


def _published(result: Published, key: str, value: int | None) -> Response:
    if result.created:
        ops.counter("fleetkeys_distributor_appends", "Entries appended, by kind.", ("kind",)).labels(
            "bundle" if key == "epoch" else "trust_root").inc()
    proven, visible = service().log.prove_published(result.index)
    return _api({"index": result.index, key: value, "checkpoint": proven.checkpoint.decode(),
                 "proof": proven.proof.decode(), "visible": visible}, 201 if result.created else 200)


@publish_bp.post("/api/v1/bundles")
def publish_bundle() -> Response:
    _authorize()
    result = service().log.publish(_body())
    return _published(result, "epoch", result.epoch)


@publish_bp.post("/api/v1/trust-roots")
def publish_trust_root() -> Response:
    _authorize()
    result = service().log.rotate_trust_root(_body())
    return _published(result, "version", result.version)


# -- operations: metrics, health, readiness --------------------------------------------------------------
ops_bp = Blueprint("ops", __name__)
#: Seconds past the freshness interval the served freshness cosignature may be old before not ready.
_FRESHNESS_SLACK = 2
#: A witness whose newest cosignature is older than this many freshness intervals is missing
#: (it is asked to renew at every interval).
WITNESS_MISSING_INTERVALS = 3


def _state_samples(svc: Service) -> list[ops.Sample]:
    """The gauges read at scrape time, from the database: no renewal, no write."""
    now = svc.config.clock()
    with svc.storage.read() as tx:
        head = tx.head()
        row = tx.served_checkpoint()
        assert head is not None
        visible = visible_head(tx, head, row).size
        policy = svc.log.roots.policy(tx, row.size if row is not None else head.size)
    out = [ops.Sample("fleetkeys_distributor_tree_size", "Tree size: appended (the head) and visible (served).",
                      head.size, (("tree", "appended"),)),
           ops.Sample("fleetkeys_distributor_tree_size", "", visible, (("tree", "visible"),))]
    if row is not None:
        fresh_age = now - row.timestamp
        checkpoint_age = fresh_age
        if policy.threshold:
            try:
                checkpoint_age = now - witnessed_time(row.checkpoint, KeyGroup(policy.keys, policy.threshold),
                                                      int(now), 10 * 365 * 86400)
            except VerificationError:
                checkpoint_age = float("inf")
        out += [ops.Sample("fleetkeys_distributor_freshness_age_seconds", "Age of the served checkpoint's "
                           "freshness cosignature.", fresh_age),
                ops.Sample("fleetkeys_distributor_checkpoint_age_seconds", "Age of the served checkpoint as "
                           "clients judge it: its witnessed time (the threshold-th newest witness cosignature), "
                           "or its freshness time when no witness is required; +Inf when not witnessed.",
                           checkpoint_age)]
    for lag in svc.witnessing.lag():
        labels = (("witness", lag.name),)
        out.append(ops.Sample("fleetkeys_distributor_witness_lag_entries", "Entries of the head a witness has "
                              "not cosigned yet.", lag.behind, labels))
        if lag.age is not None:
            out.append(ops.Sample("fleetkeys_distributor_witness_cosignature_age_seconds", "Age of each "
                                  "witness's newest stored cosignature.", lag.age, labels))
    return out


def _readiness_checks(svc: Service) -> list[ops.Check]:
    interval = svc.config.freshness_interval

    def storage_reachable() -> str:
        try:
            return f"head size {svc.log.head().size}"
        except StorageError as exc:
            raise ops.NotReady(exc.reason) from None

    def served() -> tuple[Any, Any]:
        try:  # renews the freshness cosignature when it is due, as any client read would
            return svc.log.served.read(lambda tx, head, row: (row, svc.log.roots.policy(tx, row.size)))
        except StorageError as exc:
            raise ops.NotReady(exc.reason) from None

    def freshness() -> str:
        row, _ = served()
        age = svc.config.clock() - row.timestamp
        if age > interval + _FRESHNESS_SLACK:
            raise ops.NotReady(f"the freshness cosignature is {age:.0f} s old (bound {interval + _FRESHNESS_SLACK:g} s)")
        return f"{age:.0f} s old"

    def checkpoint() -> str:
        row, policy = served()
        if not ServedCheckpoint.meets(policy, row.checkpoint, int(svc.config.clock())):
            raise ops.NotReady(f"the served checkpoint (size {row.size}) does not carry {policy.threshold} witness "
                               f"cosignatures younger than {policy.max_age} s: clients refuse it")
        return f"size {row.size} accepted by clients"

    def witnesses() -> str:
        root = svc.log.trust_root
        need = root.witnesses.threshold if root is not None else 0
        if not need:
            return "no witness required"
        bound = WITNESS_MISSING_INTERVALS * interval
        current = [lag.name for lag in svc.witnessing.lag() if lag.age is not None and lag.age <= bound]
        if len(current) < need:
            raise ops.NotReady(f"{len(current)} of the {need} required witnesses cosigned in the last {bound:g} s")
        return f"{len(current)} witnesses current ({need} required)"

    return [ops.Check("storage", storage_reachable),
            ops.Check("tree", lambda: f"verified at start (size {svc.verified_size})"),
            ops.Check("freshness", freshness), ops.Check("checkpoint", checkpoint), ops.Check("witnesses", witnesses)]


@ops_bp.get("/metrics")
def metrics() -> Response:
    svc = service()
    return ops.metrics_response([ops.StateCollector("distributor", lambda: _state_samples(svc))])


@ops_bp.get("/healthz")
def healthz() -> Response:
    return ops.health_response("distributor")


@ops_bp.get("/readyz")
def readyz() -> Response:
    return ops.readiness_response("distributor", _readiness_checks(service()))


# -- the factory -------------------------------------------------------------------------------------
def _retry_once(view: Callable[..., Response]) -> Callable[..., Response]:
    """Run ``view`` once more when it met a lost database connection (the storage replaced it).

    Safe for every route of this app: the reads change nothing, and both publish endpoints are
    idempotent (an identical re-post answers 200 with the logged index, whether or not the first
    attempt committed before the connection broke). Other storage failures are not retried: a full or
    failing disk does not heal in milliseconds, and the busy timeout already waited.
    """

    @functools.wraps(view)
    def retrying(**kwargs: Any) -> Response:
        try:
            return view(**kwargs)
        except ConnectionLost as exc:
            _storage_error(exc)
            log.warning("%s %s: %s (%s); retrying once on a new connection", request.method, request.path,
                        exc.reason, exc)
            return view(**kwargs)

    return retrying


def create_app(config: Mapping[str, Any] | Config) -> Flask:
    """Build the distributor app (see the module docstring and :mod:`distributor.config`).

    Opens the database (creating the log in an empty one) and checks that keys, origin and trust root
    match it; raises :class:`~distributor.errors.LogConfigError` / :class:`~distributor.errors.IntegrityError`
    otherwise. The full start-up self-check is :meth:`Log.self_check` (``fleetkeys serve`` runs it
    before starting workers). Background threads start only on ``Service.start_background()``.
    """
    cfg = Config.from_mapping(config)
    app = Flask("distributor", static_folder=None)  # assets are served by the web blueprint, with its headers
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body
    app.json.sort_keys = True
    app.extensions[_EXTENSION] = Service(cfg)
    app.register_blueprint(tiles_bp)
    app.register_blueprint(read_bp)
    app.register_blueprint(publish_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(ops_bp)
    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = _retry_once(view)
    edges.install(app, _bad_request)
    ops.instrument(app, "distributor", timed=("/api/v1/bundles", "/api/v1/trust-roots"))

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="fleetkeys"'} if exc.status == 401 else None
        return _error(exc.status, str(exc), headers)

    @app.errorhandler(DistributorError)
    def domain_error(exc: DistributorError) -> Response:
        status = status_of(exc)
        if isinstance(exc, StorageError):
            _storage_error(exc)
            # The message names the database (file, server): the operator's log gets it, the client the reason.
            log.error("storage failure on %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
            return _error(status, exc.reason, {"Retry-After": str(RETRY_AFTER)})
        if status == 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return _error(status, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
        return _error(exc.code or 500, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(500, "internal server error")

    return app


def get_service(app: Flask) -> Service:
    """The :class:`Service` behind an app made by :func:`create_app`."""
    return app.extensions[_EXTENSION]


__all__ = ["RETRY_AFTER", "STATUS_OF", "Service", "create_app", "get_service"]
