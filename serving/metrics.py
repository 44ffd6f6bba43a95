"""``GET /metrics``, ``GET /healthz`` and ``GET /readyz`` for every fleetkeys service.

Metrics are Prometheus text format (version 0.0.4, :data:`CONTENT_TYPE`) made by ``prometheus_client``
and correct under several gunicorn workers:

* **Multiprocess mode.** :func:`serving.run_bounded` gives every server start a fresh private
  directory (:func:`multiprocess_directory`, mode 0700) in ``PROMETHEUS_MULTIPROC_DIR`` before any
  worker forks; each worker writes its counters and histograms to its own files there, and a scrape,
  answered by whichever worker, adds up all of them (``MultiProcessCollector``). A dead worker's
  counts stay (counters never go back); its live-gauge files are removed when the master reaps it
  (:func:`worker_exited`, ``mark_process_dead``). The directory is deleted when the server stops, so
  counters start at zero with each start, as Prometheus expects of a restarted target.
* **Import order.** ``prometheus_client`` decides at its first import whether it is in multiprocess
  mode, and the master may have imported it before the variable was set (``fleetkeys serve`` opens
  the log once before serving). So nothing here imports it at module level, :func:`_multiprocess`
  makes it choose again once the variable is set, and the metrics are created once per process *and
  mode* (:func:`counter`, :func:`histogram`, :func:`gauge`): a worker never reuses an object the
  master made before the fork. Without the variable (an app made in a test, ``flask run``) the same
  metrics live in one process-local registry.
* **State, not events, is read at scrape time.** Tree sizes, checkpoint and cosignature ages and
  witness lags belong to the shared database or state store, not to one worker: the service passes a
  function that reads them when scraped (:class:`StateCollector`), so every worker and replica
  reports the same truth and no gauge can be left stale by a worker that stopped updating it. The
  only process gauge is ``fleetkeys_workers`` (``livesum``: the live workers that finished start-up).

Labels are bounded: the route is the Flask URL rule (``/api/v1/bundles/<epoch>``, never the path
asked), ``unmatched`` when no rule matched; the other labels are fixed codes or configured names. No
label or value is taken from a header, a token, a body or a query string.

This module imports no project package (``tests/test_boundaries.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, jsonify, request

#: The variable ``prometheus_client`` reads to choose multiprocess mode (and where its files go).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The Prometheus text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The label of a request no URL rule matched (404, 405): the raw path is never a label.
UNMATCHED = "unmatched"
#: Buckets of the write-latency histograms (seconds): an fsync'd commit to a slow witness exchange.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


# -- the multiprocess directory (the master, serving/__init__.py) ---------------------------------------
@contextlib.contextmanager
def multiprocess_directory(name: str) -> Iterator[str]:
    """A fresh private directory in ``PROMETHEUS_MULTIPROC_DIR`` for one server run, removed after.

    A directory left by an earlier run (or set by the environment) is never reused: its files would
    add the old run's counts to this one's."""
    path = tempfile.mkdtemp(prefix=f"{name}-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """The master reaped worker ``pid``: drop its live gauges (its counters stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# -- metrics (created in the worker) --------------------------------------------------------------------
def _multiprocess() -> bool:
    if not os.environ.get(MULTIPROC_ENV):
        return False
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:  # imported before the variable was set: choose again
        values.ValueClass = values.get_value_class()
    return True


@functools.cache
def _local_registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry(auto_describe=True)


def _registry() -> Any:
    return None if _multiprocess() else _local_registry()


def _mode() -> tuple[int, str | None]:
    """What a metric object is valid for: this process in this mode (a fork or a new directory: anew)."""
    return os.getpid(), os.environ.get(MULTIPROC_ENV)


class _Guarded:
    """A metric (or one labelled child of it) whose updates never fail the request that makes them.

    In multiprocess mode each update writes a memory-mapped file in ``PROMETHEUS_MULTIPROC_DIR``; a
    worker still finishing a request while the server stops may find that directory gone (the master
    removes it). Losing that last count is right; answering 500 for a committed signature is not.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def labels(self, *values: str) -> _Guarded:
        try:
            return _Guarded(self._inner.labels(*values))
        except OSError:
            return _Guarded(None)

    def _update(self, method: str, *args: float) -> None:
        if self._inner is not None:
            with contextlib.suppress(OSError):
                getattr(self._inner, method)(*args)

    def inc(self, amount: float = 1) -> None:
        self._update("inc", amount)

    def set(self, value: float) -> None:
        self._update("set", value)

    def observe(self, value: float) -> None:
        self._update("observe", value)


@functools.cache
def _metric(kind: str, name: str, documentation: str, labelnames: tuple[str, ...], mode: tuple[int, str | None],
            **options: Any) -> _Guarded:
    import prometheus_client

    return _Guarded(getattr(prometheus_client, kind)(name, documentation, labelnames, registry=_registry(),
                                                     **options))


def counter(name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Any:
    """This process's counter ``name`` (the exposition adds ``_total``)."""
    return _metric("Counter", name, documentation, labelnames, _mode())


def histogram(name: str, documentation: str, labelnames: tuple[str, ...] = (),
              buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Any:
    return _metric("Histogram", name, documentation, labelnames, _mode(), buckets=buckets)


def gauge(name: str, documentation: str, labelnames: tuple[str, ...] = (), multiprocess_mode: str = "livesum") -> Any:
    """A process gauge, added up over the workers by ``multiprocess_mode`` (``livesum``: live workers only)."""
    return _metric("Gauge", name, documentation, labelnames, _mode(), multiprocess_mode=multiprocess_mode)


def storage_errors() -> Any:
    """``fleetkeys_storage_errors_total{service, kind}``: every service counts its storage failures here."""
    return counter("fleetkeys_storage_errors", "Storage failures met, by service and kind (the error class "
                   "or code).", ("service", "kind"))


# -- state read at scrape time ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One gauge value read at scrape time: ``name`` (a family), its help text, labels and value."""

    name: str
    documentation: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(eq=False)  # registered in a registry: hashed by identity
class StateCollector:
    """A collector that calls ``read`` at each scrape and exposes what it returns as gauges, plus
    ``fleetkeys_state_read_ok{service}`` (0 when ``read`` raised: the store could not be read)."""

    service: str
    read: Callable[[], Iterable[Sample]]

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            samples = list(self.read())
            ok = 1.0
        except Exception:  # noqa: BLE001 - a scrape must answer; the failure is the 0 below
            samples, ok = [], 0.0
        families: dict[str, Any] = {}
        for s in samples:
            fam = families.get(s.name)
            if fam is None:
                fam = families[s.name] = GaugeMetricFamily(s.name, s.documentation, labels=[k for k, _ in s.labels])
            fam.add_metric([v for _, v in s.labels], s.value)
        yield from families.values()
        up = GaugeMetricFamily("fleetkeys_state_read_ok", "1 when this scrape could read the service's state.",
                               labels=["service"])
        up.add_metric([self.service], ok)
        yield up


class _Forward:
    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


def render(collectors: Sequence[Any] = ()) -> bytes:
    """The exposition of this server's metrics (every worker's) and of ``collectors``."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    if _multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(_local_registry()))
    for c in collectors:
        registry.register(c)
    return generate_latest(registry)


def metrics_response(collectors: Sequence[Any] = ()) -> Response:
    resp = Response(render(collectors), content_type=CONTENT_TYPE)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- request instrumentation --------------------------------------------------------------------------------
def route_of() -> str:
    """The Flask URL rule of the current request, or :data:`UNMATCHED`."""
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def instrument(app: Flask, service: str, *, timed: Iterable[str] = ()) -> None:
    """Count every answer of ``app`` by route, method and status; time the writes (not GET or HEAD) to
    the routes in ``timed`` in ``fleetkeys_http_request_duration_seconds``; mark this worker live."""
    requests = counter("fleetkeys_http_requests", "HTTP answers by service, route (the URL rule), method and "
                       "status.", ("service", "route", "method", "status"))
    duration = histogram("fleetkeys_http_request_duration_seconds", "Seconds to answer a write request "
                         "(publish, sign, add-checkpoint), by service and route.", ("service", "route"))
    timed_routes = frozenset(timed)

    def started() -> None:
        g.fleetkeys_started = time.perf_counter()

    def answered(resp: Response) -> Response:
        route = route_of()
        requests.labels(service, route, request.method, str(resp.status_code)).inc()
        begun = g.get("fleetkeys_started")
        if route in timed_routes and begun is not None and request.method not in ("GET", "HEAD"):
            duration.labels(service, route).observe(time.perf_counter() - begun)
        return resp

    app.before_request_funcs.setdefault(None, []).insert(0, started)  # before any check that may refuse
    app.after_request(answered)
    gauge("fleetkeys_workers", "Worker processes that finished start-up, by service.", ("service",)).labels(
        service).set(1)


# -- health and readiness --------------------------------------------------------------------------------------
class NotReady(Exception):
    """A readiness check failed; the message (fixed, for the probe) says why."""


@dataclass(frozen=True)
class Check:
    """A named readiness check: ``run`` returns a short detail or raises :class:`NotReady`."""

    name: str
    run: Callable[[], str]


def health_payload(service: str) -> dict[str, Any]:
    return {"alive": True, "service": service}


def readiness(service: str, checks: Sequence[Check]) -> tuple[dict[str, Any], str | None]:
    """Run ``checks`` in order: ``({"ready", "service", "checks": [{"name", "ok", "detail"}]}, None)``,
    or that and the error message naming each failing check (``not ready: witnesses: ...``). Any other
    exception than :class:`NotReady` fails its check with the exception's class name only (its message
    may name a file or a database URL)."""
    results = []
    for check in checks:
        try:
            results.append({"name": check.name, "ok": True, "detail": check.run()})
        except NotReady as exc:
            results.append({"name": check.name, "ok": False, "detail": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a probe must answer
            results.append({"name": check.name, "ok": False, "detail": f"failed ({type(exc).__name__})"})
    failing = [r for r in results if not r["ok"]]
    error = "not ready: " + "; ".join(f"{r['name']}: {r['detail']}" for r in failing) if failing else None
    return {"ready": not failing, "service": service, "checks": results}, error


def readiness_response(service: str, checks: Sequence[Check], **error_fields: Any) -> Response:
    """200 with every check; or 503 in the service's own error shape, ``{"error": "not ready: <check>:
    <why>; ..."}`` plus ``error_fields`` (the signer's and witness's ``code`` and ``status``), with
    ``Retry-After: 5``. Never cached."""
    payload, error = readiness(service, checks)
    resp = jsonify(payload if error is None else {"error": error, **error_fields})
    resp.status_code = 200 if error is None else 503
    resp.headers["Cache-Control"] = "no-store"
    if error is not None:
        resp.headers["Retry-After"] = "5"
    return resp


def health_response(service: str) -> Response:
    resp = jsonify(health_payload(service))
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- a separate metrics listener (the signer) ----------------------------------------------------------------------
def metrics_listener(app: Any, port: int, metrics: Callable[[], bytes], *,
                     also: frozenset[str] = frozenset({"/healthz", "/readyz"})) -> Callable[..., Any]:
    """WSGI: on the listener bound to ``port`` (``SERVER_PORT``, the socket's own port), answer
    ``GET /metrics`` with ``metrics()`` and pass only ``also`` to ``app``; on every other listener,
    ``/metrics`` does not exist (``app`` answers it: 404)."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if str(environ.get("SERVER_PORT")) != str(port):
            return app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        if path in also:
            return app(environ, start_response)
        if path == "/metrics" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            body = metrics()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                                      ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
            return [body]
        body = b'{"error": "the metrics listener serves only /metrics, /healthz and /readyz"}\n'
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                         ("X-Content-Type-Options", "nosniff")])
        return [body]

    return wsgi


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "UNMATCHED",
    "Check",
    "NotReady",
    "Sample",
    "StateCollector",
    "counter",
    "gauge",
    "health_response",
    "histogram",
    "instrument",
    "metrics_listener",
    "metrics_response",
    "multiprocess_directory",
    "readiness",
    "readiness_response",
    "render",
    "route_of",
    "storage_errors",
    "worker_exited",
]
