"""The OpenAPI 3.1 documents of the three services, checked against the documents' meta-schema and then
against the live services (real ``python -m ... serve`` processes under gunicorn) with schemathesis.

What the schemathesis run asserts, per service, for every documented operation: no 5xx; every status,
content type, required header (``ETag``, ``Cache-Control``, ``X-Content-Type-Options``,
``WWW-Authenticate``, ...) and body is the documented one, the JSON error shapes included; schema-invalid
requests (wrong types, out-of-range or non-canonical numbers, missing or repeated query parameters,
missing required bodies) are refused with a 4xx; a method a path does not take is 405 with ``Allow``;
an authenticated operation refuses a request without its token (``ignored_auth``); and the stateful
phase follows the documents' ``links`` (publish → read back, create → read, sign → audit).

Not asserted: that a schema-valid request is accepted (``positive_data_acceptance``): whether a
well-formed bundle, keyset or epoch is accepted depends on the log's and the journal's state and on
signatures, which no schema can express.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis.engine import Status, events, from_schema

from serving.openapi import openapi_document
from tests.distributor.helpers import TOKEN, ServeProcess, world_data_dir
from tests.distributor.test_log_rules import rotation
from tests.factory import World
from tests.service_process import REPO, wait_for
from tests.signer.process import SignerProcess, prepare_data_dir
from tests.witnesses import WorldWitness

SERVICES = ("signer", "distributor", "witness")
#: Keyset-mode (the default) and digest-mode (Plexi's path) namespaces of the live signer.
KEYSET_NS = "example.messenger/backup-vaults/v1"
DIGEST_NS = "plexi.example/ns"
#: Examples per operation and phase: enough to reach every status the log's state allows, and the
#: whole module stays well under 3 minutes on a loaded 2-core machine.
MAX_EXAMPLES = 100
#: A fixed seed: a CI failure replays exactly (``st replay`` / the curl command in the report).
SEED = 20261201


def document_path(service: str) -> Path:
    return REPO / service / "openapi.json"


def load(service: str) -> dict:
    return json.loads(document_path(service).read_bytes())


# -- the documents themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_document_is_valid_openapi_3_1(service):
    doc = load(service)
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()  # raises with the path of the first violation
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationId must be unique"
    assert "/api/v1/openapi.json" in doc["paths"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_json_error_is_the_error_schema(service):
    """Every documented 4xx/5xx JSON body is ``components/schemas/Error`` (or a status-pinned variant of
    it), whose one required member is ``error``: the shape FORMAT.md §10 promises."""
    doc = load(service)
    schemas, responses = doc["components"]["schemas"], doc["components"].get("responses", {})
    assert "error" in schemas["Error"]["required"] and schemas["Error"]["properties"]["error"]["type"] == "string"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                resp = responses[resp["$ref"].rsplit("/", 1)[1]] if "$ref" in resp else resp
                for media, content in resp.get("content", {}).items():
                    if media == "application/json":
                        assert _is_error_schema(content["schema"], schemas), (method, path, status)


def _is_error_schema(schema: dict, schemas: dict) -> bool:
    if schema.get("$ref") == "#/components/schemas/Error":
        return True
    if "$ref" in schema:
        return _is_error_schema(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    return any(_is_error_schema(s, schemas) for s in schema.get("allOf", []))


@pytest.mark.parametrize("service", SERVICES)
def test_the_package_loader_reads_the_shipped_document(service):
    assert openapi_document(service) == document_path(service).read_bytes()


# -- the live services ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    url: str
    auth: dict[str, str]
    """Bearer token per security scheme of the service's document."""


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[dict[str, Live]]:
    """The three services as real processes, with some state to read: a witness, a distributor that asks
    it (two bundles and a trust-root rotation logged and cosigned), a signer with a keyset-mode and a
    digest-mode namespace (epoch 1 signed in the latter)."""
    base = tmp_path_factory.mktemp("api")
    world = World()
    procs: list = []
    try:
        witness = WorldWitness(world, 0, base / "witness")
        procs.append(witness)
        data = world_data_dir(base / "distributor", world)
        dist = ServeProcess(["--data", str(data), "--origin", world.origin, "--trust-root",
                             str(data / "trust-root.json"), "--witness", witness.option, "--workers", "1"],
                            base / "distributor.log")
        procs.append(dist)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for entry, target in [*((b, "bundles") for b in world.chain(2)), (rotation(world), "trust-roots")]:
            resp = requests.post(f"{dist.url}/api/v1/{target}", data=entry, headers=auth, timeout=30)
            assert resp.status_code == 201, resp.text
        wait_for(lambda: requests.get(f"{dist.url}/api/v1/info", timeout=5).json()["size"] == 3,
                 timeout=30, what="the witness to cosign the three entries")
        tokens = prepare_data_dir(base / "signer" / "data", (KEYSET_NS,), key_seed=bytes(range(32)))
        signer = SignerProcess(base / "signer" / "data")
        procs.append(signer)
        resp = requests.post(f"{signer.url}/namespaces", json={"name": DIGEST_NS, "mode": "digest"},
                             headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=10)
        assert resp.status_code == 201, resp.text
        resp = requests.post(f"{signer.url}/namespaces/{DIGEST_NS}/audits", json={"epoch": 1, "digest": "ab" * 32},
                             headers={"Authorization": f"Bearer {tokens['write']}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        yield {"witness": Live(witness.url, {}),
               "distributor": Live(dist.url, {"publishToken": TOKEN}),
               "signer": Live(signer.url, {"adminToken": tokens["admin"], "writeToken": tokens["write"]})}
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.mark.parametrize("service", SERVICES)
def test_live_service_serves_its_document(live, service):
    resp = requests.get(f"{live[service].url}/api/v1/openapi.json", timeout=10)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"].split(";")[0] == "application/json"
    assert resp.content == document_path(service).read_bytes(), "the served document is not the repo's file"


def schemathesis_config(service: str, target: Live) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": target.url,
        "workers": 1,
        "request-timeout": 10,
        "suppress-health-check": ["too_slow", "filter_too_much"],
        "generation": {"max-examples": MAX_EXAMPLES},
        "checks": {"positive_data_acceptance": {"enabled": False}},
        "phases": {"coverage": {"generate-duplicate-query-parameters": True}},
        **({"auth": {"openapi": {scheme: {"bearer": token} for scheme, token in target.auth.items()}}}
           if target.auth else {}),
        # The signer reads /namespaces/<rest> from its end: a name may itself end in "/audits" or
        # "/audits/<x>", so an OPTIONS there rightly allows the record's GET and PATCH as well.
        "operations": [{"include-operation-id": op, "checks": {"allow_header_conformance": {"enabled": False}}}
                       for op in ("signDigest", "getAudit")] if service == "signer" else [],
    })


def run_schemathesis(service: str, target: Live) -> tuple[list[str], int]:
    """Run every phase (examples, coverage, fuzzing, stateful) against ``target``; the failures, one
    readable block each (operation, check, message, the response, a curl command), and the count of
    scenarios that ran."""
    schema = schemathesis.openapi.from_path(document_path(service), config=schemathesis_config(service, target))
    failures: list[str] = []
    scenarios = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            scenarios += 1
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    interaction = event.recorder.interactions.get(case_id)
                    response = interaction.response if interaction is not None else None
                    got = (f"{response.status_code} {response.headers.get('content-type', [''])} "
                           f"{(response.content or b'')[:300]!r}") if response is not None else "no response"
                    failures.append(f"{event.recorder.label}: {check.name}: {failure.title}\n  {failure.message}"
                                    f"\n  response: {got}\n  {check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: schemathesis error: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return sorted(set(failures)), scenarios


#: A body over each service's limit (distributor 1 MiB, signer 64 KiB, witness 68 KiB), and the POST
#: operations to send it to: refusals the fuzzer never reaches, checked against the document all the same.
OVERSIZED = {"distributor": (1024 * 1024 + 1, {"/api/v1/bundles": "", "/api/v1/trust-roots": ""}),
             "signer": (64 * 1024 + 1, {"/namespaces": "", "/api/v1/sign-keyset": "",
                                        "/namespaces/{name}/audits": f"/namespaces/{DIGEST_NS}/audits"}),
             "witness": (68 * 1024 + 1, {"/add-checkpoint": ""})}


@pytest.mark.parametrize("service", SERVICES)
def test_refusals_the_fuzzer_does_not_reach_match_the_document(live, service):
    """413 for a body over the limit (with the token) and 401 without a token (with a small body): status,
    content type, required headers and body exactly as documented."""
    target = live[service]
    schema = schemathesis.openapi.from_path(document_path(service), config=schemathesis_config(service, target))
    size, paths = OVERSIZED[service]
    token = next(iter(target.auth.values()), None)
    for template, path in paths.items():
        path = path or template
        operation = schema[template]["POST"]
        cases = [(413, b"x" * size, {"Authorization": f"Bearer {token}"} if token else {})]
        if token:
            cases.append((401, b"{}", {}))
        for status, body, headers in cases:
            resp = requests.post(target.url + path, data=body, headers=headers, timeout=30)
            assert resp.status_code == status, (path, resp.status_code, resp.text[:200])
            case = operation.Case(body=body.decode(), headers=headers, media_type="text/plain"
                                  if service == "witness" else "application/json")
            case.validate_response(resp, excluded_checks=[schemathesis.checks.positive_data_acceptance])


@pytest.mark.parametrize("service", SERVICES)
def test_live_service_matches_its_document(live, service):
    started = time.monotonic()
    failures, scenarios = run_schemathesis(service, live[service])
    assert scenarios > 0
    assert not failures, f"{len(failures)} schemathesis failure(s) against the live {service} " \
                         f"(seed {SEED}, {time.monotonic() - started:.0f} s):\n\n" + "\n\n".join(failures)
