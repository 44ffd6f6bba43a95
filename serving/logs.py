"""Structured logs for every fleetkeys service: one JSON object per line, each request under one id.

Three pieces, wired by each service's ``server.py``:

* :class:`RequestIds`, a WSGI middleware around the app: it takes the request's id from
  ``X-Request-Id`` when that is a sane token (:data:`REQUEST_ID`: 1 to 64 characters of
  ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit), else generates one (32 hex digits);
  puts it in ``environ["fleetkeys.request_id"]`` and, while the app runs, in the context every log
  record made in that thread reads; and echoes it in the response's ``X-Request-Id``.
* :class:`JsonFormatter`, for every record. Always ``time`` (RFC 3339, UTC, milliseconds), ``level``,
  ``logger``, ``message``; ``request_id`` for a record made while the app handles a request;
  ``exception`` (the formatted traceback) when there is one; the access log's fields (below).
* :class:`JsonLogger`, gunicorn's ``logger_class``: gunicorn's error log (master and workers) and access
  log use :class:`JsonFormatter`, and so do the application's records (one handler on the root logger,
  writing to standard error like the error log; the ``fleetkeys`` loggers at the error log's level).

An access line (``logger`` ``gunicorn.access``, written when the service runs with ``--access-log``)::

    {"time": "2026-05-01T12:00:00.123Z", "level": "INFO", "logger": "gunicorn.access",
     "message": "GET /checkpoint 200", "request_id": "4f3c...", "method": "GET", "path": "/checkpoint",
     "route": "/checkpoint", "query": ["limit"], "status": 200, "bytes": 412, "duration_ms": 1.93,
     "client": "127.0.0.1"}

(one line in the log). What it never holds, because secrets travel there: a header (the bearer
token), the body, a query value — ``query`` lists only the parameter names, and a name that does not
look like one (:data:`QUERY_NAME`: a letter, then at most 31 of ``A-Z a-z 0-9 . _ -``) is logged as
``"?"``, so that a bare ``?<secret>`` stays out too; at most :data:`MAX_QUERY_NAMES` names. ``path`` is
the decoded path (no query); ``route`` the app's URL rule that matched, when a Flask app matched one.
A message is the application's own text: code that puts a secret in a message or an exception puts
it in the log, so the services never do (``tests/ops/test_logs.py`` greps every log for them).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from gunicorn import glogging

#: The request id a client may send (and every response carries).
HEADER = "X-Request-Id"
#: What a client's request id must be to be kept; anything else is replaced by a generated one.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
#: What a query parameter's name must be to be logged as itself (else ``"?"``).
QUERY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}")
#: Query parameter names logged per request, at most.
MAX_QUERY_NAMES = 16
#: The WSGI environ key holding the request's id.
ENVIRON_KEY = "fleetkeys.request_id"
#: The WSGI environ key holding the URL rule the app matched (set by :class:`RequestIds`).
ROUTE_KEY = "fleetkeys.route"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fleetkeys_request_id", default=None)
_FIELDS = "fleetkeys_fields"  # the attribute of a record carrying the access log's fields


def request_id(sent: str | None) -> str:
    """``sent`` (a client's ``X-Request-Id``) if it is a sane token (:data:`REQUEST_ID`), else a new one."""
    if sent is not None and REQUEST_ID.fullmatch(sent):
        return sent
    return secrets.token_hex(16)


def query_names(query: str) -> list[str]:
    """The parameter names of a query string, never its values (module docstring)."""
    names = []
    for pair in query.split("&"):
        if not pair:
            continue
        if len(names) == MAX_QUERY_NAMES:
            names.append("…")
            break
        name = pair.split("=", 1)[0]
        names.append(name if "=" in pair and QUERY_NAME.fullmatch(name) else "?")
    return names


class _Body:
    """The app's response body; when it is closed, the thread's log records stop carrying the id."""

    def __init__(self, body: Iterable[bytes], token: contextvars.Token) -> None:
        self.body, self.token = body, token

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            _request_id.reset(self.token)


class RequestIds:
    """WSGI middleware: every request gets an id, its log records carry it, its response echoes it.

    The wrapped app's attributes show through (a server's worker hooks read ``worker.wsgi.extensions``).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        rid = environ[ENVIRON_KEY] = request_id(environ.get("HTTP_X_REQUEST_ID"))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Flask's request (and the URL rule it matched) is in the environ until the request ends.
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            if rule is not None:
                environ[ROUTE_KEY] = rule.rule
            headers = [(k, v) for k, v in headers if k.lower() != HEADER.lower()] + [(HEADER, rid)]
            return start_response(status, headers, exc_info)

        token = _request_id.set(rid)
        try:
            return _Body(self.app(environ, start), token)
        except BaseException:
            _request_id.reset(token)
            raise


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, _FIELDS, None)
        rid = fields.get("request_id") if fields else _request_id.get()
        if rid is not None:
            out["request_id"] = rid
        if fields:
            out.update((k, v) for k, v in fields.items() if k != "request_id")
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class JsonLogger(glogging.Logger):
    """gunicorn's logger with every line (error log, access log, the app's records) a JSON object."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = JsonFormatter()
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(formatter)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_fleetkeys", False)]:
            root.removeHandler(handler)
        app_handler = logging.StreamHandler(sys.stderr)
        app_handler._fleetkeys = True  # type: ignore[attr-defined]  # ours: replaced on the next setup
        app_handler.setFormatter(formatter)
        root.addHandler(app_handler)
        logging.getLogger("fleetkeys").setLevel(self.loglevel)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        status = int(str(resp.status).split(None, 1)[0])
        method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "")
        fields = {
            "request_id": environ.get(ENVIRON_KEY),
            "method": method,
            "path": path,
            "route": environ.get(ROUTE_KEY),
            "query": query_names(environ.get("QUERY_STRING", "")),
            "status": status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time / timedelta(milliseconds=1), 3),
            "client": environ.get("REMOTE_ADDR"),
        }
        self.access_log.info("%s %s %d", method, path, status, extra={_FIELDS: fields})


__all__ = ["ENVIRON_KEY", "HEADER", "MAX_QUERY_NAMES", "QUERY_NAME", "REQUEST_ID", "ROUTE_KEY", "JsonFormatter",
           "JsonLogger", "RequestIds", "query_names", "request_id"]
