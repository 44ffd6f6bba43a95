"""The over-the-air client: it reads the log itself, verifies with :mod:`verifier.follow`, persists.

This is the only part of :mod:`verifier` that does I/O, all of it through two seams: a
:class:`~verifier.fetch.Fetcher` (HTTP mirrors, a static directory, the attack suite's simulator)
and a :class:`~verifier.statestore.StateStore` (compare-and-swap saves). A refresh reads only static,
cacheable files of the export — never the dynamic API — in these named steps:

1. **checkpoint** — ``GET checkpoint``, verified (log key, origin, witnesses, freshness, not smaller
   than and not forked from the saved tree head). Unchanged size: done, exactly one request.
2. **frontier** — a state migrated from format v1 rebuilds its tree's frontier from hash tiles, checked
   against the saved root.
3. **entries** — every entry between the saved size and the checkpoint's, in log order: one per-entry
   object (``entry/<N>``) each when at most :data:`PER_ENTRY_MAX` are new, else the C2SP entry bundles
   (``tile/entries/...``, 256 entries each) — also the fallback for a C2SP-only mirror. They are
   processed in batches that end on entry-bundle boundaries: each batch's leaf hashes extend the
   saved frontier, and the resulting root must be the checkpoint's (last batch) or be proven a prefix
   of it by a consistency proof computed from hash tiles (earlier batches). Each batch is then
   applied entry by entry (bundles and trust-root rotations alike) and saved, so a long catch-up
   keeps its verified progress and no per-refresh cap can be used to stall it.
4. **finish** — root in force and newest keyset unexpired; checkpoint re-checked under a rotated root.

No number, index or 404 from a server steers what is trusted: the end of the work is the verified
checkpoint's size, and every entry is authenticated by the root before it is believed. When the log
cannot be read at all the client works offline from its last verified state until that keyset
expires, and says so.

Example::

    from verifier.client import Client
    client = Client(["https://keys.example", "https://cdn.example/keys"], trust_root=open("root.json", "rb").read(),
                    state_dir="state")
    result = client.refresh()
    for fleet in result.fleets:
        print(fleet.fleet_id, fleet.algorithm, fleet.public_key.hex())
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .bundle import parse_bundle
from .checkpoint import Checkpoint
from .errors import (
    ConsistencyError,
    ExpiredError,
    FetchError,
    FormatError,
    StateConflictError,
    TrustRootError,
)
from .fetch import Fetcher, HttpFetcher
from .follow import apply_entry, entry_kind, extend_tree, finish, open_checkpoint_for, with_tree_head
from .http import HttpClient, sanitize
from .keyset import Fleet, format_time, parse_keyset
from .merkle import HASH_SIZE, consistency_proof, frontier_of, frontier_root, inclusion_proof, leaf_hash, verify_inclusion
from .note import MAX_NOTE_SIZE
from .statestore import STATE_FILE, StateStore
from .tiles import (
    MAX_ENTRY_SIZE,
    TILE_WIDTH,
    TileRef,
    decode_entry_bundle,
    entries_path,
    entry_object_path,
    tile_node_reader,
    tile_width_at,
)
from .trustroot import (
    MAX_TRUST_ROOT_OBJECT,
    TrustRoot,
    load_trust_root,
    parse_trust_root_object,
    trust_root_object_path,
)
from .update import MAX_ROTATIONS, ClientState

log = logging.getLogger("fleetkeys.client")

#: New entries read as per-entry objects (one request each, exactly their bytes); more: entry bundles.
PER_ENTRY_MAX = 2


def entry_bundle_cap(width: int) -> int:
    """Largest body of an entry bundle of ``width`` entries (each at most 65,535 bytes + its 2-byte length)."""
    return width * (2 + MAX_ENTRY_SIZE)


@dataclass(frozen=True)
class RefreshResult:
    fleets: tuple[Fleet, ...]
    epoch: int
    offline: bool
    """True when the log could not be read and the result comes from the saved state."""
    checkpoint_size: int
    epochs_verified: tuple[int, ...]
    message: str
    requests: int = 0
    """Files read during this refresh (0 when offline)."""


class _CountingFetcher:
    def __init__(self, inner: Fetcher) -> None:
        self.inner = inner
        self.count = 0

    def fetch(self, path: str, limit: int) -> bytes | None:
        self.count += 1
        return self.inner.fetch(path, limit)


class LogReader:
    """Reads entries and hash tiles of the tree of ``size`` leaves through a fetcher (caching tiles).

    Nothing read is trusted: the entries are checked by :func:`verifier.follow.extend_tree` and the
    tile hashes by the consistency proof or frontier they produce.
    """

    def __init__(self, fetcher: Fetcher, size: int) -> None:
        self.fetcher = fetcher
        self.size = size
        self._tiles: dict[str, bytes] = {}
        self._bundles: dict[int, list[bytes]] = {}
        self.nodes = tile_node_reader(size, self._tile)

    def _need(self, path: str, limit: int) -> bytes:
        data = self.fetcher.fetch(path, limit)
        if data is None:
            raise FetchError(f"{path}: not found on any mirror, though the checkpoint of size {self.size} implies it")
        return data

    def _tile(self, ref: TileRef) -> bytes:
        if ref.path not in self._tiles:
            self._tiles[ref.path] = self._need(ref.path, ref.width * HASH_SIZE)
        return self._tiles[ref.path]

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)``: per-entry objects for a few, else (or when a mirror lacks them) bundles."""
        if end - start <= PER_ENTRY_MAX:
            out = []
            for index in range(start, end):
                data = self.fetcher.fetch(entry_object_path(index), MAX_ENTRY_SIZE)
                if data is None:
                    break  # a C2SP-only mirror: fall back to entry bundles
                out.append(data)
            else:
                return out
        out = []
        for n in range(start // TILE_WIDTH, (end - 1) // TILE_WIDTH + 1):
            width = tile_width_at(0, n, self.size)
            found = decode_entry_bundle(self._need(entries_path(n, width), entry_bundle_cap(width)), width)
            base = n * TILE_WIDTH
            out.extend(found[max(start, base) - base:min(end, base + TILE_WIDTH) - base])
        return out

    def entry(self, index: int) -> bytes:
        """Entry ``index`` as read (its per-entry object, else from its entry bundle): not yet proven."""
        data = self.fetcher.fetch(entry_object_path(index), MAX_ENTRY_SIZE)
        return data if data is not None else self._from_bundle(index)

    def _from_bundle(self, index: int) -> bytes:
        n = index // TILE_WIDTH
        if n not in self._bundles:
            width = tile_width_at(0, n, self.size)
            self._bundles = {n: decode_entry_bundle(self._need(entries_path(n, width), entry_bundle_cap(width)), width)}
        return self._bundles[n][index - n * TILE_WIDTH]

    def proven_entry(self, index: int, root: bytes, entry: bytes | None = None) -> bytes:
        """Entry ``index`` (or the given bytes) proven by an inclusion proof computed from hash tiles."""
        entry = self.entry(index) if entry is None else entry
        verify_inclusion(index, self.size, leaf_hash(entry), inclusion_proof(index, self.size, self.nodes), root)
        return entry

    def consistency(self, size1: int) -> list[bytes]:
        """The RFC 9162 proof from ``size1`` to :attr:`size`, computed from hash tiles."""
        return consistency_proof(size1, self.size, self.nodes)


class Client:
    """OTA client for one log (any number of mirrors), one bootstrap trust root and one state directory.

    ``mirrors``: a base URL or a list of them (tried in order, with failover); or give ``fetcher``
    (any :class:`~verifier.fetch.Fetcher`, e.g. a :class:`~verifier.fetch.DirectoryFetcher`).
    ``clock`` returns POSIX seconds; ``http`` (or ``timeout``/``retries``/``backoff``) configures the
    HTTP transport of the default fetcher.
    """

    def __init__(self, mirrors: str | Sequence[str] | None, trust_root: bytes | TrustRoot,
                 state_dir: str | os.PathLike, *, fetcher: Fetcher | None = None, http: HttpClient | None = None,
                 timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        if trust_root is None or trust_root == b"":
            raise ValueError("a bootstrap trust root is required (ship it with the app)")
        self.trust_root = trust_root if isinstance(trust_root, TrustRoot) else load_trust_root(trust_root)
        if fetcher is None:
            if not mirrors:
                raise ValueError("give the log's mirror URL(s) or a fetcher")
            fetcher = HttpFetcher(mirrors, http=http, timeout=timeout, retries=retries, backoff=backoff)
        self.fetcher = fetcher
        self.clock = clock
        self.store = StateStore(state_dir)
        self.state_dir = self.store.directory
        self.state = self._load()

    @property
    def state_path(self):
        return self.store.path

    def _load(self) -> ClientState:
        state = self.store.load()  # a corrupt state is an error, never silently reset
        state.trust_root_in_force(self.trust_root)
        return state

    def _save(self, state: ClientState) -> None:
        self.store.save(state)
        self.state = state

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        """Read and verify everything new in the log; persist; return the fleet keys in force.

        Raises a :class:`~verifier.errors.VerificationError` when something does not verify (the
        saved state keeps the last verified progress), or :class:`~verifier.errors.FetchError` when the
        log cannot be read and no usable saved state exists.
        """
        now = int(self.clock())
        try:
            try:
                return self._refresh(now)
            except StateConflictError:
                # Another process sharing the state directory saved first: start again from its state.
                self.state = self._load()
                return self._refresh(now)
        except FetchError as exc:
            return self._offline(now, exc)

    def _refresh(self, now: int) -> RefreshResult:
        fetcher = _CountingFetcher(self.fetcher)
        state = self.state
        before = state.trust_root_in_force(self.trust_root)
        # 1. checkpoint
        checkpoint = fetcher.fetch("checkpoint", MAX_NOTE_SIZE)
        if checkpoint is None:
            raise FetchError("checkpoint: not found on any mirror")
        vcp = open_checkpoint_for(checkpoint, bootstrap=self.trust_root, state=state, now=now)
        size = vcp.checkpoint.size
        reader = LogReader(fetcher, size)
        # 2. frontier (a state migrated from v1)
        if state.checkpoint_size and not state.frontier:
            frontier = frontier_of(state.checkpoint_size, reader.nodes)
            if frontier_root(frontier) != state.checkpoint_root:
                raise ConsistencyError(f"hash tiles served for the saved tree head (size {state.checkpoint_size}) do "
                                       "not give its root: they are not the log's, or the log forked")
            state = with_tree_head(state, state.checkpoint_size, state.checkpoint_root, frontier)
        epochs: list[int] = []
        if state.checkpoint_size == 0 and size > 0:
            fresh = self._bootstrap(reader, vcp.checkpoint, now)
            if fresh is not None:
                state = fresh
                if state.keyset is not None:
                    epochs.append(state.epoch)
        # 3. entries, in batches ending on entry-bundle boundaries
        pos = state.checkpoint_size
        while pos < size:
            end = size if size - pos <= PER_ENTRY_MAX else min(size, (pos // TILE_WIDTH + 1) * TILE_WIDTH)
            entries = reader.entries(pos, end)
            proof = reader.consistency(end) if end < size else []
            new_size, root, frontier = extend_tree(state, entries, vcp.checkpoint, proof)
            for i, entry in enumerate(entries):
                applied = apply_entry(state, entry, pos + i, bootstrap=self.trust_root, now=now)
                state = applied.state
                if applied.epoch is not None:
                    epochs.append(applied.epoch)
                else:
                    log.info("followed trust root rotation to version %d at entry %d", applied.version, pos + i)
            state = with_tree_head(state, new_size, root, frontier)
            if end < size:
                self._save(state)  # verified progress survives a stall or a crash later in the catch-up
            pos = end
        # 4. finish
        state, keyset = finish(state, vcp, checkpoint, bootstrap=self.trust_root, before=before, now=now)
        self._save(state)
        if epochs:
            message = f"verified epoch{'s' if len(epochs) > 1 else ''} " + (
                ", ".join(map(str, epochs)) if len(epochs) <= 10 else f"{epochs[0]}..{epochs[-1]}")
        else:
            message = f"epoch {keyset.epoch} is still current (checkpoint size {size})"
        return RefreshResult(keyset.active_fleets(now), keyset.epoch, False, size, tuple(epochs), message,
                             fetcher.count)

    def _bootstrap(self, reader: LogReader, checkpoint: Checkpoint, now: int) -> ClientState | None:
        """A fresh client's start: the newest bundle and what it needs, not the whole log.

        Reads entries backwards from ``size - 1`` (each proven by inclusion from hash tiles) until the
        newest bundle; follows the rotations from the bootstrap version up to the one that bundle
        names from the per-version ``trust-root/<v>`` objects (each proven at an index below the
        bundle's); verifies the bundle under exactly the named root (a bootstrap root newer than the
        named one verifies it itself); then applies every entry after it (rotations only). Returns
        ``None`` for a newest bundle that names no root (logged before the field existed): the caller
        then replays the log from entry 0.
        """
        size = checkpoint.size
        frontier = frontier_of(size, reader.nodes)
        if frontier_root(frontier) != checkpoint.root:
            raise ConsistencyError(f"hash tiles served for size {size} do not give the checkpoint's root")
        after: list[tuple[int, bytes]] = []
        index = size - 1
        while True:
            entry = reader.proven_entry(index, checkpoint.root)
            if entry_kind(entry) == "bundle":
                break
            after.append((index, entry))
            if index == 0 or len(after) > MAX_ROTATIONS:
                raise TrustRootError(f"no bundle among the last {len(after)} entries of the log (only rotations)")
            index -= 1
        named = parse_keyset(parse_bundle(entry).keyset).trust_root  # a hint until the bundle verifies below
        if named is None:
            return None
        state = ClientState()
        for version in range(self.trust_root.version + 1, named.version + 1):
            data = reader.fetcher.fetch(trust_root_object_path(version), MAX_TRUST_ROOT_OBJECT)
            if data is None:
                raise FetchError(f"{trust_root_object_path(version)}: not found, though the newest bundle names "
                                 f"trust root v{named.version}")
            at, envelope = parse_trust_root_object(data)
            if at >= index:
                raise TrustRootError(f"trust root v{version} is logged at entry {at}, not before the newest bundle "
                                     f"(entry {index}) that names v{named.version}")
            reader.proven_entry(at, checkpoint.root, envelope)
            state = apply_entry(state, envelope, at, bootstrap=self.trust_root, now=now).state
        state = apply_entry(state, entry, index, bootstrap=self.trust_root, now=now).state
        for at, rotation in reversed(after):
            if entry_kind(rotation) != "trust-root":
                raise FormatError(f"log entry {at} after the newest bundle is not a trust-root rotation")
            state = apply_entry(state, rotation, at, bootstrap=self.trust_root, now=now).state
        return with_tree_head(state, size, checkpoint.root, frontier)

    def _offline(self, now: int, exc: FetchError) -> RefreshResult:
        state = self.state
        reason = sanitize(str(exc), 300)
        if state.keyset is None:
            raise FetchError(f"log unreachable and no verified state saved yet: {reason}") from exc
        keyset = state.saved_keyset
        if now >= keyset.expires_at:
            raise ExpiredError(f"log unreachable ({reason}) and the last verified keyset (epoch {keyset.epoch}) "
                               f"expired at {format_time(keyset.expires_at)}: refusing stale keys") from exc
        message = (f"OFFLINE: log unreachable ({reason}); using verified epoch {keyset.epoch}, "
                   f"valid until {format_time(keyset.expires_at)}")
        log.warning(message)
        return RefreshResult(keyset.active_fleets(now), keyset.epoch, True, state.checkpoint_size, (), message)

    def fleets(self) -> tuple[Fleet, ...]:
        """The fleet keys from the saved state (no network); empty before the first refresh."""
        if self.state.keyset is None:
            return ()
        keyset = self.state.saved_keyset
        now = int(self.clock())
        if now >= keyset.expires_at:
            raise ExpiredError(f"saved keyset epoch {keyset.epoch} expired at {format_time(keyset.expires_at)}")
        return keyset.active_fleets(now)


__all__ = ["PER_ENTRY_MAX", "STATE_FILE", "Client", "FetchError", "LogReader", "RefreshResult"]
