"""The audit web page (``GET /``) in a real headless Chromium against a real quickstart.

The page verifies in the browser (WebCrypto Ed25519 and SHA-256): the checkpoint's log signature,
each epoch's inclusion proof and keyset digest. The negative cases put a tampering HTTP proxy between
the browser and the honest distributor (a malicious CDN or a compromised front end): it rewrites
single responses, and the page must say FAILED for exactly what was changed.

Browser tests are skipped when ``/usr/bin/chromium`` is missing, except under ``CI`` where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.audit.browser import CHROMIUM, Browser
from tests.audit.conftest import Quickstart
from tests.factory import SeedSigner
from verifier.audit import fingerprint
from verifier.bundle import parse_bundle
from verifier.keyset import parse_keyset
from verifier.note import NoteVerifier
from verifier.trustroot import load_trust_root

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                    reason=f"{CHROMIUM} is not installed (CI installs it and runs these tests)")
WEB = Path(__file__).resolve().parents[2] / "distributor"

# -- the DOM the browser produced ---------------------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Page(HTMLParser):
    """Texts by element id, and per ``article[data-epoch]``: data-verified, badge text, revoked fleets, text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.ids: dict[str, str] = {}
        self.epochs: dict[int, dict] = {}

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "article" and "data-epoch" in attrs:
            self.epochs[int(attrs["data-epoch"])] = {"verified": attrs.get("data-verified"), "badge": "",
                                                     "revoked": [], "text": ""}
        if tag not in _VOID:
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        article = None
        for tag, attrs in self.stack:
            if "id" in attrs:
                self.ids[attrs["id"]] = self.ids.get(attrs["id"], "") + data
            if tag == "article" and "data-epoch" in attrs:
                article = self.epochs[int(attrs["data-epoch"])]
        if article is None:
            return
        article["text"] += data
        classes = [(tag, attrs.get("class", "").split()) for tag, attrs in self.stack]
        if any(tag == "span" and "badge" in c for tag, c in classes):
            article["badge"] += data
        if any(tag == "tr" and "revoked" in c for tag, c in classes) and any("fleet" in c for _, c in classes):
            article["revoked"].append(data)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    """One headless Chromium for the module (each page is a new tab)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is not installed")
    chromium = Browser(tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


def open_page(browser: Browser, url: str) -> _Page:
    """Load ``url``, wait until the page has finished verifying, and parse its DOM."""
    page = _Page()
    page.feed(browser.dom(browser.load(url)))
    return page


# -- a tampering proxy in front of the honest distributor -------------------------------------------------------


class TamperingProxy:
    """Forwards GETs to ``upstream`` and rewrites the bodies of the paths in ``tamper``."""

    def __init__(self, upstream: str, tamper: dict[str, Callable[[bytes], bytes]]) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                resp = requests.get(upstream + self.path, timeout=10)
                body = resp.content
                if self.path in tamper:
                    body = tamper[self.path](body)
                    proxy.tampered.append(self.path)
                self.send_response(resp.status_code)
                for name in ("Content-Type", "Content-Security-Policy", "Cache-Control"):
                    if name in resp.headers:
                        self.send_header(name, resp.headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.tampered: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> TamperingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json_field(body: bytes, name: str, fn: Callable) -> bytes:
    obj = json.loads(body)
    obj[name] = fn(obj[name])
    return json.dumps(obj).encode()


def wrong_proof_hash(proof: str) -> str:
    """Replace the first inclusion-proof hash (the line after ``index N``)."""
    return re.sub(r"(index \d+\n)[A-Za-z0-9+/=]{44}\n", lambda m: m.group(1) + base64.b64encode(b"\x11" * 32).decode()
                  + "\n", proof, count=1)


def unrevoke(bundle_b64: str) -> str:
    """The rogue change a CDN would like to make: the revoked fleet shown as active again."""
    bundle = json.loads(base64.b64decode(bundle_b64))
    keyset = base64.b64decode(bundle["keyset"])
    assert b'"status":"revoked"' in keyset
    bundle["keyset"] = base64.b64encode(keyset.replace(b'"status":"revoked"', b'"status":"active"')).decode()
    return base64.b64encode(json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()).decode()


def bad_log_signature(checkpoint: bytes) -> bytes:
    text = checkpoint.decode()
    origin = text.split("\n", 1)[0]
    line = re.search(rf"^\u2014 {re.escape(origin)} (\S+)$", text, re.M)
    raw = bytearray(base64.b64decode(line.group(1)))
    raw[10] ^= 0x01
    return text.replace(line.group(1), base64.b64encode(bytes(raw)).decode()).encode()


# -- tests -------------------------------------------------------------------------------------------------------


def test_page_headers_forbid_inline_and_foreign_code(quickstart: Quickstart) -> None:
    resp = requests.get(quickstart.url + "/", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "require-trusted-types-for 'script'"):
        assert directive in csp
    assert "unsafe" not in csp and resp.headers["X-Content-Type-Options"] == "nosniff"
    html = resp.text
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/assets/audit.js" defer>'], "no inline script"
    tags = re.sub(r">[^<]*<", "><", html)
    assert " style=" not in tags and "<style" not in tags and not re.search(r"\son[a-z]+=", tags), "no inline code"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "nothing loaded from another origin"
    js = requests.get(quickstart.url + "/assets/audit.js", timeout=10)
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    css = requests.get(quickstart.url + "/assets/audit.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")


def test_script_builds_the_page_from_text_only() -> None:
    js = (WEB / "static" / "audit.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setTimeout(\"", "javascript:"):
        assert sink not in js, sink
    css = (WEB / "static" / "audit.css").read_text()
    assert "@import" not in css and "url(" not in css and "@font-face" not in css, "system fonts, no external files"


@needs_chromium
def test_chromium_verifies_the_three_epochs(quickstart: Quickstart, browser: Browser) -> None:
    page = open_page(browser, quickstart.url + "/")
    assert sorted(page.epochs) == [1, 2, 3]
    for epoch, card in page.epochs.items():
        assert (card["verified"], card["badge"]) == ("true", "verified in your browser"), (epoch, card)
    assert page.epochs[3]["revoked"] == ["eu-west-1-gen1"] and page.epochs[2]["revoked"] == []
    assert "Changes since epoch 2:eu-west-1-gen1: active → revoked" in page.epochs[3]["text"]
    assert page.ids["checkpoint-badge"] == "log signature verified in your browser"
    assert page.ids["cp-size"] == "3 entries"
    assert page.ids["status"] == "Checkpoint and 3 epochs verified in your browser against the log key below."
    root = load_trust_root(quickstart.trust_root.read_bytes())
    assert page.ids["log-vkey"] == root.log.key.vkey, "the page shows the log key an auditor compares"
    keyset = parse_keyset(parse_bundle((quickstart.data / "bundles" / "epoch-3.json").read_bytes()).keyset)
    for fleet in keyset.fleets:  # the browser's fingerprints are the CLI's
        assert fingerprint(fleet.public_key) in page.epochs[3]["text"]


@needs_chromium
def test_chromium_flags_a_bad_inclusion_proof_and_a_changed_keyset(quickstart: Quickstart, browser: Browser) -> None:
    tamper = {"/api/v1/bundles/2": lambda b: _json_field(b, "proof", wrong_proof_hash),
              "/api/v1/bundles/3": lambda b: _json_field(b, "bundle", unrevoke)}
    with TamperingProxy(quickstart.url, tamper) as proxy:
        page = open_page(browser, proxy.url + "/")
    assert sorted(set(proxy.tampered)) == sorted(tamper)
    assert (page.epochs[1]["verified"], page.epochs[1]["badge"]) == ("true", "verified in your browser")
    assert page.epochs[2]["verified"] == "false"
    assert page.epochs[2]["badge"] == "FAILED: inclusion proof does not lead to the checkpoint root"
    assert page.epochs[3]["verified"] == "false"
    assert page.epochs[3]["badge"] == ("FAILED: the keyset's SHA-256 does not match the digest in the signed "
                                       "statement")
    assert "eu-west-1-gen1" not in page.epochs[3]["text"], "nothing from an epoch that failed is shown"
    assert page.ids["status"].startswith("2 of 3 epochs FAILED verification")


@needs_chromium
def test_chromium_flags_a_forged_checkpoint(quickstart: Quickstart, browser: Browser) -> None:
    with TamperingProxy(quickstart.url, {"/checkpoint": bad_log_signature}) as proxy:
        page = open_page(browser, proxy.url + "/")
    assert proxy.tampered == ["/checkpoint"]
    assert page.ids["checkpoint-badge"] == "FAILED: the log signature on the checkpoint does not verify"
    assert sorted(page.epochs) == [1, 2, 3]
    assert all(card["verified"] == "false" and card["badge"].startswith("FAILED: the checkpoint did not verify")
               for card in page.epochs.values())


@needs_chromium
@pytest.mark.parametrize("honest", [True, False], ids=["pinned-log-key", "pinned-other-key"])
def test_chromium_verifies_against_a_pinned_log_key(quickstart: Quickstart, browser: Browser, honest: bool) -> None:
    root = load_trust_root(quickstart.trust_root.read_bytes())
    key = root.log.key if honest else NoteVerifier.from_public_key(root.log.origin, SeedSigner("impostor").public_key)
    page = open_page(browser, f"{quickstart.url}/#log-key={quote(key.vkey, safe='')}")
    assert page.ids["key-source"].startswith("pinned by you in the URL")
    assert page.ids["log-vkey"] == key.vkey
    if honest:
        assert all(card["verified"] == "true" for card in page.epochs.values()) and len(page.epochs) == 3
    else:
        assert page.ids["checkpoint-badge"].startswith("FAILED: checkpoint is not signed by the log key")
        assert all(card["verified"] == "false" for card in page.epochs.values())


@needs_chromium
def test_chromium_screenshot_of_the_page(quickstart: Quickstart, browser: Browser, tmp_path: Path) -> None:
    """A 1280x1600 screenshot (kept in the test's tmp directory, never committed) to look at by eye."""
    session = browser.load(quickstart.url + "/")
    png = base64.b64decode(browser.call("Page.captureScreenshot", {"format": "png"}, session)["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 50_000
    (tmp_path / "audit.png").write_bytes(png)
