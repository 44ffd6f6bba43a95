"""Fuzzed request bodies and query strings: every answer is a JSON 2xx/4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.signer.conftest import NS, make_signer

ALLOWED = {200, 201, 400, 401, 403, 404, 405, 409, 413}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
SIGN_LIKE = st.fixed_dictionaries(
    {"epoch": st.one_of(st.integers(min_value=-3, max_value=2**64 + 3), JSON_VALUES),
     "digest": st.one_of(st.binary(min_size=0, max_size=40).map(bytes.hex), JSON_VALUES)},
    optional={"previous": JSON_VALUES, "namespace": JSON_VALUES})
KEYSET_LIKE = st.fixed_dictionaries(
    {"epoch": st.integers(min_value=-1, max_value=3), "namespace": st.sampled_from([NS, "x", ""]),
     "previous": st.sampled_from(["0" * 64, "1" * 64, "zz"]), "issued_at": st.text(max_size=24),
     "expires_at": st.sampled_from(["2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "x"]),
     "fleets": st.lists(st.dictionaries(st.sampled_from(["algorithm", "fleet_id", "public_key", "status",
                                                         "not_before", "not_after"]), JSON_VALUES), max_size=2)})


def _body(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


BODIES = st.one_of(st.binary(max_size=300), JSON_VALUES.map(_body), SIGN_LIKE.map(_body), KEYSET_LIKE.map(_body))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return make_signer(tmp_path_factory.mktemp("fuzz") / "s")


def _check(resp) -> None:
    assert resp.status_code in ALLOWED, (resp.status_code, resp.data[:300])
    if resp.status_code >= 400:
        assert isinstance(resp.get_json()["error"], str)


@FUZZ
@given(body=BODIES, token=st.sampled_from(["write", "admin", None]),
       path=st.sampled_from([f"/namespaces/{NS}/audits", "/api/v1/sign-keyset", "/namespaces", "/namespaces/x/audits"]))
def test_fuzzed_posts_never_500(signer, body, token, path):
    headers = signer.auth(token) if token else {}
    _check(signer.client.post(path, data=body, headers=headers, content_type="application/json"))


@FUZZ
@given(body=BODIES)
def test_fuzzed_patches_never_500(signer, body):
    _check(signer.client.patch("/namespaces/zz.ns", data=body, headers=signer.auth("admin")))


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["namespace", "limit", "before", "x"]), st.text(max_size=25), max_size=3),
       epoch=st.text(max_size=25))
def test_fuzzed_reads_never_500(signer, query, epoch):
    _check(signer.client.get("/api/v1/journal", query_string=query))
    _check(signer.client.get(f"/namespaces/{NS}/audits/{epoch}"))
