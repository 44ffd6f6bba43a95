"""Rule 8 of the anchor signer (signer.rules): on the keyset path, a fleet id or key the signer saw
revoked in an earlier epoch of the namespace is never signed ``active`` again (``revoked-reused``,
409, recorded), across restarts; the journal keeps the marks (its ``revoked`` table, schema 3)."""

from __future__ import annotations

import hashlib
import sqlite3
import time

import pytest

from signer.app import STATUS_OF_CODE, create_app
from signer.config import load_config
from signer.journal import Journal
from signer.rules import MODE_DIGEST, MODE_KEYSET, STATUS_ONLINE, Namespace, Refusal, SignRequest, check_request
from tests.factory import SeedSigner, fleet_key
from tests.signer.conftest import NS, Clock, Signer, make_signer
from tests.signer.test_journal import V1_SCHEMA
from verifier.keyset import GENESIS_PREVIOUS, Fleet, encode_keyset, parse_keyset
from verifier.update import MAX_REVOKED, revocation_marks

KEY = SeedSigner("anchor")
DAY = 86400
NOW = int(time.time())


def fleet(fleet_id: str, status: str = "active", key_of: str | None = None) -> Fleet:
    return Fleet(fleet_id, "x25519", fleet_key(key_of or fleet_id), NOW - DAY, NOW + 365 * DAY, status)


class Keysets:
    """Keysets of one namespace, each chained to the last one made."""

    def __init__(self, namespace: str = NS) -> None:
        self.namespace = namespace
        self.previous = GENESIS_PREVIOUS
        self.epoch = 0
        self.now = NOW

    def next(self, *fleets: Fleet) -> bytes:
        data = encode_keyset(epoch=self.epoch + 1, namespace=self.namespace, issued_at=self.now - 60,
                             expires_at=self.now + 30 * DAY, previous=self.previous, fleets=list(fleets))
        return data

    def signed(self, data: bytes) -> bytes:
        self.previous, self.epoch = hashlib.sha256(data).digest(), self.epoch + 1
        return data


def request(data: bytes) -> SignRequest:
    ks = parse_keyset(data)
    return SignRequest(ks.namespace, ks.epoch, ks.digest, ks.previous, ks.issued_at, ks)


def marks(*fleets: Fleet) -> frozenset[str]:
    return revocation_marks(parse_keyset(Keysets().next(*fleets)))


# -- the rule, pure -----------------------------------------------------------------------------------------


def test_an_active_fleet_reusing_a_revoked_id_or_key_is_refused_and_recorded():
    ns = Namespace(NS, 1, STATUS_ONLINE, None, 0, MODE_KEYSET)
    revoked = marks(fleet("fleet-a", "revoked"))
    for reuse, what in ((fleet("fleet-a", key_of="fresh"), "its id was revoked"),
                        (fleet("fleet-z", key_of="fleet-a"), "its key was revoked")):
        with pytest.raises(Refusal) as info:
            check_request(request(Keysets().next(reuse)), ns, None, None, None, revoked)
        r = info.value
        assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (409, "revoked-reused", True)
        assert what in r.reason and r.reason.startswith(f"{NS}: keyset epoch 1: fleet ")
    # Still revoked, retired under a revoked key, or gone: nothing is undone.
    for fine in ((fleet("fleet-a", "revoked"),), (fleet("fleet-z", "retired", key_of="fleet-a"),), ()):
        assert check_request(request(Keysets().next(*fine)), ns, None, None, None, revoked) is None


def test_more_marks_than_clients_keep_is_refused():
    ns = Namespace(NS, 1, STATUS_ONLINE, None, 0, MODE_KEYSET)
    full = frozenset(f"id:old-{i}" for i in range(MAX_REVOKED))
    with pytest.raises(Refusal) as info:
        check_request(request(Keysets().next(fleet("fleet-a", "revoked"))), ns, None, None, None, full)
    assert (STATUS_OF_CODE.get(info.value.code, 400), info.value.code, info.value.record) == (
        409, "too-many-revocations", True)


def test_a_digest_only_request_carries_no_keyset_so_the_marks_do_not_apply():
    ns = Namespace(NS, 1, STATUS_ONLINE, None, 0, MODE_DIGEST)
    assert check_request(SignRequest(NS, 1, bytes(32)), ns, None, None, None, marks(fleet("x", "revoked"))) is None


# -- the journal and the API ---------------------------------------------------------------------------------


def make_signer_over(data_dir) -> Signer:
    """A new in-process app over an existing data directory (a restarted signer)."""
    app = create_app(load_config(data_dir, signer=KEY, clock=Clock()))
    tokens = {role: (data_dir / "tokens" / f"{role}.token").read_text().strip() for role in ("write", "admin")}
    return Signer(app.test_client(), tokens, Clock(), KEY, data_dir)


def test_over_http_the_signer_refuses_a_revoked_fleet_coming_back_and_journals_it(tmp_path):
    signer = make_signer(tmp_path / "signer")
    ks = Keysets()
    for fleets in ([fleet("fleet-a"), fleet("fleet-b")], [fleet("fleet-a", "revoked"), fleet("fleet-b")],
                   [fleet("fleet-b")]):
        data = ks.next(*fleets)
        assert signer.sign_keyset(data).status_code == 200
        ks.signed(data)
    for reuse, what in ((ks.next(fleet("fleet-a"), fleet("fleet-b")), "its id was revoked"),
                        (ks.next(fleet("fleet-b"), fleet("fleet-c", key_of="fleet-a")), "its key was revoked")):
        resp = signer.sign_keyset(reuse)
        body = resp.get_json()
        assert resp.status_code == 409 and body["code"] == "revoked-reused" and what in body["error"], body
        event = signer.journal()[0]
        assert event["kind"] == "refused" and event["epoch"] == 4 and event["reason"].startswith("revoked-reused: ")
    assert signer.client.get(f"/namespaces/{NS}/audits/4").status_code == 404, "nothing was signed"
    # The marks are durable: a restarted signer (a new app over the same journal) still refuses.
    restarted = make_signer_over(tmp_path / "signer")
    assert restarted.sign_keyset(ks.next(fleet("fleet-a"), fleet("fleet-b"))).get_json()["code"] == "revoked-reused"
    assert restarted.sign_keyset(ks.next(fleet("fleet-b"), fleet("fleet-d"))).status_code == 200


def test_marks_are_written_with_the_signature_and_are_append_only(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.create_namespace(NS, ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, client="t")
    journal.create_namespace("other.ns", ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1,
                             client="t")
    ks = Keysets()
    first = ks.next(fleet("fleet-a"))
    for fleets in ([], [fleet("fleet-a", "revoked")], [fleet("fleet-a", "revoked")]):
        data = ks.next(*fleets) if fleets else first
        journal.sign(request(data), KEY.sign, KEY.public_key, now_ms=10, client="t")
        ks.signed(data)
    raw = sqlite3.connect(journal.path)
    rows = raw.execute("SELECT namespace, mark, epoch FROM revoked ORDER BY mark").fetchall()
    assert rows == [(NS, m, 2) for m in sorted(marks(fleet("fleet-a", "revoked")))], "each mark once, at its first epoch"
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM revoked")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE revoked SET epoch = 9")
    raw.close()
    # Marks are per namespace: another namespace may use the id.
    other = Keysets("other.ns")
    journal.sign(request(other.next(fleet("fleet-a"))), KEY.sign, KEY.public_key, now_ms=11, client="t")
    # A repeat of an earlier request (epoch 1, fleet-a active) is answered from the journal as before.
    entry, created, _ = journal.sign(request(first), KEY.sign, KEY.public_key, now_ms=12, client="t")
    assert not created and entry.epoch == 1


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_journal_is_migrated_with_an_empty_marks_table(tmp_path, version):
    """The journal never stored keysets, so marks start empty at the upgrade (module docstring)."""
    path = tmp_path / "journal.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema', '1')")
    conn.execute("INSERT INTO namespaces VALUES (?, 1, 'Online', NULL, 1)", (NS,))
    conn.close()
    if version == 2:
        Journal(path).close()  # to version 3, then back to what a version-2 journal looked like
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executescript("DROP TRIGGER revoked_no_update; DROP TRIGGER revoked_no_delete; DROP TABLE revoked; "
                           "UPDATE meta SET value = '2' WHERE key = 'schema';")
        conn.close()
    journal = Journal(path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "3"
    assert raw.execute("SELECT COUNT(*) FROM revoked").fetchone()[0] == 0
    raw.close()
    ks = Keysets()
    journal.sign(request(ks.signed(ks.next(fleet("fleet-a", "revoked")))), KEY.sign, KEY.public_key, now_ms=5,
                 client="t")
    with pytest.raises(Refusal) as info:
        journal.sign(request(ks.next(fleet("fleet-a"))), KEY.sign, KEY.public_key, now_ms=6, client="t")
    assert info.value.code == "revoked-reused"
    assert journal.events(limit=1)[0].reason.startswith("revoked-reused: ")
