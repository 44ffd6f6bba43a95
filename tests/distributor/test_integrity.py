"""Start-up self-check: a damaged or tampered database is refused, with a clear error and a non-zero
exit, instead of being served."""

from __future__ import annotations

import pytest

from distributor.errors import IntegrityError
from tests.distributor.conftest import make_log
from tests.distributor.helpers import run_cli, world_data_dir
from verifier.tiles import encode_entry_bundle as encode_bundle


def _filled(db, world, n: int = 600):
    storage = db.open()
    log = make_log(storage, world)
    log.append_entries([b"entry %d" % i for i in range(n)])
    return storage, log


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


def _tile(storage, level: int, index: int) -> bytes:
    with storage.read() as tx:
        return tx.tile(level, index)


def test_one_flipped_hash_in_a_full_tile_is_found(db, world):
    storage, log = _filled(db, world)
    db.execute("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 1", (_flip(_tile(storage, 0, 1), 100),))
    with pytest.raises(IntegrityError, match="tile 0/1 does not match"):
        log.self_check()
    storage.close()


def test_one_flipped_hash_on_the_right_edge_stops_even_opening(db, world):
    storage, _ = _filled(db, world)
    db.execute("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 2", (_flip(_tile(storage, 0, 2), 5),))
    storage.close()
    again = db.open()
    with pytest.raises(IntegrityError, match="does not match"):
        make_log(again, world)
    again.close()


def _bundle(storage, index: int) -> bytes:
    with storage.read() as tx:
        return tx.entry_bundle(index)


def test_a_changed_entry_is_found(db, world):
    storage, log = _filled(db, world)
    edited = _bundle(storage, 1).replace(b"entry 300", b"entry 3O0")
    db.execute("UPDATE entry_bundles SET data = ? WHERE idx = 1", (edited,))
    with pytest.raises(IntegrityError, match="tile 0/1 does not match the hashes recomputed from the stored entries"):
        log.self_check()
    assert log.self_check(entries=False).size == 600  # the tree itself is intact
    storage.close()


def test_a_deleted_entry_is_found(db, world):
    storage, log = _filled(db, world)
    db.execute("UPDATE entry_bundles SET data = ? WHERE idx = 0", (encode_bundle([b"entry %d" % i for i in range(255)]),))
    with pytest.raises(IntegrityError, match="holds 255 entries"):
        log.self_check()
    storage.close()


def test_a_missing_tile_row_is_found(db, world):
    storage, log = _filled(db, world)
    db.execute("DELETE FROM tiles WHERE level = 0 AND idx = 0")
    with pytest.raises(IntegrityError, match="tile 0/"):
        log.self_check()
    storage.close()


def test_an_entry_beyond_the_signed_size_is_found(db, world):
    storage, log = _filled(db, world)
    smuggled = _bundle(storage, 2) + encode_bundle([b"smuggled"])
    db.execute("UPDATE entry_bundles SET data = ? WHERE idx = 2", (smuggled,))
    with pytest.raises(IntegrityError, match="holds 89 entries"):
        log.self_check()
    db.execute("INSERT INTO entry_bundles (idx, data) VALUES (?, ?)", (3, encode_bundle([b"more"])))
    with pytest.raises(IntegrityError, match="beyond the signed tree size"):
        log.self_check()
    storage.close()


def test_a_forged_checkpoint_is_refused(db, world):
    storage, _ = _filled(db, world)
    with storage.read() as tx:
        cp = tx.head().checkpoint
    db.execute("UPDATE head SET checkpoint = ? WHERE id = 1", (cp.replace(b"\n600\n", b"\n601\n"),))
    storage.close()
    again = db.open()
    with pytest.raises(IntegrityError, match="does not verify under the log key"):
        make_log(again, world)
    again.close()


def test_serve_refuses_to_start_on_a_tampered_database(db, world, tmp_path):
    storage, _ = _filled(db, world)
    db.execute("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 0", (_flip(_tile(storage, 0, 0), 31),))
    storage.close()
    data = world_data_dir(tmp_path / "data", world)
    result = run_cli("serve", "--data", str(data), "--database", db.url_with_schema, "--origin", world.origin,
                     "--trust-root", str(data / "trust-root.json"), "--port", "1")
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "tile 0/0 does not match" in result.stderr, result.stderr
