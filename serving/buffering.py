"""A gunicorn worker that reads each whole request before a thread runs the app: slow clients hold no thread.

gunicorn's ``gthread`` worker gives a connection a thread as soon as its first bytes arrive, and the
thread then blocks until the request is complete: a handful of clients that send their headers a
partial line at a time take every thread of a worker. :class:`BufferingWorker` instead runs one
asyncio event loop per worker process that owns every connection: it parses HTTP/1.1 with ``h11``
(strict, sans-I/O), buffers the request line, headers and body in memory under the bounds of
:class:`Limits`, and only then hands the complete request to the WSGI app in a pool of
``--threads`` threads. The app's response is collected by that thread and written by the loop, so a
client that reads slowly holds no thread either. The master stays gunicorn's
(:class:`serving.BoundedStopArbiter`): several worker processes, heartbeats, restarts.

Per connection, in this order:

1. **Caps.** A worker holds at most ``max_connections`` connections, and at most ``max_per_ip`` from
   one client address; one more is answered ``503`` with ``Retry-After`` and closed.
2. **Header deadline.** The request line and headers must be complete within ``header_timeout``
   seconds of the connection's start (the first request) or of the request's first byte (a later
   request on a kept-alive connection, which may first wait ``keepalive`` seconds idle). At most
   ``max_header`` bytes: beyond, ``431``. Malformed: ``400``; so is a request with both
   ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112 §6.3: its length is ambiguous, the way
   requests are smuggled past a proxy; h11 alone would read it as chunked and keep the connection).
   Too late: ``408``.
3. **Body deadline.** The body (``Content-Length`` or chunked) must be complete within
   ``body_timeout`` seconds of the end of the headers, and be at most ``max_body`` bytes (the
   service's own limit): a ``Content-Length`` over it is ``413`` before any body byte is read (and
   before ``100 Continue``); a chunked body as soon as the chunk sizes it has announced add up to
   more, on the chunk-size line that crosses it (:class:`_ChunkSizes`), and a chunk-size line that is
   not ``1*20HEXDIG [";" chunk-ext] CRLF`` is ``400`` on its first wrong byte. Too late: ``408``.
   A client that half-closes its side before its request is complete (a body shorter than its
   ``Content-Length``) is answered ``400`` at once.
4. **The app** runs in a thread with the body as ``wsgi.input`` (``CONTENT_LENGTH`` set, also for a
   chunked body, which it receives de-chunked). ``RAW_URI`` and ``REQUEST_URI`` are the request target
   exactly as sent, ``PATH_INFO`` its path percent-decoded, ``QUERY_STRING`` its query as sent (the
   bytes decoded as latin-1, PEP 3333; an absolute-form target without its scheme and authority).
5. **The response** is written with keep-alive (HTTP/1.1) unless the worker is stopping; it must
   drain within ``send_timeout`` seconds, else the connection is dropped.

The server's own refusals are JSON ``{"error": reason, "code": code, "status": status}`` with
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff`` (one line of text for the
``text_paths`` of a text protocol such as c2sp.org/tlog-witness), then the connection is closed
(after a short linger, so that the client reads the answer). A connection closed, or idle past its
deadline, before it sent a byte of a request is closed without an answer.

Stopping (SIGTERM; the master's bound and log line are :mod:`serving`'s): the worker stops accepting,
closes idle kept-alive connections (after at most :data:`STOP_LINGER` s, for a request already on its
way), lets every request it has begun receiving finish under its deadlines, capped at
``graceful_timeout - 1`` s after the signal, lets the app finish every request it holds, answers them
with ``Connection: close``, and exits when no connection is left. SIGINT or SIGQUIT: every connection
is dropped at once; a request still in the app holds the process until the master kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import h11
from gunicorn.workers.base import Worker

#: Seconds for the request line and headers (from the connection's start, or the request's first byte).
HEADER_TIMEOUT = 10.0
#: Seconds for the whole body, from the end of the headers.
BODY_TIMEOUT = 20.0
#: Seconds for a response to drain to the client.
SEND_TIMEOUT = 30.0
#: Bytes of request line and headers together.
MAX_HEADER = 16384
#: Connections from one client address, per worker process.
MAX_PER_IP = 256
#: Seconds a stopping worker keeps an idle kept-alive connection open (a request may be on its way).
STOP_LINGER = 2.0
#: Seconds a refused connection stays half-open so that the client reads the answer before the close.
CLOSE_LINGER = 2.0
_READ = 65536


@dataclass(frozen=True)
class Limits:
    """What one service allows a connection (module docstring, steps 1-5)."""

    max_body: int
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    send_timeout: float = SEND_TIMEOUT
    max_header: int = MAX_HEADER
    max_per_ip: int = MAX_PER_IP
    #: Paths whose refusals are one line of ``text/plain`` instead of JSON.
    text_paths: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_body < 0 or self.max_header < 1024 or self.max_per_ip < 1:
            raise ValueError(f"unusable limits: {self}")
        if min(self.header_timeout, self.body_timeout, self.send_timeout) <= 0:
            raise ValueError(f"timeouts must be positive: {self}")


class _Refusal(Exception):
    """The server's own answer to a request it will not pass to the app; the connection closes after it."""

    def __init__(self, status: int, code: str, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.headers = status, code, reason, list(headers)


class _Silent(Exception):
    """The connection ends without an answer: the client closed it, or left it idle past its deadline,
    before it sent a byte of a request."""


class _ChunkSizes:
    """Reads a chunked body's framing (RFC 9112 §7.1) ahead of h11, to judge each chunk-size line as its
    bytes arrive rather than once its chunk has (h11 waits for the chunk's data, and exposes no size).

    ``chunked-body = *chunk last-chunk trailer-section CRLF``, ``chunk = chunk-size [chunk-ext] CRLF
    chunk-data CRLF``, ``chunk-size = 1*HEXDIG`` (at most 20 digits, as h11), ``chunk-ext = ";" ...``
    up to the CRLF. :meth:`feed` raises a ``413`` on the digit that makes the sizes announced so far add
    up to more than ``max_body``, and a ``400`` on the first byte a chunk-size line cannot have. h11
    still parses and checks every byte (the chunk data's CRLF, the extensions, the trailers); this
    follows only the sizes and stops at the last chunk.
    """

    _HEX = b"0123456789abcdefABCDEF"

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.announced = 0  # the sizes of the chunks before the current one, added up
        self.state = "size"  # size | ext | lf (after a size line's CR) | data | done
        self.digits = b""  # of the current chunk-size line
        self.left = 0  # chunk-data and its CRLF still to skip

    def feed(self, data: bytes) -> None:
        at = 0
        while at < len(data) and self.state != "done":
            if self.state == "data":
                skip = min(self.left, len(data) - at)
                self.left -= skip
                at += skip
                if not self.left:
                    self.state = "size"
                continue
            if self.state == "ext":
                cr = data.find(b"\r", at)
                if cr < 0:
                    return
                at, self.state = cr + 1, "lf"
                continue
            byte = data[at:at + 1]
            at += 1
            if self.state == "lf":
                if byte != b"\n":
                    raise self._malformed(f"{byte!r} after its CR")
                size = int(self.digits, 16)
                self.announced += size
                self.digits, self.left = b"", size + 2
                self.state = "data" if size else "done"
            elif byte in self._HEX:
                self.digits += byte
                if len(self.digits) > 20:
                    raise self._malformed("over 20 hex digits")
                if self.announced + int(self.digits, 16) > self.max_body:
                    raise _Refusal(413, "too-large", f"chunked request body announces over {self.max_body} bytes")
            elif byte in (b";", b"\r") and self.digits:
                self.state = "ext" if byte == b";" else "lf"
            else:
                raise self._malformed(f"{byte!r} after {self.digits!r}")

    @staticmethod
    def _malformed(what: str) -> _Refusal:
        return _Refusal(400, "malformed-request", f"malformed HTTP request: chunk-size line: {what}")


#: The scheme and authority of an absolute-form request target (RFC 9112 §3.2.2).
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?]*")


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """The path and the query of a request target (RFC 9112 §3.2), both as sent.

    Origin form ``/path?query``: split at the first ``?``. Absolute form ``scheme://authority/path?query``:
    the same after dropping the scheme and authority, an empty path being ``/``. Asterisk form ``*``
    (and anything else h11 lets through) is the path as it is.
    """
    absolute = _ABSOLUTE.match(target)
    if absolute:
        target = target[absolute.end():]
        if not target.startswith(b"/"):
            target = b"/" + target
    path, _, query = target.partition(b"?")
    return path, query



class _Conn:
    """One client connection: its h11 state, its current deadline, and the phase the deadline is for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any) -> None:
        self.reader, self.writer = reader, writer
        self.ip = peer[0] if isinstance(peer, tuple) else ""
        self.peer = peer if isinstance(peer, tuple) else ("", 0)
        local = writer.get_extra_info("sockname")
        self.local = local if isinstance(local, tuple) else ("", 0)
        self.h11: h11.Connection | None = None
        self.phase = "new"  # new | idle | header | body | app | send
        self.deadline = 0.0
        self.timer: asyncio.Timeout | None = None
        self.task: asyncio.Task | None = None
        self.path = ""  # the current request's path, once its request line is in
        self.chunks: _ChunkSizes | None = None  # the current request's chunked framing, while its body is read
        self.request_headers: list[tuple[str, str]] = []

    def set_deadline(self, when: float) -> None:
        self.deadline = when
        if self.timer is not None and not self.timer.expired():
            self.timer.reschedule(when)


def worker_class(limits: Limits) -> type[BufferingWorker]:
    """A :class:`BufferingWorker` subclass bound to ``limits``, for gunicorn's ``worker_class`` setting."""
    return type("BufferingWorker", (BufferingWorker,), {"limits": limits, "__module__": __name__})


#: Allocations at least this large are mmap'ed (and returned to the system when freed).
MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD = -3  # glibc mallopt(3) parameter


def fixed_mmap_threshold() -> None:
    """Fix glibc's mmap threshold in this worker (a no-op elsewhere).

    glibc raises its threshold each time a large mmap'ed block is freed, after which buffers of a
    request's size (an entry bundle read or written whole: up to 256 entries) come from the heaps of
    the worker's threads and, growing a little with every append, fragment them: RSS rose by tens of
    MiB in a 40 s soak (tests/soak) without any Python object kept. A fixed threshold keeps such
    buffers mmap'ed, so freeing them gives the memory back.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


class BufferingWorker(Worker):
    """gunicorn worker: one asyncio loop buffers requests (module docstring); ``threads`` threads run the app."""

    limits: Limits = Limits(max_body=1 << 20)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.conns: set[_Conn] = set()
        self.per_ip: Counter[str] = Counter()
        self.quick = False
        self.stopped_at: float | None = None
        self.requests = 0
        self._wake: asyncio.Event | None = None

    # -- process life ------------------------------------------------------------------------------
    def init_process(self) -> None:
        fixed_mmap_threshold()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._wake = asyncio.Event()
        super().init_process()  # signals, load_wsgi, post_worker_init hook, then run()

    def init_signals(self) -> None:
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        assert self.loop is not None
        self.loop.add_signal_handler(signal.SIGTERM, self._on_term)
        self.loop.add_signal_handler(signal.SIGQUIT, self._on_quit)
        self.loop.add_signal_handler(signal.SIGINT, self._on_quit)
        self.loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        self.loop.add_signal_handler(signal.SIGABRT, self._on_abort)
        self.loop.add_signal_handler(signal.SIGWINCH, lambda: None)

    def _on_term(self) -> None:
        self.alive = False
        self._wake_up()

    def _on_quit(self) -> None:
        self.alive, self.quick = False, True
        self.cfg.worker_int(self)
        self._wake_up()

    def _on_abort(self) -> None:
        self.alive = False
        self.cfg.worker_abort(self)
        sys.exit(1)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def run(self) -> None:
        assert self.loop is not None
        self.executor = ThreadPoolExecutor(max(1, self.cfg.threads), thread_name_prefix="app")
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            # After a quick stop, a thread still in the app keeps the process up until it returns
            # or the master kills it; after a graceful stop no thread is busy.
            self.executor.shutdown(wait=not self.quick, cancel_futures=True)
            with contextlib.suppress(Exception):
                self.loop.close()

    async def _serve(self) -> None:
        assert self._wake is not None
        servers = [await asyncio.start_server(self._connection, sock=listener.sock, limit=_READ,
                                              backlog=self.cfg.backlog)
                   for listener in self.sockets]
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
        for server in servers:
            server.close()  # no new connection; the master's listeners stay open until it closes them
        self.stopped_at = self.loop.time()
        if not self.quick:
            self._cap_deadlines()
            while self.conns and not self.quick:
                self.notify()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
        tasks = [conn.task for conn in self.conns if conn.task is not None]
        for conn in list(self.conns):  # a quick stop: drop every connection
            conn.writer.transport.abort()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 0.5)

    def _cap_deadlines(self) -> None:
        """On SIGTERM: idle connections close within STOP_LINGER s, requests being received within the
        master's graceful timeout (less a second for the answer)."""
        assert self.stopped_at is not None
        for conn in self.conns:
            if conn.phase in ("new", "idle"):
                conn.set_deadline(min(conn.deadline, self.stopped_at + STOP_LINGER))
            elif conn.phase in ("header", "body"):
                conn.set_deadline(min(conn.deadline, self.stopped_at + max(1.0, self.cfg.graceful_timeout - 1)))

    # -- one connection ------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(reader, writer, writer.get_extra_info("peername"))
        conn.task = asyncio.current_task()
        self.conns.add(conn)
        self.per_ip[conn.ip] += 1
        try:
            if len(self.conns) > self.cfg.worker_connections or self.per_ip[conn.ip] > self.limits.max_per_ip:
                which = "this worker" if len(self.conns) > self.cfg.worker_connections else "your address"
                raise _Refusal(503, "too-many-connections", f"too many connections from {which}; retry later",
                               [("Retry-After", "5")])
            await self._serve_connection(conn)
        except _Refusal as refusal:
            await self._refuse(conn, refusal)
        except (_Silent, ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            conn.writer.transport.abort()
            raise
        except Exception:
            self.log.exception("connection from %s failed", conn.ip)
        finally:
            conn.writer.close()
            self.conns.discard(conn)
            self.per_ip[conn.ip] -= 1
            if not self.per_ip[conn.ip]:
                del self.per_ip[conn.ip]
            if not self.alive:
                self._wake_up()

    async def _serve_connection(self, conn: _Conn) -> None:
        limits = self.limits
        conn.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header)
        conn.set_deadline(self._until(limits.header_timeout))
        while True:
            environ, started = await self._receive(conn)
            conn.phase = "app"
            assert self.executor is not None and self.loop is not None
            status, headers, body = await self.loop.run_in_executor(self.executor, self._call_app, environ)
            conn.phase = "send"
            await self._send(conn, environ, status, headers, body, started)
            self.requests += 1
            if self.requests >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
                self._wake_up()
            if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE or not self.alive:
                return
            conn.h11.start_next_cycle()
            conn.phase = "idle"
            conn.set_deadline(self._until(self.cfg.keepalive, STOP_LINGER))

    async def _next_event(self, conn: _Conn) -> Any:
        """The next h11 event, reading under the connection's deadline."""
        assert conn.h11 is not None
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    raise _Refusal(431, "header-too-large",
                                   f"request line and headers over {self.limits.max_header} bytes") from exc
                raise _Refusal(400, "malformed-request", f"malformed HTTP request: {exc}") from exc
            if event is h11.PAUSED:
                raise _Silent  # a client that pipelines past a request we are done with
            if event is not h11.NEED_DATA:
                return event
            if conn.h11.they_are_waiting_for_100_continue:
                go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                conn.writer.write(conn.h11.send(go_on) or b"")
            try:
                async with asyncio.timeout_at(conn.deadline) as conn.timer:
                    data = await conn.reader.read(_READ)
            except TimeoutError:
                raise self._timed_out(conn) from None
            finally:
                conn.timer = None
            if not data and conn.phase in ("header", "body"):
                # The client closed its side mid-request (it may still read): answered, then closed.
                what = "request line and headers" if conn.phase == "header" else "request body"
                raise _Refusal(400, "incomplete-request", f"the client closed its side before the {what} "
                                                          "was complete")
            if conn.chunks is not None:
                conn.chunks.feed(data)
            if conn.phase in ("new", "idle") and data:
                if conn.phase == "idle":  # a request's first byte after a keep-alive wait
                    conn.set_deadline(self._until(self.limits.header_timeout))
                conn.phase = "header"
            conn.h11.receive_data(data)

    def _timed_out(self, conn: _Conn) -> Exception:
        if conn.phase in ("new", "idle"):
            return _Silent()
        if conn.phase == "header":
            code, what, limit = "header-timeout", "request line and headers", self.limits.header_timeout
        else:
            code, what, limit = "body-timeout", "request body", self.limits.body_timeout
        if self.stopped_at is not None:
            return _Refusal(408, code, f"{what} not complete when the server stopped")
        return _Refusal(408, code, f"{what} not received within {limit:g} s")

    async def _receive(self, conn: _Conn) -> tuple[dict[str, Any], float]:
        """Read one whole request (header and body deadlines, size bounds); its WSGI environ."""
        event = await self._next_event(conn)
        if isinstance(event, h11.ConnectionClosed):
            raise _Silent
        assert isinstance(event, h11.Request), event
        # h11 bounds what it buffers of an incomplete head; a head that arrived whole in one read is
        # measured here (request line and header lines, with their CRLFs).
        head = len(event.method) + len(event.target) + 12 + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if head > self.limits.max_header:
            raise _Refusal(431, "header-too-large", f"request line and headers over {self.limits.max_header} bytes")
        started = time.monotonic()
        conn.path = unquote_to_bytes(_split_target(event.target)[0]).decode("latin-1")
        conn.request_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        conn.phase = "body"
        conn.set_deadline(self._until(self.limits.body_timeout))
        names = {k for k, _ in event.headers}
        if {b"content-length", b"transfer-encoding"} <= names:
            raise _Refusal(400, "malformed-request", "malformed HTTP request: both Content-Length and "
                                                     "Transfer-Encoding (RFC 9112 §6.3)")
        length = next((v for k, v in event.headers if k == b"content-length"), None)
        if length is not None and int(length) > self.limits.max_body:
            raise _Refusal(413, "too-large", f"request body of {int(length)} bytes exceeds {self.limits.max_body}")
        if b"transfer-encoding" in names:  # h11 lets only "chunked" through
            conn.chunks = _ChunkSizes(self.limits.max_body)
            conn.chunks.feed(conn.h11.trailing_data[0])  # what came with the head; later reads in _next_event
        chunks: list[bytes] = []
        while not isinstance(part := await self._next_event(conn), h11.EndOfMessage):
            if isinstance(part, h11.Data):
                chunks.append(part.data)
        conn.chunks = None
        return self._environ(conn, event, b"".join(chunks)), started

    def _environ(self, conn: _Conn, request: h11.Request, body: bytes) -> dict[str, Any]:
        path, query = _split_target(request.target)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "RAW_URI": request.target.decode("latin-1"),
            "REQUEST_URI": request.target.decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{request.http_version.decode('ascii')}",
            "SERVER_NAME": str(conn.local[0]),
            "SERVER_PORT": str(conn.local[1]),
            "REMOTE_ADDR": conn.peer[0],
            "REMOTE_PORT": str(conn.peer[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self.cfg.workers > 1,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = name.decode("latin-1").upper()
            if "_" in key or key in ("CONTENT-LENGTH", "TRANSFER-ENCODING"):
                continue  # underscores: never mistaken for a dash (as gunicorn); framing: already removed
            key = "CONTENT_TYPE" if key == "CONTENT-TYPE" else "HTTP_" + key.replace("-", "_")
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        return environ

    # -- the app and the answer --------------------------------------------------------------------
    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """In a pool thread: the app's status, headers and whole body."""
        response: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            if exc_info is not None and response:
                raise exc_info[1].with_traceback(exc_info[2])
            response[:] = [status, headers]
            return written.append

        try:
            result = self.wsgi(environ, start_response)
            try:
                for chunk in result:
                    if chunk:
                        written.append(bytes(chunk))
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not response:
                raise RuntimeError("the app returned without calling start_response")
            return response[0], list(response[1]), b"".join(written)
        except Exception:
            # The path only, never the query: it may hold secrets.
            self.log.exception("error handling %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            status, headers, body = self._error_response(environ["PATH_INFO"], 500, "internal", "internal server error")
            return status, headers, body

    async def _send(self, conn: _Conn, environ: dict[str, Any], status: str, headers: list[tuple[str, str]],
                    body: bytes, started: float) -> None:
        assert conn.h11 is not None
        code = int(status.split(" ", 1)[0])
        names = {name.lower() for name, _ in headers}
        out = [(n, v) for n, v in headers if n.lower() not in ("connection", "keep-alive", "transfer-encoding")]
        if "date" not in names:
            out.append(("Date", formatdate(usegmt=True)))
        bodiless = environ["REQUEST_METHOD"] == "HEAD" or code in (204, 304) or code < 200
        if "content-length" not in names and not bodiless:
            out.append(("Content-Length", str(len(body))))
        if not self.alive:
            out.append(("Connection", "close"))
        try:
            data = conn.h11.send(h11.Response(status_code=code, headers=out,
                                              reason=status.partition(" ")[2].encode("latin-1")))
            if not bodiless and body:
                data += conn.h11.send(h11.Data(data=body))
            data += conn.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.log.exception("the app's response to %s %s is not valid HTTP", environ["REQUEST_METHOD"],
                               environ["PATH_INFO"])
            raise _Refusal(500, "internal", "internal server error") from None
        conn.writer.write(data)
        async with asyncio.timeout(self.limits.send_timeout):
            await conn.writer.drain()
        if self.cfg.accesslog:
            self.log.access(_Logged(status, out, len(body)), conn.request_headers, environ,
                            timedelta(seconds=time.monotonic() - started))

    def _error_response(self, path: str, status: int, code: str, reason: str,
                        extra: Iterable[tuple[str, str]] = ()) -> tuple[str, list[tuple[str, str]], bytes]:
        if path in self.limits.text_paths:
            body, kind = (" ".join(reason.split()) + "\n").encode(), "text/plain; charset=utf-8"
        else:
            body = json.dumps({"error": reason, "code": code, "status": status}).encode()
            kind = "application/json"
        headers = [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                   ("X-Content-Type-Options", "nosniff"), *extra]
        return f"{status} {HTTPStatus(status).phrase}", headers, body

    async def _refuse(self, conn: _Conn, refusal: _Refusal) -> None:
        """Write the refusal, half-close, and read (and drop) what the client still sends, briefly."""
        status, headers, body = self._error_response(conn.path, refusal.status, refusal.code, refusal.reason,
                                                     refusal.headers)
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        head += f"Date: {formatdate(usegmt=True)}\r\nConnection: close\r\n\r\n"
        conn.phase = "send"
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            conn.writer.write(head.encode("latin-1") + body)
            async with asyncio.timeout(CLOSE_LINGER):
                await conn.writer.drain()
                if conn.writer.can_write_eof():
                    conn.writer.write_eof()
                while await conn.reader.read(_READ):
                    pass

    def _until(self, seconds: float, stopping: float | None = None) -> float:
        """The loop-clock deadline ``seconds`` from now; once stopping, at most ``stopping`` s from the
        stop (default: the master's graceful timeout, less a second to answer)."""
        assert self.loop is not None
        when = self.loop.time() + seconds
        if self.stopped_at is None:
            return when
        grace = max(1.0, self.cfg.graceful_timeout - 1) if stopping is None else stopping
        return min(when, self.stopped_at + grace)


class _Logged:
    """What gunicorn's access log reads of a response."""

    def __init__(self, status: str, headers: list[tuple[str, str]], sent: int) -> None:
        self.status, self.headers, self.sent = status, headers, sent


__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "MAX_HEADER", "MAX_PER_IP", "SEND_TIMEOUT", "BufferingWorker",
           "Limits", "worker_class"]
