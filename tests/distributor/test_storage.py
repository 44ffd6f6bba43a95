"""One behavioural suite for the storage interface, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time

import pytest

from distributor.errors import StorageError
from distributor.storage import EpochRow, TrustRootRow, open_storage
from verifier.errors import FormatError
from verifier.tiles import encode_entry_bundle as encode_bundle
from verifier.tiles import entry_bundle_prefix as bundle_prefix
from verifier.tiles import split_entry_bundle as split_bundle


def test_empty_database_has_no_log_until_the_first_write(storage):
    assert not storage.has_schema()
    with storage.write() as tx:
        assert tx.head() is None
        assert tx.meta("origin") is None
    assert storage.has_schema()


def test_rows_round_trip(storage):
    with storage.write() as tx:
        tx.set_meta("origin", "o")
        tx.set_head(0, b"cp0")
        tx.put_entry_bundles({0: encode_bundle([b"a", b"bb", b"\x00\xff"])})
        tx.put_tiles({(0, 0): b"x" * 64, (1, 0): b"y" * 32})
        tx.put_epochs([EpochRow(1, 0, b"d" * 32, ("f1", "f2"), 10, 20), EpochRow(2, 1, b"e" * 32, (), 11, 21)])
        tx.put_trust_roots([TrustRootRow(2, 2, b"env")])
        tx.set_head(3, b"cp3")
    with storage.read() as tx:
        assert tx.meta("origin") == "o"
        assert tx.head().size == 3 and tx.head().checkpoint == b"cp3"
        assert tx.entries(0, 10) == [b"a", b"bb", b"\x00\xff"]
        assert tx.entries(1, 2) == [b"bb"] and tx.entries(2, 2) == []
        assert tx.entry(2) == b"\x00\xff" and tx.entry(3) is None
        assert tx.max_entry_bundle() == 0
        assert tx.tile(0, 0) == b"x" * 64 and tx.tile(0, 1) is None
        assert tx.level_tiles(1) == [(0, b"y" * 32)]
        assert tx.max_tile_level() == 1
        assert tx.epoch(1) == EpochRow(1, 0, b"d" * 32, ("f1", "f2"), 10, 20)
        assert tx.last_epoch().epoch == 2
        assert [r.epoch for r in tx.epochs(None, 10)] == [2, 1]
        assert [r.epoch for r in tx.epochs(2, 10)] == [1]
        assert tx.trust_root(2) == TrustRootRow(2, 2, b"env") and tx.trust_root(1) is None
        assert tx.latest_trust_root().version == 2


def test_tiles_only_widen(storage):
    with storage.write() as tx:
        tx.put_tiles({(0, 0): b"a" * 32})
        tx.put_tiles({(0, 0): b"a" * 64})
    with storage.read() as tx:
        assert tx.tile(0, 0) == b"a" * 64


def test_entries_span_entry_bundles(storage):
    entries = [b"%d" % i for i in range(600)]
    with storage.write() as tx:
        tx.put_entry_bundles({0: encode_bundle(entries[:256]), 1: encode_bundle(entries[256:512]),
                              2: encode_bundle(entries[512:])})
    with storage.read() as tx:
        assert tx.entries(0, 600) == entries
        assert tx.entries(250, 520) == entries[250:520]
        assert tx.entries(590, 700) == entries[590:]
        assert tx.entry(599) == b"599" and tx.entry(600) is None


def test_entry_bundle_helpers():
    data = encode_bundle([b"", b"a" * 300, b"xyz"])
    assert split_bundle(data) == [b"", b"a" * 300, b"xyz"]
    assert split_bundle(data, 2) == [b"", b"a" * 300]
    assert bundle_prefix(data, 2) == data[:2 + 2 + 300]
    for bad in (data[:-1], data + b"\x00"):
        with pytest.raises(FormatError):
            split_bundle(bad)
    with pytest.raises(FormatError):
        bundle_prefix(data, 4)


def test_a_failed_write_transaction_leaves_nothing(storage):
    with storage.write() as tx:
        tx.set_head(0, b"cp0")
    with pytest.raises(RuntimeError), storage.write() as tx:
        tx.put_entry_bundles({0: encode_bundle([b"x"])})
        tx.set_head(1, b"cp1")
        raise RuntimeError("crash before commit")
    with storage.read() as tx:
        assert tx.head().size == 0 and tx.entry(0) is None


def test_write_transactions_exclude_each_other_across_connections(db):
    """A second writer (another connection, as another process would have) waits for the first."""
    first, second = db.open(), db.open()
    with first.write() as tx:
        tx.set_head(0, b"cp0")
    order: list[str] = []
    inside = threading.Event()

    def hold() -> None:
        with first.write() as tx:
            inside.set()
            order.append("first in")
            time.sleep(0.5)
            tx.set_head(1, b"cp1")
            order.append("first out")

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(60), "the first writer never entered its transaction"
    with second.write() as tx:
        order.append("second in")
        assert tx.head().size == 1, "the second writer must see the first writer's commit"
    t.join()
    assert order == ["first in", "first out", "second in"]
    first.close()
    second.close()


def test_readers_do_not_wait_for_a_writer(db):
    writer, reader = db.open(), db.open()
    with writer.write() as tx:
        tx.set_head(0, b"cp0")
    with writer.write() as tx:
        tx.set_head(1, b"cp1")
        started = time.monotonic()
        with reader.read() as rtx:
            assert rtx.head().size == 0  # the committed state, not the open transaction's
        assert time.monotonic() - started < 2
    writer.close()
    reader.close()


def test_bad_urls_are_refused(tmp_path):
    with pytest.raises(StorageError):
        open_storage("mysql://x/y")
    with pytest.raises(StorageError):
        open_storage("sqlite://relative-without-third-slash")
    with pytest.raises(StorageError):
        open_storage(f"sqlite:///{tmp_path}/missing-dir/log.db")


def test_postgres_schema_from_url_options(pg_db):
    storage = open_storage(pg_db.url_with_schema)
    with storage.write() as tx:
        tx.set_meta("k", "v")
    storage.close()
    other = pg_db.open()
    with other.read() as tx:
        assert tx.meta("k") == "v"
    other.close()


def test_postgres_unreachable_server_is_a_clear_error():
    storage = open_storage("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(StorageError, match="cannot connect"):
        storage.has_schema()
