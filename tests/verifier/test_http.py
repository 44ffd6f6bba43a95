"""verifier.http against real sockets: a hostile server cannot hang, flood, redirect or forge output."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from verifier.errors import FetchError, SizeLimitError
from verifier.http import MAX_ERROR_BODY, HttpClient, origin_of, sanitize


@contextmanager
def server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server running ``handle`` for each connection; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_run, args=(handle, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _run(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
    with conn:
        try:
            conn.recv(65536)
            handle(conn)
        except OSError:
            pass


def answer(status: str, body: bytes, headers: str = "") -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n"
                     .encode() + body)
    return handle


def test_headers_dripped_one_byte_at_a_time_are_cut_off_by_the_deadline() -> None:
    def drip(conn: socket.socket) -> None:
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
            conn.send(bytes([b]))
            time.sleep(0.02)

    with server(drip) as url:
        http = HttpClient(timeout=0.5, retries=0)
        started = time.monotonic()
        with pytest.raises(FetchError, match="no complete response within 0.5 s"):
            http.get(url + "/checkpoint", limit=1024)
        assert time.monotonic() - started < 3.0, "the deadline did not cover the response headers"


def test_body_dripped_slowly_is_cut_off_by_the_deadline() -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100_000):
            conn.send(b"x")
            time.sleep(0.01)

    with server(drip) as url:
        started = time.monotonic()
        with pytest.raises(FetchError):
            HttpClient(timeout=0.5, retries=0).get(url + "/tile/0/000", limit=200_000)
        assert time.monotonic() - started < 3.0


def test_declared_length_over_the_cap_is_refused_unread() -> None:
    with server(answer("200 OK", b"x" * 5000)) as url, \
            pytest.raises(SizeLimitError, match="5000 bytes exceeds the 1000-byte cap"):
        HttpClient(retries=0).get(url + "/", limit=1000)


def test_undeclared_endless_body_is_cut_off_at_the_cap() -> None:
    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        while True:
            conn.sendall(b"A" * 65536)

    with server(endless) as url, pytest.raises(SizeLimitError, match="cut off"):
        HttpClient(retries=0).get(url + "/", limit=100_000)


def test_error_body_is_read_only_to_its_small_cap_and_printed_sanitised() -> None:
    hostile = b'{"error": "nope\\n\\u001b[2Knothing wrong, keys OK\\u0000"}' + b" " * 100_000
    with server(answer("403 Forbidden", hostile)) as url:
        resp = HttpClient(retries=0).get(url + "/", limit=1 << 20)
    assert resp.status == 403 and len(resp.body) <= MAX_ERROR_BODY
    reason = resp.reason()
    assert "\n" not in reason and "\x1b" not in reason and "\x00" not in reason
    assert reason.startswith("nope\\x0a\\x1b[2Knothing wrong")


def test_redirect_to_another_origin_is_refused() -> None:
    with server(answer("200 OK", b"evil")) as other, \
            server(answer("302 Found", b"", f"Location: {other}/checkpoint\r\n")) as url:
        with pytest.raises(FetchError, match="not a configured origin"):
            HttpClient(retries=0, allowed_origins=[url]).get(url + "/checkpoint", limit=1024)
        # ... and followed when that origin is a configured mirror.
        resp = HttpClient(retries=0, allowed_origins=[url, other]).get(url + "/checkpoint", limit=1024)
        assert (resp.status, resp.body) == (200, b"evil")


def test_redirect_loop_ends() -> None:
    with server(answer("302 Found", b"", "Location: /again\r\n")) as url, \
            pytest.raises(FetchError, match="more than 5 redirects"):
        HttpClient(retries=0).get(url + "/", limit=1024)


def test_https_to_http_redirect_is_refused_before_any_request() -> None:
    http = HttpClient(retries=0, allowed_origins=["https://a.test", "http://a.test"])
    calls = []

    def transport(method, url, limit, body, headers, timeout):
        calls.append(url)
        from verifier.http import HttpResponse
        return HttpResponse(301, {"location": "http://a.test/checkpoint"}, b"", url)

    http._transport = transport
    with pytest.raises(FetchError, match="weaker scheme"):
        http.get("https://a.test/checkpoint", limit=1024)
    assert calls == ["https://a.test/checkpoint"]


def test_5xx_is_retried_then_returned() -> None:
    hits = []

    def flaky(conn: socket.socket) -> None:
        hits.append(1)
        answer("503 Service Unavailable", b'{"error":"later"}')(conn)

    with server(flaky) as url:
        resp = HttpClient(retries=2, backoff=0, sleep=lambda s: None).get(url + "/", limit=1024)
    assert (resp.status, resp.reason(), len(hits)) == (503, "later", 3)  # the last answer, after 2 retries


def test_sanitize_escapes_controls_and_bidi_and_caps_length() -> None:
    assert sanitize("a\nb\x1b[31m\u202ec") == "a\\x0ab\\x1b[31m\\u202ec"
    assert sanitize("x" * 500, 10) == "x" * 10 + "…"
    assert sanitize(b"\xff\x00") == "\ufffd\\x00"


def test_origin_of() -> None:
    assert origin_of("HTTPS://Keys.Example:443/a?b") == "https://keys.example"
    assert origin_of("http://h:8080/") == "http://h:8080"
    with pytest.raises(ValueError):
        origin_of("file:///etc/passwd")
