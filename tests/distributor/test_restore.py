"""A log restored from a backup older than its export: refused at start-up, brought back by
``fleetkeys distributor recover`` (distributor/recover.py, docs/DESIGN.md §5 "Restoring a backup").

The attack these stop is an accidental one: a database restored to size 3 after the log exported
(and clients saw) size 5 would sign a second size-4 tree with its next append, which every client
and witness refuses forever. Each test starts from the same story: publish 3 bundles, back the
SQLite database up with the ``sqlite3`` backup API, publish 2 more (exported), restore the backup.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from distributor.errors import IntegrityError
from distributor.export import BackgroundWriter, StaticWriter
from distributor.freshness import Freshness
from distributor.fsck import fsck_log
from distributor.log import Log
from distributor.recover import directory_source, recover, url_source
from distributor.storage import ServedRow, open_storage
from tests.distributor.conftest import Database, make_log
from tests.distributor.helpers import StaticServer, run_cli, verify_read_path, world_data_dir
from tests.factory import World, fleet
from verifier.checkpoint import open_checkpoint
from verifier.errors import RollbackError, VerificationError
from verifier.update import ClientState, verify_checkpoint


@dataclass
class Restored:
    """A data directory whose ``log.db`` was restored to size 3 while ``static/`` holds size 5."""

    data: Path
    db: Path
    static: Path
    seen: bytes  # the size-5 checkpoint a client saw before the restore

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


def _writer(static: Path, world: World) -> StaticWriter:
    return StaticWriter(str(static), log_key=world.log_note.verifier, freshness=Freshness(world.origin, world.freshness))


def _publish(storage, world: World, static: Path | None, bundles: list[bytes]) -> Log:
    background = None if static is None else BackgroundWriter(_writer(static, world), storage)
    log = make_log(storage, world, static=background)
    log.publish_batch(bundles)
    if background is not None:
        assert background.flush(10)
        background.close()
    return log


def _backup(src: Path, dst: Path) -> None:
    """An online backup (what ``sqlite3 log.db ".backup dst"`` does)."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def _restore(backup: Path, db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with_suffix = Path(f"{db}{suffix}")
        if with_suffix.exists():
            with_suffix.unlink()
    shutil.copyfile(backup, db)


@pytest.fixture
def restored(tmp_path: Path, world: World) -> Restored:
    data = world_data_dir(tmp_path / "data", world)
    db, static, backup = data / "log.db", data / "static", tmp_path / "backup.db"
    chain = world.chain(5)
    storage = open_storage(f"sqlite:///{db}")
    _publish(storage, world, static, chain[:3])
    _backup(db, backup)
    _publish(storage, world, static, chain[3:])
    storage.close()
    seen = (static / "checkpoint").read_bytes()
    assert open_checkpoint(seen, world.log_note.verifier).checkpoint.size == 5
    _restore(backup, db)
    return Restored(data, db, static, seen)


def _open_with_static(url: str, world: World, static: Path) -> Log:
    storage = open_storage(url)
    return make_log(storage, world, static=BackgroundWriter(_writer(static, world), storage))


def _serve_args(r: Restored, world: World) -> list[str]:
    return ["--data", str(r.data), "--origin", world.origin, "--trust-root", str(r.data / "trust-root.json")]


def _fork_at_4(r: Restored, world: World) -> None:
    """Append another epoch-4 bundle to the restored database (opened without its static directory)."""
    storage = open_storage(r.url)
    log = make_log(storage, world)
    keyset = world.keyset(4, [fleet("fleet-other")], previous=log.bundle()[0].digest)
    log.publish(world.bundle(keyset, 4))
    storage.close()


def test_restored_backup_behind_the_export_refuses_to_serve(restored: Restored, world: World) -> None:
    result = run_cli("serve", *_serve_args(restored, world), "--port", "1")
    assert result.returncode == 1
    assert "size 5" in result.stderr and "only at size 3" in result.stderr
    assert "fleetkeys distributor recover" in result.stderr and f"--from-static {restored.static}" in result.stderr
    with pytest.raises(IntegrityError, match="restored from an older backup"):
        _open_with_static(restored.url, world, restored.static)


def test_recover_from_static_brings_back_the_same_tree_and_clients_accept_it(restored: Restored,
                                                                            world: World) -> None:
    result = run_cli("recover", "--data", str(restored.data), "--from-static", str(restored.static))
    assert result.returncode == 0, result.stderr
    assert "recovered entries 3..4" in result.stdout
    seen = open_checkpoint(restored.seen, world.log_note.verifier).checkpoint
    storage = open_storage(restored.url)
    try:
        report = fsck_log(storage, static_dir=str(restored.static))
        assert report.ok, report.problems
        log = _open_with_static(restored.url, world, restored.static)  # what every worker's open does
        now = int(time.time())
        served = log.checkpoint()
        assert open_checkpoint(served, world.log_note.verifier).checkpoint == seen
        # A client that saw size 5 accepts the recovered log's checkpoint (same tree, time not behind).
        before = ClientState(checkpoint_size=5, checkpoint_root=seen.root,
                             freshness_time=Freshness(world.origin, world.freshness).timestamp(restored.seen))
        verify_checkpoint(served, trust_root=world.trust_root(), state=before, now=now, consistency=[])
        _writer(restored.static, world).sync(storage)
    finally:
        storage.close()
    with StaticServer(restored.static) as server:
        view = verify_read_path(server.url, world)
    assert (view.size, view.root) == (5, seen.root)
    again = run_cli("recover", "--data", str(restored.data), "--from-static", str(restored.static))
    assert again.returncode == 0 and "nothing to recover" in again.stdout


def test_recover_from_a_mirror_url(restored: Restored, world: World, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(restored.static, mirror)
    shutil.rmtree(mirror / "entry")  # the mirror has only the C2SP files
    storage = open_storage(restored.url)
    try:
        log = make_log(storage, world, recovering=True)
        with StaticServer(mirror) as server:
            done = recover(log, url_source(server.url), where=server.url)
        assert (done.start, done.size) == (3, 5)
        assert fsck_log(storage).ok
    finally:
        storage.close()


def test_recover_from_entry_objects_when_bundles_are_missing(restored: Restored, world: World, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(restored.static, copy)
    shutil.rmtree(copy / "tile" / "entries")
    storage = open_storage(restored.url)
    try:
        done = recover(make_log(storage, world, recovering=True), directory_source(str(copy)), where=str(copy))
        assert done.count == 2 and fsck_log(storage).ok
    finally:
        storage.close()


def test_fork_at_size_4_is_refused_by_start_and_by_recover(restored: Restored, world: World) -> None:
    _fork_at_4(restored, world)
    start = run_cli("serve", *_serve_args(restored, world), "--port", "1")
    assert start.returncode == 1 and "size 5" in start.stderr and "only at size 4" in start.stderr
    result = run_cli("recover", "--data", str(restored.data), "--from-static", str(restored.static))
    assert result.returncode == 1
    assert "fork" in result.stderr and "entry 3" in result.stderr
    storage = open_storage(restored.url)
    try:
        with storage.read() as tx:
            assert tx.head().size == 4  # nothing was written
    finally:
        storage.close()


def test_fork_at_a_size_the_database_has_is_refused_at_start(tmp_path: Path, world: World) -> None:
    """The export at size 4 holds the honest entry 3; the restored database holds another one."""
    data = world_data_dir(tmp_path / "data", world)
    db, static, backup = data / "log.db", data / "static", tmp_path / "backup.db"
    storage = open_storage(f"sqlite:///{db}")
    _publish(storage, world, static, world.chain(3))
    _backup(db, backup)
    _publish(storage, world, static, world.chain(4)[3:])
    storage.close()
    _restore(backup, db)
    r = Restored(data, db, static, b"")
    _fork_at_4(r, world)
    with pytest.raises(IntegrityError, match="fork: the static export .* size 4"):
        _open_with_static(r.url, world, static)
    start = run_cli("serve", *_serve_args(r, world), "--port", "1")
    assert start.returncode == 1 and "fork" in start.stderr
    client = ClientState(checkpoint_size=4, checkpoint_root=open_checkpoint(
        (static / "checkpoint").read_bytes(), world.log_note.verifier).checkpoint.root)
    storage = open_storage(r.url)
    try:
        forked = make_log(storage, world).checkpoint()
        with pytest.raises((RollbackError, VerificationError)):
            verify_checkpoint(forked, trust_root=world.trust_root(), state=client, now=int(time.time()),
                              consistency=[])
        with pytest.raises(IntegrityError, match="fork"):
            recover(make_log(storage, world, recovering=True), directory_source(str(static)), where=str(static))
    finally:
        storage.close()


def test_served_checkpoint_row_beyond_the_head_is_refused(db: Database, world: World) -> None:
    """Both backends: a stored served checkpoint larger than the head (a partial restore) is refused,
    and the open does not re-serve the head over it."""
    storage = db.open()
    try:
        log = make_log(storage, world)
        log.publish_batch(world.chain(3))
        with storage.write() as tx:
            row = tx.served_checkpoint()
            tx.set_served_checkpoint(ServedRow(5, row.timestamp, row.checkpoint))
        with pytest.raises(IntegrityError, match="at size 3 but its stored served checkpoint is for size 5"):
            make_log(storage, world)
        with storage.read() as tx:
            assert tx.served_checkpoint().size == 5  # left as it was
    finally:
        storage.close()


def test_export_beyond_the_head_is_refused_on_postgres(db: Database, world: World, tmp_path: Path) -> None:
    """Both backends: the open of every worker refuses a database behind its static directory."""
    static = tmp_path / "static"
    storage = db.open()
    try:
        _publish(storage, world, static, world.chain(3))
    finally:
        storage.close()
    ahead = tmp_path / "ahead"
    other = tmp_path / "other.db"
    other_storage = open_storage(f"sqlite:///{other}")
    try:
        _publish(other_storage, world, ahead, world.chain(5))
    finally:
        other_storage.close()
    storage = db.open()
    try:
        with pytest.raises(IntegrityError, match=r"size 5, but .* is only at size 3"):
            make_log(storage, world, static=_writer(ahead, world))
        make_log(storage, world, static=_writer(static, world))  # its own export: fine
    finally:
        storage.close()
    assert os.path.exists(ahead / "checkpoint")
