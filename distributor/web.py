"""The audit web page (``GET /``): the log's epoch history, verified in the visitor's browser.

The page is static HTML (``templates/audit.html``) plus one script and one stylesheet
(``static/audit.js``, ``static/audit.css``, served under ``/assets/``); it has no server-side data
at all. The script reads the public read API (``/api/v1/info``, ``/checkpoint``, ``/api/v1/epochs``,
``/api/v1/bundles/<epoch>``, ``/api/v1/proof/consistency``) and checks with WebCrypto (Ed25519,
SHA-256) the checkpoint's log signature, each bundle's RFC 9162 inclusion proof and its keyset digest,
so what it shows does not rest on this server's word (see the page for what it does not check).

Every response of this blueprint carries a strict Content-Security-Policy: scripts and styles only
from this origin, no inline code, fetches only to this origin, no frames, no forms, and Trusted Types
required for DOM script sinks (the script builds the page with ``textContent`` only).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, abort, make_response, render_template, request

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
])

web_bp = Blueprint("web", __name__, template_folder="templates")

_ASSETS_DIR = Path(__file__).resolve().parent / "static"
#: The files under ``/assets/`` and their media types (nothing else is served from there).
_ASSETS = {"audit.js": "text/javascript", "audit.css": "text/css"}


def _revalidated(resp: Response) -> Response:
    """``no-cache`` with a strong ETag over the body (the same on every replica), 304 on a match."""
    resp.headers["Cache-Control"] = "no-cache"
    resp.set_etag(hashlib.sha256(resp.get_data()).hexdigest()[:32])
    return resp.make_conditional(request)


@web_bp.get("/")
def audit_page() -> Response:
    return _revalidated(make_response(render_template("audit.html")))


@web_bp.get("/assets/<filename>", endpoint="static")  # the name templates use: url_for("web.static", ...)
def asset(filename: str) -> Response:
    mimetype = _ASSETS.get(filename)
    if mimetype is None:
        abort(404)
    return _revalidated(Response((_ASSETS_DIR / filename).read_bytes(), mimetype=mimetype))


@web_bp.after_request
def security_headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return resp


__all__ = ["CONTENT_SECURITY_POLICY", "web_bp"]
