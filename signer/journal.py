"""The signer's journal: an append-only, fsync'd SQLite record of every signature and every refusal.

File ``<data>/journal.sqlite``, WAL mode with ``synchronous=FULL``: a ``COMMIT`` returns only after
the write-ahead log is fsync'd, so a committed row survives ``kill -9`` and power loss.

Crash consistency, the one property everything here serves: a signature is made and inserted inside
one ``BEGIN IMMEDIATE`` transaction, and the HTTP response is built only after ``COMMIT`` returned.
A crash before the commit leaves no signature anywhere (it was never sent); a crash after it leaves a
journal row the client can fetch again by repeating its request (the rules answer a repeat with the
stored entry). So no signature can exist that the journal does not know.

Concurrency: ``BEGIN IMMEDIATE`` takes SQLite's write lock before the rules read anything, so the
rule check and the insert are atomic across threads and across gunicorn worker processes: two
workers racing two digests for one epoch sign exactly one.

Tables (``signatures``, ``events`` and ``revoked`` refuse UPDATE and DELETE by trigger; ``namespaces``
allows only its ``status`` to change)::

    keys(public_key BLOB PK, not_before INTEGER ms)          every anchor key that has served
    namespaces(name TEXT PK, ciphersuite, status, log_directory, created_at ms, mode keyset|digest)
    signatures(namespace, epoch, digest, previous, ciphersuite, timestamp ms, statement, signature,
               public_key, event_id, issued_at s|NULL)   PK (namespace, epoch), UNIQUE (namespace, digest)
    events(id PK AUTOINCREMENT, time ms, kind, namespace, epoch, digest, previous, client, reason)
        kind: signed | refused | namespace-created | namespace-status
    revoked(namespace, mark, epoch)   PK (namespace, mark): the revocation marks
        (``verifier.update.revocation_marks``) of every keyset signed through the keyset path, each with
        the first epoch that revoked it, inserted in the transaction of that signature (rule 8 of
        :mod:`signer.rules`)

Schema versions: 1 had no ``namespaces.mode`` and no ``signatures.issued_at``; 2 had no ``revoked``.
Opening an older journal migrates it in place, one transaction per step. 1 → 2: both columns are
added (every existing namespace becomes a ``keyset`` namespace, existing signatures get ``issued_at``
NULL, i.e. unknown) and the trigger that freezes a namespace's fields is replaced by one that also
freezes ``mode``. 2 → 3: the ``revoked`` table is created **empty**: the journal stores digests, never
the keysets it signed, so the marks of keysets signed before the upgrade cannot be recovered here. The
revocation rule then holds from the upgrade on (for revocations signed from then on); the history
before it stays enforced by the distributor, which backfills its own marks from the logged bundles,
and by the audit.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.sqlitefaults import describe, sqlite_fault
from verifier import ed25519
from verifier.statement import Statement
from verifier.update import revocation_marks

from .errors import JournalBusy, JournalDiskFull, JournalError, JournalIOError, JournalUnavailable, Refusal
from .rules import (
    MODE_KEYSET,
    MODES,
    STATUS_DISABLED,
    Namespace,
    SignedEntry,
    SignRequest,
    check_request,
    next_timestamp,
)

SCHEMA_VERSION = 3
JOURNAL_FILE = "journal.sqlite"
BUSY_TIMEOUT_MS = 30_000
MAX_LIST = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    public_key BLOB PRIMARY KEY CHECK (length(public_key) = 32),
    not_before INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    ciphersuite INTEGER NOT NULL CHECK (ciphersuite IN (1, 2)),
    status TEXT NOT NULL CHECK (status IN ('Online', 'Initialization', 'Disabled')),
    log_directory TEXT,
    created_at INTEGER NOT NULL,
    mode TEXT NOT NULL DEFAULT 'keyset' CHECK (mode IN ('keyset', 'digest')));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('signed', 'refused', 'namespace-created', 'namespace-status')),
    namespace TEXT NOT NULL,
    epoch INTEGER,
    digest BLOB,
    previous BLOB,
    client TEXT,
    reason TEXT);
CREATE TABLE IF NOT EXISTS signatures (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    epoch INTEGER NOT NULL CHECK (epoch >= 1),
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    previous BLOB CHECK (previous IS NULL OR length(previous) = 32),
    ciphersuite INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    statement BLOB NOT NULL,
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    public_key BLOB NOT NULL CHECK (length(public_key) = 32),
    event_id INTEGER NOT NULL REFERENCES events(id),
    issued_at INTEGER,
    PRIMARY KEY (namespace, epoch),
    UNIQUE (namespace, digest));
CREATE TABLE IF NOT EXISTS revoked (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    mark TEXT NOT NULL,
    epoch INTEGER NOT NULL CHECK (epoch >= 1),
    PRIMARY KEY (namespace, mark));
CREATE INDEX IF NOT EXISTS events_by_namespace ON events(namespace, id);
CREATE TRIGGER IF NOT EXISTS revoked_no_update BEFORE UPDATE ON revoked
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: revocation marks cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS revoked_no_delete BEFORE DELETE ON revoked
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: revocation marks cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS signatures_no_update BEFORE UPDATE ON signatures
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: signatures cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS signatures_no_delete BEFORE DELETE ON signatures
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: signatures cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: events cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: events cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS keys_no_change BEFORE UPDATE ON keys
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: keys cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS keys_no_delete BEFORE DELETE ON keys
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: keys cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS namespaces_no_delete BEFORE DELETE ON namespaces
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: namespaces cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS namespaces_status_only_v2 BEFORE UPDATE ON namespaces
    WHEN NEW.name IS NOT OLD.name OR NEW.ciphersuite IS NOT OLD.ciphersuite
      OR NEW.log_directory IS NOT OLD.log_directory OR NEW.created_at IS NOT OLD.created_at
      OR NEW.mode IS NOT OLD.mode
    BEGIN SELECT RAISE(ABORT, 'only a namespace status can change'); END;
"""

# Version 1 → 2 (module docstring). Run before _SCHEMA, inside BEGIN IMMEDIATE, only on a version-1 journal.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE namespaces ADD COLUMN mode TEXT NOT NULL DEFAULT 'keyset' CHECK (mode IN ('keyset', 'digest'))",
    "ALTER TABLE signatures ADD COLUMN issued_at INTEGER",
    "DROP TRIGGER IF EXISTS namespaces_status_only",
    "UPDATE meta SET value = '2' WHERE key = 'schema'",
)
# Version 2 → 3: the revoked table, empty (the journal holds no keysets to backfill it from); _SCHEMA
# then adds its triggers. Inside BEGIN IMMEDIATE, only on a version-2 journal.
_MIGRATE_2_TO_3 = (
    "CREATE TABLE IF NOT EXISTS revoked (namespace TEXT NOT NULL REFERENCES namespaces(name), mark TEXT NOT NULL, "
    "epoch INTEGER NOT NULL CHECK (epoch >= 1), PRIMARY KEY (namespace, mark))",
    "UPDATE meta SET value = '3' WHERE key = 'schema'",
)
_MIGRATIONS = {"1": _MIGRATE_1_TO_2, "2": _MIGRATE_2_TO_3}


@dataclass(frozen=True)
class Event:
    """One journal line, as ``GET /api/v1/journal`` shows it."""

    id: int
    time: int
    kind: str
    namespace: str
    epoch: int | None
    digest: bytes | None
    previous: bytes | None
    client: str | None
    reason: str | None
    entry: SignedEntry | None


@dataclass(frozen=True)
class Timing:
    """Where the time of one :meth:`Journal.sign` call went (seconds), for ``Server-Timing``."""

    lock: float = 0.0
    sign: float = 0.0
    commit: float = 0.0


_SELECT_ENTRY = ("SELECT namespace, epoch, digest, previous, ciphersuite, timestamp, statement, signature, public_key, "
                 "issued_at FROM signatures WHERE namespace = ? ")
_Q_ENTRY_AT = _SELECT_ENTRY + "AND epoch = ?"
_Q_FIRST = _SELECT_ENTRY + "ORDER BY epoch LIMIT 1"
_Q_LAST = _SELECT_ENTRY + "ORDER BY epoch DESC LIMIT 1"
_Q_NAMESPACES = "SELECT name, ciphersuite, status, log_directory, created_at, mode FROM namespaces "
_Q_NAMESPACE = _Q_NAMESPACES + "WHERE name = ?"
_Q_INSERT_SIGNATURE = ("INSERT INTO signatures(namespace, epoch, digest, previous, ciphersuite, timestamp, statement, "
                       "signature, public_key, event_id, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_Q_EVENTS = ("SELECT e.id, e.time, e.kind, e.namespace, e.epoch, e.digest, e.previous, e.client, e.reason, "
             "s.namespace, s.epoch, s.digest, s.previous, s.ciphersuite, s.timestamp, s.statement, s.signature, "
             "s.public_key, s.issued_at FROM events e LEFT JOIN signatures s ON s.event_id = e.id "
             "WHERE (?1 IS NULL OR e.namespace = ?1) AND (?2 IS NULL OR e.id < ?2) ORDER BY e.id DESC LIMIT ?3")


#: The journal error for each kind of SQLite fault (:func:`serving.sqlitefaults.sqlite_fault`).
_ERROR_OF_KIND: dict[str, type[JournalUnavailable]] = {
    "busy": JournalBusy,
    "io": JournalIOError,
    "full": JournalDiskFull,
    "corrupt": JournalUnavailable,
    "unavailable": JournalUnavailable,
}


def journal_error(exc: sqlite3.Error, path: Path, doing: str) -> JournalError | None:
    """The journal error for SQLite's failure while ``doing`` something; ``None`` for a constraint
    violation (a trigger of the append-only journal) or a misuse of the API: a bug, left as it is."""
    kind = sqlite_fault(exc)
    if kind is None:
        return None
    return _ERROR_OF_KIND[kind](f"journal {path}: {doing} failed: {describe(exc)}")


def _entry(row: Any) -> SignedEntry | None:
    if row is None:
        return None
    return SignedEntry(row[0], row[1], bytes(row[2]), bytes(row[3]) if row[3] is not None else None, row[4], row[5],
                       bytes(row[6]), bytes(row[7]), bytes(row[8]), row[9])


def _namespace(row: Any) -> Namespace | None:
    return None if row is None else Namespace(row[0], row[1], row[2], row[3], row[4], row[5])


class Journal:
    """The journal at ``path``. Safe to share between threads; open one per process (after a fork).

    Each thread gets its own SQLite connection (connections are never shared across threads or a
    ``fork()``). Every write runs in ``BEGIN IMMEDIATE`` … ``COMMIT``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        conn = self._conn()
        self._migrate(conn)
        try:
            # executescript commits any open transaction first, so the script brings its own.
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot create the schema ({exc})") from None
        with self._write(conn):
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise JournalError(f"journal {self.path}: schema version {row[0]}, this signer reads {SCHEMA_VERSION}")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise JournalError(f"journal {self.path}: SQLite quick_check failed ({check})")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older journal to the current version, one step (and transaction) at a time (module
        docstring); a no-op on a new or current journal."""
        while True:
            found = None
            try:
                with self._write(conn):
                    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                    if "meta" not in tables:
                        return  # a new journal: _SCHEMA creates the current version directly
                    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                    if row is None or row[0] not in _MIGRATIONS:
                        return
                    found = row[0]
                    for statement in _MIGRATIONS[found]:
                        conn.execute(statement)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: cannot migrate schema {found} to {int(found or 0) + 1} "
                                   f"({exc})") from None

    # -- connections and transactions -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # FULL: every COMMIT fsyncs the WAL. This fsync is why a signature the client received is
            # always in the journal after a crash or a power cut.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot open ({exc})") from None
        if mode.lower() != "wal":
            raise JournalError(f"journal {self.path}: cannot enable WAL mode (got {mode})")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        conn = conn or self._conn()
        # Threads of one process queue on this lock and wake as soon as it is free; only processes
        # meet in SQLite's busy handler, which sleeps and retries (milliseconds per wait).
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # Also when COMMIT itself failed: the signature made inside is then never returned.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                error = journal_error(exc, self.path, "a write") if isinstance(exc, sqlite3.Error) else None
                if error is None:
                    raise
                if not isinstance(error, JournalBusy):
                    self.close()  # after an I/O error SQLite's pager stays in its error state: reopen
                raise error from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    # -- keys --------------------------------------------------------------------------------------

    def register_key(self, public_key: bytes, now_ms: int) -> None:
        """Record that ``public_key`` serves from ``now_ms`` on (no-op if it served before)."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO keys(public_key, not_before) VALUES (?, ?)", (public_key, now_ms))

    def anchor_keys(self) -> list[tuple[bytes, int]]:
        rows = self._conn().execute("SELECT public_key, not_before FROM keys ORDER BY not_before, public_key")
        return [(bytes(r[0]), r[1]) for r in rows]

    # -- namespaces --------------------------------------------------------------------------------

    def namespace(self, name: str) -> Namespace | None:
        return _namespace(self._conn().execute(_Q_NAMESPACE, (name,)).fetchone())

    def namespaces(self) -> list[Namespace]:
        rows = self._conn().execute(_Q_NAMESPACES + "ORDER BY name")
        return [Namespace(*r) for r in rows]

    def create_namespace(self, name: str, *, ciphersuite: int, status: str, log_directory: str | None,
                         now_ms: int, client: str | None, mode: str = MODE_KEYSET) -> tuple[Namespace, bool]:
        """Create a namespace; return ``(record, created)``.

        ``mode`` is ``keyset`` (default: only ``POST /api/v1/sign-keyset`` signs) or ``digest`` (Plexi's
        digest-only path too), see :mod:`signer.rules`. Creating one that exists with the same
        ciphersuite, log directory and mode is a no-op (``created=False``); with other values it is
        refused (409): a namespace's ciphersuite and mode never change.
        """
        if mode not in MODES:
            raise Refusal("malformed", f"namespace mode must be one of {', '.join(MODES)}, not {mode!r}")
        with self._write() as conn:
            existing = _namespace(conn.execute(_Q_NAMESPACE, (name,)).fetchone())
            if existing is not None:
                if (existing.ciphersuite, existing.log_directory, existing.mode) != (ciphersuite, log_directory, mode):
                    raise Refusal("namespace-exists",
                                  f"namespace {name!r} already exists with ciphersuite {existing.ciphersuite}, "
                                  f"log_directory {existing.log_directory!r} and mode {existing.mode}")
                return existing, False
            conn.execute("INSERT INTO namespaces(name, ciphersuite, status, log_directory, created_at, mode) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (name, ciphersuite, status, log_directory, now_ms, mode))
            conn.execute("INSERT INTO events(time, kind, namespace, client, reason) VALUES (?, ?, ?, ?, ?)",
                         (now_ms, "namespace-created", name, client,
                          f"ciphersuite {ciphersuite}, status {status}, mode {mode}"))
        return Namespace(name, ciphersuite, status, log_directory, now_ms, mode), True

    def set_status(self, name: str, status: str, *, now_ms: int, client: str | None) -> Namespace:
        """Change a namespace's status. ``Disabled`` is final: a disabled namespace never signs again."""
        with self._write() as conn:
            ns = _namespace(conn.execute(_Q_NAMESPACE, (name,)).fetchone())
            if ns is None:
                raise Refusal("unknown-namespace", f"namespace {name!r} does not exist")
            if ns.status == status:
                return ns
            if ns.status == STATUS_DISABLED:
                raise Refusal("namespace-disabled", f"namespace {name!r} is Disabled, which is final")
            conn.execute("UPDATE namespaces SET status = ? WHERE name = ?", (status, name))
            conn.execute("INSERT INTO events(time, kind, namespace, client, reason) VALUES (?, ?, ?, ?, ?)",
                         (now_ms, "namespace-status", name, client, f"{ns.status} -> {status}"))
        return Namespace(ns.name, ns.ciphersuite, status, ns.log_directory, ns.created_at, ns.mode)

    # -- signing -----------------------------------------------------------------------------------

    def entry(self, namespace: str, epoch: int) -> SignedEntry | None:
        return _entry(self._conn().execute(_Q_ENTRY_AT, (namespace, epoch)).fetchone())

    def first_and_last(self, namespace: str) -> tuple[SignedEntry | None, SignedEntry | None]:
        conn = self._conn()
        return (_entry(conn.execute(_Q_FIRST, (namespace,)).fetchone()),
                _entry(conn.execute(_Q_LAST, (namespace,)).fetchone()))

    def sign(self, request: SignRequest, sign: Callable[[bytes], bytes], public_key: bytes, *, now_ms: int,
             client: str | None, clock: Callable[[], float] | None = None) -> tuple[SignedEntry, bool, Timing]:
        """Check ``request`` against the rules and, if allowed, sign it and commit it; all atomically.

        Returns ``(entry, created, timing)``: ``created`` is False for a repeat of a signed request.
        A refusal with ``record=True`` is committed to the journal as a ``refused`` event, then raised
        as :class:`~signer.rules.Refusal`; nothing else is written for a refused request. A signature
        that does not verify under ``public_key`` is never stored or returned (raises
        :class:`verifier.errors.SignatureError`). ``clock`` (``time.perf_counter``) feeds ``timing``.
        """
        tick = clock or (lambda: 0.0)
        t0 = tick()
        conn = self._conn()
        refusal: Refusal | None = None
        existing: SignedEntry | None = None
        with self._write(conn):
            t1 = tick()
            ns = _namespace(conn.execute(_Q_NAMESPACE, (request.namespace,)).fetchone())
            last = _entry(conn.execute(_Q_LAST, (request.namespace,)).fetchone())
            at_epoch = _entry(conn.execute(_Q_ENTRY_AT, (request.namespace, request.epoch)).fetchone())
            row = conn.execute("SELECT epoch FROM signatures WHERE namespace = ? AND digest = ?",
                               (request.namespace, request.digest)).fetchone()
            revoked: frozenset[str] = frozenset()
            if request.keyset is not None and at_epoch is None:
                revoked = frozenset(r[0] for r in conn.execute("SELECT mark FROM revoked WHERE namespace = ?",
                                                               (request.namespace,)))
            try:
                existing = check_request(request, ns, last, at_epoch, row[0] if row else None, revoked)
            except Refusal as exc:
                if exc.record:
                    conn.execute(
                        "INSERT INTO events(time, kind, namespace, epoch, digest, previous, client, reason) "
                        "VALUES (?, 'refused', ?, ?, ?, ?, ?, ?)",
                        (now_ms, request.namespace, request.epoch, request.digest, request.previous, client,
                         f"{exc.code}: {exc.reason}"))
                refusal = exc
            if refusal is not None or existing is not None:
                t2 = tick()
                entry = existing
            else:
                assert ns is not None
                last_ts = conn.execute("SELECT MAX(timestamp) FROM signatures").fetchone()[0]
                timestamp = next_timestamp(now_ms, last_ts)
                statement = Statement(ns.ciphersuite, ns.name, timestamp, request.epoch, request.digest).encode()
                signature = sign(statement)
                ed25519.verify(public_key, statement, signature, what="anchor signature just made")
                t2 = tick()
                cur = conn.execute(
                    "INSERT INTO events(time, kind, namespace, epoch, digest, previous, client) "
                    "VALUES (?, 'signed', ?, ?, ?, ?, ?)",
                    (now_ms, ns.name, request.epoch, request.digest, request.previous, client))
                conn.execute(
                    _Q_INSERT_SIGNATURE,
                    (ns.name, request.epoch, request.digest, request.previous, ns.ciphersuite, timestamp, statement,
                     signature, public_key, cur.lastrowid, request.issued_at))
                if request.keyset is not None:  # rule 8's memory, in the signature's transaction
                    new_marks = sorted(revocation_marks(request.keyset) - revoked)
                    conn.executemany("INSERT INTO revoked(namespace, mark, epoch) VALUES (?, ?, ?)",
                                     [(ns.name, m, request.epoch) for m in new_marks])
                entry = SignedEntry(ns.name, request.epoch, request.digest, request.previous, ns.ciphersuite,
                                    timestamp, statement, signature, public_key, request.issued_at)
        t3 = tick()
        if refusal is not None:
            raise refusal
        assert entry is not None
        return entry, existing is None, Timing(lock=t1 - t0, sign=t2 - t1, commit=t3 - t2)

    # -- reading the journal -----------------------------------------------------------------------

    def events(self, *, namespace: str | None = None, limit: int = 100, before: int | None = None) -> list[Event]:
        """Newest first: at most ``limit`` events with ``id < before``, of ``namespace`` if given."""
        limit = max(1, min(limit, MAX_LIST))
        rows = self._conn().execute(_Q_EVENTS, (namespace, before, limit))
        out = []
        for r in rows:
            out.append(Event(r[0], r[1], r[2], r[3], r[4], bytes(r[5]) if r[5] is not None else None,
                             bytes(r[6]) if r[6] is not None else None, r[7], r[8],
                             _entry(r[9:]) if r[9] is not None else None))
        return out


__all__ = ["Event", "Journal", "JournalError", "Timing"]
