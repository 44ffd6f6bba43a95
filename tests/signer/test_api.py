"""The signer's HTTP API in process (Flask test client): Plexi wire shapes, rules, auth, errors, journal."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from keys import InMemorySigner, KeyBackendError
from signer.journal import Journal
from tests.factory import SeedSigner
from tests.signer.conftest import NS, Clock, make_signer
from tests.signer.keysets import chain, make_keyset
from verifier import ed25519
from verifier.statement import Statement, parse_statement

D = [hashlib.sha256(bytes([i])).digest() for i in range(10)]
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "plexi" / "test-vectors.json"


def _events(signer):
    return [(e["kind"], e.get("epoch")) for e in reversed(signer.journal())]


# -- Plexi wire compatibility ---------------------------------------------------------------------


def test_signature_response_is_plexis_and_verifies(signer):
    resp = signer.sign(1, D[1])
    assert resp.status_code == 200
    body = resp.get_json()
    assert list(body) == ["version", "ciphersuite", "namespace", "timestamp", "epoch", "digest", "signature",
                          "key_id", "serialized_message"]
    assert body["version"] == body["ciphersuite"] == 1
    assert (body["namespace"], body["epoch"], body["digest"]) == (NS, 1, D[1].hex())
    assert body["timestamp"] == signer.clock.ms
    assert body["key_id"] == signer.key.public_key[-1]
    statement = bytes.fromhex(body["serialized_message"])
    assert statement == Statement(1, NS, body["timestamp"], 1, D[1]).encode()
    ed25519.verify(signer.key.public_key, statement, bytes.fromhex(body["signature"]))
    assert "commit;dur=" in resp.headers["Server-Timing"]


@pytest.mark.skipif(not VECTORS.exists(), reason="shared Plexi vectors not present")
@pytest.mark.parametrize("index", [0, 1])
def test_signer_reproduces_plexis_published_vectors(tmp_path, index):
    """Our signer, given Plexi's test key, clock and request, returns Plexi's exact signature."""
    tv = json.loads(VECTORS.read_text())[index]
    key = InMemorySigner(bytes.fromhex(tv["signing_key"]))
    s = make_signer(tmp_path / "s", key=key, clock=Clock(tv["timestamp"]), namespaces=())
    created = s.client.post("/namespaces", json={"name": tv["namespace"], "ciphersuite": tv["ciphersuite"],
                                                 "mode": "digest"}, headers=s.auth("admin"))
    assert created.status_code == 201
    body = s.sign(tv["epoch"], bytes.fromhex(tv["digest"]), ns=tv["namespace"]).get_json()
    assert body["signature"] == tv["signature"]
    assert body["key_id"] == tv["key_id"]
    assert body["ciphersuite"] == tv["ciphersuite"]
    info = s.client.get("/info").get_json()
    assert info["keys"][0]["public_key"] == tv["verifying_key"]


def test_info_namespaces_and_audits(signer):
    info = signer.client.get("/info").get_json()
    assert info == {"keys": [{"public_key": signer.key.public_key.hex(), "not_before": signer.clock.ms}],
                    "logs": [NS]}
    record = signer.client.get(f"/namespaces/{NS}").get_json()
    assert record["status"] == "Online" and record["root"] is None and record["ciphersuite"] == 1
    assert record["mode"] == "digest"
    assert record["audits_uri"] == f"/namespaces/{NS}/audits" and "last_verified_epoch" not in record
    first = signer.sign(1, D[1]).get_json()
    signer.clock.ms += 5
    signer.sign(2, D[2])
    record = signer.client.get("/namespaces").get_json()["namespaces"][0]
    assert record["root"] == f"1/{D[1].hex()}" and record["last_verified_epoch"] == 2
    assert signer.client.get(f"/namespaces/{NS}/audits/1").get_json() == first
    assert signer.client.get(f"/namespaces/{NS}/audits/3").status_code == 404
    assert signer.client.get(f"/namespaces/{NS}/audits/99999999999999999999").status_code == 404
    assert signer.client.get(f"/namespaces/{NS}/audits/x1").status_code == 400
    assert signer.client.get("/namespaces/nope").status_code == 404
    assert signer.client.get("/namespaces/nope/audits/1").status_code == 404


# -- the rules over HTTP -----------------------------------------------------------------------------


def test_repeat_is_idempotent_and_journalled_once(signer):
    first = signer.sign(1, D[1])
    signer.clock.ms += 1000
    again = signer.sign(1, D[1])
    assert again.status_code == 200 and again.get_json() == first.get_json()
    assert _events(signer) == [("namespace-created", None), ("signed", 1)]


def test_equivocation_refused_409_and_the_attempt_recorded(signer):
    signer.sign(1, D[1])
    resp = signer.sign(1, D[2])
    assert resp.status_code == 409
    assert resp.get_json()["code"] == "equivocation" and D[2].hex() in resp.get_json()["error"]
    latest = signer.journal()[0]
    assert (latest["kind"], latest["epoch"], latest["digest"], latest["client"]) == ("refused", 1, D[2].hex(), "write")
    assert latest["reason"].startswith("equivocation:")
    assert signer.client.get(f"/namespaces/{NS}/audits/1").get_json()["digest"] == D[1].hex()


@pytest.mark.parametrize("epoch", [2, 5])
def test_first_epoch_must_be_1_over_http(signer, epoch):
    resp = signer.sign(epoch, D[1])
    assert resp.status_code == 409 and resp.get_json()["code"] == "wrong-epoch"


def test_gap_and_digest_replay_refused(signer):
    signer.sign(1, D[1])
    signer.sign(2, D[2])
    assert signer.sign(4, D[4]).get_json()["code"] == "wrong-epoch"
    assert signer.sign(3, D[1]).get_json()["code"] == "digest-reused"
    assert signer.sign(3, D[3]).status_code == 200


def test_timestamps_strictly_increase_when_the_clock_goes_back(signer):
    t1 = signer.sign(1, D[1]).get_json()["timestamp"]
    signer.clock.ms -= 60_000
    t2 = signer.sign(2, D[2]).get_json()["timestamp"]
    t3 = signer.sign(3, D[3]).get_json()["timestamp"]
    assert t1 < t2 < t3


def test_keyset_path_recomputes_the_digest_and_checks_the_chain(signer):
    ks1, ks2, ks3 = chain(NS, 3)
    r1 = signer.sign_keyset(ks1)
    assert r1.status_code == 200 and r1.get_json()["digest"] == hashlib.sha256(ks1).hexdigest()
    forked = make_keyset(NS, 2, previous=D[7])
    resp = signer.sign_keyset(forked)
    assert resp.status_code == 409 and resp.get_json()["code"] == "broken-chain"
    assert signer.sign_keyset(ks3).get_json()["code"] == "wrong-epoch"
    assert signer.sign_keyset(ks2).status_code == 200
    assert signer.sign_keyset(ks2).get_json() == signer.client.get(f"/namespaces/{NS}/audits/2").get_json()
    entry = signer.journal()[0]
    assert entry["previous"] == hashlib.sha256(ks1).hexdigest()
    assert parse_statement(bytes.fromhex(entry["signature"]["serialized_message"])).epoch == 2


def test_keyset_path_refuses_unknown_namespace_and_malformed_keysets(signer):
    assert signer.sign_keyset(make_keyset("other.ns", 1)).status_code == 404
    indented = json.dumps(json.loads(make_keyset(NS, 1)), indent=1).encode()
    resp = signer.sign_keyset(indented)
    assert resp.status_code == 400 and "canonical" in resp.get_json()["error"]
    bad_point = json.loads(make_keyset(NS, 1))
    bad_point["fleets"][0]["public_key"] = "A" * 43 + "="
    resp = signer.sign_keyset(json.dumps(bad_point, separators=(",", ":"), sort_keys=True).encode())
    assert resp.status_code == 400 and resp.get_json()["code"] == "malformed-keyset"
    assert _events(signer) == [("namespace-created", None)]


# -- authentication ----------------------------------------------------------------------------------


def test_signing_needs_a_write_token_and_failures_are_not_recorded(signer):
    body = {"epoch": 1, "digest": D[1].hex()}
    resp = signer.client.post(f"/namespaces/{NS}/audits", json=body)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    resp = signer.client.post(f"/namespaces/{NS}/audits", json=body, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert signer.sign(1, D[1], role="admin").status_code == 403
    assert signer.sign_keyset(make_keyset(NS, 1), role="admin").status_code == 403
    assert _events(signer) == [("namespace-created", None)]


def test_namespace_scoped_write_token(tmp_path):
    from signer.config import add_token

    data = tmp_path / "s"
    make_signer(data, namespaces=(NS, "other.ns"), mode="digest")
    path = add_token(data, "scoped", "write", ("other.ns",))
    s = make_signer(data, mode="digest")  # restart: tokens are read at start
    s.tokens["scoped"] = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert s.sign(1, D[1], role="scoped").status_code == 403
    assert s.sign_keyset(make_keyset(NS, 1), role="scoped").status_code == 403
    assert s.sign(1, D[1], ns="other.ns", role="scoped").status_code == 200


def test_admin_creates_and_disables_namespaces(signer):
    admin = signer.auth("admin")
    assert signer.client.post("/namespaces", json={"name": "new.ns"}, headers=signer.auth()).status_code == 403
    assert signer.client.post("/namespaces", json={"name": "new.ns"}).status_code == 401
    resp = signer.client.post("/namespaces", json={"name": "new.ns", "ciphersuite": 2, "log_directory": None,
                                                   "root": None, "mode": "digest"}, headers=admin)
    assert resp.status_code == 201 and resp.get_json()["ciphersuite"] == 2
    again = signer.client.post("/namespaces", json={"name": "new.ns", "ciphersuite": 2, "mode": "digest"}, headers=admin)
    assert again.status_code == 200
    conflict = signer.client.post("/namespaces", json={"name": "new.ns", "ciphersuite": 1, "mode": "digest"},
                                  headers=admin)
    assert conflict.status_code == 409
    root = signer.client.post("/namespaces", json={"name": "x.ns", "root": "5/" + "00" * 32}, headers=admin)
    assert root.status_code == 400 and root.get_json()["code"] == "root-not-supported"
    body = signer.sign(1, D[1], ns="new.ns").get_json()
    assert parse_statement(bytes.fromhex(body["serialized_message"])).ciphersuite == 2

    resp = signer.client.patch("/namespaces/new.ns", json={"status": "Disabled"}, headers=admin)
    assert resp.status_code == 200 and resp.get_json()["status"] == "Disabled"
    assert signer.sign(2, D[2], ns="new.ns").get_json()["code"] == "namespace-not-online"
    assert signer.sign(1, D[1], ns="new.ns").status_code == 200  # the record stays readable
    again = signer.client.patch("/namespaces/new.ns", json={"status": "Online"}, headers=admin)
    assert again.status_code == 409
    assert signer.client.patch("/namespaces/zzz", json={"status": "Disabled"}, headers=admin).status_code == 404
    kinds = [e["kind"] for e in signer.journal(namespace="new.ns")]
    assert kinds == ["refused", "namespace-status", "signed", "namespace-created"]


def test_initialization_namespace_signs_only_once_online(signer):
    admin = signer.auth("admin")
    signer.client.post("/namespaces", json={"name": "init.ns", "status": "Initialization", "mode": "digest"},
                       headers=admin)
    assert signer.sign(1, D[1], ns="init.ns").get_json()["code"] == "namespace-not-online"
    signer.client.patch("/namespaces/init.ns", json={"status": "Online"}, headers=admin)
    assert signer.sign(1, D[1], ns="init.ns").status_code == 200


# -- malformed and oversized input ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"", b"null", b"[]", b"{}", b"{\"epoch\":1}", b"{\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":1,\"digest\":\"" + b"00" * 31 + b"\"}",
    b"{\"epoch\":1,\"digest\":\"" + b"zz" * 32 + b"\"}",
    b"{\"epoch\":1.0,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":true,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":0,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":-1,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":18446744073709551616,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":9223372036854775808,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":1,\"epoch\":2,\"digest\":\"" + b"00" * 32 + b"\"}",
    b"{\"epoch\":1,\"digest\":\"" + b"00" * 32 + b"\",\"previous\":\"" + b"00" * 32 + b"\"}",
    b"\xff\xfe", b"{\"epoch\":NaN,\"digest\":\"\"}", b"[" * 5000,
])
def test_malformed_sign_requests_are_400_and_not_recorded(signer, body):
    resp = signer.client.post(f"/namespaces/{NS}/audits", data=body, headers=signer.auth(),
                              content_type="application/json")
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]
    assert _events(signer) == [("namespace-created", None)]


def test_bodies_over_64_kib_are_413(signer):
    big = b"{\"epoch\":1,\"digest\":\"" + b"0" * (64 * 1024) + b"\"}"
    for path, role in ((f"/namespaces/{NS}/audits", "write"), ("/api/v1/sign-keyset", "write"), ("/namespaces", "admin")):
        # The token is checked before the body is read: each path with the token it takes.
        resp = signer.client.post(path, data=big, headers=signer.auth(role), content_type="application/json")
        assert resp.status_code == 413 and resp.get_json()["code"] == "too-large"
    assert _events(signer) == [("namespace-created", None)]


def test_unknown_routes_and_methods_are_json(signer):
    assert signer.client.get("/nope").get_json()["code"] == "not-found"
    resp = signer.client.delete("/info")
    assert resp.status_code == 405 and resp.get_json()["code"] == "method-not-allowed"


# -- the journal listing --------------------------------------------------------------------------


def test_journal_lists_signed_and_refused_publicly_with_paging(signer):
    for epoch in range(1, 6):
        signer.sign(epoch, D[epoch])
    signer.sign(2, D[9])
    page = signer.client.get("/api/v1/journal", query_string={"limit": 3}).get_json()
    assert [e["kind"] for e in page["entries"]] == ["refused", "signed", "signed"]
    rest = signer.client.get("/api/v1/journal", query_string={"limit": 3, "before": page["next_before"]}).get_json()
    assert [e.get("epoch") for e in rest["entries"]] == [3, 2, 1]
    last = signer.client.get("/api/v1/journal", query_string={"limit": 3, "before": rest["next_before"]}).get_json()
    assert [e["kind"] for e in last["entries"]] == ["namespace-created"] and last["next_before"] is None
    assert signer.journal(namespace="other") == []
    for bad in ({"limit": "0"}, {"limit": "x"}, {"before": "-1"}, {"namespace": "bad ns"}):
        assert signer.client.get("/api/v1/journal", query_string=bad).status_code == 400


# -- key failures never leave a journal entry ---------------------------------------------------------


class _BrokenKey:
    def __init__(self, mode: str) -> None:
        self.public_key = SeedSigner("anchor").public_key
        self.mode = mode

    def sign(self, message: bytes) -> bytes:
        if self.mode == "raise":
            raise KeyBackendError("token unplugged")
        return bytes(64)


@pytest.mark.parametrize("mode", ["raise", "bad-signature"])
def test_key_failure_is_503_and_nothing_is_journalled(tmp_path, mode):
    s = make_signer(tmp_path / "s", key=_BrokenKey(mode), mode="digest")
    resp = s.sign(1, D[1])
    assert resp.status_code == 503 and resp.get_json()["code"] == "key-unavailable"
    assert _events(s) == [("namespace-created", None)]
    assert Journal(s.data_dir / "journal.sqlite").entry(NS, 1) is None


# -- namespace modes: the digest-only path cannot route around the keyset rules ------------------------


def test_digest_path_cannot_bypass_the_chain_rule_on_a_keyset_namespace(keyset_signer):
    """The review's PoC: a forked keyset refused on /api/v1/sign-keyset must not be signable by its digest."""
    s = keyset_signer
    k1, _ = chain(NS, 2)
    assert s.sign_keyset(k1).status_code == 200
    forked = make_keyset(NS, 2, previous=b"\x11" * 32, label="evil")
    assert s.sign_keyset(forked).get_json()["code"] == "broken-chain"
    resp = s.sign(2, hashlib.sha256(forked).digest())
    assert resp.status_code == 409 and resp.get_json()["code"] == "keyset-required"
    assert "/api/v1/sign-keyset" in resp.get_json()["error"]
    assert s.client.get(f"/namespaces/{NS}/audits/2").status_code == 404
    assert s.sign(1, hashlib.sha256(k1).digest()).get_json()["code"] == "keyset-required"  # even a repeat
    latest = s.journal()[0]
    assert (latest["kind"], latest["epoch"], latest["client"]) == ("refused", 1, "write")
    assert latest["reason"].startswith("keyset-required:")


def test_digest_path_refused_on_a_fresh_keyset_namespace(keyset_signer):
    resp = keyset_signer.sign(1, D[1])
    assert resp.status_code == 409 and resp.get_json()["code"] == "keyset-required"
    assert keyset_signer.client.get(f"/namespaces/{NS}/audits/1").status_code == 404


def test_namespaces_are_created_keyset_mode_unless_digest_is_asked_for(keyset_signer):
    s, admin = keyset_signer, keyset_signer.auth("admin")
    assert s.client.get(f"/namespaces/{NS}").get_json()["mode"] == "keyset"
    created = s.client.post("/namespaces", json={"name": "plain.ns"}, headers=admin)
    assert created.status_code == 201 and created.get_json()["mode"] == "keyset"
    assert s.sign(1, D[1], ns="plain.ns").get_json()["code"] == "keyset-required"
    digest = s.client.post("/namespaces", json={"name": "plexi.ns", "mode": "digest"}, headers=admin)
    assert digest.status_code == 201 and digest.get_json()["mode"] == "digest"
    assert s.sign(1, D[1], ns="plexi.ns").status_code == 200
    # The mode is fixed at creation.
    flip = s.client.post("/namespaces", json={"name": "plain.ns", "mode": "digest"}, headers=admin)
    assert flip.status_code == 409 and flip.get_json()["code"] == "namespace-exists"
    assert s.client.post("/namespaces", json={"name": "x.ns", "mode": "both"}, headers=admin).status_code == 400
    assert s.client.patch("/namespaces/plain.ns", json={"mode": "digest"}, headers=admin).status_code == 400
    modes = {r["name"]: r["mode"] for r in s.client.get("/namespaces").get_json()["namespaces"]}
    assert modes == {NS: "keyset", "plain.ns": "keyset", "plexi.ns": "digest"}


def test_keyset_issued_at_going_backwards_is_refused(keyset_signer):
    now = int(time.time())
    k1 = make_keyset(NS, 1, now=now)
    assert keyset_signer.sign_keyset(k1).status_code == 200
    older = make_keyset(NS, 2, hashlib.sha256(k1).digest(), now=now - 3600)
    resp = keyset_signer.sign_keyset(older)
    assert resp.status_code == 409 and resp.get_json()["code"] == "issued-at-regressed"
    assert "issued_at" in resp.get_json()["error"]
    assert keyset_signer.journal()[0]["kind"] == "refused"
    same_time = make_keyset(NS, 2, hashlib.sha256(k1).digest(), now=now, label="next")
    assert keyset_signer.sign_keyset(same_time).status_code == 200  # equal issued_at is allowed
