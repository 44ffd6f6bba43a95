"""SQLite storage: the embedded default, one database file in the data directory.

Durability: the database runs in WAL mode with ``synchronous=FULL``. A write transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``) appends its pages to the ``-wal`` file and, with FULL, SQLite
fsyncs the WAL *before* ``COMMIT`` returns. That fsync is what makes an acknowledged append survive
``kill -9`` and power loss: the entry, its tile rows and the new signed checkpoint are in that one
WAL commit frame set, so after a crash either all of them are there or none is.

Exclusion: ``BEGIN IMMEDIATE`` takes SQLite's RESERVED lock at once, so at most one connection (in
any thread or process) is inside a write transaction; others wait up to ``busy_timeout``. Readers
use WAL snapshots and never block the writer.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import StorageError
from .storage import Storage, Tx, check_schema_version, schema_sql

BUSY_TIMEOUT_MS = 60_000


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
            raise StorageError(f"{self.description}: cannot open ({exc})") from exc
        return conn

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
        cur.execute("BEGIN IMMEDIATE")
        try:
            self._ensure_schema(cur)
            yield Tx(cur)
        except BaseException:
            conn.rollback()
            raise
        # The fsync of the WAL inside this COMMIT (synchronous=FULL) is the durability point.
        cur.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn = self._conn()
        cur = conn.cursor()
        cur.execute("BEGIN")
        try:
            yield Tx(cur)
        finally:
            conn.rollback()

    def has_schema(self) -> bool:
        row = self._conn().execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'head'").fetchone()
        return row is not None


__all__ = ["SqliteStorage"]
