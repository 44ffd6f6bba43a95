"""Strict HTTP edges of the witness: the spec's text bodies on ``/add-checkpoint`` (400 for an unreadable
body, a repeated parameter; 503 with ``Retry-After`` when the state store fails, a full disk for
real), JSON errors elsewhere, ``X-Content-Type-Options: nosniff`` on every answer, and the server's
own refusals in the same shapes."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess

import pytest

from tests.witness.helpers import TestLog, WitnessProcess, make_client
from witness.app import RETRY_AFTER
from witness.errors import StateBusy, StateDiskFull, StateIOError, StateUnavailable
from witness.state import state_error

TEXT = "text/plain; charset=utf-8"


@pytest.fixture
def log() -> TestLog:
    return TestLog().grow(5)


@pytest.fixture
def client(tmp_path, log):
    return make_client(tmp_path / "w", [log])


class _Unreadable:
    def read(self, *args):
        raise OSError("Invalid chunk header")

    readline = read


def test_an_unreadable_body_is_a_text_400(client):
    resp = client.post("/add-checkpoint", environ_overrides={"wsgi.input": _Unreadable(),
                                                             "wsgi.input_terminated": True})
    assert resp.status_code == 400 and resp.headers["Content-Type"] == TEXT
    assert b"could not be read" in resp.data and resp.headers["X-Content-Type-Options"] == "nosniff"


def test_repeated_parameters_are_400_in_the_shape_of_the_path(client, log):
    resp = client.post("/add-checkpoint?a=1&a=2", data=log.request(0, 5))
    assert resp.status_code == 400 and resp.headers["Content-Type"] == TEXT
    resp = client.get("/?a=1&a=2")
    assert resp.status_code == 400 and resp.get_json()["code"] == "malformed"
    assert client.post("/add-checkpoint?a=1", data=log.request(0, 5)).status_code == 200  # once is fine


def test_every_answer_carries_nosniff_and_non_spec_errors_are_json(client, log):
    for resp in (client.get("/"), client.post("/add-checkpoint", data=log.request(0, 5)),
                 client.post("/add-checkpoint", data=log.request(0, 5)), client.get("/add-checkpoint"),
                 client.get("/nope"), client.delete("/")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff", resp.status_code
    assert client.get("/nope").get_json()["code"] == "not-found"
    assert client.delete("/").get_json()["code"] == "method-not-allowed"
    assert client.get("/add-checkpoint").headers["Content-Type"] == TEXT  # the spec's path keeps text


@pytest.mark.parametrize(("code", "cls", "reason"), [(13, StateDiskFull, "disk full"),
                                                      (10 | (4 << 8), StateIOError, "witness state I/O error"),
                                                      (5, StateBusy, "witness state busy"),
                                                      (14, StateUnavailable, "witness state unavailable")])
def test_state_errors_are_classified(tmp_path, code, cls, reason):
    exc = sqlite3.OperationalError("x")
    exc.sqlite_errorcode = code
    error = state_error(exc, tmp_path / "witness.sqlite", "record the checkpoint")
    assert type(error) is cls and error.reason == reason and "witness.sqlite" in str(error)


def test_a_full_disk_answers_a_text_503_with_retry_after(tmp_path, log):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        client = make_client(mnt / "w", [log])
        assert client.post("/add-checkpoint", data=log.request(0, 3)).status_code == 200
        filler = mnt / "filler"
        with open(filler, "ab", buffering=0) as f:
            for size in (65536, 4096, 512):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * size)
        resp = client.post("/add-checkpoint", data=log.request(3, 5))
        assert resp.status_code == 503 and resp.headers["Content-Type"] == TEXT, resp.data
        assert resp.data == b"disk full\n" and resp.headers["Retry-After"] == str(RETRY_AFTER)
        filler.unlink()
        # Nothing was cosigned: the witness still holds size 3, and the same request now succeeds.
        assert client.post("/add-checkpoint", data=log.request(3, 5)).status_code == 200
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- the real server --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def process(tmp_path_factory):
    log = TestLog().grow(5)
    proc = WitnessProcess(tmp_path_factory.mktemp("edges") / "w", [log])
    proc.test_log = log
    yield proc
    proc.stop()


def _raw(proc, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", proc.port), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head, "the server closed the connection without an answer"
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def test_malformed_chunked_add_checkpoint_is_a_text_400(process):
    status, headers, body = _raw(process, b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                 b"Connection: close\r\n\r\nzz\r\nold 0\r\n0\r\n\r\n")
    assert status == 400 and headers["content-type"].startswith("text/plain"), body
    assert "Traceback" not in process.log()


@pytest.mark.parametrize("request_bytes,statuses", [
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (414, 431)),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", (431,)),
    (b"NOT HTTP\r\n\r\n", (400,)),
])
def test_the_servers_own_refusals_are_json_outside_the_spec_path(process, request_bytes, statuses):
    status, headers, body = _raw(process, request_bytes)
    assert status in statuses, (status, body[:200])
    assert headers["content-type"].startswith("application/json"), (status, body[:200])
    assert headers.get("x-content-type-options") == "nosniff"
