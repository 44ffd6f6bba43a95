"""The log's keyset rules beyond the chain: a new keyset names exactly the trust root in force
(bundles/FORMAT.md §3.3, ``verifier.bundle.require_root_name``) and keeps the revocation rule over the
whole history (§3.2, ``verifier.update.check_revocations``), whose marks the log keeps in its
``revoked`` table: written with the entry, backfilled by the schema migration, checked at start-up."""

from __future__ import annotations

import hashlib

import pytest

from distributor.app import create_app, get_service
from distributor.errors import IntegrityError, RuleViolation
from distributor.log import Published
from distributor.storage import SCHEMA_VERSION, RevokedRow
from tests.distributor.conftest import make_log
from tests.distributor.helpers import TOKEN, run_cli, world_data_dir
from tests.distributor.test_log_rules import NEW_ANCHOR, NEW_OPERATOR, rotated_body, rotation, v2_ref
from tests.factory import DAY, T0, YEAR, World, fleet, fleet_key
from verifier.bundle import parse_bundle
from verifier.keyset import Fleet, TrustRootRef, parse_keyset
from verifier.update import revocation_marks

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Chain:
    """Publishes epochs whose keysets chain to the previous one (name the world's v1 root by default)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.previous: bytes | None = None
        self.epoch = 0

    def bundle(self, fleets, *, root=True, anchor=None, countersigner=None) -> bytes:
        ks = self.world.keyset(self.epoch + 1, fleets, previous=self.previous, root=root)
        return self.world.bundle(ks, self.epoch + 1, anchor=anchor, countersigner=countersigner)

    def accepted(self, bundle: bytes) -> bytes:
        """Note ``bundle`` (made by :meth:`bundle`) as logged: the next one chains to it."""
        self.previous = hashlib.sha256(parse_bundle(bundle).keyset).digest()
        self.epoch += 1
        return bundle


def same_key_as(fleet_id: str, new_id: str, status: str = "active") -> Fleet:
    """A fleet called ``new_id`` carrying the public key of :func:`tests.factory.fleet` ``fleet_id``."""
    return Fleet(new_id, "x25519", fleet_key(fleet_id), T0 - DAY, T0 + 20 * YEAR, status)


def publish(log, chain: Chain, fleets, **kwargs) -> Published:
    result = log.publish(chain.bundle(fleets, **kwargs))
    chain.epoch += 1
    chain.previous = log.bundle()[0].digest
    return result


def revoke_history(log, chain: Chain) -> None:
    """Epoch 1: fleet-a and fleet-b; epoch 2: fleet-a revoked; epoch 3: fleet-a dropped."""
    publish(log, chain, [fleet("fleet-a"), fleet("fleet-b")])
    publish(log, chain, [fleet("fleet-a", "revoked"), fleet("fleet-b")])
    publish(log, chain, [fleet("fleet-b")])


def marks_of(fleet_id: str) -> set[str]:
    """The revocation marks of :func:`tests.factory.fleet` ``fleet_id`` once it is revoked."""
    return set(revocation_marks(parse_keyset(World().keyset(1, [fleet(fleet_id, "revoked")]))))


# -- the trust root a keyset names -------------------------------------------------------------------------


def test_a_keyset_naming_no_root_or_another_root_is_refused(log, world):
    chain = Chain(world)
    for root, named in [(None, "names no trust root"),
                        (TrustRootRef(1, bytes(32)), "names trust root v1"),
                        (world.root_ref(rotated_body(world)), "names trust root v2")]:
        with pytest.raises(RuleViolation, match=named) as info:
            log.publish(chain.bundle([fleet("fleet-1")], root=root))
        assert "must name the trust root in force, v1" in str(info.value)
    assert log.head().size == 0
    assert publish(log, chain, [fleet("fleet-1")]) == Published(0, True, epoch=1)


def test_over_http_a_wrong_root_name_is_409_with_its_reason_and_the_right_one_201(sqlite_db, world):
    app = create_app({"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN})
    client = app.test_client()
    chain = Chain(world)
    for root in (None, TrustRootRef(1, b"\x01" * 32), TrustRootRef(7, world.root_ref().sha256)):
        resp = client.post("/api/v1/bundles", data=chain.bundle([fleet("fleet-1")], root=root), headers=AUTH)
        assert resp.status_code == 409 and resp.headers["Cache-Control"] == "no-store", resp.json
        assert "a new keyset must name the trust root in force, v1" in resp.json["error"]
    resp = client.post("/api/v1/bundles", data=chain.bundle([fleet("fleet-1")]), headers=AUTH)
    assert resp.status_code == 201 and resp.json["index"] == 0
    get_service(app).close()


def test_after_a_rotation_keysets_must_name_the_new_root(log, world):
    chain = Chain(world)
    publish(log, chain, [fleet("fleet-1")])
    log.rotate_trust_root(rotation(world))
    new_keys = {"anchor": NEW_ANCHOR, "countersigner": NEW_OPERATOR}
    with pytest.raises(RuleViolation, match="names trust root v1 .*in force, v2"):
        log.publish(chain.bundle([fleet("fleet-1")], **new_keys))  # the old name, though signed by the new keys
    assert publish(log, chain, [fleet("fleet-1")], root=v2_ref(world), **new_keys).index == 2


def test_an_old_unnamed_bundle_republished_identically_answers_its_index(sqlite_db, world, monkeypatch):
    """A log written before keysets named their root: its bundles are still the existing entries."""
    app = create_app({"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN})
    client = app.test_client()
    old = world.bundle(world.keyset(1, [fleet("fleet-1")], root=None), 1)
    import distributor.log

    with monkeypatch.context() as m:  # as an older distributor logged it
        m.setattr(distributor.log, "require_root_name", lambda keyset, root: None)
        assert client.post("/api/v1/bundles", data=old, headers=AUTH).status_code == 201
    resp = client.post("/api/v1/bundles", data=old, headers=AUTH)
    assert resp.status_code == 200 and (resp.json["index"], resp.json["epoch"]) == (0, 1)
    get_service(app).close()


# -- the revocation rule -----------------------------------------------------------------------------------


def test_a_revoked_fleet_id_is_never_active_again(log, world):
    chain = Chain(world)
    revoke_history(log, chain)
    with pytest.raises(RuleViolation, match="fleet 'fleet-a' is active but its id was revoked"):
        log.publish(chain.bundle([fleet("fleet-a", algorithm="ed25519"), fleet("fleet-b")]))
    assert log.head().size == 3
    # Revoked again, retired or absent is fine; so is a new fleet with a new key.
    assert publish(log, chain, [fleet("fleet-a", "revoked"), fleet("fleet-b"), fleet("fleet-c")]).index == 3


def test_a_revoked_key_is_never_active_again_under_another_id(log, world):
    chain = Chain(world)
    revoke_history(log, chain)
    with pytest.raises(RuleViolation, match="fleet 'fleet-z' is active but its key was revoked"):
        log.publish(chain.bundle([fleet("fleet-b"), same_key_as("fleet-a", "fleet-z")]))
    assert publish(log, chain, [fleet("fleet-b"), same_key_as("fleet-a", "fleet-z", "retired")]).index == 3


def test_marks_add_up_within_one_batch(log, world):
    chain = Chain(world)
    publish(log, chain, [fleet("fleet-a")])
    revoking = chain.accepted(chain.bundle([fleet("fleet-a", "revoked")]))
    reuse = chain.bundle([fleet("fleet-a")])
    with pytest.raises(RuleViolation, match="bundle 1 of 2: keyset epoch 3: fleet 'fleet-a' is active"):
        log.publish_batch([revoking, reuse])
    assert log.head().size == 1
    with log.storage.read() as tx:
        assert tx.revoked() == {}, "a refused batch records no mark"


def test_marks_are_written_with_the_entry_and_survive_a_restart(db, world):
    storage = db.open()
    log = make_log(storage, world)
    chain = Chain(world)
    revoke_history(log, chain)
    with storage.read() as tx:
        assert tx.revoked() == {m: RevokedRow(m, 2, 1) for m in marks_of("fleet-a")}
    storage.close()
    again = db.open()
    log2 = make_log(again, world)
    with pytest.raises(RuleViolation, match="its key was revoked"):
        log2.publish(chain.bundle([fleet("fleet-b"), same_key_as("fleet-a", "fleet-z")]))
    assert log2.self_check().size == 3
    again.close()


def test_another_writer_sees_the_marks_of_this_one(db, world):
    """Two log instances on one database (replicas): the second reloads the marks with the head."""
    s1, s2 = db.open(), db.open()
    a, b = make_log(s1, world), make_log(s2, world)
    chain = Chain(world)
    publish(a, chain, [fleet("fleet-a")])
    publish(b, chain, [fleet("fleet-a", "revoked")])
    with pytest.raises(RuleViolation, match="its id was revoked"):
        a.publish(chain.bundle([fleet("fleet-a")]))
    s1.close()
    s2.close()


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_an_older_database_is_migrated_and_its_marks_backfilled(db, world, version):
    storage = db.open()
    log = make_log(storage, world)
    chain = Chain(world)
    revoke_history(log, chain)
    log.append_entries([b"raw entry"])  # not a bundle: no epoch, no marks
    publish(log, chain, [fleet("fleet-b", "revoked"), fleet("fleet-c")])
    storage.close()
    # The database as the previous schema left it: no witness tables; for versions 1 and 2 no revoked
    # table (and, for version 1, no served checkpoint).
    db.execute("DROP TABLE checkpoints")
    db.execute("DROP TABLE witness_cosignatures")
    if version != "3":
        db.execute("DROP TABLE revoked")
    if version == "1":
        db.execute("DROP TABLE served_checkpoint")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (version,))
    storage = db.open()
    log = make_log(storage, world)
    with storage.read() as tx:
        assert tx.meta("schema") == SCHEMA_VERSION == "4"
        assert tx.checkpoint_at(5) == tx.head().checkpoint
        assert tx.revoked() == {**{m: RevokedRow(m, 2, 1) for m in marks_of("fleet-a")},
                                **{m: RevokedRow(m, 4, 4) for m in marks_of("fleet-b")}}
    assert log.self_check().size == 5
    for reuse in ([fleet("fleet-a"), fleet("fleet-c")], [fleet("fleet-c"), same_key_as("fleet-b", "fleet-y")]):
        with pytest.raises(RuleViolation, match="was revoked in an earlier epoch"):
            log.publish(chain.bundle(reuse))
    storage.close()


def test_a_revoked_table_that_differs_from_the_entries_stops_the_start(db, world):
    storage = db.open()
    log = make_log(storage, world)
    revoke_history(log, Chain(world))
    key_mark = next(m for m in marks_of("fleet-a") if m.startswith("key:"))
    db.execute("DELETE FROM revoked WHERE mark = ?", (key_mark,))
    with pytest.raises(IntegrityError, match=f"lacks 1 revocation mark.*'{key_mark}' \\(revoked by epoch 2 at "
                                             "index 1\\)"):
        log.self_check()
    db.execute("INSERT INTO revoked (mark, epoch, idx) VALUES (?, 2, 1)", (key_mark,))
    db.execute("INSERT INTO revoked (mark, epoch, idx) VALUES ('id:fleet-q', 3, 2)")
    with pytest.raises(IntegrityError, match="holds 1 revocation mark.* no logged keyset revokes, first 'id:fleet-q'"):
        log.self_check()
    db.execute("DELETE FROM revoked WHERE mark = 'id:fleet-q'")
    db.execute("UPDATE revoked SET epoch = 3, idx = 2 WHERE mark = 'id:fleet-a'")
    with pytest.raises(IntegrityError, match="records 'id:fleet-a' at epoch 3 .*first revoke it at epoch 2"):
        log.self_check()
    storage.close()


def test_serve_refuses_to_start_when_the_marks_were_tampered_with(sqlite_db, world, tmp_path):
    storage = sqlite_db.open()
    revoke_history(make_log(storage, world), Chain(world))
    storage.close()
    sqlite_db.execute("DELETE FROM revoked WHERE mark = 'id:fleet-a'")
    data = world_data_dir(tmp_path / "data", world)
    result = run_cli("serve", "--data", str(data), "--database", sqlite_db.url, "--origin", world.origin,
                     "--trust-root", str(data / "trust-root.json"), "--port", "1")
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "'id:fleet-a'" in result.stderr, result.stderr


def test_export_migrates_an_older_database_before_checking_it(db, world, tmp_path):
    storage = db.open()
    revoke_history(make_log(storage, world), Chain(world))
    storage.close()
    db.execute("DROP TABLE revoked")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    data = world_data_dir(tmp_path / "data", world)
    result = run_cli("export", "--database", db.url_with_schema, "--out", str(tmp_path / "out"), "--data", str(data))
    assert result.returncode == 0, result.stderr
    storage = db.open()
    with storage.read() as tx:
        assert tx.meta("schema") == SCHEMA_VERSION and set(tx.revoked()) == marks_of("fleet-a")
    storage.close()
