"""``fleetkeys fsck``: a consistent log (database and static export) passes; every kind of damage is
named with its entry index and exits 1; what cannot be read exits 2. Both backends."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from distributor.export import StaticWriter
from distributor.freshness import Freshness
from distributor.fsck import fsck_log
from fleetkeys.fsck_cli import fsck_cmd
from tests.distributor.conftest import make_log
from tests.distributor.test_derived_state import _history
from tests.distributor.test_log_rules import bundles, digest_of
from tests.factory import SeedSigner
from verifier.tiles import entry_object_path, tile_path


@pytest.fixture
def logged(db, world, tmp_path):
    storage = db.open()
    log = make_log(storage, world)
    entries = _history(log, world)
    out = tmp_path / "static"
    StaticWriter(str(out), log_key=world.log_note.verifier, freshness=Freshness(world.origin, world.freshness)).sync(
        storage)
    yield storage, log, entries, out
    storage.close()


def _fsck(db, *args: str):
    return CliRunner().invoke(fsck_cmd, ["--database", db.url_with_schema, *args])


def test_a_consistent_log_and_export_pass(db, logged):
    storage, _, entries, out = logged
    report = fsck_log(storage, static_dir=str(out))
    assert report.ok, report.problems
    assert (report.size, report.entries, report.exported) == (len(entries), len(entries), len(entries))
    result = _fsck(db, "--static", str(out))
    assert result.exit_code == 0 and "ok" in result.output, result.output


def test_a_flipped_tile_hash_is_named_and_exits_1(db, logged):
    storage = logged[0]
    with storage.read() as tx:
        tile = tx.tile(0, 0)
    db.execute("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 0", (tile[:40] + bytes([tile[40] ^ 1]) + tile[41:],))
    result = _fsck(db)
    assert result.exit_code == 1 and "tile 0/0 does not match" in result.output, result.output


def test_every_damaged_derived_table_is_listed_not_only_the_first(db, logged):
    db.execute("DELETE FROM epochs WHERE epoch IN (2, 7)")
    db.execute("DELETE FROM trust_roots")
    report = fsck_log(logged[0])
    text = [str(p) for p in report.problems]
    assert any(t.startswith("entry 1: ") and "lacks the row of epoch 2" in t for t in text), text
    assert any(t.startswith("entry 7: ") and "lacks the row of epoch 7" in t for t in text), text
    assert any("trust_roots table lacks the row of version 2" in t for t in text), text
    # Roots.in_force reads the trust_roots table: without its row, epochs 6 and 7 are judged under v1.
    assert sum("does not verify under the trust root in force at its index (version 1)" in t for t in text) == 2
    assert report.count == 5


def test_a_bundle_that_does_not_verify_under_the_root_in_force_is_named(db, world, logged):
    _, log, entries, _ = logged
    # Signed by keys of the v1 root, but logged (through the trusted raw path) after the rotation to v2.
    forged = bundles(world, [8], previous=digest_of(entries[-1]), anchor=SeedSigner("stranger"))[0]
    log.append_entries([forged, b"raw bytes"])
    report = fsck_log(log.storage)
    text = [str(p) for p in report.problems]
    assert any(t.startswith("entry 8: ") and "does not verify under the trust root in force at its index "
               "(version 2)" in t for t in text), text
    assert any(t.startswith("entry 9: ") and "neither a bundle nor a trust-root rotation" in t for t in text), text


def test_problems_are_capped_with_a_count(db, world, logged):
    log = logged[1]
    log.append_entries([b"raw %d" % i for i in range(30)])
    result = _fsck(db, "--max-problems", "5")
    assert result.exit_code == 1
    assert result.output.count("problem: entry") == 5 and "... and 25 more problem(s)" in result.output, result.output


@pytest.mark.parametrize("damage", ["tile", "entry-object", "missing-bundle", "trust-root", "checkpoint"])
def test_a_damaged_static_export_is_named(db, world, logged, damage):
    storage, _, entries, out = logged
    size = len(entries)
    if damage == "tile":
        path, index = out / tile_path(0, 0, size), "entry 0: "
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    elif damage == "entry-object":
        path, index = out / entry_object_path(3), "entry 3: "
        path.write_bytes(entries[2])
    elif damage == "missing-bundle":
        path, index = out / f"tile/entries/000.p/{size}", "entry 0: "
        path.unlink()
    elif damage == "trust-root":
        path, index = out / "trust-root/2", "entry 5: "
        path.write_bytes(b"4\n" + entries[5])
    else:
        path, index = out / "checkpoint", ""
        path.write_bytes(path.read_bytes().replace(b"\n%d\n" % size, b"\n%d\n" % (size + 1)))
    report = fsck_log(storage, static_dir=str(out))
    assert not report.ok
    rel = os.path.relpath(path, out)
    assert any(str(p).startswith(index) and rel in str(p) for p in report.problems), report.problems


def test_a_tampered_kept_checkpoint_and_served_checkpoint_are_named(db, world, logged):
    storage = logged[0]
    with storage.read() as tx:
        served = tx.served_checkpoint()
    db.execute("UPDATE served_checkpoint SET freshness_time = freshness_time + 1")
    db.execute("INSERT INTO checkpoints (size, checkpoint) VALUES (?, ?)", (3, served.checkpoint))
    text = [str(p) for p in fsck_log(storage).problems]
    assert any("the served checkpoint" in t and "the row says" in t for t in text), text
    assert any("the kept checkpoint of size 3" in t for t in text), text


def test_what_cannot_be_read_exits_2(tmp_path):
    result = CliRunner().invoke(fsck_cmd, ["--data", str(tmp_path)])
    assert result.exit_code == 2
    (tmp_path / "log.db").write_bytes(b"")
    result = CliRunner().invoke(fsck_cmd, ["--data", str(tmp_path)])
    assert result.exit_code == 2 and "holds no fleetkeys log" in result.output, result.output
    result = CliRunner().invoke(fsck_cmd, ["--journal", str(tmp_path / "nope.sqlite")])
    assert result.exit_code == 2


def test_memory_stays_bounded_whatever_the_log_size(sqlite_db, world):
    """The pass holds one entry bundle and a page of rows: checking 4x the entries does not grow the
    peak allocation (tracemalloc, Python heap) by more than a small margin."""
    import tracemalloc

    storage = sqlite_db.open()
    log = make_log(storage, world)
    peaks = []
    for n in (2_000, 8_000):
        log.append_entries([b"raw entry %d " % i + bytes(300) for i in range(log.head().size, n)])
        tracemalloc.start()
        fsck_log(storage, cap=10)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5 + 256 * 1024, peaks
    storage.close()
