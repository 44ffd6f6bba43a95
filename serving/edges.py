"""The HTTP edges every service's app shares (Flask): one value per query parameter, and
``X-Content-Type-Options: nosniff`` on every answer; :data:`RETRY_AFTER`, the seconds a 503 asks for.

:func:`install` adds both to an app; ``refuse(reason)`` is the app's own 400 (each service keeps its
error shape).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, request

#: Seconds every service's 503 answers ask a client to wait (``Retry-After``).
RETRY_AFTER = 5


def install(app: Flask, refuse: Callable[[str], Exception]) -> None:
    """Refuse a repeated query parameter (``?limit=5&limit=100`` is ambiguous: which one did a cache
    or a proxy in front act on?) with ``refuse``; mark every answer ``nosniff``."""

    @app.before_request
    def one_value_per_parameter() -> None:
        for name, values in request.args.lists():
            if len(values) > 1:
                raise refuse(f"query parameter {name[:40]!r} is repeated")

    @app.after_request
    def nosniff(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


__all__ = ["RETRY_AFTER", "install"]
