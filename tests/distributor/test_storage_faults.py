"""Storage faults answer clearly: 503 with a fixed reason and ``Retry-After``, never a bare 500.

Faults are injected for real where this machine allows it: a full disk is a small tmpfs mount, an EIO
on the commit's fsync is ``strace --inject`` on the serving worker, a lost PostgreSQL connection is
``pg_terminate_backend`` of the app's own backend, idle or in the middle of a request. What each
answers, and that no acknowledged entry is lost or duplicated, is checked here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from distributor.app import RETRY_AFTER, STATUS_OF, create_app, get_service, status_of
from distributor.errors import (
    ConnectionLost,
    DiskFull,
    IntegrityError,
    StorageBusy,
    StorageDamaged,
    StorageError,
    StorageIOError,
    StorageUnavailable,
)
from distributor.log import check_integrity
from distributor.storage import open_storage
from distributor.storage_postgres import _LOCK_CLASS
from distributor.storage_sqlite import storage_error
from tests.distributor.conftest import PG_URL
from tests.distributor.helpers import TOKEN, ServeProcess, world_data_dir
from tests.service_process import wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _config(db, world, **extra):
    return {"database": db.url, "schema": db.schema, "origin": world.origin, "log_signer": world.log,
            "freshness_signer": world.freshness, "trust_root": world.trust_root_bytes(), "token": TOKEN, **extra}


def _assert_storage_503(resp, reason: str) -> None:
    body = resp.get_json() if hasattr(resp, "get_json") else resp.json()
    assert resp.status_code == 503, (resp.status_code, body)
    assert body == {"error": reason}
    assert resp.headers["Retry-After"] == str(RETRY_AFTER)
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


# -- the classification -----------------------------------------------------------------------------
def _sqlite_error(code: int, name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(name.lower())
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(("code", "name", "cls", "reason"), [
    (13, "SQLITE_FULL", DiskFull, "disk full"),
    (10, "SQLITE_IOERR", StorageIOError, "storage I/O error"),
    (10 | (4 << 8), "SQLITE_IOERR_FSYNC", StorageIOError, "storage I/O error"),
    (5, "SQLITE_BUSY", StorageBusy, "storage busy"),
    (6, "SQLITE_LOCKED", StorageBusy, "storage busy"),
    (14, "SQLITE_CANTOPEN", StorageUnavailable, "storage unavailable"),
    (8, "SQLITE_READONLY", StorageUnavailable, "storage unavailable"),
])
def test_sqlite_errors_are_classified(code, name, cls, reason):
    error = storage_error(_sqlite_error(code, name), "sqlite:///x.db", "COMMIT")
    assert type(error) is cls and error.reason == reason and status_of(error) == 503
    assert "x.db" in str(error) and name in str(error)  # the details stay in the message (the log)


def test_reported_corruption_is_a_503_and_bugs_stay_bugs():
    # SQLite answers SQLITE_CORRUPT to a read that failed with EIO (tests/faults): a passing disk error
    # must not be a 500 that says the log is broken.
    assert type(storage_error(_sqlite_error(11, "SQLITE_CORRUPT"), "d", "read")) is StorageDamaged
    assert type(storage_error(_sqlite_error(26, "SQLITE_NOTADB"), "d", "read")) is StorageDamaged
    assert status_of(StorageDamaged("x")) == 503
    assert status_of(IntegrityError("x")) == 500
    assert storage_error(sqlite3.IntegrityError("UNIQUE constraint failed"), "d", "write") is None
    assert storage_error(sqlite3.ProgrammingError("misuse"), "d", "write") is None


def test_every_storage_error_is_a_503_in_the_one_table():
    assert STATUS_OF[StorageError] == 503
    for cls in (StorageError, StorageUnavailable, DiskFull, StorageIOError, StorageBusy, ConnectionLost):
        assert status_of(cls("x")) == 503


def test_psycopg_errors_are_classified_by_sqlstate():
    pytest.importorskip("psycopg")
    import psycopg

    from distributor.storage_postgres import storage_error as pg_error

    class Conn:
        closed = broken = False

    for sqlstate, cls in [("53100", DiskFull), ("58030", StorageIOError), ("55P03", StorageBusy),
                          ("40001", StorageBusy), ("57014", StorageBusy), ("57P01", ConnectionLost),
                          ("08006", ConnectionLost), ("53300", StorageUnavailable)]:
        exc = psycopg.errors.lookup(sqlstate)("boom")
        assert type(pg_error(exc, Conn(), "pg")) is cls, sqlstate
    assert pg_error(psycopg.errors.lookup("23505")("dup"), Conn(), "pg") is None  # unique_violation: a bug
    broken = Conn()
    broken.broken = True
    assert type(pg_error(psycopg.OperationalError("server closed the connection"), broken, "pg")) is ConnectionLost


# -- a full disk (tmpfs) ----------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 6 MiB tmpfs (root only; skipped where mounting is not permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to the last page with a filler file (removed to free the space again)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


def test_disk_full_answers_503_disk_full_and_recovers(small_disk, world):
    db = type("Db", (), {"url": f"sqlite:///{small_disk}/log.db", "schema": None})()
    app = create_app(_config(db, world))
    client = app.test_client()
    try:
        chain = world.chain(3)
        assert client.post("/api/v1/bundles", data=chain[0], headers=AUTH).status_code == 201
        filler = _fill(small_disk)
        resp = client.post("/api/v1/bundles", data=chain[1], headers=AUTH)
        _assert_storage_503(resp, "disk full")
        assert b"log.db" not in resp.data  # the path is for the operator's log, not for clients
        assert client.get("/api/v1/info").status_code == 200  # reads still work on a full disk
        assert client.get("/checkpoint").status_code == 200
        filler.unlink()
        # Re-posting the same bundle after a 5xx is always safe: 201 if it was not appended, 200 if it was.
        again = client.post("/api/v1/bundles", data=chain[1], headers=AUTH)
        assert again.status_code in (200, 201) and again.get_json()["index"] == 1
        assert client.post("/api/v1/bundles", data=chain[1], headers=AUTH).status_code == 200
        assert client.post("/api/v1/bundles", data=chain[2], headers=AUTH).status_code == 201
        assert client.get("/api/v1/info").get_json()["size"] == 3
    finally:
        get_service(app).close()
    with open_storage(db.url) as storage:
        assert check_integrity(storage, world.log_note.verifier).size == 3


def test_busy_writer_lock_answers_503_storage_busy(sqlite_db, world, monkeypatch):
    monkeypatch.setattr("distributor.storage_sqlite.BUSY_TIMEOUT_MS", 200)
    app = create_app(_config(sqlite_db, world))
    client = app.test_client()
    holder = sqlite3.connect(sqlite_db.url[len("sqlite:///"):], isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the writer lock
        _assert_storage_503(client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH), "storage busy")
        assert client.get("/api/v1/info").status_code == 200  # WAL readers never wait for the writer
        holder.execute("ROLLBACK")
        assert client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH).status_code == 201
    finally:
        holder.close()
        get_service(app).close()


# -- EIO on the commit's fsync (strace --inject on the serving worker) -------------------------------
def _worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_eio_on_the_commit_fsync_answers_503_and_a_repost_is_safe(tmp_path, world):
    if shutil.which("strace") is None or os.geteuid() != 0:
        pytest.skip("needs strace and root")
    data = world_data_dir(tmp_path / "data", world)
    chain = world.chain(3)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
            "--workers", "1", "--threads", "1", "--no-static"]
    with ServeProcess(args, tmp_path / "serve.log") as proc:
        assert requests.post(proc.url + "/api/v1/bundles", data=chain[0], headers=AUTH, timeout=10).status_code == 201
        [worker] = _worker_pids(proc.proc.pid)
        wal = data / "log.db-wal"
        # Fail the first fdatasync/fsync of the WAL file, only that file: the commit of the next publish.
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-p", str(worker), "-P", str(wal), "-e",
                                   "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:error=EIO:when=1",
                                   "-o", str(tmp_path / "strace.out")])
        try:
            time.sleep(1.0)  # strace attached to every thread
            resp = requests.post(proc.url + "/api/v1/bundles", data=chain[1], headers=AUTH, timeout=10)
            _assert_storage_503(resp, "storage I/O error")
        finally:
            tracer.terminate()
            tracer.wait(10)
        assert "INJECTED" in (tmp_path / "strace.out").read_text()
        assert "StorageIOError" in proc.log() and "Traceback" not in proc.log()
        # The answer said "storage failure", not "not appended". Re-posting is always safe.
        again = requests.post(proc.url + "/api/v1/bundles", data=chain[1], headers=AUTH, timeout=10)
        assert again.status_code in (200, 201), again.text
        assert requests.post(proc.url + "/api/v1/bundles", data=chain[1], headers=AUTH, timeout=10).status_code == 200
        proc.kill()  # and a crash on top: the WAL frames of the failed commit may be replayed now
    with ServeProcess(args, tmp_path / "serve2.log") as proc:
        assert requests.post(proc.url + "/api/v1/bundles", data=chain[1], headers=AUTH, timeout=10).status_code == 200
        assert requests.post(proc.url + "/api/v1/bundles", data=chain[2], headers=AUTH, timeout=10).status_code == 201
        assert requests.get(proc.url + "/api/v1/info", timeout=10).json()["size"] == 3  # once each, none lost
    with open_storage(f"sqlite:///{data}/log.db") as storage:
        assert check_integrity(storage, world.log_note.verifier).size == 3


# -- PostgreSQL: backends terminated while idle and mid-request ---------------------------------------
def _admin():
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True)


def _backend_pid(app) -> int:
    """The backend of the connection this thread's requests use (the test client runs them here)."""
    return get_service(app).storage._local.conn.info.backend_pid


def _terminate(pid: int) -> None:
    with _admin() as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


@pytest.fixture
def pg_app(pg_db, world):
    app = create_app(_config(pg_db, world))
    yield app
    get_service(app).close()


def test_idle_connection_terminated_is_replaced_before_use(pg_app, world, caplog):
    client = pg_app.test_client()
    assert client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH).status_code == 201
    old = _backend_pid(pg_app)
    _terminate(old)
    time.sleep(0.2)  # the server's goodbye reaches the socket
    caplog.clear()
    assert client.get("/api/v1/info").get_json()["size"] == 1
    assert _backend_pid(pg_app) != old
    assert "retrying once" not in caplog.text  # the cheap check replaced it: no failed request, no retry
    _terminate(_backend_pid(pg_app))
    time.sleep(0.2)
    assert client.post("/api/v1/bundles", data=world.chain(2)[1], headers=AUTH).status_code == 201


class _Blocker:
    """Another session holding a lock the app's request will wait for, so that its backend can be
    found (it is blocked by this one) and terminated in the middle of the request."""

    def __init__(self, schema: str, sql: str) -> None:
        self.conn = _admin()
        self.conn.execute(f"SET search_path TO {schema}")
        self.conn.execute("BEGIN")
        self.conn.execute(sql)
        self.pid = self.conn.info.backend_pid

    def blocked(self) -> list[int]:
        with _admin() as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                (self.pid,)).fetchall()
        return [r[0] for r in rows]

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def _in_thread(fn):
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()))
    thread.start()
    return thread, result


@pytest.mark.parametrize("kind", ["read", "publish"])
def test_backend_terminated_mid_request_is_retried_once(pg_app, pg_db, world, kind, caplog):
    client = pg_app.test_client()
    chain = world.chain(2)
    assert client.post("/api/v1/bundles", data=chain[0], headers=AUTH).status_code == 201
    if kind == "read":
        blocker = _Blocker(pg_db.schema, "LOCK TABLE head IN ACCESS EXCLUSIVE MODE")
        thread, result = _in_thread(lambda: client.get("/api/v1/info"))
    else:
        blocker = _Blocker(pg_db.schema, f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, hashtext(current_schema()))")
        thread, result = _in_thread(lambda: client.post("/api/v1/bundles", data=chain[1], headers=AUTH))
    try:
        wait_for(lambda: len(blocker.blocked()) == 1, what="the request waiting on the lock")
        [first] = blocker.blocked()
        _terminate(first)  # mid-request: inside its transaction
        wait_for(lambda: blocker.blocked() not in ([], [first]), what="the retry on a new connection")
    finally:
        blocker.release()
    thread.join(30)
    resp = result["value"]
    assert resp.status_code == (200 if kind == "read" else 201), resp.get_json()
    assert "database connection lost" in caplog.text and "retrying once" in caplog.text
    assert client.get("/api/v1/info").get_json()["size"] == (1 if kind == "read" else 2)


def test_backend_terminated_twice_answers_503_connection_lost(pg_app, pg_db, world):
    client = pg_app.test_client()
    assert client.post("/api/v1/bundles", data=world.chain(1)[0], headers=AUTH).status_code == 201
    blocker = _Blocker(pg_db.schema, "LOCK TABLE head IN ACCESS EXCLUSIVE MODE")
    thread, result = _in_thread(lambda: client.get("/api/v1/info"))
    try:
        killed: list[int] = []
        for _ in range(2):
            wait_for(lambda: [p for p in blocker.blocked() if p not in killed], what="a blocked request")
            pid = next(p for p in blocker.blocked() if p not in killed)
            _terminate(pid)
            killed.append(pid)
        thread.join(30)
    finally:
        blocker.release()
    _assert_storage_503(result["value"], "database connection lost")
    assert client.get("/api/v1/info").status_code == 200  # and the next request works again
