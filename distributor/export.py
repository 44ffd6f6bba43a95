"""The static read path: the log's checkpoint, hash tiles and entry bundles as plain files.

Layout (exactly the C2SP tlog-tiles URL paths, so any static file server or CDN serves all reads)::

    <dir>/checkpoint                      latest checkpoint, log-signed + freshness cosignature
    <dir>/tile/<L>/<N>[.p/<W>]            hash tiles
    <dir>/tile/entries/<N>[.p/<W>]        entry bundles

Writing rules, which make the directory safe to serve at any instant and after any crash:

* every file is written to a temporary name in its directory, fsync'd, then renamed over the final
  name (a reader sees the old file or the new one, never a torn one);
* a full tile is written once and never changed; a partial tile ``.p/W`` is written for the width the
  new checkpoint needs (older widths stay; their content is a prefix and still valid);
* only committed data is exported (the writer runs after the database COMMIT), tiles before the
  checkpoint: new files and the directories that gained entries are fsync'd before the checkpoint is
  renamed into place, so the checkpoint never names a tile that is not durable;
* the exported size is the size of ``<dir>/checkpoint``; export is incremental from that size and
  idempotent (run it again and nothing changes), and every writer (the serve process's writer, any
  number of ``fleetkeys export`` runs) takes an exclusive ``flock`` on ``<dir>/.lock`` first, so the
  checkpoint never moves backwards and never names tiles another writer has not written yet;
* the checkpoint file is rewritten with a fresh freshness cosignature every ``interval`` seconds
  even when nothing was appended (:meth:`StaticWriter.sync`, run periodically).
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
from verifier.tiles import TILE_HEIGHT, TILE_WIDTH, entries_path, entry_bundle_prefix, tile_path

from .errors import ExportError, IntegrityError, TreeError
from .freshness import Freshness
from .log import Batch
from .storage import Storage, Tx
from .tree import Edge, levels_for_size

log = logging.getLogger("fleetkeys.distributor.export")

#: Files written per fsync round when catching up from the database (bounds memory).
_ROUND_FILES = 64


class StaticWriter:
    """Writes the C2SP layout of one log into ``directory`` (see the module docstring).

    ``log_key`` verifies every checkpoint before it is exported; ``freshness`` cosigns it.
    """

    def __init__(self, directory: str, *, log_key: NoteVerifier, freshness: Freshness) -> None:
        self.directory = os.path.abspath(directory)
        self.log_key = log_key
        self.freshness = freshness
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        os.makedirs(self.directory, exist_ok=True)

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

    def _write_files(self, files: Sequence[tuple[str, bytes]], checkpoint: bytes | None = None) -> None:
        """Write files (then, optionally, the checkpoint) with the crash-safe ordering of the module doc.

        1. every file, and the checkpoint, to ``.<name>.tmp`` in its directory; fsync them all;
        2. rename the tiles into place; fsync their directories (now every tile is durable);
        3. rename the checkpoint into place. (Not followed by an fsync of the top directory: if that
           rename is lost in a crash the directory just shows the previous checkpoint, and the next
           sync exports again.)

        Temporary names need no uniqueness: every writer holds the directory's flock.
        """
        staged: list[tuple[int, str, str]] = []
        todo = [*files, ("checkpoint", checkpoint)] if checkpoint is not None else list(files)
        parents: set[str] = set()
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

    # -- exporting --------------------------------------------------------------------------------
    def write_batch(self, batch: Batch, storage: Storage) -> None:
        """Export a just-committed batch (falls back to :meth:`sync` if the directory is not at its start)."""
        with self._locked():
            exported = self.exported_size()
            if batch.end <= exported:
                return
            if batch.start != exported:
                self._sync_locked(storage)
                return
            files = [(tile_path(level, index, len(data) // HASH_SIZE), data) for (level, index), data in
                     sorted(batch.tiles.items())]
            files += [(entries_path(index, min(TILE_WIDTH, batch.end - index * TILE_WIDTH)), data)
                      for index, data in sorted(batch.bundles.items())]
            # A full tile is written once: one that exists (from an interrupted earlier export) stays.
            files = [(rel, data) for rel, data in files
                     if ".p/" in rel or not os.path.exists(os.path.join(self.directory, rel))]
            self._write_files(files, self.freshness.cosign(batch.checkpoint))

    def sync(self, storage: Storage) -> int:
        """Bring the directory up to the database head; re-cosign the checkpoint if it is due.

        Returns the exported size. Idempotent; safe to run from several processes at once.
        """
        with self._locked():
            return self._sync_locked(storage)

    def _sync_locked(self, storage: Storage) -> int:
        note = self._read_checkpoint()
        exported = self._exported(note)
        with storage.read() as tx:
            head = tx.head()
            if head is None:
                raise ExportError(f"{storage.description} holds no log")
            size = head.size
            if size < exported:
                raise ExportError(f"{self.directory} is at size {exported} but the database only at {size}: "
                                  "refusing to export an older tree (wrong database?)")
            if size > exported:
                self._check_head(tx, head.checkpoint, size)
                self._write_files(self._export_range(tx, exported, size), self.freshness.cosign(head.checkpoint))
            elif note is None or self.freshness.is_due(note):
                self._write_files([], self.freshness.cosign(head.checkpoint))
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

    def _export_range(self, tx: Tx, exported: int, size: int) -> list[tuple[str, bytes]]:
        """Write all but the last files from ``exported`` to ``size``; return the last (<= 64) unwritten."""
        files: list[tuple[str, bytes]] = []

        def add(rel: str, data: bytes) -> None:
            files.append((rel, data))
            if len(files) >= _ROUND_FILES:
                self._write_files(files)
                files.clear()

        for level in range(levels_for_size(size)):
            count = size >> (TILE_HEIGHT * level)
            for index in range((exported >> (TILE_HEIGHT * level)) // TILE_WIDTH, (count - 1) // TILE_WIDTH + 1):
                width = min(TILE_WIDTH, count - index * TILE_WIDTH)
                rel = tile_path(level, index, width)
                if width == TILE_WIDTH and os.path.exists(os.path.join(self.directory, rel)):
                    continue
                data = tx.tile(level, index)
                if data is None or len(data) < width * HASH_SIZE:
                    raise IntegrityError(f"tile {level}/{index} is missing or short in the database")
                add(rel, data[:width * HASH_SIZE])
        for index in range(exported // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1):
            width = min(TILE_WIDTH, size - index * TILE_WIDTH)
            rel = entries_path(index, width)
            if width == TILE_WIDTH and os.path.exists(os.path.join(self.directory, rel)):
                continue
            try:
                add(rel, entry_bundle_prefix(tx.entry_bundle(index) or b"", width))
            except VerificationError as exc:
                raise IntegrityError(f"entry bundle {index} in the database: {exc}") from exc
        return files


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
        self._thread: threading.Thread | None = None

    def submit(self, batch: Batch) -> None:
        with self._cond:
            if self._closed:
                return
            self._queue.append(batch)
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
                return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)
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
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                # Let a burst of appends accumulate: one round of fsyncs then covers all of them.
                self._cond.wait_for(lambda: self._closed or self._flushing, self.linger)
                batches = list(self._queue)
                self._queue.clear()
                self._busy = True
            try:
                for batch in coalesce(batches):
                    self.writer.write_batch(batch, self.storage)
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
            out[-1] = Batch(prev.start, b.end, {**prev.tiles, **b.tiles}, {**prev.bundles, **b.bundles}, b.checkpoint)
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

    Full tiles are cached forever, partial tiles and the checkpoint briefly, a 404 (a tile that does not
    exist yet) never; temporary and lock files (dot names) are never served. With ``upstream`` (e.g.
    ``127.0.0.1:8080`` or an ``upstream`` block's name) the JSON API is proxied.
    """
    api = f"    location /api/ {{ proxy_pass http://{upstream}; }}\n" if upstream else ""
    return f"""server {{
    listen {listen};
    root {static_dir};
    etag on;
    error_page 404 = @missing;
    location ~ /\\. {{ return 404; }}                      # temporary and lock files
    location @missing {{ add_header Cache-Control "no-store" always; return 404; }}
    location = /checkpoint {{
        types {{ }} default_type text/plain;
        add_header Cache-Control "public, max-age=5";
    }}
    location ~ ^/tile/.+\\.p/[0-9]+$ {{                  # partial tiles: replaced as the log grows
        types {{ }} default_type application/octet-stream;
        add_header Cache-Control "public, max-age=10";
    }}
    location /tile/ {{                                  # full tiles never change
        types {{ }} default_type application/octet-stream;
        add_header Cache-Control "public, max-age=31536000, immutable";
    }}
{api}}}
"""


__all__ = ["BackgroundWriter", "ExportError", "Refresher", "StaticWriter", "coalesce", "nginx_server_block"]
