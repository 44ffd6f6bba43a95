"""Attacks on the client over real HTTP: a hostile proxy in front of the real distributor.

The proxy forwards every request to the quickstart's distributor and rewrites some answers, as a
compromised CDN or an on-path attacker would. Each test checks the client refuses with the right
error and that its saved state file is unchanged.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from verifier.client import Client
from verifier.errors import DigestError, FreezeError, RollbackError, SizeLimitError

Rewrite = Callable[[str, bytes], tuple[str, bytes]]


class HostileProxy:
    """Forwards GETs to ``upstream``; ``rewrite(path, body) -> (path_to_fetch, body_to_send)`` hooks."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rewrite_path: Callable[[str], str] = lambda p: p
        self.rewrite_body: Callable[[str, bytes], bytes] = lambda p, b: b
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                upstream = requests.get(proxy.upstream + proxy.rewrite_path(self.path), timeout=10)
                body = proxy.rewrite_body(self.path, upstream.content)
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(serving):
    _, url, _, _ = serving
    p = HostileProxy(url)
    yield p
    p.close()


@pytest.fixture
def client(serving, proxy, tmp_path):
    """A client that verified the honest log once through the (still honest) proxy."""
    data, _, _, _ = serving
    c = Client(proxy.url, (data / "trust-root.json").read_bytes(), tmp_path / "state", retries=0)
    assert c.refresh().epoch == 3
    return c


def _refused(client: Client, cls: type[Exception], fragment: str) -> None:
    before = client.state_path.read_bytes()
    with pytest.raises(cls) as info:
        client.refresh()
    assert type(info.value) is cls and fragment in str(info.value), info.value
    assert client.state_path.read_bytes() == before, "a failed refresh changed the saved state"


def test_cdn_serving_an_old_epoch_as_latest_is_refused(serving, proxy, tmp_path):
    """The revocation in epoch 3 is held back from a new client: /latest answers epoch 2 under the honest,
    fresh checkpoint (an existing client at epoch 3 would refuse it as a rollback instead)."""
    data, _, _, _ = serving
    proxy.rewrite_path = lambda p: "/api/v1/bundles/2" if p == "/api/v1/bundles/latest" else p
    fresh = Client(proxy.url, (data / "trust-root.json").read_bytes(), tmp_path / "fresh", retries=0)
    with pytest.raises(FreezeError, match="held back"):
        fresh.refresh()
    assert not fresh.state_path.exists()


def test_rollback_to_an_older_epoch_over_http_is_refused(client, proxy):
    proxy.rewrite_path = lambda p: "/api/v1/bundles/2" if p == "/api/v1/bundles/latest" else p
    _refused(client, RollbackError, "older than epoch 3")


def test_tampered_keyset_byte_over_http_is_refused(client, proxy):
    def flip(path: str, body: bytes) -> bytes:
        if path != "/api/v1/bundles/latest":
            return body
        obj = json.loads(body)
        bundle = json.loads(base64.b64decode(obj["bundle"]))
        keyset = bytearray(base64.b64decode(bundle["keyset"]))
        keyset[keyset.index(b'"revoked"') + 1] = ord("a")  # the revoked fleet shown as "aevoked"
        bundle["keyset"] = base64.b64encode(bytes(keyset)).decode()
        obj["bundle"] = base64.b64encode(json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()).decode()
        return json.dumps(obj).encode()

    proxy.rewrite_body = flip
    _refused(client, DigestError, "the signed statement commits to")


def test_endless_body_over_http_is_cut_off(client, proxy):
    proxy.rewrite_body = lambda path, body: b"{" + b" " * (2 * 1024 * 1024) + b"}" if path.startswith(
        "/api/v1/bundles/") else body
    _refused(client, SizeLimitError, "cap")
