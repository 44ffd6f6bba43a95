"""Structured logs (``serving/logs.py``): JSON lines, one request id per request, and no secret in any log.

The leak tests run each real service (``--access-log``) with its secrets in their real places — bearer
tokens, a PKCS#11 PIN in a ``pin-source`` file, a key file's passphrase in the environment, private
key files — then send requests that carry secrets where clients put them (the ``Authorization``
header, valid and invalid; ``?token=``, ``?pin-value=``, ``?passphrase=``; in the body), requests that
are refused, and one that raises in the app; then grep the whole log (standard output and error) for
every secret and for the key files' contents. A command given a ``pin-value=`` reference refuses it
without printing it. The raising route exists only when this module runs a service
(``tests/ops/logs_raising_service.py``), as ``tests/signer/crashing_signer.py`` arms its hook.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from serving.logs import JsonFormatter, RequestIds, query_names, request_id
from tests.distributor.helpers import TOKEN as PUBLISH_TOKEN
from tests.distributor.helpers import world_data_dir
from tests.factory import World
from tests.ops.logs_raising_service import RAISE_PATH
from tests.service_process import REPO, ServiceProcess
from tests.signer.process import prepare_data_dir
from tests.softhsm import SOFTHSM2_UTIL, make_token
from tests.witness.helpers import WITNESS_NAME, TestLog

REFUSED_PIN = "RefusedPin" + secrets.token_hex(8)


# -- the pieces ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sent", ["abc-123", "A.b_c:d-9", "x" * 64])
def test_a_sane_request_id_is_kept(sent):
    assert request_id(sent) == sent


@pytest.mark.parametrize("sent", [None, "", "x" * 65, "has space", "new\nline", '{"json":1}', "-leading",
                                  "é", "a/b", "Bearer\ttoken"])
def test_any_other_request_id_is_replaced_by_a_generated_one(sent):
    made = request_id(sent)
    assert made != sent and len(made) == 32 and int(made, 16) >= 0
    assert request_id(sent) != made  # generated afresh each time


def test_the_query_is_logged_as_parameter_names_never_values():
    assert query_names("token=s3cret&pin-value=1234&limit=5") == ["token", "pin-value", "limit"]
    # A bare word, an odd or overlong name may itself be the secret: "?".
    assert query_names("s3cret&%41=1&" + "a" * 33 + "=1&=v&x=") == ["?", "?", "?", "?", "x"]
    assert query_names("") == []
    assert len(query_names("&".join(f"p{i}=v" for i in range(100)))) == 17  # 16 names, then "…"


def _record(message: str, *args: Any, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("fleetkeys.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_a_record_is_one_json_line_with_the_request_id_while_the_app_runs():
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            seen["line"] = JsonFormatter().format(_record("failed %s", "here", exc_info=sys.exc_info()))
        start_response("200 OK", [("X-Request-Id", "forged-by-app")])
        return [b"ok"]

    headers: list[tuple[str, str]] = []
    body = RequestIds(app)({"HTTP_X_REQUEST_ID": "req-1"}, lambda status, h, exc=None: headers.extend(h))
    assert list(body) == [b"ok"]
    body.close()
    assert headers == [("X-Request-Id", "req-1")]
    [line] = seen["line"].splitlines()
    record = json.loads(line)
    assert record["message"] == "failed here" and record["request_id"] == "req-1"
    assert record["level"] == "ERROR" and record["logger"] == "fleetkeys.test"
    assert record["time"].endswith("Z") and "ValueError: bad\nthing" in record["exception"]
    # Once the response is closed, the thread's records carry no request id.
    assert "request_id" not in json.loads(JsonFormatter().format(_record("later")))


# -- the real services -----------------------------------------------------------------------------
@dataclass
class Run:
    """A service run: its log, its URL, and the secrets that must never be in the log."""

    service: ServiceProcess
    secrets: dict[str, str]
    """What each secret is -> its value."""
    key_files: list[Path]
    valid_token: str
    protected: str
    """A POST path that needs the bearer token."""


def _pem_key(path: Path, passphrase: str | None = None) -> Path:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    path.chmod(0o600)
    return path


class _Service(ServiceProcess):
    def __init__(self, args: list[str], log: Path, ready_path: str, env: dict[str, str] | None = None) -> None:
        self.ready_path = ready_path
        super().__init__(["tests.ops.logs_raising_service", *args, "--access-log"], log, env=env)
        self.wait_ready(60.0)


def _signer(tmp_path: Path) -> Iterator[Run]:
    if SOFTHSM2_UTIL is None:
        pytest.skip("needs softhsm2-util")
    pin = "Pin" + secrets.token_hex(8)
    token = make_token(tmp_path, pin=pin)
    token.generate_key("anchor")
    ref = token.key_ref("anchor", pin_source=True)
    tokens = prepare_data_dir(tmp_path / "signer", ("logs.example",), key_ref=ref)
    with _Service(["signer", "serve", "--data", str(tmp_path / "signer"), "--key", ref], tmp_path / "signer.log",
                  "/info", token.env) as service:
        yield Run(service, {"PKCS#11 PIN": pin, "admin token": tokens["admin"], "write token": tokens["write"]},
                  [*(tmp_path / "signer" / "tokens").iterdir()], tokens["write"], "/api/v1/sign-keyset")


def _distributor(tmp_path: Path) -> Iterator[Run]:
    world = World()
    data = world_data_dir(tmp_path / "dist", world)
    args = ["distributor", "serve", "--data", str(data), "--origin", world.origin, "--trust-root",
            str(data / "trust-root.json"), "--workers", "1", "--no-static"]
    with _Service(args, tmp_path / "distributor.log", "/checkpoint") as service:
        yield Run(service, {"publish token": PUBLISH_TOKEN}, [data / "log.key", data / "freshness.key"],
                  PUBLISH_TOKEN, "/api/v1/bundles")


def _witness(tmp_path: Path) -> Iterator[Run]:
    passphrase = "Passphrase" + secrets.token_hex(8)
    key = _pem_key(tmp_path / "witness.key", passphrase)
    args = ["witness", "serve", "--name", WITNESS_NAME, "--key", f"file:{key}", "--data", str(tmp_path / "w"),
            "--log", TestLog().log_option]
    with _Service(args, tmp_path / "witness.log", "/", {"FLEETKEYS_KEY_PASSPHRASE": passphrase}) as service:
        token = "Witness" + secrets.token_hex(8)  # the witness takes no token; a client may still send one
        yield Run(service, {"key passphrase": passphrase, "a bearer token": token}, [key], token, "/add-checkpoint")


SERVICES = {"signer": _signer, "distributor": _distributor, "witness": _witness}


@pytest.fixture(params=sorted(SERVICES))
def run(request, tmp_path) -> Iterator[Run]:
    yield from SERVICES[request.param](tmp_path)


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON line of a log (the lines a command prints before gunicorn starts are plain text)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_no_token_pin_passphrase_or_private_key_reaches_the_logs(run: Run):
    url, invalid = run.service.url, "Invalid" + secrets.token_hex(8)
    sent: list[str] = []
    for bearer in (run.valid_token, invalid):
        for value in [*run.secrets.values(), invalid]:
            query = f"token={value}&pin-value={value}&passphrase={value}"
            auth = {"Authorization": f"Bearer {bearer}", "X-Request-Id": f"{len(sent)}-logs"}
            answers = [
                requests.get(f"{url}{run.service.ready_path}?{query}", headers=auth, timeout=10),
                requests.post(f"{url}{run.protected}?{query}", headers=auth, data=f'{{"token": "{value}"}}',
                              timeout=10),
                requests.get(f"{url}/no-such-path?{query}", headers=auth, timeout=10),
                requests.get(f"{url}{RAISE_PATH}?{query}", headers=auth, timeout=10),
            ]
            assert [a.status_code for a in answers][2:] == [404, 500], [a.text for a in answers]
            assert {a.headers["X-Request-Id"] for a in answers} == {auth["X-Request-Id"]}
            sent.append(auth["X-Request-Id"])
    run.service.stop()
    text = run.service.log()

    for what, value in [*run.secrets.items(), ("the invalid token", invalid)]:
        assert value not in text, f"{what} is in the log"
    for path in run.key_files:
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("-----"):
                assert line.strip() not in text, f"the contents of {path.name} are in the log"

    lines = _json_lines(text)
    access = [r for r in lines if r["logger"] == "gunicorn.access"]
    assert {r["request_id"] for r in access} >= set(sent)
    raised = [r for r in access if r["path"] == RAISE_PATH]
    assert [r["status"] for r in raised] == [500] * len(sent) and raised[0]["route"] == RAISE_PATH
    assert raised[0]["query"] == ["token", "pin-value", "passphrase"]
    assert {"time", "method", "bytes", "duration_ms", "client"} <= set(raised[0])
    # The app's error record for the raising request carries that request's id, and its traceback.
    failures = [r for r in lines if "exception" in r and "injected failure" in r["exception"]]
    assert sorted(r["request_id"] for r in failures) == sorted(sent)
    assert "stopped on SIGTERM" in lines[-1]["message"] and text.rstrip().splitlines()[-1].startswith("{")


@pytest.mark.parametrize("command", [
    ["signer", "serve", "--data", "{tmp}/s", "--key", "{ref}"],
    ["distributor", "serve", "--data", "{tmp}/d", "--origin", "logs.example/x", "--log-key", "{ref}"],
    ["witness", "serve", "--name", WITNESS_NAME, "--key", "{ref}", "--data", "{tmp}/w", "--log",
     TestLog().log_option],
])
def test_a_pin_value_in_a_key_reference_is_refused_and_never_printed(tmp_path, command):
    ref = f"pkcs11:token=t;object=k?module-path=/nonexistent/p11.so&pin-value={REFUSED_PIN}"
    args = [arg.format(tmp=tmp_path, ref=ref) for arg in command]
    done = subprocess.run([sys.executable, "-m", *args, "--port", "1", "--access-log"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "pin" in (done.stdout + done.stderr).lower()
    assert REFUSED_PIN not in done.stdout + done.stderr
