"""Slow clients cannot starve anyone: each service, as a real process on real sockets, keeps answering a
normal client while 200 connections send their headers and 200 their body a partial line at a time,
then cuts the slow ones off at its header and body deadlines with a JSON 408 (serving.buffering).

The slow connections come from 127.0.0.2-5 (Linux routes all of 127/8 to the loopback), as an attack
from a few hosts would, and stay under the per-address cap; the normal client is 127.0.0.1. Every
wait is a poll with a deadline; the figures are printed (``pytest -s``) for the README and the notes.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serving import STOP_BOUND
from serving.buffering import BODY_TIMEOUT, HEADER_TIMEOUT, MAX_HEADER, MAX_PER_IP, _ChunkSizes, _Refusal
from tests.distributor.helpers import ServeProcess, world_data_dir
from tests.factory import World
from tests.service_process import REPO, ServiceProcess, free_port, wait_for
from tests.signer.process import SignerProcess, prepare_data_dir
from tests.witness.helpers import TestLog, WitnessProcess

SLOW_HEADERS = 200
SLOW_BODIES = 200
SLOW_IPS = [f"127.0.0.{i}" for i in range(2, 6)]
#: Seconds between two partial lines of one slow connection ("a partial line every few seconds").
PERIOD = 2.0
#: The normal requests' p99 bound while the slow connections are held (seconds). Never loosened.
P99_BOUND = 1.0
#: How late after its deadline a slow connection may be seen closed: the server's accept and timer on a
#: loaded machine, and this test's own polling.
MARGIN = 3.0
#: At least this much of the measuring window must fall before the first header deadline.
MIN_WINDOW = 3.0


# -- the slow connections -----------------------------------------------------------------------------
@dataclass(eq=False)
class Slow:
    """One connection that never completes its request: ``kind`` is ``header`` or ``body``."""

    kind: str
    sock: socket.socket
    started: float  # when the part that is sent slowly began (connect; end of the headers for ``body``)
    next_send: float
    sent: int = 0
    received: bytes = b""
    closed: float | None = None

    @property
    def status(self) -> int | None:
        head = self.received.split(b"\r\n", 1)[0].split(b" ")
        return int(head[1]) if len(head) > 1 and head[1].isdigit() else None

    def json(self) -> dict:
        return json.loads(self.received.split(b"\r\n\r\n", 1)[1])


class SlowClients:
    """``SLOW_HEADERS`` + ``SLOW_BODIES`` slow connections, driven by one thread with a selector."""

    def __init__(self, port: int, get_path: str, post_path: str) -> None:
        self.port = port
        self.conns: list[Slow] = []
        self.selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        for i in range(SLOW_HEADERS + SLOW_BODIES):
            kind = "header" if i % 2 == 0 else "body"
            sock = socket.socket()
            sock.bind((SLOW_IPS[i % len(SLOW_IPS)], 0))
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            if kind == "header":  # the request line and a header, then a header line never finished
                first = f"GET {get_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: 0".encode()
            else:  # complete headers, then a body that never arrives in full
                first = (f"POST {post_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 4000\r\n"
                         "Content-Type: application/octet-stream\r\n\r\n{").encode()
            now = time.monotonic()
            sock.sendall(first)
            sock.setblocking(False)
            conn = Slow(kind, sock, now, now + PERIOD * (1 + i / (SLOW_HEADERS + SLOW_BODIES)))
            self.conns.append(conn)
            self.selector.register(sock, selectors.EVENT_READ, conn)
        self.thread = threading.Thread(target=self._drive, daemon=True)
        self.thread.start()

    def _drive(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.05):  # read first: an answer is never lost to a late write
                self._read(key.data)
            now = time.monotonic()
            for conn in self.conns:
                if conn.closed is None and not conn.received and now >= conn.next_send:
                    part = f"\r\nX-Slow-{conn.sent}: 1".encode() if conn.kind == "header" else b" "
                    try:
                        conn.sock.send(part)
                        conn.sent += 1
                    except OSError:
                        self._close(conn)
                    conn.next_send = now + PERIOD

    def _read(self, conn: Slow) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            conn.received += data
        else:
            self._close(conn)

    def _close(self, conn: Slow) -> None:
        if conn.closed is None:
            conn.closed = time.monotonic()
            self.selector.unregister(conn.sock)
            conn.sock.close()

    def of(self, kind: str) -> list[Slow]:
        return [c for c in self.conns if c.kind == kind]

    def held_by_server(self) -> bool:
        """The server has read every slow connection's bytes so far (none waits unread in its socket)."""
        ours = {c.sock.getsockname()[1] for c in self.conns if c.closed is None}
        unread = {}
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == self.port:
                    unread[int(fields[2].split(":")[1], 16)] = int(fields[4].split(":")[1], 16)
        return all(unread.get(port) == 0 for port in ours)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.conns:
            if conn.closed is None:
                conn.sock.close()


# -- the normal client --------------------------------------------------------------------------------
@dataclass
class NormalClient:
    """Requests ``path`` back to back, every other one on a new connection; latencies and failures."""

    port: int
    path: str
    samples: list[tuple[float, float]] = field(default_factory=list)  # (when it started, seconds)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        kept: http.client.HTTPConnection | None = None
        n = 0
        while not self.stop.is_set():
            n += 1
            fresh = n % 2 == 0 or kept is None
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10) if fresh else kept
            start = time.monotonic()
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    self.failures.append(f"status {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                kept = None
                continue
            self.samples.append((start, time.monotonic() - start))
            if fresh:
                if kept is not None:
                    kept.close()
                kept = conn
        if kept is not None:
            kept.close()

    def latencies(self, since: float, until: float) -> list[float]:
        return sorted(s for t, s in self.samples if since <= t and t + s <= until)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


def p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the services ---------------------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    proc: ServiceProcess
    get_path: str
    post_path: str


def start(name: str, tmp_path: Path) -> Service:
    if name == "signer":
        data = tmp_path / "signer"
        prepare_data_dir(data, ("slow.example/ns",))
        return Service(name, SignerProcess(data), "/info", "/api/v1/sign-keyset")
    if name == "distributor":
        world = World()
        data = world_data_dir(tmp_path / "dist", world)
        proc = ServeProcess(["--data", str(data), "--origin", world.origin, "--trust-root",
                             str(data / "trust-root.json"), "--workers", "2"], tmp_path / "serve.log")
        return Service(name, proc, "/checkpoint", "/api/v1/bundles")
    proc = WitnessProcess(tmp_path / "witness", [TestLog().grow(8)])
    return Service(name, proc, "/", "/add-checkpoint")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["signer", "distributor", "witness"])
def test_slow_clients_cannot_starve_a_normal_client_and_are_cut_off_at_their_deadlines(tmp_path, name):
    service = start(name, tmp_path)
    normal = slow = None
    try:
        normal = NormalClient(service.proc.port, service.get_path)
        wait_for(lambda: len(normal.samples) >= 20, 30, "the normal client's first requests")
        slow = SlowClients(service.proc.port, service.get_path, service.post_path)
        opened = min(c.started for c in slow.conns)
        wait_for(slow.held_by_server, 30, "the server to hold every slow connection")
        window_start = time.monotonic()
        window_end = opened + HEADER_TIMEOUT - 1.0  # before any header deadline
        assert window_end - window_start >= MIN_WINDOW, \
            f"opening {len(slow.conns)} connections took {window_start - opened:.1f} s: no window left to measure"
        wait_for(lambda: time.monotonic() >= window_end, HEADER_TIMEOUT, "the end of the measuring window")
        assert all(c.closed is None for c in slow.conns), "a slow connection was closed before its deadline"
        held = normal.latencies(window_start, window_end)

        # Then the timeouts cut every slow connection off, with a JSON 408 that says which deadline.
        wait_for(lambda: all(c.closed is not None for c in slow.of("header")), HEADER_TIMEOUT + MARGIN,
                 "every slow-header connection to be cut off")
        wait_for(lambda: all(c.closed is not None for c in slow.of("body")), BODY_TIMEOUT + MARGIN,
                 "every slow-body connection to be cut off")
        after = time.monotonic()
        normal.close()
        assert not normal.failures, normal.failures[:5]
        assert len(held) >= 20, f"only {len(held)} normal requests completed while the slow ones were held"
        p50, p99 = statistics.median(held), p(held, 0.99)
        assert p99 < P99_BOUND, f"{name}: normal p99 {p99 * 1000:.0f} ms with {len(slow.conns)} slow connections"
        overall = normal.latencies(window_start, after)
        cut = {}
        for kind, timeout in (("header", HEADER_TIMEOUT), ("body", BODY_TIMEOUT)):
            took = sorted(c.closed - c.started for c in slow.of(kind))
            assert timeout - 0.5 <= took[0] and took[-1] <= timeout + MARGIN, (kind, took[0], took[-1])
            for c in slow.of(kind):
                assert c.status == 408, (kind, c.received[:200])
                if name != "witness" or kind == "header":  # the witness's endpoint answers in text
                    assert c.json()["code"] == f"{kind}-timeout", c.received
            cut[kind] = statistics.median(took)
        print(f"\n{name}: {len(held)} normal requests while {SLOW_HEADERS}+{SLOW_BODIES} slow connections "
              f"were held: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (all {len(overall)}: p99 "
              f"{p(overall, 0.99) * 1000:.1f} ms); cut off after {cut['header']:.2f} s (header, timeout "
              f"{HEADER_TIMEOUT:g} s), {cut['body']:.2f} s (body, timeout {BODY_TIMEOUT:g} s)")
    finally:
        if normal is not None:
            normal.close()
        if slow is not None:
            slow.close()
        service.proc.stop()


# -- the server's own refusals, and the bounded stop with slow clients attached ------------------------
def _exchange(port: int, data: bytes, source: str = "127.0.0.1", *, half_close: bool = False,
              timeout: float = 10) -> bytes:
    """Send ``data`` (then shut the sending side down if ``half_close``); all the server sends until it closes."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


def _refusal(received: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    data = tmp_path_factory.mktemp("signer") / "data"
    prepare_data_dir(data, ("slow.example/ns",))
    with SignerProcess(data) as proc:
        yield proc


def test_the_servers_own_refusals_are_json_with_a_reason(signer):
    port = signer.port
    status, headers, body = _refusal(_exchange(port, b"GET /info HTTP/1.1\r\nHost: x\r\nX-Big: "
                                               + b"a" * MAX_HEADER + b"\r\n\r\n"))
    assert (status, body["code"]) == (431, "header-too-large"), body
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    assert headers["connection"] == "close" and headers["cache-control"] == "no-store"
    # Over the signer's body limit: refused from the Content-Length alone, before any body byte is read.
    status, _, body = _refusal(_exchange(port, b"POST /api/v1/sign-keyset HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Length: 999999999\r\n\r\n"))
    assert (status, body["code"]) == (413, "too-large") and "999999999" in body["error"], body
    status, _, body = _refusal(_exchange(port, b"POST /api/v1/sign-keyset HTTP/1.1\r\nHost: x\r\n"
                                         b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"))
    assert (status, body["code"]) == (400, "malformed-request"), body
    status, _, body = _refusal(_exchange(port, b"GET /info HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n"))
    assert status == 400 and body["error"].startswith("malformed HTTP request"), body
    # Keep-alive still works: two requests on one connection.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(2):
        conn.request("GET", "/info")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
        assert resp.getheader("Connection") != "close"
    conn.close()


def test_one_address_cannot_take_every_connection(signer):
    source = "127.0.0.9"
    held = []
    try:
        for _ in range(MAX_PER_IP):
            s = socket.create_connection(("127.0.0.1", signer.port), timeout=10, source_address=(source, 0))
            s.sendall(b"GET /info HTTP/1.1\r\n")  # begun, never finished
            held.append(s)
        status, headers, body = _refusal(_exchange(signer.port, b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n", source))
        assert (status, body["code"], headers["retry-after"]) == (503, "too-many-connections", "5"), body
        conn = http.client.HTTPConnection("127.0.0.1", signer.port, timeout=10)  # another address is served
        conn.request("GET", "/info")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        for s in held:
            s.close()


def test_sigterm_with_slow_clients_attached_stops_within_the_bound(tmp_path):
    """The slow connections are requests begun, so they may finish, but only until shortly before the
    master's graceful timeout: the worker then answers them 408 and exits by itself (nothing killed)."""
    data = tmp_path / "signer"
    prepare_data_dir(data, ("slow.example/ns",))
    proc = SignerProcess(data)
    slow = None
    try:
        slow = SlowClients(proc.port, "/info", "/api/v1/sign-keyset")
        wait_for(slow.held_by_server, 30, "the server to hold every slow connection")
        at = time.monotonic()
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.wait_exit(STOP_BOUND + 5) == 0, proc.log()
        assert time.monotonic() - at < STOP_BOUND, proc.log()
        last = proc.log().rstrip().splitlines()[-1]
        assert "fleetkeys-signer stopped on SIGTERM" in last and "in-flight requests finished" in last, last
        wait_for(lambda: all(c.closed is not None for c in slow.conns), 5, "every slow connection closed")
        assert {c.status for c in slow.conns} == {408}
        assert "not complete when the server stopped" in slow.conns[0].json()["error"]
    finally:
        if slow is not None:
            slow.close()
        proc.stop()


# -- framing the app never sees: cut-short requests, chunk sizes, ambiguous lengths ----------------------
def test_a_request_cut_short_by_a_half_close_is_answered_400_then_closed(signer):
    """A client that sends less than its Content-Length and shuts its sending side down still reads: it
    gets a JSON 400 and then the close (it used to get the close alone)."""
    port = signer.port
    received = _exchange(port, b"POST /api/v1/sign-keyset HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}",
                         half_close=True)
    status, headers, body = _refusal(received)  # _exchange returns once the server has closed
    assert (status, body["code"], body["status"]) == (400, "incomplete-request", 400), body
    assert "request body" in body["error"] and headers["connection"] == "close", body
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    status, _, body = _refusal(_exchange(port, b"GET /info HTTP/1.1\r\nHost: x", half_close=True))
    assert (status, body["code"]) == (400, "incomplete-request") and "headers" in body["error"], body
    assert _exchange(port, b"", half_close=True) == b""  # no byte of a request: nobody asked, nothing answered


@pytest.mark.parametrize("chunks,status,code", [
    (b"ffffffffffffffffffff\r\n", 413, "too-large"),  # one chunk announced over the signer's 64 KiB
    (b"ffffffffffffffffffff", 413, "too-large"),  # ... refused before its line ends
    (b"1\r\nx\r\n10000\r\n", 413, "too-large"),  # 1 + 65536 bytes announced: over the bound together
    (b"zz", 400, "malformed-request"),  # not a size, though its line never ends
    (b"5 ;a=b\r\n", 400, "malformed-request"),  # no space before an extension (h11 agrees)
    (b"0" * 21 + b"1", 400, "malformed-request"),  # over 20 hex digits (h11's bound)
    (b"5\n", 400, "malformed-request"),  # LF without CR
])
def test_a_chunk_size_line_is_judged_when_it_arrives_not_at_the_body_timeout(signer, chunks, status, code):
    """The client sends one chunk-size line and waits: it used to wait the whole body timeout for a 408."""
    at = time.monotonic()
    received = _exchange(signer.port, b"POST /api/v1/sign-keyset HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + chunks, timeout=BODY_TIMEOUT + 10)
    took = time.monotonic() - at
    got, _, body = _refusal(received)
    assert (got, body["code"]) == (status, code), body
    assert took < 5, f"answered after {took:.1f} s (the body timeout is {BODY_TIMEOUT:g} s)"


def test_chunk_sizes_split_anywhere_across_reads_are_followed_exactly():
    """The size reader sees a chunked body in whatever pieces TCP delivers: one byte at a time it must
    stop, refuse and pass exactly where it does for the whole body."""
    body = b"3;ext=\"a b\"\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: 1\r\n\r\n"
    for pieces in ([body], [body[i:i + 1] for i in range(len(body))]):
        sizes = _ChunkSizes(max_body=19)
        for piece in pieces:
            sizes.feed(piece)
        assert (sizes.state, sizes.announced) == ("done", 19)
        with pytest.raises(_Refusal) as refused:
            small = _ChunkSizes(max_body=18)
            for piece in pieces:
                small.feed(piece)
        assert refused.value.status == 413 and small.announced == 3  # on the second size line, not its data


def test_a_request_with_both_content_length_and_transfer_encoding_is_400_and_nothing_after_it_is_read(signer):
    """RFC 9112 §6.3: h11 reads such a request as chunked and keeps the connection, so a front end that
    framed it by its Content-Length would disagree about where the next request starts (smuggling)."""
    for framing in (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"):
        received = _exchange(signer.port, b"POST /api/v1/sign-keyset HTTP/1.1\r\nHost: x\r\n" + framing
                             + b"\r\n0\r\n\r\nGET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = _refusal(received)  # one answer: the smuggled GET is never served
        assert (status, body["code"]) == (400, "malformed-request") and "Transfer-Encoding" in body["error"], body
        assert headers["connection"] == "close"


#: A gunicorn server on the buffering worker whose app answers what it was given (``python -c``, bind address).
ECHO_SERVER = """
import json, sys
from gunicorn.app.base import BaseApplication
from serving.buffering import Limits, worker_class

KEYS = ("REQUEST_METHOD", "RAW_URI", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH")

def app(environ, start_response):
    seen = {k: environ.get(k) for k in KEYS}
    seen["body"] = environ["wsgi.input"].read().decode("latin-1")
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

class Echo(BaseApplication):
    def load_config(self):
        for key, value in {"bind": sys.argv[1], "workers": 1, "threads": 2, "keepalive": 5,
                           "worker_class": worker_class(Limits(max_body=1024))}.items():
            self.cfg.set(key, value)

    def load(self):
        return app

Echo().run()
"""


@pytest.fixture(scope="module")
def echo():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, f"127.0.0.1:{port}"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def answers() -> bool:
        try:
            return b" 200 " in _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        except OSError:
            return False

    try:
        wait_for(answers, 30, "the echo server")
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_BOUND + 5)


def _echoed(received: bytes) -> list[dict]:
    """The app's views of every request answered in ``received`` (a keep-alive exchange)."""
    seen = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), received[:300]
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        seen.append(json.loads(rest[:length]))
        received = rest[length:]
    return seen


@pytest.mark.parametrize("target,path,query", [
    ("/a%2Fb/c%20d?x=%2F&y=1+2", "/a/b/c d", "x=%2F&y=1+2"),
    ("/namespaces/x%2Faudits%2F1", "/namespaces/x/audits/1", ""),
    ("/%E2%82%AC?%E2%82%AC", "/\u00e2\u0082\u00ac", "%E2%82%AC"),  # UTF-8 bytes, each a latin-1 character
    ("//two//slashes/?", "//two//slashes/", ""),
    ("http://example.test?q=1", "/", "q=1"),  # absolute form without a path: the query is kept
    ("HTTP://user@example.test:80/p%41th?a=b?c", "/pAth", "a=b?c"),
    ("*", "*", ""),
])
def test_the_app_sees_the_request_target_exactly_as_sent(echo, target, path, query):
    """The signer reads ``%2F`` in a namespace name from the raw target: it must be the bytes as sent."""
    method = "OPTIONS" if target == "*" else "GET"
    request = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    [seen] = _echoed(_exchange(echo, request))
    assert seen["RAW_URI"] == seen["REQUEST_URI"] == target, seen
    assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == (path, query), seen


def test_a_chunked_body_in_odd_pieces_reaches_the_app_whole_and_the_connection_is_kept(echo):
    body = b"3;x=1\r\nabc\r\n10\r\n" + b"y" * 16 + b"\r\n0\r\nTrailer: 1\r\n\r\n"
    first = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    second = b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", echo), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(first), 3):  # pieces that split size lines, CRLFs and data
            s.sendall(first[i:i + 3])
        received = b""
        while received.count(b"HTTP/1.1 ") < 1 or not received.endswith(b"}"):
            received += s.recv(65536)
        s.sendall(second)
        while chunk := s.recv(65536):
            received += chunk
    posted, after = _echoed(received)
    assert (posted["body"], posted["CONTENT_LENGTH"]) == ("abc" + "y" * 16, "19"), posted
    assert after["PATH_INFO"] == "/after"
