"""Malformed and oversized requests against the real service (gunicorn), not only the test client."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.distributor.helpers import TOKEN, ServeProcess, world_data_dir

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.factory import World

    tmp = tmp_path_factory.mktemp("http")
    world = World()
    data = world_data_dir(tmp / "data", world)
    with ServeProcess(["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json")],
                      tmp / "serve.log") as proc:
        yield proc


def _raw(server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_bodies_get_413_json(server):
    body = b"x" * (2 * 1024 * 1024)
    resp = requests.post(server.url + "/api/v1/bundles", data=body, headers=AUTH, timeout=30)
    assert resp.status_code == 413 and "error" in resp.json()
    chunked = requests.post(server.url + "/api/v1/bundles", data=iter([body[:600_000]] * 3), headers=AUTH, timeout=30)
    assert chunked.status_code == 413 and "error" in chunked.json()


def test_lying_or_odd_requests_get_4xx(server):
    short = _raw(server, b"POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                 b"\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}")
    status = int(short.split(b" ", 2)[1])
    assert 400 <= status < 500, short[:200]
    for path in (b"/tile/%ZZ", b"/api/v1/bundles/%00", b"/api/v1/epochs?limit=%FF", b"/tile/0/" + b"x" * 5000):
        reply = _raw(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, (path, reply[:200])
    resp = requests.request("PATCH", server.url + "/checkpoint", timeout=5)
    assert resp.status_code == 405 and resp.json()["error"]
