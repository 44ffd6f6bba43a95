"""Run the distributor under gunicorn (a pre-fork WSGI server), in-process.

Each worker builds its own app with :func:`distributor.app.create_app` after the fork (no
``--preload``): database connections, PKCS#11 sessions and threads never cross a fork. Workers are
:class:`serving.buffering.BufferingWorker` workers: each reads whole requests on one event loop
(header and body deadlines, the distributor's body limit, per-address caps) before one of its
``threads`` runs the app, so clients that send slowly hold no thread (HTTP keep-alive as before).
After a worker boots it starts its static refresher (one of all workers wins the lock and keeps the
static checkpoint fresh); when it exits it drains its static writer and closes its connections.

Stopping: :class:`serving.BoundedStopArbiter` (SIGTERM: in-flight requests get up to
:data:`serving.GRACEFUL_TIMEOUT` s, then a busy worker is killed — a publish that did not COMMIT is
then not appended: the append is one database transaction; gone within :data:`serving.STOP_BOUND` s;
a second signal stops at once; the last log line says how).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gunicorn.app.base import BaseApplication

from serving import GRACEFUL_TIMEOUT, QUICK_TIMEOUT, STOP_BOUND, run_bounded
from serving.buffering import Limits, worker_class
from serving.logs import JsonLogger, RequestIds

from .app import create_app, get_service
from .config import Config


def _post_worker_init(worker: Any) -> None:
    get_service(worker.wsgi).start_background()


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    if app is not None:
        get_service(app).close()


class DistributorServer(BaseApplication):
    """gunicorn application whose workers each run ``create_app(config)``."""

    def __init__(self, config: Mapping[str, Any] | Config, options: Mapping[str, Any]) -> None:
        self.app_config = config
        self.options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key == "control_socket_disable" and key not in self.cfg.settings:
                continue  # gunicorn < 25.1 has no control socket
            self.cfg.set(key, value)

    def load(self) -> Any:
        return RequestIds(create_app(self.app_config))

    def run(self) -> None:
        run_bounded(self)


def serve(config: Mapping[str, Any] | Config, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 2,
          threads: int = 4, access_log: bool = False, limits: Limits | None = None) -> None:
    """Serve until SIGTERM/SIGINT (see the module docstring). A worker that cannot start (bad keys,
    damaged log) stops the server."""
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": worker_class(limits or Limits(max_body=Config.from_mapping(config).max_body)),
        "threads": threads,
        "keepalive": 5,
        "timeout": 60,
        "graceful_timeout": GRACEFUL_TIMEOUT,  # the workers' own wait for their connections
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "logger_class": JsonLogger,
        "loglevel": "info",
        "proc_name": "fleetkeys-distributor",
        # gunicorn's runtime control socket is one fixed path per user: several servers would fight over it.
        "control_socket_disable": True,
    }
    DistributorServer(config, options).run()


__all__ = ["GRACEFUL_TIMEOUT", "QUICK_TIMEOUT", "STOP_BOUND", "DistributorServer", "serve"]
