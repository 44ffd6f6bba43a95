"""The witness's durable state: for each origin, the latest checkpoint it cosigned (size, root, timestamp).

File ``<data>/witness.sqlite``, WAL mode with ``synchronous=FULL``: a ``COMMIT`` returns only after the
write-ahead log is fsync'd, so a state the witness answered 200 for survives ``kill -9`` and power loss.

One atomic step per request (c2sp.org/tlog-witness: "checking the old size against the latest
checkpoint and persisting the new checkpoint must be performed atomically"): :meth:`WitnessState.advance`
takes SQLite's write lock with ``BEGIN IMMEDIATE`` *before* it reads the stored state, runs
:func:`witness.rules.check_update`, makes the cosignature, writes the new state and commits; the
cosignature leaves this module only after ``COMMIT`` returned. Two requests for one origin, in two
threads or two gunicorn workers, are therefore serialised: the second sees what the first wrote.
The cosignature is made inside the transaction, while the state it speaks about is the one held: its
timestamp is a time at which that checkpoint was the largest this witness had cosigned for the origin
(c2sp.org/tlog-cosignature's statement). A crash before the commit leaves the old state and releases
nothing; a crash after it leaves the new state, which the log learns from the next 409.

Table (rows are never deleted; a trigger refuses any update that moves a row to a smaller size, to
another root at the same size, to an earlier timestamp or to another origin)::

    logs(origin TEXT PK, size INTEGER >= 0, root BLOB 32 bytes (the empty tree's root at size 0),
         timestamp INTEGER > 0 (POSIX s, of the latest cosignature), checkpoint BLOB (the note as
         submitted), cosignature BLOB (the signature line returned), updated_at INTEGER (POSIX s))
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from serving.sqlitefaults import describe, sqlite_fault
from verifier.checkpoint import Checkpoint
from verifier.merkle import EMPTY_ROOT
from verifier.note import Signature

from .errors import StateBusy, StateDiskFull, StateIOError, StateUnavailable, WitnessError, WitnessUnavailable
from .rules import LogState, check_update, cosignature_timestamp

STATE_FILE = "witness.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32 AND (size > 0 OR root = X'{EMPTY_ROOT.hex()}')),
    timestamp INTEGER NOT NULL CHECK (timestamp > 0),
    checkpoint BLOB NOT NULL,
    cosignature BLOB NOT NULL,
    updated_at INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS logs_no_delete BEFORE DELETE ON logs
    BEGIN SELECT RAISE(ABORT, 'witness state: a log is never forgotten'); END;
CREATE TRIGGER IF NOT EXISTS logs_never_back BEFORE UPDATE ON logs
    WHEN NEW.origin IS NOT OLD.origin OR NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root IS NOT OLD.root)
      OR NEW.timestamp < OLD.timestamp
    BEGIN SELECT RAISE(ABORT, 'witness state: never backwards, never to another root at one size'); END;
"""
_Q_GET = "SELECT origin, size, root, timestamp FROM logs WHERE origin = ?"
_Q_ALL = "SELECT origin, size, root, timestamp FROM logs ORDER BY origin"
_Q_PUT = ("INSERT INTO logs(origin, size, root, timestamp, checkpoint, cosignature, updated_at) "
          "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
          "timestamp = excluded.timestamp, checkpoint = excluded.checkpoint, cosignature = excluded.cosignature, "
          "updated_at = excluded.updated_at")


#: The witness error for each kind of SQLite fault (:func:`serving.sqlitefaults.sqlite_fault`); a
#: fault of no kind (a constraint or a misuse) is unavailability too: nothing was cosigned.
_ERROR_OF_KIND: dict[str | None, type[StateUnavailable]] = {
    "busy": StateBusy,
    "io": StateIOError,
    "full": StateDiskFull,
    "corrupt": StateUnavailable,
    "unavailable": StateUnavailable,
    None: StateUnavailable,
}


def state_error(exc: sqlite3.Error, path: Path, doing: str) -> StateUnavailable:
    """The witness error for SQLite's failure while ``doing`` something (nothing was cosigned)."""
    return _ERROR_OF_KIND[sqlite_fault(exc)](f"witness state {path}: cannot {doing} ({describe(exc)})")


def _busy(exc: sqlite3.Error) -> bool:
    return sqlite_fault(exc) == "busy"


def _state(row: Sequence | None) -> LogState | None:
    return None if row is None else LogState(row[0], row[1], bytes(row[2]), row[3])


class WitnessState:
    """The state store at ``path``. Safe to share between threads; open one per process (after a fork).

    Each thread has its own SQLite connection; writes of one process queue on a lock, writes of
    several processes on SQLite's write lock (``BEGIN IMMEDIATE``, busy timeout 30 s).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        try:
            conn = self._conn()
            # executescript commits any open transaction first, so the script brings its own.
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            with self._write(conn):
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif row[0] != str(SCHEMA_VERSION):
                    raise WitnessUnavailable(f"witness state {self.path}: schema version {row[0]}, this witness "
                                             f"reads {SCHEMA_VERSION}")
            check = conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, "open") from None
        if check is None or check[0] != "ok":
            raise WitnessUnavailable(f"witness state {self.path}: SQLite quick_check failed ({check})")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # FULL: every COMMIT fsyncs the WAL, so a state the witness answered for survives a power cut.
        conn.execute("PRAGMA synchronous = FULL")
        if str(mode).lower() != "wal":
            conn.close()
            raise WitnessUnavailable(f"witness state {self.path}: cannot enable WAL mode (got {mode})")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        conn = conn or self._conn()
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # Also when COMMIT itself failed: the cosignature made inside is then never returned.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and not _busy(exc):
                    self.close()  # after an I/O error SQLite's pager stays in its error state: reopen
                raise

    def get(self, origin: str) -> LogState | None:
        """The latest cosigned state of ``origin`` (``None``: never cosigned, i.e. size 0)."""
        try:
            return _state(self._conn().execute(_Q_GET, (origin,)).fetchone())
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, "read") from None

    def all(self) -> list[LogState]:
        try:
            return [LogState(r[0], r[1], bytes(r[2]), r[3]) for r in self._conn().execute(_Q_ALL)]
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, "read") from None

    def advance(self, checkpoint: Checkpoint, old_size: int, proof: Sequence[bytes], note: bytes, *,
                clock: Callable[[], int], cosign: Callable[[int], Signature]) -> tuple[Signature, LogState]:
        """Check ``checkpoint`` against the stored state of its origin and, if it passes, cosign it at
        ``max(clock(), last timestamp)`` and record it, all in one transaction (module docstring). The
        clock is read once the write lock is held.

        ``cosign(timestamp)`` returns the cosignature line; it runs while the write lock is held. Raises
        the refusals of :func:`witness.rules.check_update` (nothing changed), or
        :class:`WitnessUnavailable` when the store fails (nothing changed, nothing released).
        """
        try:
            with self._write() as conn:
                stored = _state(conn.execute(_Q_GET, (checkpoint.origin,)).fetchone())
                check_update(stored, old_size, proof, checkpoint)
                now = clock()
                timestamp = cosignature_timestamp(stored, now)
                signature = cosign(timestamp)
                conn.execute(_Q_PUT, (checkpoint.origin, checkpoint.size, checkpoint.root, timestamp, note,
                                      signature.line, now))
        except WitnessError:
            raise
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, "record the checkpoint") from None
        return signature, LogState(checkpoint.origin, checkpoint.size, checkpoint.root, timestamp)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None


__all__ = ["STATE_FILE", "WitnessState"]
