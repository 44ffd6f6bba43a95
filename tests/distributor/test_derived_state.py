"""Derived state is derived, and checked: a damaged ``epochs``, ``trust_roots`` or ``revoked`` table
never lets the same bytes become a second entry, and a log whose tables do not match its entries
refuses to open, naming the row. Both backends; several processes publishing the same bytes at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distributor.errors import IntegrityError
from distributor.log import Published, _logged_keyset
from tests.distributor.conftest import make_log
from tests.distributor.test_log_rules import NEW_ANCHOR, NEW_OPERATOR, bundles, digest_of, rotation, v2_ref
from tests.factory import World, fleet
from tests.service_process import REPO
from verifier.bundle import parse_bundle
from verifier.keyset import parse_keyset


def _history(log, world: World) -> list[bytes]:
    """Five bundles, then a rotation to version 2, then two bundles under it: eight entries."""
    first = world.chain(5)
    for b in first:
        log.publish(b)
    env = rotation(world)
    log.rotate_trust_root(env)
    later = bundles(world, [6, 7], previous=digest_of(first[-1]), anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR,
                    root=v2_ref(world))
    log.publish_batch(later)
    return [*first, env, *later]


@pytest.fixture
def history(db, world):
    storage = db.open()
    log = make_log(storage, world)
    entries = _history(log, world)
    yield log, entries
    storage.close()


def _reopen_refuses(db, world, match: str) -> None:
    again = db.open()
    try:
        with pytest.raises(IntegrityError, match=match):
            make_log(again, world)
    finally:
        again.close()


# -- the attack the issue measured: a deleted epochs row and a re-post -------------------------------
def test_deleting_the_newest_epochs_row_refuses_to_start(db, world, history):
    db.execute("DELETE FROM epochs WHERE epoch = 7")
    _reopen_refuses(db, world, r"the epochs table lacks the row of epoch 7: entry 7 is its bundle")


def test_a_repost_after_the_index_was_damaged_never_appends_twice(db, world, history):
    """The running writer derives its rules from the entries: with every epochs row gone, each bundle
    re-posted is found through the entries themselves and answered with its index (200)."""
    log, entries = history
    db.execute("DELETE FROM epochs")
    for index, data in enumerate(entries):
        if index == 5:
            assert log.rotate_trust_root(data) == Published(5, False, version=2)
            continue
        assert log.publish(data) == Published(index, False, epoch=index + 1 if index < 5 else index), index
    assert log.head().size == len(entries)


def test_a_repost_through_another_writer_after_damage_never_appends_twice(db, world, history):
    """A second process (here: a second Log over its own connection) that opened before the damage and
    catches up on the entries of the first (incremental derivation) still refuses the duplicate."""
    log, entries = history
    other = make_log(db.open(), world)
    extra = bundles(world, [8], previous=digest_of(entries[-1]), anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR,
                    root=v2_ref(world))[0]
    assert log.publish(extra) == Published(8, True, epoch=8)
    db.execute("DELETE FROM epochs WHERE epoch = 8")
    db.execute("DELETE FROM trust_roots")
    assert other.publish(extra) == Published(8, False, epoch=8)
    assert other.rotate_trust_root(entries[5]) == Published(5, False, version=2)
    assert other.head().size == 9
    other.storage.close()


def test_a_running_writer_ignores_a_junk_row_pointing_at_another_entry(db, world, history):
    log, entries = history
    db.execute("UPDATE epochs SET idx = 100 WHERE epoch = 3")
    assert log.publish(entries[2]) == Published(2, False, epoch=3)
    assert log.head().size == 8


# -- every kind of damage to every table refuses the start, naming the row --------------------------
@pytest.mark.parametrize(("damage", "match"), [
    (["DELETE FROM epochs WHERE epoch = 2"], r"lacks the row of epoch 2: entry 1 is its bundle"),
    (["UPDATE epochs SET idx = -1 WHERE epoch = 3", "UPDATE epochs SET idx = 2 WHERE epoch = 4",
      "UPDATE epochs SET idx = 3 WHERE epoch = 3"],
     r"the epochs row of epoch 3 \(index 3\) does not match entry 2, the bundle of epoch 3: its index differ"),
    (["INSERT INTO epochs (epoch, idx, digest, fleet_ids, issued_at, expires_at) "
      "VALUES (99, 77, ?, '[]', 0, 0)"], r"holds a row for epoch 99 \(index 77\) that no logged bundle has"),
    (["INSERT INTO epochs (epoch, idx, digest, fleet_ids, issued_at, expires_at) "
      "VALUES (0, 77, ?, '[]', 0, 0)"], r"holds a row for epoch 0 \(index 77\)"),
    (["UPDATE epochs SET fleet_ids = '[\"fleet-x\"]' WHERE epoch = 4"],
     r"epochs row of epoch 4 \(index 3\) does not match entry 3.*fleet_ids"),
    (["UPDATE epochs SET digest = ? WHERE epoch = 6"], r"epochs row of epoch 6 \(index 6\).*digest"),
    (["DELETE FROM trust_roots"], r"trust_roots table lacks the row of version 2: entry 5 is its rotation"),
    (["UPDATE trust_roots SET idx = 4 WHERE version = 2"],
     r"trust_roots row of version 2 \(index 4\) does not match entry 5.*index differs"),
    (["INSERT INTO trust_roots (version, idx, envelope) VALUES (3, 9, ?)"],
     r"trust_roots table holds a row for version 3 \(index 9\) that no logged rotation has"),
])
def test_a_damaged_derived_table_refuses_to_start_naming_the_row(db, world, history, damage, match):
    for sql in damage:  # a ? is a junk blob
        db.execute(sql, (b"\x00",) if "?" in sql else ())
    _reopen_refuses(db, world, match)
    log, _ = history
    with pytest.raises(IntegrityError, match=match):
        log.self_check()


def test_the_refusal_reaches_serve(db, world, history, tmp_path):
    from tests.distributor.helpers import run_cli, world_data_dir

    db.execute("DELETE FROM epochs WHERE epoch = 7")
    history[0].storage.close()
    data = world_data_dir(tmp_path / "data", world)
    result = run_cli("serve", "--data", str(data), "--database", db.url_with_schema, "--origin", world.origin,
                     "--trust-root", str(data / "trust-root.json"), "--port", "1")
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "lacks the row of epoch 7" in result.stderr, result.stderr


# -- the antispam rule under concurrent publishes from several processes ----------------------------
_PUBLISHER = r"""
import sys, time
from distributor.storage import open_storage
from distributor.log import Log
from tests.factory import World
url, schema, path, start = sys.argv[1], sys.argv[2] or None, sys.argv[3], float(sys.argv[4])
w = World()
log = Log(open_storage(url, schema=schema), origin=w.origin, log_signer=w.log, freshness_signer=w.freshness,
          trust_root=w.trust_root())
data = open(path, "rb").read()
time.sleep(max(0.0, start - time.time()))
p = log.publish(data)
print(p.index, p.created)
"""


def test_several_processes_publishing_the_same_bytes_append_once(db, world, tmp_path):
    import time

    storage = db.open()
    log = make_log(storage, world)
    chain = world.chain(3)
    log.publish_batch(chain[:2])
    (tmp_path / "b").write_bytes(chain[2])
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISHER, db.url, db.schema or "", str(tmp_path / "b"), start],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outcomes.append(out.split())
    assert sorted(outcomes) == [["2", "False"]] * 3 + [["2", "True"]]
    assert log.head().size == 3 and log.self_check().size == 3
    storage.close()


# -- the quick keyset reading agrees with the strict parser -----------------------------------------
_FLEETS = st.lists(st.tuples(st.sampled_from(["x25519", "ed25519", "p256"]),
                             st.sampled_from(["active", "retired", "revoked"])), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(fleets=_FLEETS, epoch=st.integers(1, 10**6), named=st.booleans())
def test_the_quick_keyset_reading_equals_the_strict_one(fleets, epoch, named):
    world = World()
    ks = world.keyset(epoch, [fleet(f"f-{i}", status, alg) for i, (alg, status) in enumerate(fleets)],
                      previous=None if epoch == 1 else hashlib.sha256(b"%d" % epoch).digest(), root=True if named else None)
    data = world.bundle(ks, epoch)
    quick, strict = _logged_keyset(data), parse_keyset(parse_bundle(data).keyset)
    assert quick is not None
    for name in ("epoch", "namespace", "issued_at", "expires_at", "previous", "fleets", "raw", "digest"):
        assert getattr(quick, name) == getattr(strict, name), name
