"""Serve the witness app under gunicorn (pre-fork WSGI server), started from Python.

Workers are :class:`serving.buffering.BufferingWorker` workers (HTTP keep-alive, which
c2sp.org/tlog-witness asks witnesses to support): each reads whole requests on one event loop (header
and body deadlines, the witness's body limit, per-address caps) before one of its ``threads`` runs the
app, so clients that send slowly hold no thread; its refusals on ``/add-checkpoint`` are one line of
text, as the app's. The app is built in each worker after the fork
(``preload_app`` is off), so every worker loads its own key (PKCS#11 sessions do not survive a fork)
and opens its own SQLite connections; the state's ``BEGIN IMMEDIATE`` transactions serialise the
check-and-update of every request across all of them.

Stopping: :class:`serving.BoundedStopArbiter`, as the other services (SIGTERM: in-flight requests get
up to :data:`serving.GRACEFUL_TIMEOUT` s — a request whose transaction did not COMMIT cosigned
nothing and changed no state; gone within :data:`serving.STOP_BOUND` s; a second signal stops at
once; the last log line says how).
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from serving import GRACEFUL_TIMEOUT, run_bounded
from serving.buffering import Limits, worker_class
from serving.logs import JsonLogger, RequestIds

from .app import create_app, get_witness
from .config import WitnessConfig


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    if app is not None:
        get_witness(app).state.close()


class WitnessServer(BaseApplication):
    """A gunicorn application serving :func:`witness.app.create_app` for one configuration."""

    def __init__(self, config: WitnessConfig, *, host: str = "127.0.0.1", port: int = 8095, workers: int = 1,
                 threads: int = 4, access_log: bool = False, timeout: int = 30, limits: Limits | None = None) -> None:
        self._config = config
        limits = limits or Limits(max_body=config.max_body, text_paths=frozenset({"/add-checkpoint"}))
        self._options: dict[str, Any] = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": workers,
            "worker_class": worker_class(limits),
            "threads": threads,
            "timeout": timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,  # the workers' own wait for their connections
            "keepalive": 5,
            "preload_app": False,
            "worker_exit": _worker_exit,
            "accesslog": "-" if access_log else None,
            "errorlog": "-",
            "logger_class": JsonLogger,
            "loglevel": "info",
            "proc_name": "fleetkeys-witness",
            # gunicorn's runtime control socket is one fixed path per user: several servers would fight over it.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key not in self.cfg.settings:
                continue  # e.g. control_socket_disable before gunicorn 25.1
            self.cfg.set(key, value)

    def load(self) -> Any:
        return RequestIds(create_app(self._config))

    def run(self) -> None:
        run_bounded(self)


__all__ = ["WitnessServer"]
