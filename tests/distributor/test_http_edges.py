"""Strict HTTP edges of the distributor: one value per query parameter, canonical numbers only, no
unknown parameters, an unreadable body is a 400, every error JSON and every answer nosniff; the same
against the real server, whose own refusals (400/413/414/431) must be JSON too."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distributor.app import create_app, get_service
from tests.distributor.helpers import TOKEN, ServeProcess, world_data_dir

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(sqlite_db, world):
    app = create_app({"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN})
    client = app.test_client()
    for bundle in world.chain(3):
        assert client.post("/api/v1/bundles", data=bundle, headers=AUTH).status_code == 201
    yield client
    get_service(app).close()


def _assert_json_error(resp, status: int) -> None:
    assert resp.status_code == status, (resp.status_code, resp.data[:200])
    assert resp.is_json and resp.get_json()["error"], resp.data[:200]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("query", [
    "/api/v1/epochs?limit=1&limit=100", "/api/v1/epochs?before=3&before=2", "/api/v1/proof/consistency?from=1&from=2",
    "/api/v1/proof/consistency?from=1&to=2&to=3", "/checkpoint?a=1&a=1", "/api/v1/info?x=&x=",
    "/tile/0/000.p/3?v=1&v=2",
])
def test_repeated_query_parameters_are_400(client, query):
    """Which value did a cache in front key on, which one does the app use? Neither: refused."""
    _assert_json_error(client.get(query), 400)


@pytest.mark.parametrize("query", [
    "/api/v1/epochs?limit=01", "/api/v1/epochs?limit=+5", "/api/v1/epochs?limit=", "/api/v1/epochs?before=",
    "/api/v1/epochs?before=0x2", "/api/v1/epochs?limit=%EF%BC%95", "/api/v1/epochs?limt=5",
    "/api/v1/proof/consistency?from=01&to=2", "/api/v1/proof/consistency?from=1&to=",
    "/api/v1/proof/consistency?from=1&too=2",
    "/api/v1/bundles/01", "/api/v1/bundles/+1", "/api/v1/trust-roots/01",
])
def test_non_canonical_numbers_and_unknown_parameters_are_400(client, query):
    _assert_json_error(client.get(query), 400)


def test_canonical_requests_still_answer(client):
    assert [e["epoch"] for e in client.get("/api/v1/epochs?limit=2&before=3").get_json()["epochs"]] == [2, 1]
    assert client.get("/api/v1/proof/consistency?from=1&to=3").status_code == 200
    for path in ("/checkpoint", "/tile/0/000.p/3", "/api/v1/info", "/api/v1/bundles/1", "/"):
        resp = client.get(path)
        assert resp.status_code == 200 and resp.headers["X-Content-Type-Options"] == "nosniff", path


class _Unreadable:
    """A ``wsgi.input`` that fails as a server's reader does on a malformed chunked body."""

    def read(self, *args):
        raise OSError("Invalid chunk header")

    readline = read


@pytest.mark.parametrize("path", ["/api/v1/bundles", "/api/v1/trust-roots"])
def test_an_unreadable_body_is_400_not_500(client, path, caplog):
    resp = client.post(path, headers=AUTH, environ_overrides={"wsgi.input": _Unreadable(),
                                                              "wsgi.input_terminated": True})
    _assert_json_error(resp, 400)
    assert "could not be read" in resp.get_json()["error"]
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
    # The token is checked first: without it nothing is read.
    _assert_json_error(client.post(path, environ_overrides={"wsgi.input": _Unreadable(),
                                                            "wsgi.input_terminated": True}), 401)


def test_every_error_of_the_app_is_json(client):
    for method, path, status in [("GET", "/nope", 404), ("PATCH", "/checkpoint", 405), ("DELETE", "/api/v1/info", 405),
                                 ("POST", "/api/v1/bundles", 401), ("GET", "/api/v1/bundles/99", 404),
                                 ("GET", "/tile/0/001", 404)]:
        _assert_json_error(client.open(path, method=method), status)
    _assert_json_error(client.post("/api/v1/bundles", data=b"x" * (2 << 20), headers=AUTH), 413)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.lists(st.tuples(st.sampled_from(["limit", "before", "from", "to", "x", "LIMIT"]),
                                 st.text(st.characters(codec="utf-8"), max_size=8)), max_size=4),
       path=st.sampled_from(["/api/v1/epochs", "/api/v1/proof/consistency"]))
def test_fuzzed_query_strings_are_answered_200_or_a_json_400(client, params, path):
    resp = client.get(path, query_string=params)
    assert resp.status_code in (200, 400), (path, params, resp.status_code)
    if resp.status_code == 400:
        assert resp.get_json()["error"]
    names = [name for name, _ in params]
    if len(set(names)) < len(names):
        assert resp.status_code == 400


# -- the real server -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.factory import World

    tmp = tmp_path_factory.mktemp("edges")
    world = World()
    data = world_data_dir(tmp / "data", world)
    with ServeProcess(["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json")],
                      tmp / "serve.log") as proc:
        yield proc


def _raw(server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head, "the server closed the connection without an answer"
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def test_malformed_chunked_publish_is_a_json_400(server):
    for chunks in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"-5\r\nabcde\r\n0\r\n\r\n"):
        status, headers, body = _raw(server, b"POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                     + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                     + chunks)
        assert status == 400, body[:200]
        assert headers["content-type"].startswith("application/json") and b'"error"' in body
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("request_bytes,statuses", [
    (b"GET /tile/0/" + b"0" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (414, 431)),
    (b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", (431,)),
    (b"NOT HTTP AT ALL\r\n\r\n", (400,)),
    (b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", (400,)),
    (b"POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n", (413,)),
])
def test_the_servers_own_refusals_are_json(server, request_bytes, statuses):
    """Refusals made below the app, by the HTTP server, are JSON like the app's (the serving layer's part)."""
    status, headers, body = _raw(server, request_bytes)
    assert status in statuses, (status, body[:200])
    assert headers["content-type"].startswith("application/json"), (status, body[:200])
    assert headers.get("x-content-type-options") == "nosniff"
