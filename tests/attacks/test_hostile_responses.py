"""Hostile API responses around the signed data: the JSON wrapper, headers and redirects.

Whatever a distributor answers, :meth:`Client.refresh` must either verify, fall back to offline mode
(an outage), or raise a :class:`~verifier.errors.VerificationError` subclass — never an untyped
exception from a decoder, and never with ``state.json`` changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.attacks.helpers import client_refuses, disk, with_fields
from tests.attacks.simulator import SimResponse, Simulator
from verifier.client import Client
from verifier.errors import FormatError


@pytest.fixture
def client1(sim: Simulator, state_dir: Path) -> Client:
    """A client at epoch 1; the log has epoch 2 waiting."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    return client


@pytest.mark.parametrize(("body", "fragment"), [
    (b"<html>not json</html>", "response is not JSON"),
    (b'["a", "list"]', "expected a JSON object"),
    (b'{"bundle": 5, "epoch": 2, "proof": "x"}', "expected string fields 'bundle' and 'proof'"),
    (b'{"bundle": "", "epoch": "2", "proof": ""}', "epoch must be an integer in 1.."),
    (b'{"bundle": "", "epoch": 0, "proof": ""}', "epoch must be an integer in 1.."),
    (b'{"bundle": "@@@@", "epoch": 2, "proof": ""}', "response.bundle: invalid base64"),
    (b'{"bundle": "", "epoch": 2, "proof": "c2sp.org/tlog-proof@v1\\nindex 01\\n\\nx"}', "expected a canonical decimal"),
], ids=["not-json", "not-object", "bundle-not-string", "epoch-string", "epoch-zero", "bad-base64",
        "proof-index-leading-zero"])
def test_malformed_api_response_is_refused(sim: Simulator, client1: Client, body: bytes, fragment: str) -> None:
    sim.override("/api/v1/bundles/latest", SimResponse(200, body))
    with client_refuses(client1, FormatError, fragment):
        client1.refresh()


def test_oversized_consistency_proof_response_is_refused(sim: Simulator, client1: Client) -> None:
    sim.tamper("/api/v1/proof/consistency?from=1&to=2", lambda body: with_fields(body, proof=["AAAA"] * 65))
    with client_refuses(client1, FormatError, "expected a list of at most 64 base64 hashes"):
        client1.refresh()


def test_deeply_nested_json_response_is_refused(sim: Simulator, client1: Client) -> None:
    sim.override("/api/v1/bundles/latest", SimResponse(200, b"[" * 100_000))
    with client_refuses(client1, FormatError, "response is not JSON"):
        client1.refresh()


def test_lone_surrogate_in_proof_field_is_refused(sim: Simulator, client1: Client) -> None:
    sim.tamper("/api/v1/bundles/latest", lambda body: with_fields(body, proof="\ud800"))
    with client_refuses(client1, FormatError, "proof"):
        client1.refresh()


def test_non_ascii_digit_content_length_is_not_a_crash(sim: Simulator, client1: Client) -> None:
    honest = sim.get("/api/v1/bundles/latest")
    sim.override("/api/v1/bundles/latest", SimResponse(200, honest.body, {"Content-Length": "\u00b2"}))
    assert client1.refresh().epoch == 2  # a nonsense length header is ignored; the byte cap still applies


def test_redirect_loop_is_an_outage_not_a_crash(sim: Simulator, client1: Client) -> None:
    saved = disk(client1)
    sim.override("/api/v1/trust-roots/2", SimResponse(302, b"", {"Location": "/api/v1/trust-roots/2"}))
    result = client1.refresh()
    assert result.offline is True and result.epoch == 1
    assert disk(client1) == saved


def test_unexpected_status_is_an_outage(sim: Simulator, client1: Client) -> None:
    saved = disk(client1)
    sim.override("/api/v1/bundles/latest", SimResponse(418, json.dumps({"error": "teapot"}).encode()))
    result = client1.refresh()
    assert result.offline is True and "HTTP 418" in result.message
    assert disk(client1) == saved
