"""Attacks on the client over real HTTP: a hostile proxy in front of the real distributor.

The proxy forwards every request to the quickstart's distributor and rewrites some answers, as a
compromised CDN or an on-path attacker would. The client reads only static files (``/checkpoint``, then
``/entry/<N>`` or the entry bundles and hash tiles ``/tile/...``), so those are what the proxy rewrites.
The quickstart log holds three entries: epochs 1, 2 and 3 (epoch 3 revokes a fleet). Each test checks the
client refuses with the right error and that its saved state file is unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from fleetkeys.quickstart import ORIGIN, WITNESSES
from keys import load_signer
from verifier.bundle import parse_bundle
from verifier.checkpoint import Checkpoint, sign_checkpoint
from verifier.client import Client
from verifier.cosignature import CosignatureSigner, add_cosignatures
from verifier.errors import ConsistencyError, FormatError, SizeLimitError, ThresholdError
from verifier.follow import apply_entry, with_tree_head
from verifier.merkle import frontier_append, frontier_root, leaf_hash, root
from verifier.note import MAX_NOTE_SIZE, NoteSigner
from verifier.statestore import StateStore
from verifier.tiles import MAX_ENTRY_SIZE, entry_object_path
from verifier.trustroot import load_trust_root
from verifier.update import ClientState

LOG_SIZE = 3


class HostileProxy:
    """Forwards GETs to ``upstream``; ``rewrite_path(path)`` picks what to fetch, ``rewrite_body(path, body)``
    what to send; ``declare_length`` False sends no Content-Length (the body ends when the connection does).
    ``paths`` records every path asked."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rewrite_path: Callable[[str], str] = lambda p: p
        self.rewrite_body: Callable[[str, bytes], bytes] = lambda p, b: b
        self.declare_length = True
        self.paths: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                proxy.paths.append(self.path)
                upstream = requests.get(proxy.upstream + proxy.rewrite_path(self.path), timeout=10)
                body = proxy.rewrite_body(self.path, upstream.content)
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                if proxy.declare_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped at its cap
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


def _trust_root(serving) -> bytes:
    data, _, _, _ = serving
    return (data / "trust-root.json").read_bytes()


def _entries(serving) -> list[bytes]:
    _, url, _, _ = serving
    entries = [requests.get(f"{url}/{entry_object_path(i)}", timeout=10).content for i in range(LOG_SIZE)]
    cp = requests.get(f"{url}/checkpoint", timeout=10).content
    assert f"\n{LOG_SIZE}\n".encode() in cp, "the quickstart log is expected to hold three entries"
    return entries


@pytest.fixture
def client(serving, proxy, tmp_path):
    """A client that verified the honest log once through the (still honest) proxy."""
    c = Client(proxy.url, _trust_root(serving), tmp_path / "state", retries=0)
    assert c.refresh().epoch == 3
    proxy.paths.clear()
    return c


@pytest.fixture
def client2(serving, proxy, tmp_path):
    """A client that verified the log when it held epochs 1 and 2 (its state built by the verifier's own
    core from the log's entries, as its refresh then would have): the next refresh reads ``/checkpoint``
    and ``/entry/002``, epoch 3 with the revocation."""
    bootstrap = load_trust_root(_trust_root(serving))
    entries = _entries(serving)[:2]
    state, now = ClientState(), int(time.time())
    for i, entry in enumerate(entries):
        state = apply_entry(state, entry, i, bootstrap=bootstrap, now=now).state
    frontier = frontier_append(0, (), [leaf_hash(e) for e in entries])
    state = with_tree_head(state, 2, frontier_root(frontier), frontier)
    store = StateStore(tmp_path / "state2")
    store.load()
    store.save(state)
    c = Client(proxy.url, _trust_root(serving), tmp_path / "state2", retries=0)
    assert c.state.epoch == 2 and c.state.checkpoint_size == 2
    return c


def _refused(client: Client, cls: type[Exception], fragment: str) -> None:
    before = client.state_path.read_bytes() if client.state_path.exists() else None
    with pytest.raises(cls) as info:
        client.refresh()
    assert type(info.value) is cls and fragment in str(info.value), info.value
    after = client.state_path.read_bytes() if client.state_path.exists() else None
    assert after == before, "a failed refresh changed the saved state"


def test_refreshes_read_only_the_static_files(serving, client, client2, proxy):
    """Positive control: what the attacks below rewrite is what the client reads."""
    assert client.refresh().epoch == 3 and proxy.paths == ["/checkpoint"]
    proxy.paths.clear()
    result = client2.refresh()
    assert result.epochs_verified == (3,) and proxy.paths == ["/checkpoint", "/entry/002"]


def test_cdn_holding_back_the_revocation_is_refused(client2, proxy):
    """The revocation in epoch 3 is held back: ``/entry/002`` answers epoch 2 again, under the honest, fresh
    checkpoint of size 3. The entry is not the log's entry 2 (the tree root says so)."""
    proxy.rewrite_path = lambda p: "/entry/001" if p == "/entry/002" else p
    _refused(client2, ConsistencyError, "the entries are not the log's")


def test_cdn_serving_the_older_log_to_a_new_client_is_refused(serving, proxy, tmp_path):
    """Every static file a new client may read is answered as it was when the log held two entries (older
    partial widths stay served): under the checkpoint of size 3 they hold the wrong number of entries or
    hashes, however the client starts (forwards from entry 0 or backwards from the newest bundle)."""
    proxy.rewrite_path = lambda p: p.replace(".p/3", ".p/2").replace("/entry/002", "/entry/001")
    fresh = Client(proxy.url, _trust_root(serving), tmp_path / "fresh", retries=0)
    _refused(fresh, FormatError, "expected")
    assert not fresh.state_path.exists()
    assert any(".p/3" in p for p in proxy.paths), proxy.paths


def test_rollback_by_a_stolen_log_key_over_http_is_refused(serving, client, proxy):
    """With the log's private keys (stolen, or the log misbehaving) the proxy signs and freshly cosigns the
    tree head of the first two entries: validly signed, but smaller than the one the client saw. The
    quick start's trust root requires 2 of its 3 witnesses, which never cosigned that head: refused.
    With the keys of every witness stolen too, the consistency check still refuses it."""
    data, _, _, _ = serving
    log_key = load_signer(f"file:{data / 'distributor' / 'log.key'}")
    freshness = load_signer(f"file:{data / 'distributor' / 'freshness.key'}")
    head = Checkpoint(ORIGIN, 2, root([leaf_hash(e) for e in _entries(serving)[:2]]))
    now = int(time.time())
    older = add_cosignatures(sign_checkpoint(head, NoteSigner.from_signer(ORIGIN, log_key)),
                             [CosignatureSigner(ORIGIN + "/freshness", freshness).cosign(head.body(), now)])
    proxy.rewrite_body = lambda path, body: older if path == "/checkpoint" else body
    _refused(client, ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 2 required")
    witnessed = add_cosignatures(older, [
        CosignatureSigner(name, load_signer(f"file:{data / 'witnesses' / f'w{i}' / 'witness.key'}")).cosign(
            head.body(), now) for i, name in enumerate(WITNESSES, 1)])
    proxy.rewrite_body = lambda path, body: witnessed if path == "/checkpoint" else body
    _refused(client, ConsistencyError, "checkpoint size 2 is smaller than the size 3 already seen")


def test_tampered_keyset_byte_over_http_is_refused(client2, proxy):
    def flip(path: str, body: bytes) -> bytes:
        if path != "/entry/002":
            return body
        bundle = parse_bundle(body)
        keyset = bytearray(bundle.keyset)
        keyset[keyset.index(b'"revoked"') + 1] = ord("a")  # the revoked fleet shown as "aevoked"
        obj = json.loads(body)
        obj["keyset"] = base64.b64encode(bytes(keyset)).decode()
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    proxy.rewrite_body = flip
    _refused(client2, ConsistencyError, "the entries are not the log's")


@pytest.mark.parametrize("declared", [True, False], ids=["declared-length", "undeclared-length"])
@pytest.mark.parametrize(("path", "cap"), [("/checkpoint", MAX_NOTE_SIZE), ("/entry/002", MAX_ENTRY_SIZE)],
                         ids=["checkpoint", "entry-object"])
def test_endless_body_over_http_is_cut_off(client2, proxy, path: str, cap: int, declared: bool):
    proxy.declare_length = declared
    proxy.rewrite_body = lambda p, body: body + b" " * (2 * 1024 * 1024) if p == path else body
    fragment = f"exceeds the {cap}-byte cap" if declared else f"response exceeds the {cap}-byte cap (cut off)"
    _refused(client2, SizeLimitError, fragment)
    assert proxy.paths[-1] == path

