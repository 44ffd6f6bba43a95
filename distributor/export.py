"""The static read path: the log's checkpoint, hash tiles, entry bundles and entries as plain files.

Layout (the C2SP tlog-tiles URL paths, so any static file server or CDN serves all reads, plus one
object per entry, bundles/FORMAT.md §9.6, and one per logged trust-root version, §9.7)::

    <dir>/checkpoint                      the served checkpoint (distributor.freshness): log-signed +
                                          freshness cosignature, the very bytes the API serves
    <dir>/tile/<L>/<N>[.p/<W>]            hash tiles
    <dir>/tile/entries/<N>[.p/<W>]        entry bundles
    <dir>/entry/<N>                       entry N's exact bytes, <N> encoded like a tile index
                                          (verifier.tiles.entry_object_path; optional: entry_objects)
    <dir>/trust-root/<version>            the log index of rotation <version>, a line feed, its exact
                                          envelope (verifier.trustroot.encode_trust_root_object)

Writing rules, which make the directory safe to serve at any instant and after any crash:

* every file is written to a temporary name in its directory, fsync'd, then renamed over the final
  name (a reader sees the old file or the new one, never a torn one);
* every file but the checkpoint is immutable and written once: a full tile, a partial tile ``.p/W``
  (written for the width a checkpoint needs; its URL names its width, so its content never changes,
  and older widths stay), an entry object, a trust-root object; one that already exists (from an
  interrupted earlier export) is left as it is;
* only committed data is exported (the writer runs after the database COMMIT), tiles, entries and
  trust-root objects before the checkpoint: new files and the directories that gained entries are
  fsync'd before the checkpoint is renamed into place, so the checkpoint never names a file that is
  not durable (nor an entry or a rotation whose object is not);
* the exported size is the size of ``<dir>/checkpoint``; export is incremental from that size and
  idempotent (run it again and nothing changes), and every writer (the serve process's writer, any
  number of ``fleetkeys export`` runs) takes an exclusive ``flock`` on ``<dir>/.lock`` first, so the
  checkpoint never moves backwards and never names tiles another writer has not written yet;
* the checkpoint file is always the database's served checkpoint (``served_checkpoint`` row): a
  sync (:meth:`StaticWriter.sync`, run periodically) renews that row when it is older than the
  freshness interval, under the database's write lock like every worker and replica does, and
  rewrites the file whenever the row differs from it; the file's own freshness time is passed as the
  floor of a renewal, so the time in the file never goes backwards either;
* a directory exported before entry objects existed gets them on its next sync (the newest one
  missing means none were written); likewise every missing trust-root object of a logged rotation.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from verifier.checkpoint import open_checkpoint, parse_checkpoint_body
from verifier.errors import VerificationError
from verifier.merkle import HASH_SIZE
from verifier.note import NoteVerifier, parse_note
from verifier.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    entries_path,
    entry_bundle_prefix,
    entry_object_path,
    parse_entry_object_path,
    split_entry_bundle,
    tile_path,
)
from verifier.trustroot import encode_trust_root_object, trust_root_object_path

from .errors import ExportError, IntegrityError, TreeError
from .freshness import Freshness, ServedCheckpoint
from .log import Batch
from .storage import Head, ServedRow, Storage, TrustRootRow, Tx
from .tree import Edge, levels_for_size

log = logging.getLogger("fleetkeys.distributor.export")

#: Files written per fsync round (bounds memory and open descriptors).
_ROUND_FILES = 256
def parse_entry_path(path: str) -> int:
    """The index named by an entry object path (:func:`verifier.tiles.parse_entry_object_path`);
    :class:`ValueError` unless it is the canonical one."""
    try:
        return parse_entry_object_path(path)
    except VerificationError as exc:
        raise ValueError(str(exc)) from None


def trust_root_file(row: TrustRootRow) -> tuple[str, bytes]:
    """The per-version object of a logged rotation: ``trust-root/<version>`` and its body (the index in
    decimal, a line feed, the envelope)."""
    return trust_root_object_path(row.version), encode_trust_root_object(row.index, row.envelope)


def _batch_entries(batch: Batch) -> list[tuple[int, bytes]]:
    """``(index, entry)`` of every entry the batch appended (read out of its entry bundles)."""
    out = []
    for bundle, data in sorted(batch.bundles.items()):
        base = bundle * TILE_WIDTH
        for i, entry in enumerate(split_entry_bundle(data)):
            if batch.start <= base + i < batch.end:
                out.append((base + i, entry))
    return out


class StaticWriter:
    """Writes the C2SP layout of one log into ``directory`` (see the module docstring).

    ``log_key`` verifies every checkpoint before it is exported; ``freshness`` renews the database's
    served checkpoint when it is due (:class:`~distributor.freshness.ServedCheckpoint`).

    ``entry_objects=False`` writes no ``entry/<N>`` objects (a C2SP-only directory, which clients read
    through the entry bundles). Each entry object is one more fsync'd file, so for bulk logs of many
    small entries they, not the database, bound the export rate (a few thousand entries/s on one
    disk, where tiles and bundles alone follow well over 50,000/s: bulk appends are about 25 times
    slower with them). Trust-root objects are always written (a fresh client needs them, §7.4).
    """

    def __init__(self, directory: str, *, log_key: NoteVerifier, freshness: Freshness,
                 entry_objects: bool = True) -> None:
        self.directory = os.path.abspath(directory)
        self.log_key = log_key
        self.freshness = freshness
        self.entry_objects = entry_objects
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._served: tuple[Storage, ServedCheckpoint] | None = None
        os.makedirs(self.directory, exist_ok=True)

    def served(self, storage: Storage) -> ServedCheckpoint:
        """The served checkpoint of the log in ``storage`` (one object per storage)."""
        if self._served is None or self._served[0] is not storage:
            self._served = (storage, ServedCheckpoint(storage, self.freshness, advance=False))
        return self._served[1]

    # -- locking and state ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _read_checkpoint(self) -> bytes | None:
        try:
            with open(os.path.join(self.directory, "checkpoint"), "rb") as f:
                return f.read(64 * 1024)
        except FileNotFoundError:
            return None

    def exported_size(self) -> int:
        """Tree size of the exported checkpoint (0 if none yet)."""
        return self._exported(self._read_checkpoint())

    def _exported(self, note: bytes | None) -> int:
        if note is None:
            return 0
        try:
            cp = parse_checkpoint_body(parse_note(note)[0])
        except VerificationError as exc:
            raise ExportError(f"{self.directory}/checkpoint is not a checkpoint: {exc}") from exc
        if cp.origin != self.log_key.name:
            raise ExportError(f"{self.directory} holds the log {cp.origin!r}, not {self.log_key.name!r}")
        return cp.size

    # -- file writing -----------------------------------------------------------------------------
    def _fsync_all(self, fds: Sequence[int]) -> None:
        """fsync several descriptors concurrently: the file system commits them together."""
        if len(fds) == 1:
            os.fsync(fds[0])
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fleetkeys-fsync")
        list(self._pool.map(os.fsync, fds))

    def _make_dirs(self, path: str, changed: set[str]) -> None:
        """``mkdir -p``, noting in ``changed`` every directory that gained an entry (to be fsync'd)."""
        if os.path.isdir(path):
            return
        self._make_dirs(os.path.dirname(path), changed)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)
        changed.add(os.path.dirname(path))

    def _write_files(self, files: Sequence[tuple[str, bytes]], checkpoint: bytes | None = None,
                     durable: Sequence[str] = ()) -> None:
        """Write files (then, optionally, the checkpoint) with the crash-safe ordering of the module doc.

        1. every file, and the checkpoint, to ``.<name>.tmp`` in its directory; fsync them all;
        2. rename the files into place; fsync their directories, and those of ``durable`` (files an
           interrupted earlier export renamed into place: their names must be durable too before a
           checkpoint names them); now every file is durable;
        3. rename the checkpoint into place. (Not followed by an fsync of the top directory: if that
           rename is lost in a crash the directory just shows the previous checkpoint, and the next
           sync exports again.)

        Temporary names need no uniqueness: every writer holds the directory's flock.
        """
        staged: list[tuple[int, str, str]] = []
        todo = [*files, ("checkpoint", checkpoint)] if checkpoint is not None else list(files)
        parents: set[str] = {os.path.dirname(os.path.join(self.directory, rel)) for rel in durable}
        try:
            for rel, data in todo:
                path = os.path.join(self.directory, rel)
                parent = os.path.dirname(path)
                self._make_dirs(parent, parents)
                tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                staged.append((fd, tmp, path))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            self._fsync_all([fd for fd, _, _ in staged])
        finally:
            for fd, _, _ in staged:
                os.close(fd)
        tiles = staged[:-1] if checkpoint is not None else staged
        for _, tmp, path in tiles:
            os.replace(tmp, path)
            parents.add(os.path.dirname(path))
        if parents:
            dir_fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for p in sorted(parents)]
            try:
                self._fsync_all(dir_fds)
            finally:
                for fd in dir_fds:
                    os.close(fd)
        if checkpoint is not None:
            os.replace(staged[-1][1], staged[-1][2])

    def _exists(self, rel: str) -> bool:
        return os.path.exists(os.path.join(self.directory, rel))

    # -- exporting --------------------------------------------------------------------------------
    def write_batch(self, batch: Batch, storage: Storage) -> None:
        """Export a just-committed batch (falls back to :meth:`sync` if the directory is not at its start)."""
        with self._locked():
            note = self._read_checkpoint()
            exported = self._exported(note)
            if batch.end <= exported:
                return
            shown = self.freshness.timestamp(note) if note is not None else None
            # Not where the batch starts, or (after a clock or version change) the batch's served
            # checkpoint is older than the file's: the sync renews it with the file's time as floor.
            if batch.start != exported or (shown is not None and shown > (self.freshness.timestamp(batch.served) or 0)):
                self._sync_locked(storage)
                return
            files = [(tile_path(level, index, len(data) // HASH_SIZE), data) for (level, index), data in
                     sorted(batch.tiles.items())]
            files += [(entries_path(index, min(TILE_WIDTH, batch.end - index * TILE_WIDTH)), data)
                      for index, data in sorted(batch.bundles.items())]
            if self.entry_objects:
                files += [(entry_object_path(index), entry) for index, entry in _batch_entries(batch)]
            files += [trust_root_file(row) for row in batch.roots]
            self._write_immutable(files, batch.served)

    def _write_immutable(self, files: Sequence[tuple[str, bytes]], checkpoint: bytes) -> None:
        """Write the files that do not exist yet in rounds, then the checkpoint with the last round."""
        todo = [(rel, data) for rel, data in files if not self._exists(rel)]
        durable = sorted({rel for rel, _ in files} - {rel for rel, _ in todo})
        while len(todo) > _ROUND_FILES:
            self._write_files(todo[:_ROUND_FILES])
            todo = todo[_ROUND_FILES:]
        self._write_files(todo, checkpoint, durable)

    def sync(self, storage: Storage) -> int:
        """Bring the directory up to the database head and its checkpoint to the served checkpoint.

        The served checkpoint is renewed first if it is due (see the module docstring). Returns the
        exported size. Idempotent; safe to run from several processes at once.
        """
        with self._locked():
            return self._sync_locked(storage)

    def _sync_locked(self, storage: Storage) -> int:
        note = self._read_checkpoint()
        exported = self._exported(note)
        # A time the directory already showed: the served checkpoint written here is never older.
        floor = (self.freshness.verified_timestamp(note) or 0) if note is not None else 0

        def export(tx: Tx, head: Head, served: ServedRow) -> tuple[int, bytes, list[tuple[str, bytes]], list[str]]:
            size = head.size
            if size < exported:
                raise ExportError(f"{self.directory} is at size {exported} but the database only at {size}: "
                                  "refusing to export an older tree (wrong database?)")
            if size > exported:
                self._check_head(tx, head.checkpoint, size)
            # The entry objects of a directory exported before they existed: all of them, once.
            entries_from = 0 if exported and not self._exists(entry_object_path(exported - 1)) else exported
            if not self.entry_objects:
                entries_from = size
            files, durable = self._export_range(tx, exported, size, entries_from)
            return size, served.checkpoint, files, durable

        size, served, files, durable = self.served(storage).read(export, floor)
        if files or note != served:
            self._write_files(files, served, durable)
        return size

    def _check_head(self, tx: Tx, signed: bytes, size: int) -> None:
        try:
            cp = open_checkpoint(signed, self.log_key).checkpoint
            root = Edge.load(size, tx.tile).root()
        except (VerificationError, TreeError) as exc:
            raise IntegrityError(f"refusing to export: the database head does not verify: {exc}") from exc
        if cp.size != size or cp.root != root:
            raise IntegrityError(f"refusing to export: the database tree (size {size}, root {root.hex()}) does not "
                                 f"match its signed checkpoint (size {cp.size}, root {cp.root.hex()})")

    def _export_range(self, tx: Tx, exported: int, size: int,
                      entries_from: int) -> tuple[list[tuple[str, bytes]], list[str]]:
        """Write all but the last files from ``exported`` to ``size`` (entry objects from ``entries_from``).

        Returns the last files (at most one round), unwritten, and the existing files that were
        skipped (an interrupted earlier export wrote them; their directories are fsync'd again).
        """
        files: list[tuple[str, bytes]] = []
        skipped: list[str] = []

        def add(rel: str, data: bytes) -> None:
            files.append((rel, data))
            if len(files) >= _ROUND_FILES:
                self._write_files(files)
                files.clear()

        def missing(rel: str) -> bool:
            if self._exists(rel):
                skipped.append(rel)
                return False
            return True

        if size > exported:
            for level in range(levels_for_size(size)):
                count = size >> (TILE_HEIGHT * level)
                for index in range((exported >> (TILE_HEIGHT * level)) // TILE_WIDTH, (count - 1) // TILE_WIDTH + 1):
                    width = min(TILE_WIDTH, count - index * TILE_WIDTH)
                    rel = tile_path(level, index, width)
                    if not missing(rel):
                        continue
                    data = tx.tile(level, index)
                    if data is None or len(data) < width * HASH_SIZE:
                        raise IntegrityError(f"tile {level}/{index} is missing or short in the database")
                    add(rel, data[:width * HASH_SIZE])
            for index in range(exported // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1):
                width = min(TILE_WIDTH, size - index * TILE_WIDTH)
                rel = entries_path(index, width)
                if not missing(rel):
                    continue
                try:
                    add(rel, entry_bundle_prefix(tx.entry_bundle(index) or b"", width))
                except VerificationError as exc:
                    raise IntegrityError(f"entry bundle {index} in the database: {exc}") from exc
        for index in range(entries_from // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1 if size > entries_from else 0):
            base = index * TILE_WIDTH
            first, last = max(entries_from, base), min(size, base + TILE_WIDTH)
            todo = [n for n in range(first, last) if missing(entry_object_path(n))]
            if not todo:
                continue
            try:
                entries = split_entry_bundle(tx.entry_bundle(index) or b"", last - base)
            except VerificationError as exc:
                raise IntegrityError(f"entry bundle {index} in the database: {exc}") from exc
            for n in todo:
                add(entry_object_path(n), entries[n - base])
        # Trust-root objects: those of the new rotations, and any an older exporter did not write.
        for row in tx.trust_roots():
            if row.index >= size:
                continue
            rel, data = trust_root_file(row)
            absent = missing(rel) if row.index >= exported else not self._exists(rel)
            if absent:
                add(rel, data)
        return files, skipped


class BackgroundWriter:
    """Runs a :class:`StaticWriter` in a thread: ``submit`` returns at once, batches are coalesced.

    The writer waits up to ``linger`` seconds after a batch arrives so that a burst of appends is
    written with one round of fsyncs; the static directory therefore trails the database by a moment
    (never runs ahead of it).
    Errors are logged and repaired by the next :meth:`StaticWriter.sync` (the refresher runs one
    periodically).
    """

    def __init__(self, writer: StaticWriter, storage: Storage, *, linger: float = 0.05) -> None:
        self.writer = writer
        self.storage = storage
        self.linger = linger
        self._queue: deque[Batch] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._flushing = 0
        self._sync = False
        self._thread: threading.Thread | None = None

    def submit(self, batch: Batch) -> None:
        with self._cond:
            if self._closed:
                return
            self._queue.append(batch)
            self._start()

    def sync_soon(self) -> None:
        """Run a full :meth:`StaticWriter.sync` in the thread (the served checkpoint moved without an
        append of this process: witnesses cosigned entries appended earlier)."""
        with self._cond:
            if self._closed:
                return
            self._sync = True
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fleetkeys-static", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted batch is written; False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._queue and not self._sync and not self._busy, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = 30) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._sync or self._closed)
                if not self._queue and not self._sync:
                    return
                # Let a burst of appends accumulate: one round of fsyncs then covers all of them.
                self._cond.wait_for(lambda: self._closed or self._flushing, self.linger)
                batches = list(self._queue)
                self._queue.clear()
                sync, self._sync = self._sync, False
                self._busy = True
            try:
                for batch in coalesce(batches):
                    self.writer.write_batch(batch, self.storage)
                if sync:
                    self.writer.sync(self.storage)
            except Exception:
                log.exception("static export failed; the next sync will retry")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def coalesce(batches: Sequence[Batch]) -> list[Batch]:
    """Merge contiguous batches into one (later tile widths replace earlier ones)."""
    out: list[Batch] = []
    for b in batches:
        if out and out[-1].end == b.start:
            prev = out[-1]
            out[-1] = Batch(prev.start, b.end, {**prev.tiles, **b.tiles}, {**prev.bundles, **b.bundles}, b.checkpoint,
                            b.served, prev.roots + b.roots)
        else:
            out.append(b)
    return out


class Refresher:
    """Periodic :meth:`StaticWriter.sync` by one process among many (a ``flock`` elects it).

    Every worker of ``fleetkeys serve`` starts one; the one holding ``<dir>/.refresh.lock`` syncs
    every ``period`` seconds (catching up anything missed and renewing the freshness cosignature), the
    others retry the lock, so exactly one takes over if the leader dies.
    """

    def __init__(self, writer: StaticWriter, storage: Storage, *, period: float) -> None:
        self.writer = writer
        self.storage = storage
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleetkeys-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _leader(self) -> bool:
        if self._fd is None:
            fd = os.open(os.path.join(self.writer.directory, ".refresh.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._leader():
                    try:
                        self.writer.sync(self.storage)
                    except Exception:
                        log.exception("static sync failed")
                self._stop.wait(self.period)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def nginx_server_block(static_dir: str, listen: str = "80", upstream: str | None = None) -> str:
    """The nginx ``server { }`` block that serves an exported directory (the README's configuration).

    The same headers as the distributor app (:mod:`distributor.app`): every tile, full or partial,
    every entry bundle, every entry object and every trust-root object ``public, max-age=31536000,
    immutable`` and ``application/octet-stream``; the checkpoint ``public, max-age=5`` and ``text/plain;
    charset=utf-8``; nginx's ETag (a strong validator for files served as they are) and 304s; a 404
    (a tile or entry that does not exist yet) ``no-store`` with a JSON body; temporary and lock files
    (dot names) are never served. With ``upstream`` (e.g. ``127.0.0.1:8080`` or an ``upstream``
    block's name) the JSON API is proxied, its headers untouched.
    """
    api = f"    location /api/ {{ proxy_pass http://{upstream}; }}\n" if upstream else ""
    immutable = ('types { } default_type application/octet-stream;\n'
                 '        add_header Cache-Control "public, max-age=31536000, immutable";')
    return f"""server {{
    listen {listen};
    root {static_dir};
    etag on;
    error_page 404 = @missing;
    location ~ /\\. {{ return 404; }}                      # temporary and lock files
    location @missing {{
        types {{ }} default_type application/json;
        add_header Cache-Control "no-store" always;
        return 404 '{{"error": "not found"}}';
    }}
    location = /checkpoint {{                           # the one mutable file: cached briefly
        types {{ }} default_type text/plain;
        charset utf-8;
        add_header Cache-Control "public, max-age=5";
    }}
    location /tile/ {{                                  # every tile, full or partial (.p/<W>): never changes
        {immutable}
    }}
    location /entry/ {{                                 # per-entry objects: written once, never change
        {immutable}
    }}
    location /trust-root/ {{                            # per-version trust-root objects: likewise
        {immutable}
    }}
{api}}}
"""


__all__ = ["BackgroundWriter", "ExportError", "Refresher", "StaticWriter", "coalesce", "nginx_server_block",
           "parse_entry_path", "trust_root_file"]
