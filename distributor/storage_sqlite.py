"""SQLite storage: the embedded default, one database file in the data directory.

Durability: the database runs in WAL mode with ``synchronous=FULL``. A write transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``) appends its pages to the ``-wal`` file and, with FULL, SQLite
fsyncs the WAL *before* ``COMMIT`` returns. That fsync is what makes an acknowledged append survive
``kill -9`` and power loss: the entry, its tile rows and the new signed checkpoint are in that one
WAL commit frame set, so after a crash either all of them are there or none is.

Exclusion: ``BEGIN IMMEDIATE`` takes SQLite's RESERVED lock at once, so at most one connection (in
any thread or process) is inside a write transaction; others wait up to ``busy_timeout``. Readers
use WAL snapshots and never block the writer.

Faults (:func:`storage_error`): SQLITE_FULL (a write met ENOSPC) is :class:`DiskFull`, SQLITE_IOERR
(EIO, or any failed read, write or fsync) :class:`StorageIOError`, SQLITE_BUSY/LOCKED after the busy
timeout :class:`StorageBusy`, SQLITE_CORRUPT/NOTADB :class:`StorageDamaged` (SQLite also reports a
read that failed with EIO that way, so it is a 503 like the others; fsck tells real damage), any other operational
error :class:`StorageUnavailable`. A COMMIT that fails in its fsync may still have written the whole
commit to the WAL: the next open of the file (after a restart) replays it, so the append may be there.
After such a failure the connection is rolled back and closed (SQLite's pager is left in its error
state); the next use opens a new one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from serving.sqlitefaults import describe, sqlite_fault

from .errors import (
    DiskFull,
    IntegrityError,
    StorageBusy,
    StorageDamaged,
    StorageError,
    StorageIOError,
    StorageUnavailable,
)
from .storage import Storage, Tx, check_schema_version, schema_sql

BUSY_TIMEOUT_MS = 60_000

#: The distributor's error for each kind of SQLite fault (:func:`serving.sqlitefaults.sqlite_fault`).
_ERROR_OF_KIND: dict[str, type[StorageError]] = {
    "busy": StorageBusy,
    "io": StorageIOError,
    "corrupt": StorageDamaged,
    "full": DiskFull,
    "unavailable": StorageUnavailable,
}


def storage_error(exc: sqlite3.Error, description: str, doing: str) -> StorageError | IntegrityError | None:
    """The distributor error for a failure of SQLite while ``doing`` something, or ``None`` for an error
    that is not the storage's (a constraint violation or a misuse of the API: a bug, left as it is)."""
    kind = sqlite_fault(exc)
    if kind is None:
        return None
    return _ERROR_OF_KIND[kind](f"{description}: {doing} failed: {describe(exc)}")


class SqliteStorage(Storage):
    """One SQLite file; a connection per thread."""

    def __init__(self, path: str) -> None:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StorageError(f"SQLite database {path}: directory {directory} does not exist")
        super().__init__()
        self.path = path
        self.description = f"sqlite:///{path}"
        self._schema_ready = False

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # WAL is a property of the file (persistent); FULL is per connection: fsync the WAL at
            # every commit, which is the durability point of an append.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"{self.description}: cannot enable WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise (storage_error(exc, self.description, "opening the database")
                   or StorageError(f"{self.description}: cannot open ({exc})")) from exc
        return conn

    def _rollback(self, conn: sqlite3.Connection) -> bool:
        """Roll back the open transaction, if any; False (and the connection discarded) if that failed."""
        try:
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error:
            self._discard()
            return False
        return True

    def _failed(self, conn: sqlite3.Connection, exc: sqlite3.Error, doing: str) -> Exception:
        """Roll back after ``exc`` and return what to raise. The connection is closed unless the failure
        was only a lock timeout: after an I/O error SQLite's pager stays in its error state."""
        error = storage_error(exc, self.description, doing)
        if self._rollback(conn) and error is not None and not isinstance(error, StorageBusy):
            self._discard()
        return error or exc

    def _ensure_schema(self, cur: sqlite3.Cursor) -> None:
        if self._schema_ready:
            return
        for stmt in schema_sql("BLOB", "INTEGER"):
            cur.execute(stmt)
        check_schema_version(Tx(cur), self.description)
        self._schema_ready = True

    @contextmanager
    def write(self) -> Iterator[Tx]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(conn, exc, "taking the writer lock") from exc
        try:
            self._ensure_schema(cur)
            yield Tx(cur)
        except sqlite3.Error as exc:
            raise self._failed(conn, exc, "a write transaction") from exc
        except BaseException:
            self._rollback(conn)
            raise
        try:
            # The fsync of the WAL inside this COMMIT (synchronous=FULL) is the durability point. If it
            # fails, the commit frames may be in the WAL already: the append is then in doubt, and a
            # restart may replay it (the caller is told a storage failure, never "not appended").
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._failed(conn, exc, "COMMIT") from exc

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute("BEGIN")
            yield Tx(cur)
        except sqlite3.Error as exc:
            raise self._failed(conn, exc, "a read transaction") from exc
        except BaseException:
            self._rollback(conn)
            raise
        self._rollback(conn)

    def has_schema(self) -> bool:
        conn = self._conn()
        try:
            row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'head'").fetchone()
        except sqlite3.Error as exc:
            raise self._failed(conn, exc, "reading the schema") from exc
        return row is not None


__all__ = ["SqliteStorage"]
