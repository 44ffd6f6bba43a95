"""The HTTP API through the Flask test client: every endpoint, every status, caching, and a barrage of
malformed requests that must all be answered with 4xx JSON, never a 500."""

from __future__ import annotations

import base64
import random

import pytest

from distributor.app import create_app, get_service
from tests.distributor.helpers import TOKEN
from tests.distributor.test_log_rules import NEW_ANCHOR, NEW_OPERATOR, bundles, digest_of, rotation, v2_ref
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import verify_cosignatures
from verifier.merkle import leaf_hash, verify_consistency, verify_inclusion
from verifier.tlogproof import parse_tlog_proof

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self, now: float = 1_795_600_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _make(sqlite_db, world, clock, **extra):
    config = {"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
              "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN,
              "clock": clock, **extra}
    return create_app(config)


@pytest.fixture
def app(sqlite_db, world, clock):
    app = _make(sqlite_db, world, clock)
    yield app
    get_service(app).close()


@pytest.fixture
def client(app):
    return app.test_client()


def _verify_proof(world, proof_text: str, data: bytes, index: int):
    proof = parse_tlog_proof(proof_text.encode())
    assert proof.index == index
    signed = open_checkpoint(proof.checkpoint, world.log_note.verifier)
    verify_cosignatures(proof.checkpoint, [world.freshness_cosigner.verifier], 1, what="freshness")
    verify_inclusion(index, signed.checkpoint.size, leaf_hash(data), proof.hashes, signed.checkpoint.root)
    return signed.checkpoint


def test_publish_and_read_back(client, world):
    chain = world.chain(3)
    for i, b in enumerate(chain):
        resp = client.post("/api/v1/bundles", data=b, headers=AUTH)
        assert resp.status_code == 201, resp.json
        assert resp.json["index"] == i and resp.json["epoch"] == i + 1
        cp = _verify_proof(world, resp.json["proof"], b, i)
        assert open_checkpoint(resp.json["checkpoint"].encode(), world.log_note.verifier).checkpoint == cp
    again = client.post("/api/v1/bundles", data=chain[1], headers=AUTH)
    assert again.status_code == 200 and again.json["index"] == 1
    latest = client.get("/api/v1/bundles/latest").json
    assert (latest["epoch"], latest["index"]) == (3, 2)
    assert base64.b64decode(latest["bundle"]) == chain[2]
    _verify_proof(world, latest["proof"], chain[2], 2)
    by_epoch = client.get("/api/v1/bundles/1").json
    assert base64.b64decode(by_epoch["bundle"]) == chain[0] and by_epoch["index"] == 0
    epochs = client.get("/api/v1/epochs?limit=2").json
    assert [e["epoch"] for e in epochs["epochs"]] == [3, 2] and epochs["next_before"] == 2
    assert epochs["epochs"][0] == {"epoch": 3, "index": 2, "digest": digest_of(chain[2]).hex(),
                                   "fleet_ids": ["fleet-1", "fleet-2", "fleet-3"],
                                   "issued_at": "2026-11-25T10:00:03Z", "expires_at": "2046-11-20T10:00:00Z"}
    assert client.get("/api/v1/epochs?before=2").json == {
        "epochs": [{"epoch": 1, "index": 0, "digest": digest_of(chain[0]).hex(), "fleet_ids": ["fleet-1"],
                    "issued_at": "2026-11-25T10:00:01Z", "expires_at": "2046-11-20T10:00:00Z"}],
        "next_before": None}
    cons = client.get("/api/v1/proof/consistency?from=1&to=3").json
    first = client.get("/api/v1/proof/consistency?from=3").json
    assert first == {"from": 3, "to": 3, "proof": []}
    old_root = leaf_hash(chain[0])
    new_cp = open_checkpoint(client.get("/checkpoint").data, world.log_note.verifier).checkpoint
    verify_consistency(1, 3, [base64.b64decode(h) for h in cons["proof"]], old_root, new_cp.root)
    info = client.get("/api/v1/info").json
    assert info == {"origin": world.origin, "log_vkey": world.log_note.verifier.vkey,
                    "freshness_vkey": world.freshness_cosigner.verifier.vkey, "size": 3,
                    "trust_root": base64.b64encode(world.trust_root_bytes()).decode(), "trust_root_version": 1,
                    "appended_size": 3, "witnesses": []}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"},
                                     {"Authorization": "Bearer"}])
def test_publish_needs_the_token(client, world, headers):
    resp = client.post("/api/v1/bundles", data=world.chain(1)[0], headers=headers)
    assert resp.status_code == 401 and "token" in resp.json["error"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/info").json["size"] == 0


def test_publish_statuses(client, world):
    chain = world.chain(2)
    post = lambda body: client.post("/api/v1/bundles", data=body, headers=AUTH)  # noqa: E731
    assert post(b"").status_code == 400
    bad = post(b"not a bundle")
    assert bad.status_code == 400 and "does not verify" in bad.json["error"]
    assert post(chain[1]).status_code == 409  # gap
    assert post(chain[0]).status_code == 201
    fork = post(bundles(world, [1], fleet_prefix="rogue")[0])
    assert fork.status_code == 409 and "already logged" in fork.json["error"]
    too_big = post(b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413 and too_big.is_json
    entry_limit = post(b"x" * 70_000)
    assert entry_limit.status_code == 413 and "65535" in entry_limit.json["error"]


def test_publishing_without_token_or_trust_root_is_refused(sqlite_db, world, clock):
    app = _make(sqlite_db, world, clock, token=None, trust_root=None)
    client = app.test_client()
    resp = client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH)
    assert resp.status_code == 503 and "no publish token" in resp.json["error"]
    get_service(app).close()
    app = _make(sqlite_db, world, clock, trust_root=None)
    resp = app.test_client().post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH)
    assert resp.status_code == 503 and "trust root" in resp.json["error"]
    assert app.test_client().get("/api/v1/info").json["trust_root"] is None
    get_service(app).close()


def test_trust_root_rotation_over_http(client, world):
    env = rotation(world)
    assert client.post("/api/v1/trust-roots", data=env).status_code == 401
    resp = client.post("/api/v1/trust-roots", data=env, headers=AUTH)
    assert resp.status_code == 201 and resp.json["version"] == 2 and resp.json["index"] == 0
    assert client.post("/api/v1/trust-roots", data=env, headers=AUTH).status_code == 200
    got = client.get("/api/v1/trust-roots/2").json
    assert base64.b64decode(got["trust_root"]) == env and (got["version"], got["index"]) == (2, 0)
    _verify_proof(world, got["proof"], env, 0)
    assert client.get("/api/v1/trust-roots/1").status_code == 404
    assert client.post("/api/v1/trust-roots", data=rotation(world, version=4), headers=AUTH).status_code == 409
    assert client.get("/api/v1/info").json["trust_root_version"] == 2
    b1 = bundles(world, [1], anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR, root=v2_ref(world))[0]
    assert client.post("/api/v1/bundles", data=b1, headers=AUTH).status_code == 201


def test_not_found_and_bad_parameters_are_json(client, world):
    assert client.get("/api/v1/bundles/latest").status_code == 404
    client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH)
    for path, status in [("/api/v1/bundles/2", 404), ("/api/v1/bundles/abc", 400), ("/api/v1/bundles/01", 400),
                         ("/api/v1/bundles/-1", 400), ("/api/v1/bundles/99999999999999999999999", 400),
                         ("/api/v1/proof/consistency", 400), ("/api/v1/proof/consistency?from=0", 400),
                         ("/api/v1/proof/consistency?from=1&to=2", 400), ("/api/v1/proof/consistency?from=x", 400),
                         ("/api/v1/epochs?limit=0", 400), ("/api/v1/epochs?limit=101", 400),
                         ("/api/v1/epochs?before=-3", 400), ("/api/v1/trust-roots/zero", 400),
                         ("/tile/0/000", 404), ("/tile/0/000.p/2", 404), ("/tile/0/0", 404),
                         ("/tile/entries/000.p/0", 404), ("/tile/64/000", 404), ("/nope", 404)]:
        resp = client.get(path)
        assert resp.status_code == status, path
        assert resp.is_json and resp.json["error"], path
    resp = client.delete("/api/v1/bundles/latest")
    assert resp.status_code == 405 and resp.is_json and "GET" in resp.headers["Allow"]
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


IMMUTABLE = "public, max-age=31536000, immutable"


def _revalidates(client, path: str, resp) -> None:
    """A strong ETag over the exact body, and If-None-Match with it gives an empty 304."""
    import hashlib

    etag = resp.headers["ETag"]
    assert etag == f'"{hashlib.sha256(resp.data).hexdigest()[:32]}"', path
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"", path
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == resp.headers["Cache-Control"], path


def test_caching_headers_and_conditional_requests(client, world, clock):
    """The header policy of the module docstring of distributor.app, path by path."""
    chain = world.chain(3)
    for b in chain:
        client.post("/api/v1/bundles", data=b, headers=AUTH)
    client.application.extensions["fleetkeys.distributor"].log.append_entries([b"e%d" % i for i in range(300)])
    cp = client.get("/checkpoint")
    assert cp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert cp.headers["Cache-Control"] == "public, max-age=5"
    _revalidates(client, "/checkpoint", cp)
    # Every tile is immutable, full or partial: a partial tile's URL names its width.
    for path in ("/tile/0/000", "/tile/0/001.p/47", "/tile/0/001.p/3", "/tile/1/000.p/1", "/tile/entries/000",
                 "/tile/entries/001.p/47", "/tile/entries/000.p/2", "/entry/000", "/entry/302"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Cache-Control"] == IMMUTABLE, path
        assert resp.headers["Content-Type"] == "application/octet-stream", path
        _revalidates(client, path, resp)
    # API answers that can never change are immutable; the others revalidate (no-cache + ETag).
    policy = {"/api/v1/proof/consistency?from=1&to=3": IMMUTABLE, "/api/v1/proof/consistency?to=303&from=2": IMMUTABLE,
              "/api/v1/proof/consistency?from=1": "no-cache", "/api/v1/epochs?before=3&limit=1": IMMUTABLE,
              "/api/v1/epochs?before=4": IMMUTABLE, "/api/v1/epochs?before=1": IMMUTABLE,
              "/api/v1/epochs?before=5": "no-cache", "/api/v1/epochs": "no-cache", "/api/v1/epochs?limit=2": "no-cache",
              "/api/v1/bundles/latest": "no-cache", "/api/v1/bundles/1": "no-cache", "/api/v1/info": "no-cache",
              "/": "no-cache", "/assets/audit.js": "no-cache", "/assets/audit.css": "no-cache"}
    for path, cache in policy.items():
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Cache-Control"] == cache, path
        _revalidates(client, path, resp)
    published = client.post("/api/v1/bundles", data=chain[0], headers=AUTH)
    assert published.status_code == 200 and published.headers["Cache-Control"] == "no-cache"
    assert published.headers["ETag"]
    # Errors are never stored (a missing tile or entry exists later), never answered with 304.
    for path in ("/tile/0/005", "/entry/303", "/entry/x000/005", "/api/v1/bundles/9",
                 "/api/v1/proof/consistency?from=1&to=304"):
        resp = client.get(path)
        assert resp.status_code in (400, 404) and resp.headers["Cache-Control"] == "no-store", path
        assert client.get(path, headers={"If-None-Match": resp.headers["ETag"]}).status_code == resp.status_code


def test_entry_objects_are_the_exact_entries(client, world):
    """GET /entry/<N>: entry N's exact bytes (bundle or rotation envelope), N encoded like a tile index."""
    from verifier.tiles import encode_index

    env = rotation(world)
    assert client.post("/api/v1/trust-roots", data=env, headers=AUTH).status_code == 201
    b1 = bundles(world, [1], anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR, root=v2_ref(world))[0]
    assert client.post("/api/v1/bundles", data=b1, headers=AUTH).status_code == 201
    log = client.application.extensions["fleetkeys.distributor"].log
    raw = [b"r%d" % i for i in range(1000)]
    log.append_entries(raw)
    assert client.get("/entry/000").data == env and client.get("/entry/001").data == b1
    for index in (2, 255, 256, 999, 1001):
        resp = client.get(f"/entry/{encode_index(index)}")
        assert resp.status_code == 200 and resp.data == raw[index - 2], index
    assert encode_index(1001) == "x001/001"
    for bad, why in [("/entry/x001/002", "does not exist"), ("/entry/x999/999", "does not exist"),
                     ("/entry/1", "malformed"), ("/entry/0001", "malformed"), ("/entry/x000/001", "not canonical"),
                     ("/entry/001/001", "malformed"), ("/entry/x001", "malformed"), ("/entry/", ""),
                     ("/entry/00a", "malformed"), ("/entry/x001/001.p/2", "malformed"),
                     ("/entry/" + "x000/" * 60 + "001", "not an entry path")]:
        resp = client.get(bad)
        assert resp.status_code == 404 and resp.is_json and why in resp.json["error"], (bad, resp.json)
        assert resp.headers["Cache-Control"] == "no-store", bad


def test_checkpoint_and_proofs_carry_the_one_served_checkpoint(client, world, clock):
    """/checkpoint, the publish answer and every tlog-proof embed the same stored bytes."""
    from verifier.tlogproof import parse_tlog_proof

    chain = world.chain(2)
    published = client.post("/api/v1/bundles", data=chain[0], headers=AUTH).json
    assert published["checkpoint"].encode() == client.get("/checkpoint").data
    clock.now += 61  # due: the next read renews it, once, for everyone
    cp = client.get("/checkpoint").data
    proofs = [client.get(p).json["proof"] for p in ("/api/v1/bundles/latest", "/api/v1/bundles/1")]
    assert all(parse_tlog_proof(p.encode()).checkpoint == cp for p in proofs)
    assert _freshness_time(world, cp) == int(clock.now)
    again = client.post("/api/v1/bundles", data=chain[0], headers=AUTH).json  # identical re-publish
    assert again["checkpoint"].encode() == cp and parse_tlog_proof(again["proof"].encode()).checkpoint == cp
    grown = client.post("/api/v1/bundles", data=chain[1], headers=AUTH).json
    assert grown["checkpoint"].encode() == client.get("/checkpoint").data != cp


def _freshness_time(world, note: bytes) -> int:
    return verify_cosignatures(note, [world.freshness_cosigner.verifier], 1, what="freshness")[0].timestamp


def test_freshness_cosignature_is_renewed_at_the_interval(client, world, clock):
    def stamp() -> int:
        return verify_cosignatures(client.get("/checkpoint").data, [world.freshness_cosigner.verifier], 1,
                                   what="freshness")[0].timestamp

    first = stamp()
    assert first == int(clock.now)
    clock.now += 30
    assert stamp() == first  # cached within the interval: same bytes, same ETag
    clock.now += 31
    assert stamp() == int(clock.now)  # renewed although nothing was appended


def test_malformed_requests_never_cause_a_500(client, world):
    client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH)
    rng = random.Random(5)
    junk = ["", "%00", "..%2f..%2fetc/passwd", "\u00e9", "x" * 3000, "-1", "0", "1e3", "0x10", " 1", "%20",
            "999999999999999999999999999", "1.5", "[]", "{}", "null", "true"]
    paths = ["/checkpoint", "/tile/{}", "/tile/0/{}", "/tile/entries/{}", "/tile/{}/000.p/{}", "/api/v1/bundles/{}",
             "/api/v1/proof/consistency?from={}&to={}", "/api/v1/epochs?limit={}&before={}",
             "/api/v1/trust-roots/{}", "/api/v1/info?{}={}", "/{}"]
    bodies = [b"", b"{}", b"[]", b"\x00" * 100, b'{"format":"fleetkeys/bundle/v1"}', b"\xff\xfe", b"{" * 5000,
              world.chain(1)[0][:-1], world.chain(1)[0] + b" ", rotation(world)[:50]]
    statuses = set()
    for _ in range(400):
        path = rng.choice(paths)
        path = path.format(*(rng.choice(junk) for _ in range(path.count("{}"))))
        method = rng.choice(["GET", "GET", "POST", "PUT", "HEAD", "OPTIONS"])
        resp = client.open(path, method=method, data=rng.choice(bodies), headers=rng.choice([{}, AUTH]))
        assert resp.status_code < 500, (method, path, resp.status_code, resp.data[:200])
        if resp.status_code >= 400 and method != "HEAD":
            assert resp.is_json and "error" in resp.json, (method, path)
        statuses.add(resp.status_code)
    for body in bodies:
        for target in ("/api/v1/bundles", "/api/v1/trust-roots"):
            resp = client.post(target, data=body, headers=AUTH)
            assert 400 <= resp.status_code < 500 and resp.is_json, (target, body[:40], resp.status_code)
    assert {400, 404, 405} <= statuses
