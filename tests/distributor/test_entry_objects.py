"""Per-entry objects (bundles/FORMAT.md, "Per-entry objects"): ``entry/<N>`` holds entry N's exact
bytes, written by the static exporter once per entry, before the checkpoint that names it, and
served by the app at the same path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distributor.app import create_app, get_service
from distributor.export import BackgroundWriter, StaticWriter, parse_entry_path
from distributor.freshness import Freshness
from tests.distributor.conftest import make_log
from tests.distributor.helpers import TOKEN
from verifier.checkpoint import open_checkpoint
from verifier.merkle import leaf_hash
from verifier.tiles import TILE_WIDTH, decode_entry_bundle, encode_index, entries_path, entry_object_path


def _writer(directory: Path, world, **kwargs) -> StaticWriter:
    return StaticWriter(str(directory), log_key=world.log_note.verifier,
                        freshness=Freshness(world.origin, world.freshness), **kwargs)


def _entry_files(directory: Path) -> dict[int, bytes]:
    return {parse_entry_path(str(p.relative_to(directory))): p.read_bytes() for p in (directory / "entry").rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_entry_paths_are_tile_index_paths():
    for n in (0, 5, 999, 1000, 1234067, 10**12 + 3):
        assert entry_object_path(n) == "entry/" + encode_index(n)
        assert parse_entry_path(entry_object_path(n)) == n
    assert entry_object_path(1234067) == "entry/x001/x234/067"
    for bad in ("entry/", "entry/5", "entry/0005", "entry/x000/005", "entry/005/", "entry/x005", "entry/00x",
                "entry/x001/x234/067.p/3", "tile/entries/000", "entry/x001//067", "entry/\u0665\u0665\u0665",
                "entry/" + "x000/" * 50 + "001"):
        with pytest.raises(ValueError):
            parse_entry_path(bad)


def test_export_writes_one_immutable_object_per_entry(db, world, tmp_path):
    storage = db.open()
    log = make_log(storage, world)
    entries = [b"entry %d " % i + os.urandom(i % 50) for i in range(600)]
    log.append_entries(entries[:300])
    out = tmp_path / "out"
    writer = _writer(out, world)
    assert writer.sync(storage) == 300
    assert _entry_files(out) == dict(enumerate(entries[:300]))
    # Each object is the entry the tiles commit to.
    for n in (0, 255, 256, 299):
        width = min(TILE_WIDTH, 300 - n // TILE_WIDTH * TILE_WIDTH)
        bundle = decode_entry_bundle((out / entries_path(n // TILE_WIDTH, width)).read_bytes(), width)
        assert leaf_hash((out / entry_object_path(n)).read_bytes()) == leaf_hash(bundle[n % TILE_WIDTH])
    before = _stamps(out)
    assert writer.sync(storage) == 300 and _stamps(out) == before, "a second sync changes nothing"
    log.append_entries(entries[300:])
    assert writer.sync(storage) == 600
    after = _stamps(out)
    assert all(after[rel] == stamp for rel, stamp in before.items() if rel.startswith("entry/")), \
        "an entry object is written once, never rewritten"
    assert _entry_files(out) == dict(enumerate(entries))
    assert not (out / entry_object_path(600)).exists()
    assert not [p for p in out.rglob(".*.tmp")], "no temporary file is left behind"
    storage.close()


def test_the_background_writer_writes_entry_objects_of_large_batches_before_the_checkpoint(sqlite_db, world,
                                                                                          tmp_path):
    storage = sqlite_db.open()
    out = tmp_path / "out"
    writer = _writer(out, world)
    static = BackgroundWriter(writer, storage)
    log = make_log(storage, world, static=static)
    entries = [b"big batch %d" % i for i in range(1300)]  # more files than one write round
    log.append_entries(entries[:1])
    log.append_entries(entries[1:])
    assert static.flush(60)
    cp = open_checkpoint((out / "checkpoint").read_bytes(), world.log_note.verifier).checkpoint
    assert cp.size == 1300
    assert _entry_files(out) == dict(enumerate(entries))
    assert (out / "checkpoint").read_bytes() == log.checkpoint()
    static.close()
    storage.close()


def test_a_directory_exported_without_entry_objects_gets_them_all(sqlite_db, world, tmp_path):
    storage = sqlite_db.open()
    log = make_log(storage, world)
    entries = [b"old %d" % i for i in range(520)]
    log.append_entries(entries)
    out = tmp_path / "out"
    assert _writer(out, world, entry_objects=False).sync(storage) == 520
    assert not (out / "entry").exists(), "a C2SP-only directory"
    # The next exporter with entry objects (a newer fleetkeys) writes every missing one once.
    writer = _writer(out, world)
    assert writer.sync(storage) == 520
    assert _entry_files(out) == dict(enumerate(entries))
    before = _stamps(out)
    writer.sync(storage)
    assert _stamps(out) == before
    storage.close()


def test_app_serves_the_exported_objects_byte_for_byte(sqlite_db, world, tmp_path):
    static = tmp_path / "static"
    app = create_app({"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN,
                      "static_dir": str(static)})
    service = get_service(app)
    client = app.test_client()
    for bundle in world.chain(3):
        assert client.post("/api/v1/bundles", data=bundle, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
    service.log.append_entries([b"raw %d" % i for i in range(260)])
    assert service.static.flush(30)
    objects = _entry_files(static)
    assert sorted(objects) == list(range(263))
    for n, data in objects.items():
        resp = client.get("/" + entry_object_path(n))
        assert resp.status_code == 200 and resp.data == data, n
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    missing = client.get("/" + entry_object_path(263))
    assert missing.status_code == 404 and "does not exist" in missing.json["error"]
    assert missing.headers["Cache-Control"] == "no-store"
    service.close()


def test_entry_objects_are_durable_before_the_checkpoint_names_them(sqlite_db, world, tmp_path, monkeypatch):
    """Each object: temporary name, fsync, rename; then its directory fsync'd; only then the checkpoint
    is renamed into place (the order of the system calls, recorded)."""
    storage = sqlite_db.open()
    log = make_log(storage, world)
    out = tmp_path / "out"
    writer = _writer(out, world)
    events: list[tuple[str, str]] = []
    real_replace, real_fsync, real_open = os.replace, os.fsync, os.open
    names: dict[int, str] = {}

    def record_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        names[fd] = str(path)
        return fd

    def record_fsync(fd):
        events.append(("fsync", names.get(fd, "?")))
        return real_fsync(fd)

    def record_replace(src, dst):
        events.append(("rename", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    for batch in ([b"a", b"b", b"c"], [b"d%d" % i for i in range(300)]):
        events.clear()
        log.append_entries(batch)
        writer.sync(storage)
        renamed = [dst for kind, dst in events if kind == "rename"]
        assert renamed[-1] == str(out / "checkpoint")
        at = len(events) - 1 - events[::-1].index(("rename", str(out / "checkpoint")))
        before = events[:at]
        for dst in renamed[:-1]:
            tmp = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.tmp")
            assert ("fsync", tmp) in before, f"{dst} renamed before its data was fsync'd"
            assert ("fsync", os.path.dirname(dst)) in before[before.index(("rename", dst)):], \
                f"{dst}: its directory was not fsync'd before the checkpoint"
        assert sum(dst.startswith(str(out / "entry")) for dst in renamed) == len(batch)
    storage.close()
