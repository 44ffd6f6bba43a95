"""PostgreSQL storage (psycopg 3): several distributor processes and replicas over one database.

Sequencing: every write transaction starts with ``pg_advisory_xact_lock`` on a key derived from the
log's schema, *before* it reads the tree head, and holds it until COMMIT or ROLLBACK (the lock is
transaction-scoped, so a crashed writer cannot leave it held). The transactions run at READ
COMMITTED, so each statement after the lock sees every commit made before the lock was granted: the
writer always extends the true latest head, and two writers can never both take an index (the
``entries`` primary key would refuse it anyway).

Durability: ``synchronous_commit = on`` (set on every connection, whatever the server default):
COMMIT returns only after the commit record is flushed (fsync) to the server's WAL. That flush is
what makes an acknowledged append survive a crash of the distributor or of the database server.

Schemas: the tables live in the first schema of the connection's ``search_path``: give
``?options=-csearch_path%3DNAME`` in the URL or ``schema=NAME``. The schema must exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import StorageError
from .storage import Storage, Tx, check_schema_version, redact_url, schema_sql

#: First half of the advisory lock key: "fklg" (the second half is a hash of the schema name).
_LOCK_CLASS = 0x666B6C67
_SCHEMA_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


class PostgresStorage(Storage):
    """A PostgreSQL database (and schema); a connection per thread."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StorageError("PostgreSQL storage needs psycopg 3: pip install 'fleetkeys[postgres]'") from exc
        if schema is not None and not _SCHEMA_RE.match(schema):
            raise StorageError(f"invalid PostgreSQL schema name {schema!r}")
        super().__init__()
        self._psycopg = psycopg
        self.url = url
        self.schema = schema
        self.description = redact_url(url) + (f" (schema {schema})" if schema else "")
        self._schema_ready = False

    def _usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def _open(self) -> Any:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            conn.execute("SET synchronous_commit = on")
            if self.schema is not None:
                conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(self.schema)))
            if conn.execute("SELECT current_schema()").fetchone()[0] is None:
                raise StorageError(f"{self.description}: no schema of the search_path exists")
        except psycopg.Error as exc:
            raise StorageError(f"{self.description}: cannot connect ({str(exc).strip()[:300]})") from None
        return conn

    @contextmanager
    def _connection_errors(self) -> Iterator[None]:
        try:
            yield
        except self._psycopg.OperationalError as exc:
            raise StorageError(f"{self.description}: {str(exc).strip()[:300]}") from exc

    @contextmanager
    def write(self) -> Iterator[Tx]:
        conn = self._conn()
        with self._connection_errors(), conn.transaction():
            cur = conn.cursor()
            # Held until COMMIT/ROLLBACK: the one writer of this log (all replicas).
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_CLASS,))
            if not self._schema_ready:
                fresh = cur.execute("SELECT to_regclass('head') IS NULL").fetchone()[0]
                for stmt in schema_sql("BYTEA", "BIGINT"):
                    cur.execute(stmt)
                if fresh:  # hashes and signed entries do not compress: store them out of line, untried
                    for table in ("entry_bundles", "tiles"):
                        cur.execute(f"ALTER TABLE {table} ALTER COLUMN data SET STORAGE EXTERNAL")
                check_schema_version(Tx(cur, "%s"), self.description)
            yield Tx(cur, "%s")
        # Leaving conn.transaction() ran COMMIT, which returned after the WAL flush
        # (synchronous_commit = on): the durability point of the append.
        self._schema_ready = True

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn = self._conn()
        with self._connection_errors(), conn.transaction():
            cur = conn.cursor()
            # One snapshot for the whole read (the head and the rows it implies agree).
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Tx(cur, "%s")

    def has_schema(self) -> bool:
        return self._conn().execute("SELECT to_regclass('head') IS NOT NULL").fetchone()[0]


__all__ = ["PostgresStorage"]
