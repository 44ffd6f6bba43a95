"""Per-version trust-root objects (bundles/FORMAT.md §9.7): ``trust-root/<version>`` holds the log index
of rotation ``version``, a line feed and its exact envelope; the exporter writes it once, before the
checkpoint that includes the rotation, and the app serves it at the same path, immutable. Also the
switch for per-entry objects (``export_entry_objects`` / ``--no-entry-objects``)."""

from __future__ import annotations

import os
from pathlib import Path

from distributor.app import create_app, get_service
from distributor.export import BackgroundWriter, StaticWriter
from distributor.freshness import Freshness
from tests.distributor.conftest import make_log
from tests.distributor.helpers import TOKEN, run_cli, world_data_dir
from tests.distributor.test_log_rules import NEW_ANCHOR, NEW_OPERATOR, bundles, digest_of, rotation, v2_ref
from verifier.checkpoint import open_checkpoint
from verifier.merkle import inclusion_proof, leaf_hash, verify_inclusion
from verifier.tiles import tile_node_reader
from verifier.trustroot import encode_trust_root_object, parse_trust_root_object, trust_root_object_path

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _writer(directory: Path, world, **kwargs) -> StaticWriter:
    return StaticWriter(str(directory), log_key=world.log_note.verifier,
                        freshness=Freshness(world.origin, world.freshness), **kwargs)


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _rotated_log(log, world) -> tuple[bytes, bytes]:
    """Epoch 1, 300 raw entries, rotations to v2 (index 301) and v3 (index 303), epoch 2 under v2 between."""
    chain = world.chain(1)
    log.publish(chain[0])
    log.append_entries([b"raw %d" % i for i in range(300)])
    v2 = rotation(world)
    v3 = rotation(world, version=3, signers=[("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    assert log.rotate_trust_root(v2).index == 301
    log.publish(bundles(world, [2], previous=digest_of(chain[0]), anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR,
                        root=v2_ref(world))[0])
    assert log.rotate_trust_root(v3).index == 303
    return v2, v3


def _proven(directory: Path, world, version: int) -> bytes:
    """The envelope of ``trust-root/<version>``, proven at its index from the directory's own tiles."""
    index, envelope = parse_trust_root_object((directory / trust_root_object_path(version)).read_bytes())
    cp = open_checkpoint((directory / "checkpoint").read_bytes(), world.log_note.verifier).checkpoint
    node = tile_node_reader(cp.size, lambda ref: (directory / ref.path).read_bytes())
    verify_inclusion(index, cp.size, leaf_hash(envelope), inclusion_proof(index, cp.size, node), cp.root)
    return envelope


def test_export_writes_one_object_per_logged_rotation_proven_at_its_index(db, world, tmp_path):
    storage = db.open()
    log = make_log(storage, world)
    v2, v3 = _rotated_log(log, world)
    out = tmp_path / "out"
    writer = _writer(out, world)
    assert writer.sync(storage) == 304
    assert (out / "trust-root" / "2").read_bytes() == encode_trust_root_object(301, v2) == b"301\n" + v2
    assert (out / "trust-root" / "3").read_bytes() == encode_trust_root_object(303, v3)
    assert _proven(out, world, 2) == v2 and _proven(out, world, 3) == v3
    assert sorted(p.name for p in (out / "trust-root").iterdir() if not p.name.startswith(".")) == ["2", "3"], \
        "the bootstrap root was never logged: no trust-root/1"
    before = _stamps(out)
    log.append_entries([b"later"])
    assert writer.sync(storage) == 305
    after = _stamps(out)
    assert all(after[rel] == before[rel] for rel in before if rel.startswith("trust-root/")), \
        "a trust-root object is written once, never rewritten"
    storage.close()


def test_trust_root_objects_are_written_even_without_entry_objects_and_filled_in_for_older_directories(
        sqlite_db, world, tmp_path):
    storage = sqlite_db.open()
    log = make_log(storage, world)
    v2, _ = _rotated_log(log, world)
    out = tmp_path / "out"
    assert _writer(out, world, entry_objects=False).sync(storage) == 304
    assert not (out / "entry").exists() and (out / "trust-root" / "2").read_bytes() == b"301\n" + v2
    # A directory exported before trust-root objects existed gets them at its next sync.
    (out / "trust-root" / "2").unlink()
    (out / "trust-root" / "3").unlink()
    assert _writer(out, world, entry_objects=False).sync(storage) == 304
    assert _proven(out, world, 2) == v2 and (out / "trust-root" / "3").exists()
    storage.close()


def test_the_background_writer_writes_the_object_before_the_checkpoint_naming_the_rotation(sqlite_db, world,
                                                                                          tmp_path, monkeypatch):
    storage = sqlite_db.open()
    out = tmp_path / "out"
    static = BackgroundWriter(_writer(out, world), storage)
    log = make_log(storage, world, static=static)
    log.publish(world.chain(1)[0])
    assert static.flush(30)
    events: list[tuple[str, str]] = []
    real_replace, real_fsync, real_open = os.replace, os.fsync, os.open
    names: dict[int, str] = {}

    def record_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        names[fd] = str(path)
        return fd

    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", names.get(fd, "?"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("rename", str(dst))), real_replace(src, dst))[1])
    env = rotation(world)
    assert log.rotate_trust_root(env).index == 1
    assert static.flush(30)
    obj = str(out / "trust-root" / "2")
    assert ("rename", obj) in events and events.index(("rename", obj)) < events.index(("rename", str(out / "checkpoint")))
    assert ("fsync", str(out / "trust-root" / ".2.tmp")) in events[:events.index(("rename", obj))]
    assert ("fsync", str(out / "trust-root")) in events[events.index(("rename", obj)):
                                                         events.index(("rename", str(out / "checkpoint")))]
    monkeypatch.undo()
    assert (out / "trust-root" / "2").read_bytes() == b"1\n" + env and _proven(out, world, 2) == env
    static.close()
    storage.close()


def test_app_serves_trust_root_objects_immutable_and_404s_versions_never_logged(sqlite_db, world, tmp_path):
    static = tmp_path / "static"
    app = create_app({"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN,
                      "static_dir": str(static)})
    service = get_service(app)
    client = app.test_client()
    v2, v3 = _rotated_log(service.log, world)
    assert service.static.flush(30)
    for version, index, env in ((2, 301, v2), (3, 303, v3)):
        resp = client.get(f"/trust-root/{version}")
        assert resp.status_code == 200 and resp.data == encode_trust_root_object(index, env)
        assert resp.data == (static / "trust-root" / str(version)).read_bytes(), "the app and the export agree"
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert client.get(f"/trust-root/{version}", headers={"If-None-Match": resp.headers["ETag"]}).status_code == 304
    for path in ("/trust-root/1", "/trust-root/4", "/trust-root/02", "/trust-root/2/", "/trust-root/x",
                 "/trust-root/99999999999999999999999"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.headers["Cache-Control"] == "no-store", path
        assert isinstance(resp.json["error"], str), path
    assert "trust root version 1 was never logged" in client.get("/trust-root/1").json["error"]
    service.close()


def test_entry_objects_can_be_switched_off(sqlite_db, world, tmp_path):
    static = tmp_path / "static"
    app = create_app({"database": sqlite_db.url, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN,
                      "static_dir": str(static), "export_entry_objects": False})
    service = get_service(app)
    client = app.test_client()
    for bundle in world.chain(2):
        assert client.post("/api/v1/bundles", data=bundle, headers=AUTH).status_code == 201
    assert client.post("/api/v1/trust-roots", data=rotation(world), headers=AUTH).status_code == 201
    assert service.static.flush(30)
    assert not (static / "entry").exists() and (static / "tile" / "entries" / "000.p" / "3").exists()
    assert (static / "trust-root" / "2").exists()
    assert client.get("/entry/000").status_code == 200, "the app still serves entries from the database"
    service.close()
    # The CLI: export --no-entry-objects writes a C2SP-only directory (plus trust-root objects).
    data = world_data_dir(tmp_path / "data", world)
    out = tmp_path / "out"
    result = run_cli("export", "--database", sqlite_db.url, "--out", str(out), "--data", str(data),
                     "--no-entry-objects")
    assert result.returncode == 0, result.stderr
    assert not (out / "entry").exists() and (out / "trust-root" / "2").exists()
    assert run_cli("export", "--database", sqlite_db.url, "--out", str(out), "--data", str(data)).returncode == 0
    assert sorted(p.name for p in (out / "entry").iterdir()) == ["000", "001", "002"]


def test_the_entry_objects_switch_is_documented_with_its_cost():
    for command in ("serve", "export"):
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())
        assert "--no-entry-objects" in text and "25x slower" in text and "fsync'd file" in text, text
