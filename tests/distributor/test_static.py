"""The static read path: files written as entries are appended, and by ``fleetkeys export`` from the
database, served by a plain HTTP server (and nginx), verify exactly like the live service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from distributor.app import create_app, get_service
from distributor.errors import ExportError
from distributor.export import StaticWriter
from distributor.freshness import Freshness
from tests.distributor.conftest import make_log
from tests.distributor.helpers import (
    NGINX,
    REPO,
    TOKEN,
    NginxProcess,
    ServeProcess,
    StaticServer,
    expected_tiles,
    run_cli,
    verify_read_path,
    wait_for,
    world_data_dir,
)
from tests.distributor.test_log_rules import NEW_ANCHOR, NEW_OPERATOR, bundles, digest_of, rotation, v2_ref
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import verify_cosignatures
from verifier.merkle import leaf_hash
from verifier.tiles import TILE_WIDTH, decode_entry_bundle, entries_path, entry_object_path

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _static_size(directory: Path, world) -> int:
    try:
        return open_checkpoint((directory / "checkpoint").read_bytes(), world.log_note.verifier).checkpoint.size
    except FileNotFoundError:
        return -1


def _publish_history(url: str, world) -> int:
    """12 bundles, a trust-root rotation, then 5 bundles under the new keys: 18 entries."""
    session = requests.Session()
    chain = world.chain(12)
    for b in chain:
        assert session.post(url + "/api/v1/bundles", data=b, headers=AUTH, timeout=10).status_code == 201
    assert session.post(url + "/api/v1/trust-roots", data=rotation(world), headers=AUTH, timeout=10).status_code == 201
    for b in bundles(world, range(13, 18), previous=digest_of(chain[-1]), anchor=NEW_ANCHOR,
                     countersigner=NEW_OPERATOR, root=v2_ref(world)):
        assert session.post(url + "/api/v1/bundles", data=b, headers=AUTH, timeout=10).status_code == 201
    return 18


def test_static_copy_served_by_a_plain_http_server_verifies_like_the_live_service(sqlite_db, world, tmp_path):
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json")]
    with ServeProcess(args, tmp_path / "serve.log") as live:
        size = _publish_history(live.url, world)
        static = data / "static"
        wait_for(lambda: _static_size(static, world) == size, what="static export")
        live_view = verify_read_path(live.url, world)
        with StaticServer(static) as plain:
            static_view = verify_read_path(plain.url, world)
        assert static_view == live_view
        assert static_view.size == 18 and static_view.trust_root_version == 2
        # Every file of the static directory is byte-for-byte what the live service serves at that path,
        # the entry objects included, and the checkpoint is the one served checkpoint.
        files = _files(static)
        assert sum(rel.startswith("entry/") for rel in files) == size
        assert [rel for rel in files if rel.startswith("trust-root/")] == ["trust-root/2"]
        for rel, content in files.items():
            if rel != "checkpoint":
                assert requests.get(f"{live.url}/{rel}", timeout=5).content == content, rel
        wait_for(lambda: (static / "checkpoint").read_bytes() == requests.get(f"{live.url}/checkpoint",
                                                                             timeout=5).content,
                 what="the static checkpoint to be the served one")


@pytest.fixture
def fast_dir(tmp_path):
    """A directory for many small files: tmpfs when there is one (fsync is then nearly free; the
    crash-safety of the writing is tested elsewhere, here only what is written)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="fleetkeys-test-", dir="/dev/shm"))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


def test_static_tiles_at_tile_boundaries_and_export_from_the_database(db, world, fast_dir):
    tmp_path = fast_dir
    static = tmp_path / "static"
    app = create_app({"database": db.url, "schema": db.schema, "origin": world.origin, "log_signer": world.log,
                      "freshness_signer": world.freshness, "static_dir": str(static)})
    service = get_service(app)
    entries: list[bytes] = []
    exporter = StaticWriter(str(tmp_path / "export"), log_key=world.log_note.verifier,
                            freshness=Freshness(world.origin, world.freshness))
    for size in [1, 255, 256, 257, 65537]:
        while len(entries) < size:
            batch = [b"e%d" % i for i in range(len(entries), min(size, len(entries) + 3000))]
            service.log.append_entries(batch)
            entries += batch
        assert service.static.flush(60)
        assert exporter.sync(service.storage) == size
        leaves = [leaf_hash(e) for e in entries]
        for directory in (static, tmp_path / "export"):
            cp = open_checkpoint((directory / "checkpoint").read_bytes(), world.log_note.verifier).checkpoint
            assert cp.size == size
            for path, tile in expected_tiles(leaves).items():
                assert (directory / path).read_bytes() == tile, (directory, path)
            for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
                width = min(TILE_WIDTH, size - n * TILE_WIDTH)
                got = decode_entry_bundle((directory / entries_path(n, width)).read_bytes(), width)
                assert got == entries[n * TILE_WIDTH:n * TILE_WIDTH + width]
            for n in {0, size // 2, size - 1}:
                assert (directory / entry_object_path(n)).read_bytes() == entries[n], (directory, n)
            assert not (directory / entry_object_path(size)).exists()
    # The exporter's files are a subset of the writer's (the writer also kept older partial widths).
    written, exported = _files(static), _files(tmp_path / "export")
    assert all(written[rel] == data for rel, data in exported.items() if rel != "checkpoint")
    service.close()


def test_export_is_incremental_and_idempotent(db, world, tmp_path):
    storage = db.open()
    log = make_log(storage, world)
    out = tmp_path / "out"
    log.append_entries([b"a%d" % i for i in range(300)])
    data = world_data_dir(tmp_path / "data", world)
    args = ["export", "--database", db.url_with_schema, "--out", str(out), "--data", str(data)]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "size 300" in first.stdout
    before = _stamps(out)
    again = run_cli(*args)
    assert again.returncode == 0 and _stamps(out) == before, "a second export must change nothing"
    log.append_entries([b"b%d" % i for i in range(300)])
    run_cli(*args)
    after = _stamps(out)
    assert after["tile/0/000"] == before["tile/0/000"], "a full tile is never rewritten"
    assert "tile/0/002.p/88" in after and "tile/entries/001" in after
    assert _static_size(out, world) == 600
    storage.close()


def test_export_follow_from_postgres_replicas(pg_db, world, tmp_path):
    data = world_data_dir(tmp_path / "data", world)
    serve = ["--data", str(data), "--database", pg_db.url_with_schema, "--origin", world.origin, "--trust-root",
             str(data / "trust-root.json"), "--workers", "1"]
    out = tmp_path / "cdn"
    with ServeProcess(serve, tmp_path / "a.log") as a, ServeProcess(serve, tmp_path / "b.log") as b:
        exporter = subprocess.Popen([sys.executable, "-m", "distributor", "export", "--database", pg_db.url_with_schema,
                                     "--out", str(out), "--data", str(data), "--follow", "--interval", "0.1"],
                                    cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        try:
            chain = world.chain(6)
            for i, bundle in enumerate(chain):  # alternate replicas
                url = (a.url, b.url)[i % 2]
                assert requests.post(url + "/api/v1/bundles", data=bundle, headers=AUTH, timeout=10).status_code == 201
            wait_for(lambda: _static_size(out, world) == 6, what="exporter to follow")
            with StaticServer(out) as plain:
                assert verify_read_path(plain.url, world) == verify_read_path(a.url, world)
        finally:
            exporter.terminate()
            output = exporter.communicate(timeout=10)[0]
        assert exporter.returncode == 0, output


def test_export_refuses_the_wrong_freshness_key_or_another_logs_directory(sqlite_db, world, tmp_path):
    storage = sqlite_db.open()
    make_log(storage, world).append_entries([b"x"])
    storage.close()
    data = world_data_dir(tmp_path / "data", world)
    (data / "freshness.key").unlink()
    from tests.distributor.helpers import write_seed_key

    write_seed_key(data / "freshness.key", "someone else")
    result = run_cli("export", "--database", sqlite_db.url, "--out", str(tmp_path / "o"), "--data", str(data))
    assert result.returncode != 0 and "is not the freshness key" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "checkpoint").write_bytes(world.checkpoint([b"q"]).replace(world.origin.encode(), b"x.example/log", 1))
    with pytest.raises(ExportError):
        StaticWriter(str(other), log_key=world.log_note.verifier,
                     freshness=Freshness(world.origin, world.freshness)).sync(sqlite_db.open())


def test_static_checkpoint_freshness_is_renewed_and_a_lagging_directory_catches_up(sqlite_db, world, tmp_path):
    now = [1_795_600_000.0]
    storage = sqlite_db.open()
    log = make_log(storage, world, clock=lambda: now[0])
    log.append_entries([b"y%d" % i for i in range(10)])
    writer = StaticWriter(str(tmp_path / "s"), log_key=world.log_note.verifier,
                          freshness=Freshness(world.origin, world.freshness, interval=60, clock=lambda: now[0]))

    def stamp() -> int:
        note = (tmp_path / "s" / "checkpoint").read_bytes()
        return verify_cosignatures(note, [world.freshness_cosigner.verifier], 1, what="freshness")[0].timestamp

    writer.sync(storage)
    assert stamp() == int(now[0])
    now[0] += 59
    writer.sync(storage)
    assert stamp() == int(now[0]) - 59
    now[0] += 2
    writer.sync(storage)
    assert stamp() == int(now[0])
    # The file is the database's served checkpoint, byte for byte (what every worker serves).
    assert (tmp_path / "s" / "checkpoint").read_bytes() == log.checkpoint()
    # A directory that lost its checkpoint (or lags) is brought up to date from the database.
    (tmp_path / "s" / "checkpoint").unlink()
    shutil.rmtree(tmp_path / "s" / "tile" / "entries")
    log.append_entries([b"z"])
    assert writer.sync(storage) == 11
    assert (tmp_path / "s" / "tile" / "entries" / "000.p" / "11").exists()
    storage.close()


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed (apt-get install nginx)")
def test_nginx_with_the_readme_configuration_serves_the_same_log(sqlite_db, world, tmp_path):
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json")]
    with ServeProcess(args, tmp_path / "serve.log") as live:
        size = _publish_history(live.url, world)
        wait_for(lambda: _static_size(data / "static", world) == size, what="static export")
        with NginxProcess(data / "static", tmp_path / "nginx", upstream=f"127.0.0.1:{live.port}") as nginx:
            assert verify_read_path(nginx.url, world) == verify_read_path(live.url, world)
            assert requests.get(nginx.url + "/api/v1/info", timeout=5).json()["size"] == size  # proxied API
            # The same header policy as the app: every tile, entry and trust-root object immutable, the
            # checkpoint short.
            for path in ("tile/0/000.p/18", "tile/entries/000.p/18", "entry/000", "entry/017", "trust-root/2"):
                resp, live_resp = (requests.get(f"{u}/{path}", timeout=5) for u in (nginx.url, live.url))
                assert resp.status_code == 200 and resp.content == live_resp.content, path
                for header in ("Cache-Control", "Content-Type"):
                    assert resp.headers[header] == live_resp.headers[header], (path, header)
                assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable", path
                assert requests.get(f"{nginx.url}/{path}", headers={"If-None-Match": resp.headers["ETag"]},
                                    timeout=5).status_code == 304, path
            cp = requests.get(nginx.url + "/checkpoint", timeout=5)
            assert cp.headers["Cache-Control"] == "public, max-age=5"
            assert cp.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert requests.get(nginx.url + "/.lock", timeout=5).status_code == 404
            assert requests.get(nginx.url + "/entry/.000.tmp", timeout=5).status_code == 404
            for path in ("tile/0/000", "entry/018", "trust-root/3"):  # not there yet: never cache the 404
                missing = requests.get(f"{nginx.url}/{path}", timeout=5)
                assert missing.status_code == 404 and missing.headers["Cache-Control"] == "no-store", path
                assert missing.json() == {"error": "not found"}, path


def test_the_readme_shows_the_nginx_block_the_code_generates():
    from distributor.export import nginx_server_block

    block = nginx_server_block("/srv/fleetkeys/static", "80", "fleetkeys_api")
    indented = "".join("    " + line + "\n" if line else "\n" for line in block.rstrip("\n").split("\n"))
    assert indented in (REPO / "README.md").read_text(), "README.md's nginx block differs from nginx_server_block()"
