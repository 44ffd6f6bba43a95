"""Reading a request body under a size bound: one rule for every service's app (Flask ``request``).

:func:`read_body` returns the body, at most ``limit`` bytes, or raises :class:`BodyTooLarge` (a
declared ``Content-Length`` over the limit, refused unread; or a chunked body growing past it) or
:class:`BodyUnreadable` (whatever the server's input stream raised: malformed chunked encoding, a
body shorter than its ``Content-Length``). Each app turns them into its own refusal (413 / 400).
A body with neither a length nor a server that frames it is empty: nothing else is safe to read.
"""

from __future__ import annotations

import logging

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

log = logging.getLogger("fleetkeys.serving")


class BodyTooLarge(Exception):
    """The body is larger than the bound (the message says by how much, as far as it is known)."""


class BodyUnreadable(Exception):
    """The server could not deliver the body."""


def read_body(limit: int) -> bytes:
    """This request's body, at most ``limit`` bytes (module docstring). werkzeug's own
    :class:`~werkzeug.exceptions.RequestEntityTooLarge` (an app's ``MAX_CONTENT_LENGTH``) passes through."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(f"request body of {length} bytes exceeds {limit}")
    try:
        if length is not None:
            return request.get_data(cache=False)
        if not request.environ.get("wsgi.input_terminated"):
            return b""
        # Chunked: read one byte past the limit ourselves (werkzeug's own limit silently truncates).
        data = request.environ["wsgi.input"].read(limit + 1)
    except RequestEntityTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the server's input stream raises: unreadable body
        log.info("unreadable request body on %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
        raise BodyUnreadable("the request body could not be read (malformed chunked encoding, or shorter than "
                             "its Content-Length)") from None
    if len(data) > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes")
    return data


__all__ = ["BodyTooLarge", "BodyUnreadable", "read_body"]
