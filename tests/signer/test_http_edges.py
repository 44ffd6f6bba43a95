"""Strict HTTP edges of the anchor signer: routing that no namespace name can break, canonical numbers,
one value per query parameter, the token before the body, JSON (and nosniff) for every error, and
journal faults (a full disk, an EIO on the commit's fsync) answered 503 with ``Retry-After``."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer.app import NAMESPACES_PREFIX, RETRY_AFTER, namespace_path, resolve_namespace_path, split_namespace_path
from tests.signer.conftest import NS, make_signer
from tests.signer.process import SignerProcess, prepare_data_dir

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-"
names = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=40),
    # names built to look like routes: parts drawn mostly from the route words
    st.lists(st.sampled_from(["audits", "x", "1", "01", "", "audits", "reports", "5"]), min_size=1, max_size=6)
    .map("/".join).filter(lambda n: 1 <= len(n) <= 256),
)


def _parts(path: str) -> list[str]:
    assert path.startswith(NAMESPACES_PREFIX)
    return split_namespace_path(path[len(NAMESPACES_PREFIX):])


# -- routing: a namespace name never collides with a route (the pure rule) ---------------------------
@given(name=names, epoch=st.from_regex(r"\A[0-9]{1,20}\Z"))
def test_every_name_has_one_record_url_and_its_own_audit_and_sign_urls(name, epoch):
    assert resolve_namespace_path("GET", _parts(namespace_path(name))) == ("record", name, None)
    assert resolve_namespace_path("GET", _parts(NAMESPACES_PREFIX + quote(name, safe=""))) == ("record", name, None)
    raw = NAMESPACES_PREFIX + quote(name, safe="/")
    assert resolve_namespace_path("GET", _parts(f"{raw}/audits/{epoch}")) == ("audit", name, epoch)
    assert resolve_namespace_path("POST", _parts(f"{raw}/audits")) == ("sign", name, None)
    # PATCH takes the record URL, like GET: a path that reads as an audit is never a name to update.
    assert resolve_namespace_path("PATCH", _parts(namespace_path(name))) == ("update", name, None)
    # Plexi's clients escape every "/" of the name: the same resources.
    plexi = NAMESPACES_PREFIX + quote(name, safe="")
    assert resolve_namespace_path("GET", _parts(f"{plexi}/audits/{epoch}")) == ("audit", name, epoch)
    assert resolve_namespace_path("POST", _parts(f"{plexi}/audits")) == ("sign", name, None)


def test_names_that_look_like_routes_are_created_and_read_back(tmp_path):
    """x/audits/1 could be created and never read back (its GET was epoch 1 of x)."""
    signer = make_signer(tmp_path / "s", namespaces=(), mode="digest")
    admin = signer.auth("admin")
    created = ["x", "x/audits/1", "x/audits", "x/audits/audits", "a//b", "/lead", "trail/", "audits/5", "/audits/5"]
    for i, name in enumerate(created):
        resp = signer.client.post("/namespaces", json={"name": name, "mode": "digest"}, headers=admin)
        assert resp.status_code == 201, (name, resp.get_json())
        digest = bytes([i + 1]) * 32
        signed = signer.client.post(NAMESPACES_PREFIX + quote(name, safe="/") + "/audits",
                                    json={"epoch": 1, "digest": digest.hex()}, headers=signer.auth())
        assert signed.status_code == 200 and signed.get_json()["namespace"] == name, (name, signed.get_json())
    for i, name in enumerate(created):
        record = signer.client.get(namespace_path(name))
        assert record.status_code == 200 and record.get_json()["name"] == name, name
        audit = signer.client.get(NAMESPACES_PREFIX + quote(name, safe="/") + "/audits/1")
        assert audit.get_json()["namespace"] == name and audit.get_json()["digest"] == (bytes([i + 1]) * 32).hex()
        patched = signer.client.patch(namespace_path(name), json={"status": "Online"},
                                      headers=admin)
        assert patched.status_code == 200 and patched.get_json()["name"] == name
    # Unescaped, the path is read from its end: epoch 1 of x, never the record of "x/audits/1".
    assert signer.client.get("/namespaces/x/audits/1").get_json()["namespace"] == "x"
    assert signer.client.get("/namespaces/x/audits%2F1").get_json()["name"] == "x/audits/1"
    assert {ns["name"] for ns in signer.client.get("/namespaces").get_json()["namespaces"]} == set(created)
    resp = signer.client.post("/namespaces/x", json={}, headers=admin)
    assert resp.status_code == 405 and resp.get_json()["code"] == "method-not-allowed"
    assert "PATCH" in resp.headers["Allow"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
def test_any_created_name_reads_back_through_the_app(tmp_path_factory, name):
    signer = _shared_signer(tmp_path_factory)
    resp = signer.client.post("/namespaces", json={"name": name, "mode": "digest"}, headers=signer.auth("admin"))
    assert resp.status_code in (200, 201), resp.get_json()
    assert signer.client.get(namespace_path(name)).get_json()["name"] == name
    assert signer.client.get(NAMESPACES_PREFIX + quote(name, safe="")).get_json()["name"] == name


_SHARED: dict[str, object] = {}


def _shared_signer(tmp_path_factory):
    if "signer" not in _SHARED:
        _SHARED["signer"] = make_signer(tmp_path_factory.mktemp("names") / "s", namespaces=(), mode="digest")
    return _SHARED["signer"]


# -- canonical numbers, one value per parameter --------------------------------------------------------
@pytest.mark.parametrize("epoch", ["01", "+1", "-1", " 1", "1.0", "0x1", "1e3", "\uff11", "", "1 "])
def test_non_canonical_epochs_are_400(signer, epoch):
    signer.sign(1, b"\x01" * 32)
    resp = signer.client.get(f"/namespaces/{NS}/audits/{quote(epoch)}")
    assert resp.status_code in (400, 404) if epoch == "" else resp.status_code == 400, (epoch, resp.get_json())
    if epoch:
        assert resp.get_json()["code"] == "malformed"
    assert signer.client.get(f"/namespaces/{NS}/audits/1").status_code == 200


@pytest.mark.parametrize("query", ["limit=01", "limit=+5", "limit=", "before=", "before=007", "limit=5&limit=6",
                                   f"namespace={NS}&namespace={NS}", "namespace=", "limt=5", "limit=1001"])
def test_journal_query_is_strict(signer, query):
    resp = signer.client.get(f"/api/v1/journal?{query}")
    assert resp.status_code == 400 and resp.get_json()["code"] == "malformed", (query, resp.get_json())
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_repeated_parameters_are_400_on_every_path(signer):
    for path in ("/info?a=1&a=2", f"/namespaces/{NS}?x=&x=", "/namespaces?n=1&n=1"):
        resp = signer.client.get(path)
        assert resp.status_code == 400 and resp.get_json()["status"] == 400, path


# -- the token before the body ---------------------------------------------------------------------------
class _Unreadable:
    """A ``wsgi.input`` that fails like a malformed chunked body (and records whether it was read)."""

    def __init__(self) -> None:
        self.read_called = False

    def read(self, *args):
        self.read_called = True
        raise OSError("Invalid chunk header")

    readline = read


def _post_unreadable(signer, path: str, headers: dict[str, str], method: str = "POST"):
    stream = _Unreadable()
    resp = signer.client.open(path, method=method, headers=headers,
                              environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True})
    return resp, stream


@pytest.mark.parametrize("path,method,role", [(f"/namespaces/{NS}/audits", "POST", "write"),
                                              ("/api/v1/sign-keyset", "POST", "write"),
                                              ("/namespaces", "POST", "admin"),
                                              (f"/namespaces/{NS}", "PATCH", "admin")])
def test_the_token_is_checked_before_the_body_is_read(signer, path, method, role):
    resp, stream = _post_unreadable(signer, path, {}, method)
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthenticated" and not stream.read_called
    other = "admin" if role == "write" else "write"
    resp, stream = _post_unreadable(signer, path, signer.auth(other), method)
    assert resp.status_code == 403 and not stream.read_called
    resp, stream = _post_unreadable(signer, path, signer.auth(role), method)
    assert resp.status_code == 400 and resp.get_json()["code"] == "malformed-body" and stream.read_called


# -- every error is JSON, every answer nosniff ------------------------------------------------------------
def test_every_error_is_json_with_nosniff(signer):
    big = b"{" * (65 * 1024)
    cases = [("GET", "/nope", None, 404), ("DELETE", "/info", None, 405), ("PUT", f"/namespaces/{NS}", None, 405),
             ("POST", "/namespaces", signer.auth("admin") | {"Content-Type": "application/json"}, 400),
             ("POST", "/namespaces", {}, 401), ("GET", f"/namespaces/{NS}/audits/9", None, 404),
             ("POST", f"/namespaces/{NS}/audits", signer.auth(), 413)]
    for method, path, headers, status in cases:
        resp = signer.client.open(path, method=method, headers=headers or {},
                                  data=big if status == 413 else b"{}")
        assert resp.status_code == status, (method, path, resp.data[:200])
        assert resp.is_json and resp.get_json()["status"] == status and resp.get_json()["code"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert signer.client.get("/info").headers["X-Content-Type-Options"] == "nosniff"


# -- against the real server: framing errors and the server's own refusals -------------------------------
@pytest.fixture(scope="module")
def process(tmp_path_factory):
    data = tmp_path_factory.mktemp("edges") / "signer"
    tokens = prepare_data_dir(data, (NS,), key_seed=b"\x07" * 32, mode="digest")
    proc = SignerProcess(data)
    proc.tokens = tokens
    yield proc
    proc.stop()


def _raw(proc, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", proc.port), timeout=15) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def test_malformed_chunked_bodies_are_400_json(process):
    auth = f"Authorization: Bearer {process.tokens['write']}\r\n".encode()
    for chunks in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"-1\r\n\r\n"):
        status, headers, body = _raw(process, b"POST /namespaces/" + NS.encode() + b"/audits HTTP/1.1\r\nHost: x\r\n"
                                     + auth + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
        assert status == 400, body
        assert headers["content-type"].startswith("application/json") and b'"error"' in body
    assert "Traceback" not in process.log()


@pytest.mark.parametrize("request_bytes,statuses", [
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (414, 431)),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", (431,)),
    (b"GET /info HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", (200, 431)),
    (b"GARBAGE\r\n\r\n", (400,)),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", (400,)),
])
def test_the_servers_own_refusals_are_json(process, request_bytes, statuses):
    """Errors produced below the app (by the HTTP server) are JSON too (the serving layer's part)."""
    status, headers, body = _raw(process, request_bytes)
    assert status in statuses, (status, body[:200])
    if status >= 400:
        assert headers["content-type"].startswith("application/json"), (status, body[:200])
        assert headers.get("x-content-type-options") == "nosniff"


# -- journal faults --------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk) -> object:
    """Fill ``disk`` to the last page with a filler file (removed to free the space again)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


def _journal_503(resp, code: str) -> None:
    body = resp.get_json() if hasattr(resp, "get_json") else resp.json()
    assert resp.status_code == 503 and body["code"] == code and body["status"] == 503, body
    assert resp.headers["Retry-After"] == str(RETRY_AFTER)
    assert "journal.sqlite" not in body["error"]  # the file is named in the log only


def test_a_full_disk_answers_503_disk_full_and_signing_resumes(small_disk):
    signer = make_signer(small_disk / "signer", mode="digest")
    assert signer.sign(1, b"\x01" * 32).status_code == 200
    filler = _fill(small_disk)
    _journal_503(signer.sign(2, b"\x02" * 32), "disk-full")
    assert signer.client.get(f"/namespaces/{NS}/audits/1").status_code == 200  # reads still answer
    filler.unlink()
    again = signer.sign(2, b"\x02" * 32)
    assert again.status_code == 200
    assert signer.sign(2, b"\x02" * 32).get_json() == again.get_json()  # a repeat answers the stored entry
    assert [e["kind"] for e in signer.journal(namespace=NS)] == ["signed", "signed", "namespace-created"]


def test_eio_on_the_journal_commit_answers_503_and_never_two_signatures(tmp_path):
    if shutil.which("strace") is None or os.geteuid() != 0:
        pytest.skip("needs strace and root")
    data = tmp_path / "signer"
    tokens = prepare_data_dir(data, (NS,), key_seed=b"\x09" * 32, mode="digest")
    auth = {"Authorization": f"Bearer {tokens['write']}"}
    body = {"epoch": 1, "digest": "11" * 32}
    proc = SignerProcess(data)
    try:
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.proc.pid)], capture_output=True,
                                                  text=True).stdout.split()]
        out = tmp_path / "strace.out"
        tracer = subprocess.Popen(["strace", "-f", "-qq", *sum((["-p", str(w)] for w in workers), []),
                                   "-P", str(data / "journal.sqlite-wal"), "-e", "trace=fsync,fdatasync",
                                   "-e", "inject=fsync,fdatasync:error=EIO:when=1", "-o", str(out)])
        try:
            time.sleep(1.0)
            _journal_503(requests.post(proc.url + f"/namespaces/{NS}/audits", json=body, headers=auth, timeout=10),
                         "journal-io-error")
        finally:
            tracer.terminate()
            tracer.wait(10)
        assert "INJECTED" in out.read_text()
        first = requests.post(proc.url + f"/namespaces/{NS}/audits", json=body, headers=auth, timeout=10)
        assert first.status_code == 200
        proc.kill()
        proc = SignerProcess(data)
        after = requests.get(proc.url + f"/namespaces/{NS}/audits/1", timeout=10)
        assert after.json() == first.json()  # the one signature of epoch 1, the one the client received
        other = requests.post(proc.url + f"/namespaces/{NS}/audits", json={"epoch": 1, "digest": "22" * 32},
                              headers=auth, timeout=10)
        assert other.status_code == 409 and other.json()["code"] == "equivocation"
    finally:
        proc.stop()


def test_each_path_allows_exactly_its_methods_and_says_so(tmp_path):
    """OPTIONS and a 405 name the same methods: a record path takes GET/HEAD/PATCH, ``.../audits`` also
    POST, an audit path GET/HEAD only (PATCH there would update a name read as an audit)."""
    signer = make_signer(tmp_path / "s", namespaces=(), mode="digest")
    cases = {"/namespaces/x": "GET, HEAD, PATCH", "/namespaces/x/audits": "GET, HEAD, PATCH, POST",
             "/namespaces/x/audits/1": "GET, HEAD"}
    for path, allowed in cases.items():
        options = signer.client.open(path, method="OPTIONS")
        assert options.status_code == 204 and options.headers["Allow"] == allowed + ", OPTIONS", path
    refused = signer.client.patch("/namespaces/x/audits/1", json={"status": "Online"}, headers=signer.auth("admin"))
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD"
    assert refused.get_json()["code"] == "method-not-allowed"
    refused = signer.client.post("/namespaces/x", json={}, headers=signer.auth())
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD, PATCH"
