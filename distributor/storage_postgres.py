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

Connections: one per thread, checked before each transaction without a round trip (:meth:`_usable`):
one that psycopg knows is closed or broken (status ``BAD``), that is inside a transaction, or whose
socket has something to read while idle (the server's goodbye: after ``pg_terminate_backend`` or a
server shutdown it sends an error and closes) is closed and replaced by a new one. A connection that
breaks during a transaction raises :class:`ConnectionLost` and is replaced at its next use; the
caller may retry (the distributor's app retries a request once: reads, and publishes, which are
idempotent). Faults (:func:`storage_error`, by SQLSTATE): ``53100`` :class:`DiskFull`, ``58030``
:class:`StorageIOError`, lock, serialization and statement timeouts :class:`StorageBusy`, class
``08`` and ``57P0x`` (and any error that left the connection broken) :class:`ConnectionLost`, other
operational errors :class:`StorageUnavailable`. A lost COMMIT may have committed: the append is in doubt.
"""

from __future__ import annotations

import re
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import (
    ConnectionLost,
    DiskFull,
    StorageBusy,
    StorageError,
    StorageIOError,
    StorageUnavailable,
)
from .storage import Storage, Tx, check_schema_version, redact_url, schema_sql

#: First half of the advisory lock key: "fklg" (the second half is a hash of the schema name).
_LOCK_CLASS = 0x666B6C67
_SCHEMA_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
#: SQLSTATEs (PostgreSQL Appendix A) with their own storage error; see :func:`storage_error`.
_ERROR_OF_SQLSTATE: dict[str, type[StorageError]] = {
    "53100": DiskFull,  # disk_full
    "58030": StorageIOError,  # io_error
    "55P03": StorageBusy,  # lock_not_available
    "40001": StorageBusy,  # serialization_failure
    "40P01": StorageBusy,  # deadlock_detected
    "57014": StorageBusy,  # query_canceled (statement_timeout)
    "57P01": ConnectionLost,  # admin_shutdown (pg_terminate_backend, smart or fast shutdown)
    "57P02": ConnectionLost,  # crash_shutdown
    "57P03": ConnectionLost,  # cannot_connect_now (starting up, shutting down, recovering)
}


def storage_error(exc: Exception, conn: Any, description: str) -> StorageError | None:
    """The distributor error for a psycopg failure on ``conn`` (``None``: not the storage's fault, e.g.
    a constraint violation or an SQL error: a bug, left as it is)."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return None
    sqlstate = getattr(exc, "sqlstate", None) or ""
    broken = conn is not None and (conn.closed or conn.broken)
    cls = _ERROR_OF_SQLSTATE.get(sqlstate)
    if cls is None and (broken or sqlstate.startswith("08")):
        cls = ConnectionLost
    if cls is None and (sqlstate.startswith("53") or isinstance(exc, psycopg.OperationalError)):
        cls = StorageUnavailable
    if cls is None:
        return None
    detail = " ".join(str(exc).split())[:300]
    return cls(f"{description}: {detail}" + (f" (SQLSTATE {sqlstate})" if sqlstate else ""))


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
        """The cheap check (no round trip; see the module docstring)."""
        pq = self._psycopg.pq
        if conn.closed or conn.broken or conn.pgconn.status != pq.ConnStatus.OK:
            return False
        if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        try:
            poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)  # an idle connection has nothing to read unless the server left
        except (OSError, ValueError, self._psycopg.Error):
            return False

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
            error = storage_error(exc, None, f"{self.description}: cannot connect")
            if error is None or isinstance(error, ConnectionLost):  # never connected: nothing was lost
                error = StorageUnavailable(f"{self.description}: cannot connect ({str(exc).strip()[:300]})")
            raise error from None
        return conn

    @contextmanager
    def _connection_errors(self, conn: Any) -> Iterator[None]:
        """Raise psycopg's failures of ``conn`` as storage errors; a broken connection is dropped."""
        try:
            yield
        except self._psycopg.Error as exc:
            error = storage_error(exc, conn, self.description)
            if error is None:
                raise
            if isinstance(error, ConnectionLost) or conn.closed or conn.broken:
                self._discard()
            raise error from exc

    @contextmanager
    def write(self) -> Iterator[Tx]:
        conn = self._conn()
        with self._connection_errors(conn), conn.transaction():
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
        with self._connection_errors(conn), conn.transaction():
            cur = conn.cursor()
            # One snapshot for the whole read (the head and the rows it implies agree).
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Tx(cur, "%s")

    def has_schema(self) -> bool:
        conn = self._conn()
        with self._connection_errors(conn):
            return conn.execute("SELECT to_regclass('head') IS NOT NULL").fetchone()[0]


__all__ = ["PostgresStorage"]
