"""The one HTTP helper of the project: a capped, deadline-bounded, retrying request over the stdlib.

Every response is untrusted: this module only moves bytes, under rules a hostile server or CDN
cannot bend.

* **One deadline per attempt** (``timeout`` seconds) covers connect, sending, the response headers
  and the body: a watchdog shuts the socket down when it passes, so a server dripping its headers
  or body one byte at a time is cut off (a per-read socket timeout alone would never fire).
* **Byte caps**: a declared ``Content-Length`` over ``limit`` is refused unread; a body growing
  past it is cut off (:class:`~verifier.errors.SizeLimitError`).
* **Redirects** are followed (at most :data:`MAX_REDIRECTS`) only to an origin in
  ``allowed_origins`` (by default the request's own origin) and never from ``https`` to ``http``.
* **Retries**: connection failures, deadlines, 5xx and 429 are retried ``retries`` times with
  jittered exponential backoff (``sleep`` is injectable); other statuses are returned as they are.
* **No server text unsanitised**: :func:`sanitize` escapes control characters and caps the length of
  anything a server said before it reaches a message, a log line or a terminal.

Errors: :class:`~verifier.errors.FetchError` (unreachable, deadline, refused redirect, retries used
up) and :class:`~verifier.errors.SizeLimitError`. Nothing here parses a body.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import FetchError, SizeLimitError

#: Redirects followed per request (each to an allowed origin only).
MAX_REDIRECTS = 5
#: Characters of server text kept by :func:`sanitize`.
MAX_SERVER_TEXT = 200
#: Statuses worth another attempt (the server may answer next time).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Bytes of an error (non-2xx) body read: enough for a JSON reason, never more.
MAX_ERROR_BODY = 4096
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


def sanitize(text: bytes | str, limit: int = MAX_SERVER_TEXT) -> str:
    """Server text made safe to print: control characters (also DEL, C1, line and paragraph
    separators) escaped as ``\\xNN``/``\\uNNNN``, cut to ``limit`` characters with a marker."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = []
    for ch in text[:limit]:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or o in (0x2028, 0x2029) or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(text) > limit else "")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased, default port omitted (ValueError otherwise)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {sanitize(url)}")
    port = parts.port
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{parts.hostname.lower()}" + (f":{port}" if port and port != default else "")


@dataclass(frozen=True)
class HttpResponse:
    """A complete response: status, headers (names lower-cased), the capped body, and the final URL."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def reason(self) -> str:
        """A printable one-line summary of the body (a JSON ``error`` field when there is one)."""
        import json

        try:
            obj = json.loads(self.body[:4096])
            if isinstance(obj, dict) and isinstance(obj.get("error"), str):
                return sanitize(obj["error"])
        except ValueError:
            pass
        return sanitize(self.body.strip()) or "(empty body)"


#: One attempt: ``(method, url, limit, body, headers, timeout) -> HttpResponse``, raising FetchError or
#: SizeLimitError. The default opens a socket; the attack suite's simulator injects its own.
Transport = Callable[[str, str, int, "bytes | None", "Mapping[str, str] | None", float], HttpResponse]


def read_body(url: str, status: int, content_length: str | None, read1: Callable[[int], bytes], limit: int,
              deadline: float) -> bytes:
    """Read a response body under the byte cap and the deadline (``time.monotonic()`` value).

    A 2xx body over ``limit`` is refused (:class:`SizeLimitError`: a declared length unread, an
    undeclared one cut off); any other status's body is only a reason for a message, so it is read to
    at most :data:`MAX_ERROR_BODY` bytes and truncated silently. ``read1`` returns what has arrived,
    so a server sending one byte at a time still meets the deadline check (:class:`FetchError`).
    """
    if not 200 <= status < 300:
        limit = min(limit, MAX_ERROR_BODY)
    elif content_length is not None and content_length.isascii() and content_length.strip().isdigit() \
            and int(content_length) > limit:
        raise SizeLimitError(f"GET {sanitize(url)}: response of {content_length.strip()} bytes exceeds the "
                             f"{limit}-byte cap")
    data = bytearray()
    while chunk := read1(min(_CHUNK, limit + 1 - len(data))):
        data += chunk
        if len(data) > limit:
            if not 200 <= status < 300:
                return bytes(data[:limit])
            raise SizeLimitError(f"GET {sanitize(url)}: response exceeds the {limit}-byte cap (cut off)")
        if time.monotonic() > deadline:
            raise FetchError(f"GET {sanitize(url)}: no complete response before the deadline")
    return bytes(data)


class _Watchdog:
    """Shuts a connection's socket down when the deadline passes (unblocks any pending read)."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class HttpClient:
    """Capped, deadline-bounded, retrying HTTP (see the module docstring). Thread-safe; keeps no
    connection between requests (each attempt is one fresh connection, closed at its end)."""

    def __init__(self, *, timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
                 allowed_origins: Sequence[str] = (), sleep: Callable[[float], None] = time.sleep,
                 ssl_context: ssl.SSLContext | None = None, user_agent: str = "fleetkeys",
                 transport: Transport | None = None) -> None:
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be positive, retries and backoff not negative")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.allowed_origins = frozenset(origin_of(o) for o in allowed_origins)
        self.sleep = sleep
        self._ssl = ssl_context
        self.user_agent = user_agent
        self._transport = transport or self._socket_transport

    def get(self, url: str, *, limit: int, headers: Mapping[str, str] | None = None) -> HttpResponse:
        return self.request("GET", url, limit=limit, headers=headers)

    def request(self, method: str, url: str, *, limit: int, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, retry: bool = True) -> HttpResponse:
        """Send one request, retrying transient failures when ``retry``; return the final response.

        Raises :class:`FetchError` when every attempt failed (the message names the URL and the
        last cause, sanitised) and :class:`SizeLimitError` for a body over ``limit`` (not retried).
        """
        attempts = self.retries + 1 if retry else 1
        last: str = "no attempt"
        for attempt in range(attempts):
            if attempt:
                self.sleep(self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))  # noqa: S311 - jitter
            try:
                resp = self._follow(method, url, limit, body, headers)
            except FetchError as exc:
                last = str(exc)
                continue
            if resp.status in RETRY_STATUSES and attempt + 1 < attempts:
                last = f"HTTP {resp.status}: {resp.reason()}"
                continue
            return resp
        raise FetchError(f"{method} {sanitize(url)}: {last}")

    def _follow(self, method: str, url: str, limit: int, body: bytes | None,
                headers: Mapping[str, str] | None) -> HttpResponse:
        allowed = self.allowed_origins or {origin_of(url)}
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._transport(method, url, limit, body, headers, self.timeout)
            if resp.status not in _REDIRECTS:
                return resp
            target = urllib.parse.urljoin(url, resp.headers.get("location", ""))
            try:
                dest = origin_of(target)
            except ValueError:
                raise FetchError(f"redirect to a non-http(s) URL {sanitize(target)} refused") from None
            if url.lower().startswith("https:") and not target.lower().startswith("https:"):
                raise FetchError(f"redirect from https to {sanitize(target)} refused (weaker scheme)")
            if dest not in allowed:
                raise FetchError(f"redirect to {sanitize(dest)} refused: not a configured origin")
            url = target
            if resp.status == 303:
                method, body = "GET", None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def _socket_transport(self, method: str, url: str, limit: int, body: bytes | None,
                          headers: Mapping[str, str] | None, timeout: float) -> HttpResponse:
        """One attempt over a fresh connection, under the watchdog's deadline and the byte cap."""
        parts = urllib.parse.urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            if parts.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    parts.hostname, parts.port, timeout=timeout, context=self._ssl or ssl.create_default_context())
            elif parts.scheme == "http":
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            else:
                raise FetchError(f"unsupported URL scheme in {sanitize(url)}")
        except ValueError as exc:
            raise FetchError(f"bad URL {sanitize(url)}: {sanitize(str(exc))}") from None
        send = {"User-Agent": self.user_agent, "Accept-Encoding": "identity", **(headers or {})}
        watchdog = _Watchdog(conn, timeout)
        try:
            with watchdog:
                try:
                    conn.request(method, path, body=body, headers=send)
                    raw = conn.getresponse()
                    data = read_body(url, raw.status, raw.getheader("Content-Length"), raw.read1, limit,
                                     time.monotonic() + timeout)
                    if watchdog.fired:
                        raise OSError("deadline")
                except (OSError, http.client.HTTPException) as exc:
                    if watchdog.fired:
                        raise FetchError(f"no complete response within {timeout} s") from None
                    raise FetchError(f"{type(exc).__name__}: {sanitize(str(exc))}") from None
        finally:
            conn.close()
        return HttpResponse(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data, url)


__all__ = [
    "MAX_ERROR_BODY",
    "MAX_REDIRECTS",
    "HttpClient",
    "HttpResponse",
    "Transport",
    "origin_of",
    "read_body",
    "sanitize",
]
