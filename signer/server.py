"""Serve the signer app under gunicorn (pre-fork WSGI server), started from Python.

Workers are :class:`serving.buffering.BufferingWorker` workers: each reads whole requests on one event
loop (header and body deadlines, the signer's own body limit, per-address caps) before one of its
``threads`` runs the app, so clients that send slowly hold no thread (HTTP keep-alive as before; no
proxy is needed in front). The app is built in each worker after the fork (``preload_app`` is off),
so every worker loads its own key (PKCS#11 sessions do not survive a fork) and opens its own SQLite
connections; the journal's ``BEGIN IMMEDIATE`` transactions serialise signing across all of them.

Metrics: ``GET /metrics`` is served only on a second listener, ``metrics_host:metrics_port``
(127.0.0.1 by default, off unless a port is given), by the same workers; the API listener answers
``/metrics`` with 404. The signer is run by an independent third party whose API port faces the log
operator: its counters (refusals, who is refused how often) are the third party's to share, and a
listener bound to loopback needs no secret that could leak into a scrape configuration.

Stopping: :class:`serving.BoundedStopArbiter` (SIGTERM: in-flight requests get up to
:data:`serving.GRACEFUL_TIMEOUT` s, then a busy worker is killed — a signature whose journal
transaction did not COMMIT is then not recorded, and was not returned; gone within
:data:`serving.STOP_BOUND` s; a second signal stops at once; the last log line says how).
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from serving import GRACEFUL_TIMEOUT, QUICK_TIMEOUT, STOP_BOUND, run_bounded
from serving.buffering import Limits, worker_class
from serving.logs import JsonLogger, RequestIds
from serving.metrics import metrics_listener, render

from .app import create_app
from .config import SignerConfig


class SignerServer(BaseApplication):
    """A gunicorn application serving :func:`signer.app.create_app` for one configuration."""

    def __init__(self, config: SignerConfig, *, host: str = "127.0.0.1", port: int = 8090, workers: int = 1,
                 threads: int = 4, access_log: bool = False, timeout: int = 30, limits: Limits | None = None,
                 metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> None:
        self._config = config
        self._metrics_port = metrics_port
        binds = [(host, port)] + ([(metrics_host, metrics_port)] if metrics_port is not None else [])
        self._options: dict[str, Any] = {
            "bind": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in binds],
            "workers": workers,
            "worker_class": worker_class(limits or Limits(max_body=config.max_body)),
            "threads": threads,
            "timeout": timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,  # the workers' own wait for their connections
            "keepalive": 5,
            "preload_app": False,
            "accesslog": "-" if access_log else None,
            "errorlog": "-",
            "logger_class": JsonLogger,
            "loglevel": "info",
            "proc_name": "fleetkeys-signer",
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = RequestIds(create_app(self._config))
        return app if self._metrics_port is None else metrics_listener(app, self._metrics_port, render)

    def run(self) -> None:
        run_bounded(self)


__all__ = ["GRACEFUL_TIMEOUT", "QUICK_TIMEOUT", "STOP_BOUND", "SignerServer"]
