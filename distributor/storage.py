"""The log's storage: one small interface, two backends (SQLite embedded, PostgreSQL for replicas).

What is stored (the same tables in both backends)::

    meta(key, value)                       origin, log vkey, freshness vkey, schema version
    head(id = 1, size, checkpoint)         tree size and the log-signed checkpoint for it (no cosignatures)
    entry_bundles(idx, data)               C2SP entry bundles: entries idx*256 .. idx*256+255, each a
                                           big-endian uint16 length and the exact entry bytes; the last
                                           bundle holds the entries so far and grows, a full one never changes
    tiles(level, idx, data)                C2SP hash tiles (height 8): ``data`` = the tile's hashes so far,
                                           width * 32 bytes; a full tile has 256 hashes and never changes
    epochs(epoch, idx, digest, fleet_ids, issued_at, expires_at)     one row per logged bundle
    trust_roots(version, idx, envelope)    one row per logged trust-root rotation
    revoked(mark, epoch, idx)              the revocation marks (``verifier.update.revocation_marks``:
                                           ``id:<fleet_id>``, ``key:<alg>:<base64 key>``) of every
                                           logged keyset, each with the epoch and index of the first
                                           keyset that revoked it: what the revocation rule
                                           (FORMAT.md §3.2) checks a new keyset against, written in
                                           the write transaction of the entry that revokes
    served_checkpoint(id = 1, size, freshness_time, checkpoint)
                                           the one checkpoint every worker and replica serves: the
                                           exact bytes (log signature + freshness cosignature), the
                                           tree size they are for and the cosignature's time
                                           (:mod:`distributor.freshness`); with witnesses required
                                           it may be for a size below the head's
    checkpoints(size, checkpoint)          the log-signed checkpoint of every tree size from the
                                           served one up to the head (older ones are pruned when the
                                           served size passes them): what a witness is asked to cosign
                                           and what a later served checkpoint is built on
    witness_cosignatures(witness, size, cosigned_at, line)
                                           the newest cosignature line each witness (its vkey) gave the
                                           checkpoint of ``size``, verified before it was stored; sizes
                                           below the served one are pruned (:mod:`distributor.witnessing`)

The database holds the log exactly as C2SP tlog-tiles lays it out. The tiles are the tree: every
complete subtree hash at levels 0, 8, 16, ... is stored, and any other node of a complete subtree is
rebuilt from at most 128 hashes of one tile, so any proof is answered from a handful of rows
(``verifier.tiles.tile_node_reader``). Entries are stored in their entry bundles, so an append of a
batch writes one row per 256 entries, and the static files are byte-for-byte copies of the rows.

Every change happens inside :meth:`Storage.write`, one transaction that holds the backend's writer
lock from before the head is read until the commit, so two writers (threads, processes or replicas)
can never both take an index: SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``pg_advisory_xact_lock``.
The commit is the durability point of an append (see the backends for which fsync makes it so).

Schema versions (``meta.schema``): ``1`` had no ``served_checkpoint``; ``2`` adds it; ``3`` adds
``revoked``; ``4`` adds ``checkpoints`` and ``witness_cosignatures``. The DDL is idempotent and only
ever adds tables, so the first write transaction of a newer fleetkeys over an older database (under
the writer lock, like every write) creates the missing tables, backfills ``revoked`` from the stored
bundles (:func:`logged_revocations`: every logged keyset, in epoch order, parsed without signature
checks, as they were verified when logged) and records version ``4`` (from ``3`` nothing is
backfilled: the log's open stores the head's checkpoint in ``checkpoints``): that is the whole
migration, one transaction. The served-checkpoint row
itself is created by the first writer that needs it (the log's open or append, or the exporter). A
database of a version this code does not know is refused, and so is a newer database by an older
fleetkeys (version 2 code would serve checkpoints with a freshness time of its own, the very thing
version 2 exists to prevent; version 1 or 2 code would append keysets without recording their
revocation marks; version 3 code would serve the head without waiting for witness cosignatures).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from verifier.bundle import parse_bundle
from verifier.errors import VerificationError
from verifier.keyset import parse_keyset
from verifier.tiles import TILE_WIDTH, split_entry_bundle
from verifier.update import revocation_marks

from .errors import IntegrityError, StorageError

SCHEMA_VERSION = "4"

#: Older schema versions that the DDL of :func:`schema_sql` upgrades in place (what each lacked).
MIGRATED_VERSIONS = {"1": "the served_checkpoint, revoked and witness tables", "2": "the revoked and witness tables",
                     "3": "the checkpoints and witness_cosignatures tables"}
#: The versions whose ``revoked`` table must be backfilled when migrated.
_WITHOUT_REVOKED = ("1", "2")

#: Epoch rows read per query when the revocation marks are recomputed from the stored bundles.
_EPOCH_PAGE = 512

TileKey = tuple[int, int]
"""``(level, index)`` of a hash tile."""


@dataclass(frozen=True)
class Head:
    """The committed tree size and the log-signed checkpoint for it."""

    size: int
    checkpoint: bytes


@dataclass(frozen=True)
class ServedRow:
    """The served checkpoint: ``checkpoint`` is the exact bytes served for tree ``size``, whose
    freshness cosignature is dated ``timestamp`` (POSIX seconds)."""

    size: int
    timestamp: int
    checkpoint: bytes


@dataclass(frozen=True)
class CosignatureRow:
    """The newest cosignature ``line`` (the whole signature line, newline included) that ``witness``
    (its vkey) gave the log-signed checkpoint of ``size``, dated ``timestamp``."""

    witness: str
    size: int
    timestamp: int
    line: bytes


@dataclass(frozen=True)
class EpochRow:
    """One logged bundle, indexed by its keyset epoch."""

    epoch: int
    index: int
    digest: bytes
    fleet_ids: tuple[str, ...]
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class TrustRootRow:
    """One logged trust-root rotation envelope."""

    version: int
    index: int
    envelope: bytes


@dataclass(frozen=True)
class RevokedRow:
    """One revocation mark and where it was first logged: the keyset of ``epoch`` at log ``index``."""

    mark: str
    epoch: int
    index: int


class Tx:
    """Queries inside one transaction (read-only or the write transaction).

    One implementation serves both backends: the SQL below is portable between SQLite 3.24+ and
    PostgreSQL 9.5+ (``ON CONFLICT``), written with ``?`` placeholders that the PostgreSQL backend
    rewrites to ``%s``.
    """

    def __init__(self, cursor: Any, placeholder: str = "?") -> None:
        self._cur = cursor
        self._ph = placeholder

    def _sql(self, text: str) -> str:
        return text if self._ph == "?" else text.replace("?", self._ph)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cur.execute(self._sql(sql), params)
        return self._cur.fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(self._sql(sql), params)
        return self._cur.fetchall()

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(self._sql(sql), rows)

    # -- meta and head ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._cur.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?) "
                                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"), (key, value))

    def head(self) -> Head | None:
        row = self._one("SELECT size, checkpoint FROM head WHERE id = 1")
        return None if row is None else Head(int(row[0]), bytes(row[1]))

    def set_head(self, size: int, checkpoint: bytes) -> None:
        self._cur.execute(self._sql("INSERT INTO head (id, size, checkpoint) VALUES (1, ?, ?) "
                                    "ON CONFLICT (id) DO UPDATE SET size = excluded.size, "
                                    "checkpoint = excluded.checkpoint"), (size, checkpoint))

    def served_checkpoint(self) -> ServedRow | None:
        row = self._one("SELECT size, freshness_time, checkpoint FROM served_checkpoint WHERE id = 1")
        return None if row is None else ServedRow(int(row[0]), int(row[1]), bytes(row[2]))

    def set_served_checkpoint(self, row: ServedRow) -> None:
        """Replace the served checkpoint (only inside the write transaction, see distributor.freshness)."""
        self._cur.execute(self._sql("INSERT INTO served_checkpoint (id, size, freshness_time, checkpoint) "
                                    "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size, "
                                    "freshness_time = excluded.freshness_time, checkpoint = excluded.checkpoint"),
                          (row.size, row.timestamp, row.checkpoint))

    # -- checkpoints of sizes awaiting witnesses, and witness cosignatures --------------------------
    def put_checkpoint(self, size: int, checkpoint: bytes) -> None:
        """Record the log-signed checkpoint of ``size`` (idempotent for the same bytes)."""
        self._cur.execute(self._sql("INSERT INTO checkpoints (size, checkpoint) VALUES (?, ?) "
                                    "ON CONFLICT (size) DO NOTHING"), (size, checkpoint))

    def checkpoint_at(self, size: int) -> bytes | None:
        """The log-signed checkpoint of ``size`` if it is still kept (sizes from the served one up)."""
        row = self._one("SELECT checkpoint FROM checkpoints WHERE size = ?", (size,))
        return None if row is None else bytes(row[0])

    def checkpoints(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` kept ``(size, checkpoint)`` rows at or above ``start``, ascending (fsck)."""
        rows = self._all("SELECT size, checkpoint FROM checkpoints WHERE size >= ? ORDER BY size LIMIT ?",
                         (start, limit))
        return [(int(n), bytes(c)) for n, c in rows]

    def checkpoint_sizes(self, start: int) -> list[int]:
        """The kept checkpoint sizes at or above ``start``, ascending."""
        return [int(r[0]) for r in self._all("SELECT size FROM checkpoints WHERE size >= ? ORDER BY size", (start,))]

    def put_cosignature(self, row: CosignatureRow) -> None:
        """Store ``row`` unless a newer cosignature by the same witness for that size is stored."""
        self._cur.execute(self._sql(
            "INSERT INTO witness_cosignatures (witness, size, cosigned_at, line) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (witness, size) DO UPDATE SET cosigned_at = excluded.cosigned_at, line = excluded.line "
            "WHERE excluded.cosigned_at > witness_cosignatures.cosigned_at"),
            (row.witness, row.size, row.timestamp, row.line))

    def cosignatures(self, start: int) -> list[CosignatureRow]:
        """Every stored witness cosignature for sizes at or above ``start``."""
        rows = self._all("SELECT witness, size, cosigned_at, line FROM witness_cosignatures WHERE size >= ? "
                         "ORDER BY size, witness", (start,))
        return [CosignatureRow(str(w), int(n), int(t), bytes(line)) for w, n, t, line in rows]

    def newest_cosignatures(self) -> dict[str, tuple[int, int]]:
        """``{witness: (size, time)}`` of each witness's newest stored cosignature (no line read)."""
        out: dict[str, tuple[int, int]] = {}
        for w, n, t in self._all("SELECT witness, size, cosigned_at FROM witness_cosignatures "
                                 "ORDER BY witness, size DESC, cosigned_at DESC"):
            out.setdefault(str(w), (int(n), int(t)))
        return out

    def prune_below(self, size: int) -> None:
        """Forget checkpoints and cosignatures of sizes below ``size`` (the served size passed them)."""
        self._cur.execute(self._sql("DELETE FROM checkpoints WHERE size < ?"), (size,))
        self._cur.execute(self._sql("DELETE FROM witness_cosignatures WHERE size < ?"), (size,))

    # -- entries (stored as entry bundles) ----------------------------------------------------------
    def entry_bundle(self, index: int) -> bytes | None:
        """The stored entry bundle ``index`` (all entries so far for the last one)."""
        row = self._one("SELECT data FROM entry_bundles WHERE idx = ?", (index,))
        return None if row is None else bytes(row[0])

    def put_entry_bundles(self, bundles: dict[int, bytes]) -> None:
        """Insert or widen entry bundles (only the writer, under its lock, calls this)."""
        self._many("INSERT INTO entry_bundles (idx, data) VALUES (?, ?) "
                   "ON CONFLICT (idx) DO UPDATE SET data = excluded.data", sorted(bundles.items()))

    def max_entry_bundle(self) -> int | None:
        row = self._one("SELECT MAX(idx) FROM entry_bundles")
        return None if row is None or row[0] is None else int(row[0])

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)`` in order (fewer if the log is shorter)."""
        out: list[bytes] = []
        for index in range(start // TILE_WIDTH, (end - 1) // TILE_WIDTH + 1 if end > start else 0):
            data = self.entry_bundle(index)
            if data is None:
                break
            base = index * TILE_WIDTH
            entries = split_entry_bundle(data)
            out += entries[max(start, base) - base:min(end, base + len(entries)) - base]
            if len(entries) < TILE_WIDTH:
                break
        return out

    def entry(self, index: int) -> bytes | None:
        found = self.entries(index, index + 1)
        return found[0] if found else None

    # -- tiles ------------------------------------------------------------------------------------
    def tile(self, level: int, index: int) -> bytes | None:
        row = self._one("SELECT data FROM tiles WHERE level = ? AND idx = ?", (level, index))
        return None if row is None else bytes(row[0])

    def tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
        return {k: t for k in keys if (t := self.tile(*k)) is not None}

    def level_tiles(self, level: int, start: int = 0, limit: int = 1 << 62) -> list[tuple[int, bytes]]:
        """``(index, data)`` of the tiles of one level from ``start``, in index order."""
        rows = self._all("SELECT idx, data FROM tiles WHERE level = ? AND idx >= ? ORDER BY idx LIMIT ?",
                         (level, start, limit))
        return [(int(i), bytes(d)) for i, d in rows]

    def max_tile_level(self) -> int | None:
        row = self._one("SELECT MAX(level) FROM tiles")
        return None if row is None or row[0] is None else int(row[0])

    def put_tiles(self, tiles: dict[TileKey, bytes]) -> None:
        """Insert or widen tiles (a tile row only ever grows; full tiles are never rewritten)."""
        self._many("INSERT INTO tiles (level, idx, data) VALUES (?, ?, ?) "
                   "ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data",
                   [(lvl, idx, data) for (lvl, idx), data in sorted(tiles.items())])

    # -- epochs -----------------------------------------------------------------------------------
    @staticmethod
    def _epoch_row(row: tuple[Any, ...]) -> EpochRow:
        return EpochRow(int(row[0]), int(row[1]), bytes(row[2]), tuple(json.loads(row[3])), int(row[4]), int(row[5]))

    def put_epochs(self, rows: Sequence[EpochRow]) -> None:
        self._many("INSERT INTO epochs (epoch, idx, digest, fleet_ids, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                   [(r.epoch, r.index, r.digest, json.dumps(list(r.fleet_ids)), r.issued_at, r.expires_at)
                    for r in rows])

    def epoch(self, epoch: int) -> EpochRow | None:
        row = self._one("SELECT epoch, idx, digest, fleet_ids, issued_at, expires_at FROM epochs WHERE epoch = ?", (epoch,))
        return None if row is None else self._epoch_row(row)

    def last_epoch(self, size: int | None = None) -> EpochRow | None:
        """The newest epoch (among entries below ``size`` when given: a tree size clients see)."""
        below = (1 << 63) - 1 if size is None else size
        row = self._one("SELECT epoch, idx, digest, fleet_ids, issued_at, expires_at FROM epochs WHERE idx < ? "
                        "ORDER BY epoch DESC LIMIT 1", (below,))
        return None if row is None else self._epoch_row(row)

    def epochs(self, before: int | None, limit: int, size: int | None = None) -> list[EpochRow]:
        """Up to ``limit`` epochs below ``before`` (all if ``None``), newest first; only entries below
        ``size`` when given."""
        below = (1 << 63) - 1 if size is None else size
        if before is None:
            rows = self._all("SELECT epoch, idx, digest, fleet_ids, issued_at, expires_at FROM epochs "
                             "WHERE idx < ? ORDER BY epoch DESC LIMIT ?", (below, limit))
        else:
            rows = self._all("SELECT epoch, idx, digest, fleet_ids, issued_at, expires_at FROM epochs "
                             "WHERE epoch < ? AND idx < ? ORDER BY epoch DESC LIMIT ?", (before, below, limit))
        return [self._epoch_row(r) for r in rows]

    def epoch_rows(self, after: int, limit: int) -> list[EpochRow]:
        """Up to ``limit`` whole epoch rows above epoch ``after``, oldest first (the start-up check pages
        through them)."""
        rows = self._all("SELECT epoch, idx, digest, fleet_ids, issued_at, expires_at FROM epochs WHERE epoch > ? "
                         "ORDER BY epoch LIMIT ?", (after, limit))
        return [self._epoch_row(r) for r in rows]

    def epoch_indexes(self, after: int, limit: int) -> list[tuple[int, int]]:
        """``(epoch, index)`` of up to ``limit`` epochs above ``after``, oldest first."""
        rows = self._all("SELECT epoch, idx FROM epochs WHERE epoch > ? ORDER BY epoch LIMIT ?", (after, limit))
        return [(int(e), int(i)) for e, i in rows]

    # -- revocation marks ---------------------------------------------------------------------------
    def put_revoked(self, rows: Sequence[RevokedRow]) -> None:
        """Record new marks (each is recorded once: by the first keyset that revokes it)."""
        self._many("INSERT INTO revoked (mark, epoch, idx) VALUES (?, ?, ?)",
                   [(r.mark, r.epoch, r.index) for r in rows])

    def replace_revoked(self, rows: Sequence[RevokedRow]) -> None:
        """Replace every recorded mark (the migration's backfill, under the writer lock)."""
        self._cur.execute("DELETE FROM revoked")
        self.put_revoked(rows)

    def revoked(self) -> dict[str, RevokedRow]:
        """Every recorded revocation mark."""
        rows = self._all("SELECT mark, epoch, idx FROM revoked")
        return {str(m): RevokedRow(str(m), int(e), int(i)) for m, e, i in rows}

    # -- trust roots ------------------------------------------------------------------------------
    def put_trust_roots(self, rows: Sequence[TrustRootRow]) -> None:
        self._many("INSERT INTO trust_roots (version, idx, envelope) VALUES (?, ?, ?)",
                   [(r.version, r.index, r.envelope) for r in rows])

    def trust_root(self, version: int) -> TrustRootRow | None:
        row = self._one("SELECT version, idx, envelope FROM trust_roots WHERE version = ?", (version,))
        return None if row is None else TrustRootRow(int(row[0]), int(row[1]), bytes(row[2]))

    def latest_trust_root(self, size: int | None = None) -> TrustRootRow | None:
        """The newest logged rotation (among entries below ``size`` when given)."""
        below = (1 << 63) - 1 if size is None else size
        row = self._one("SELECT version, idx, envelope FROM trust_roots WHERE idx < ? ORDER BY version DESC LIMIT 1",
                        (below,))
        return None if row is None else TrustRootRow(int(row[0]), int(row[1]), bytes(row[2]))

    def trust_roots(self) -> list[TrustRootRow]:
        """Every logged rotation, oldest first (a log holds a handful)."""
        rows = self._all("SELECT version, idx, envelope FROM trust_roots ORDER BY version")
        return [TrustRootRow(int(v), int(i), bytes(e)) for v, i, e in rows]


def logged_revocations(tx: Tx) -> dict[str, RevokedRow]:
    """The revocation marks the stored bundles imply: every logged keyset (``epochs`` rows), in epoch
    order, each mark with the first epoch that revoked it. Each entry bundle is read once.

    The bundles are parsed, not verified (they were when they were logged). Raises
    :class:`IntegrityError` for an epoch row whose entry is missing or does not parse.
    """
    out: dict[str, RevokedRow] = {}
    cached: tuple[int, list[bytes]] | None = None
    after = 0
    while rows := tx.epoch_indexes(after, _EPOCH_PAGE):
        for epoch, index in rows:
            number = index // TILE_WIDTH
            if cached is None or cached[0] != number:
                try:
                    cached = (number, split_entry_bundle(tx.entry_bundle(number) or b""))
                except VerificationError as exc:
                    raise IntegrityError(f"entry bundle {number} is damaged: {exc}") from exc
            entries = cached[1]
            if index % TILE_WIDTH >= len(entries):
                raise IntegrityError(f"epoch {epoch} points at missing entry {index}")
            try:
                keyset = parse_keyset(parse_bundle(entries[index % TILE_WIDTH]).keyset)
            except VerificationError as exc:
                raise IntegrityError(f"the logged bundle of epoch {epoch} (entry {index}) does not parse: {exc}") from exc
            for mark in revocation_marks(keyset):
                out.setdefault(mark, RevokedRow(mark, epoch, index))
        after = rows[-1][0]
    return out


def schema_sql(blob: str, bigint: str) -> list[str]:
    """The DDL, with the backend's binary and 64-bit integer type names."""
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1), size {bigint} NOT NULL, "
        f"checkpoint {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS entry_bundles (idx {bigint} PRIMARY KEY, data {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS tiles (level INTEGER NOT NULL, idx {bigint} NOT NULL, data {blob} NOT NULL, "
        "PRIMARY KEY (level, idx))",
        f"CREATE TABLE IF NOT EXISTS epochs (epoch {bigint} PRIMARY KEY, idx {bigint} NOT NULL UNIQUE, "
        f"digest {blob} NOT NULL, fleet_ids TEXT NOT NULL, issued_at {bigint} NOT NULL, "
        f"expires_at {bigint} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS trust_roots (version {bigint} PRIMARY KEY, idx {bigint} NOT NULL UNIQUE, "
        f"envelope {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS served_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), size {bigint} NOT NULL, "
        f"freshness_time {bigint} NOT NULL, checkpoint {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS revoked (mark TEXT PRIMARY KEY, epoch {bigint} NOT NULL, idx {bigint} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS checkpoints (size {bigint} PRIMARY KEY, checkpoint {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS witness_cosignatures (witness TEXT NOT NULL, size {bigint} NOT NULL, "
        f"cosigned_at {bigint} NOT NULL, line {blob} NOT NULL, PRIMARY KEY (witness, size))",
    ]


class Storage(ABC):
    """A log database. Thread-safe: each thread gets its own connection.

    * :meth:`write` - the one write transaction: exclusive across threads, processes and replicas,
      committed (durably) when the block exits normally, rolled back if it raises.
    * :meth:`read` - a read-only transaction (never blocks writers).

    Failures of the database are raised as :class:`~distributor.errors.StorageError` subclasses
    (:class:`~distributor.errors.DiskFull`, :class:`~distributor.errors.StorageIOError`,
    :class:`~distributor.errors.StorageBusy`, :class:`~distributor.errors.ConnectionLost`, ...), never as
    the driver's own exceptions; a connection that failed that way is closed and replaced at its next
    use. A write that raised one may or may not have committed (see
    :class:`~distributor.errors.StorageUnavailable`).

    The schema is created on first use of :meth:`write` (idempotent, under the writer lock).
    """

    #: Human-readable description without credentials (for logs and error messages).
    description: str

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    def _open(self) -> Any:
        """Open and configure a new connection (raise :class:`StorageError` on failure)."""
        raise NotImplementedError

    def _usable(self, conn: Any) -> bool:
        """Whether this thread's cached connection can still be used (a cheap check, no round trip)."""
        return True

    def _conn(self) -> Any:
        """This thread's connection, opened on first use and remembered for :meth:`close`; one that
        failed :meth:`_usable` is closed and replaced."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._usable(conn):
            self._discard()
            conn = None
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _discard(self) -> None:
        """Close and forget this thread's connection (it broke, or a failed COMMIT left it in doubt):
        the next use opens a new one."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is None:
            return
        with self._lock:
            self._connections = [c for c in self._connections if c is not conn]
        with contextlib.suppress(Exception):  # a broken connection may fail to close; it is gone either way
            conn.close()

    @abstractmethod
    def write(self) -> AbstractContextManager[Tx]:
        """The exclusive write transaction (see the class docstring)."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Tx]:
        """A read-only transaction."""

    @abstractmethod
    def has_schema(self) -> bool:
        """Whether the log tables exist (a log was created in this database)."""

    def migrate(self) -> None:
        """Create or upgrade the schema now (one write transaction, see the module docstring)."""
        with self.write():
            pass

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_schema_version(tx: Tx, description: str) -> None:
    """Record the schema version on first use, or migrate an older one (see the module docstring; the
    caller ran :func:`schema_sql` first, in the same write transaction): backfill ``revoked`` from the
    stored bundles. Refuse a database written by a version this code does not know."""
    found = tx.meta("schema")
    if found is None or found in MIGRATED_VERSIONS:
        if found in _WITHOUT_REVOKED:
            try:
                marks = logged_revocations(tx)
            except IntegrityError as exc:
                raise StorageError(f"{description}: cannot migrate schema version {found!r} to {SCHEMA_VERSION!r} "
                                   f"(backfilling the revocation marks): {exc}") from exc
            tx.replace_revoked([marks[m] for m in sorted(marks)])
        tx.set_meta("schema", SCHEMA_VERSION)
    elif found != SCHEMA_VERSION:
        raise StorageError(f"{description}: schema version {found!r}, this fleetkeys uses {SCHEMA_VERSION!r}")


def open_storage(url: str, *, schema: str | None = None) -> Storage:
    """Open a database by URL.

    * ``sqlite:///PATH`` (``sqlite:////abs/path.db`` or ``sqlite:///relative.db``) or a plain file
      path: the embedded SQLite backend.
    * ``postgresql://...`` / ``postgres://...``: PostgreSQL (libpq URL; a schema can be chosen with
      ``?options=-csearch_path%3DNAME`` or with ``schema``).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from .storage_postgres import PostgresStorage

        return PostgresStorage(url, schema=schema)
    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///"):
            raise StorageError(f"SQLite URL must be sqlite:///PATH, found {url[:60]!r}")
        path = url[len("sqlite:///"):]
    elif "://" in url:
        raise StorageError(f"unsupported database URL scheme: {url.split('://', 1)[0]!r} "
                           "(use sqlite:///PATH or postgresql://...)")
    else:
        path = url
    if not path:
        raise StorageError("SQLite URL has no path")
    if schema is not None:
        raise StorageError("a schema can only be chosen for PostgreSQL")
    from .storage_sqlite import SqliteStorage

    return SqliteStorage(os.path.abspath(path))


def redact_url(url: str) -> str:
    """The URL without a password (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def iter_chunks(start: int, end: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` cut into ``[a, b)`` pieces of at most ``chunk``."""
    for a in range(start, end, chunk):
        yield a, min(end, a + chunk)


__all__ = [
    "CosignatureRow",
    "EpochRow",
    "Head",
    "MIGRATED_VERSIONS",
    "RevokedRow",
    "SCHEMA_VERSION",
    "ServedRow",
    "Storage",
    "TileKey",
    "TrustRootRow",
    "Tx",
    "check_schema_version",
    "iter_chunks",
    "logged_revocations",
    "open_storage",
    "redact_url",
    "schema_sql",
]
