"""``fleetkeys fsck``: check a stored log (and its static export) offline, from its own bytes.

Needs only reads: it opens nothing for writing and needs no key but the ones the database names. The
checks, in order (each inconsistency is a :class:`Problem` naming the entry index when there is one):

1. the tree and the derived tables: :func:`distributor.log.check_log`, the start-up check (every tile
   re-derived from the stored entries, the root against the latest signed checkpoint, the epoch chain,
   the ``epochs``, ``trust_roots`` and ``revoked`` tables against the entries), with problems listed
   rather than raised;
2. in the same pass, every entry: a bundle verifies (``verifier.bundle.verify_bundle``) under the
   trust root in force at its index (:meth:`distributor.roots.Roots.in_force` for the tree of the
   entries before it) and keeps the revocation rule (``verifier.update.check_revocations``); a
   rotation verifies (``verify_rotation``) from the root in force before it; nothing else is an entry;
3. the served checkpoint: log signature, freshness cosignature (the log's freshness key), the witness
   cosignatures the root in force at its size requires (every trusted line verifies, threshold met;
   their times cannot be judged offline), its size and root those of the stored tree;
4. every kept ``checkpoints`` row: log signature, a size between the served one and the head, a root
   consistent with the head (a consistency proof from the stored tiles); every ``witness_cosignatures``
   row: its line verifies under its witness key over the kept checkpoint of its size, at its time;
5. with a static directory: its checkpoint verifies and is a tree the database holds; every tile and
   entry bundle that size implies, every entry object and every trust-root object is present (entry
   objects only if the directory has them) and equal to the database's bytes.

Memory is bounded independent of the log size: rows and files are read a page, a tile or an entry
bundle at a time; what is kept grows only with the revocation marks and rotations (as in the writer).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from verifier.bundle import verify_bundle
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import verify_cosignatures
from verifier.errors import RollbackError, SizeLimitError, VerificationError
from verifier.merkle import HASH_SIZE, consistency_proof, verify_consistency
from verifier.note import NoteVerifier
from verifier.tiles import (
    TILE_WIDTH,
    entries_path,
    entry_bundle_prefix,
    entry_object_path,
    split_entry_bundle,
    tiles_for_size,
)
from verifier.trustroot import TrustRoot, encode_trust_root_object, trust_root_object_path, verify_rotation
from verifier.update import check_revocations

from .errors import DistributorError, StorageError
from .log import _node_reader, check_log, derived_row
from .roots import Roots
from .storage import EpochRow, Storage, TrustRootRow, Tx

#: Problems listed before fsck stops looking (it then says how many it left out).
DEFAULT_MAX_PROBLEMS = 50
#: Kept checkpoint rows read per query.
_PAGE = 256


@dataclass(frozen=True)
class Problem:
    """One inconsistency: ``index`` is the log entry it concerns (``None``: not one entry)."""

    index: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.index is None else f"entry {self.index}: {self.message}"


@dataclass
class Findings:
    """The problems found so far, at most ``cap`` kept (``count`` counts all)."""

    cap: int = DEFAULT_MAX_PROBLEMS
    problems: list[Problem] = field(default_factory=list)
    count: int = 0

    def add(self, index: int | None, message: str) -> None:
        self.count += 1
        if len(self.problems) < self.cap:
            self.problems.append(Problem(index, message))


@dataclass(frozen=True)
class Report:
    """What fsck found: ``size`` of the stored tree, ``entries`` read, the problems (at most the cap),
    ``count`` of all problems and, with a static directory, the size it exported."""

    description: str
    size: int
    entries: int
    problems: tuple[Problem, ...]
    count: int
    exported: int | None = None

    @property
    def ok(self) -> bool:
        return self.count == 0


Progress = Callable[[int, int], None]
"""``progress(done, total)`` entries, called as the pass goes (the CLI's progress bar)."""


def fsck_log(storage: Storage, *, static_dir: str | None = None, cap: int = DEFAULT_MAX_PROBLEMS,
             progress: Progress | None = None) -> Report:
    """Run every check of the module docstring on ``storage`` (and ``static_dir``). Raises
    :class:`IntegrityError` only when there is nothing to check against (no head, a head checkpoint
    that does not verify); :class:`StorageError` when the database cannot be read or holds no log."""
    found = Findings(cap)
    if not storage.has_schema():
        raise StorageError(f"{storage.description} holds no fleetkeys log")
    with storage.read() as tx:
        vkey = tx.meta("log_vkey")
        freshness_vkey = tx.meta("freshness_vkey")
        if vkey is None or freshness_vkey is None:
            raise StorageError(f"{storage.description} holds no fleetkeys log (no log keys in meta)")
        log_key = NoteVerifier.from_vkey(vkey)
        head = tx.head()
        total = head.size if head is not None else 0
        entries = _Entries(tx, Roots(), found, total, progress)
        checked = check_log(tx, log_key, visit=entries.visit, problem=found.add)
        size = checked.head.size
        _check_served(tx, log_key, NoteVerifier.from_vkey(freshness_vkey), size, found)
        _check_kept(tx, log_key, size, found)
        exported = None
        if static_dir is not None:
            exported = _check_static(tx, log_key, size, static_dir, found)
    return Report(storage.description, size, entries.count, tuple(found.problems), found.count, exported)


class _Entries:
    """Step 2: each entry against the trust root in force at its index."""

    def __init__(self, tx: Tx, roots: Roots, found: Findings, total: int, progress: Progress | None) -> None:
        self._tx, self._roots, self._found, self._total, self._progress = tx, roots, found, total, progress
        self._root: TrustRoot | None = None
        self._root_for = -1  # the size self._root was looked up for (it changes only after a rotation)
        self._revoked: frozenset[str] = frozenset()
        self.count = 0

    def _in_force(self, index: int) -> TrustRoot | None:
        if self._root_for < 0:
            self._root, self._root_for = self._roots.in_force(self._tx, index), index
        return self._root

    def visit(self, index: int, entry: bytes) -> None:
        self.count += 1
        if self._progress is not None and (self.count % 1024 == 0 or self.count == self._total):
            self._progress(self.count, self._total)
        row, _ = derived_row(index, entry)
        try:
            root = self._in_force(index)
        except DistributorError as exc:
            self._found.add(index, f"the trust root in force cannot be read: {exc}")
            return
        if root is None:
            self._found.add(index, "no trust root is recorded for this log, so its entries cannot be verified")
            return
        if isinstance(row, TrustRootRow):
            try:
                verify_rotation(root, entry)
            except VerificationError as exc:
                self._found.add(index, f"the rotation to trust root version {row.version} does not verify under the "
                                       f"root in force (version {root.version}): {exc}")
            self._root_for = -1  # the next entry is under the new root
            return
        if not isinstance(row, EpochRow):
            self._found.add(index, "is neither a bundle nor a trust-root rotation (only the trusted append path, "
                                   "for benchmarks and tests, logs other bytes)")
            return
        try:
            keyset = verify_bundle(entry, root).keyset
        except VerificationError as exc:
            self._found.add(index, f"the bundle of epoch {row.epoch} does not verify under the trust root in force "
                                   f"at its index (version {root.version}): {exc}")
            return
        try:
            self._revoked = check_revocations(self._revoked, keyset)
        except (RollbackError, SizeLimitError) as exc:
            self._found.add(index, f"the bundle of epoch {row.epoch} breaks the revocation rule: {exc}")


def _tree_root(tx: Tx, size: int, head_size: int, head_root: bytes, at: bytes) -> str | None:
    """Why a checkpoint of ``size`` with root ``at`` is not a tree the database holds (``None``: it is)."""
    if size > head_size:
        return f"size {size} is beyond the stored tree (size {head_size})"
    if size == head_size:
        return None if at == head_root else f"root {at.hex()} is not the stored root {head_root.hex()}"
    if size == 0:
        return None
    try:
        proof = consistency_proof(size, head_size, _node_reader(tx, head_size))
        verify_consistency(size, head_size, proof, at, head_root)
    except (VerificationError, DistributorError) as exc:
        return f"root {at.hex()} is not consistent with the stored tree: {exc}"
    return None


def _head_root(tx: Tx, log_key: NoteVerifier) -> tuple[int, bytes]:
    head = tx.head()
    assert head is not None  # check_log raised otherwise
    cp = open_checkpoint(head.checkpoint, log_key).checkpoint
    return cp.size, cp.root


def _check_served(tx: Tx, log_key: NoteVerifier, freshness_key: NoteVerifier, size: int, found: Findings) -> None:
    """Step 3: the served checkpoint."""
    row = tx.served_checkpoint()
    if row is None:
        found.add(None, "no served checkpoint is stored")
        return
    what = f"the served checkpoint (size {row.size})"
    try:
        cp = open_checkpoint(row.checkpoint, log_key).checkpoint
    except VerificationError as exc:
        found.add(None, f"{what} does not verify under the log key: {exc}")
        return
    if cp.size != row.size:
        found.add(None, f"{what} is for size {cp.size}")
    why = _tree_root(tx, cp.size, *_head_root(tx, log_key), cp.root)
    if why is not None:
        found.add(None, f"{what}: {why}")
    try:
        fresh = verify_cosignatures(row.checkpoint, [freshness_key], 1, what="freshness")
        if fresh[0].timestamp != row.timestamp:
            found.add(None, f"{what} has a freshness cosignature dated {fresh[0].timestamp}, the row says "
                            f"{row.timestamp}")
    except VerificationError as exc:
        found.add(None, f"{what}: {exc}")
    try:
        policy = Roots().policy(tx, cp.size)
    except DistributorError as exc:
        found.add(None, f"{what}: the trust root in force at its size cannot be read: {exc}")
        return
    if policy.threshold:
        try:
            verify_cosignatures(row.checkpoint, policy.keys, policy.threshold)
        except VerificationError as exc:
            found.add(None, f"{what} does not carry the witness cosignatures its trust root requires: {exc}")


def _check_kept(tx: Tx, log_key: NoteVerifier, size: int, found: Findings) -> None:
    """Step 4: the kept checkpoints and the witness cosignatures."""
    head_size, head_root = _head_root(tx, log_key)
    served = tx.served_checkpoint()
    low = served.size if served is not None else 0
    start = 0
    while rows := tx.checkpoints(start, _PAGE):
        for n, note in rows:
            what = f"the kept checkpoint of size {n}"
            try:
                cp = open_checkpoint(note, log_key).checkpoint
            except VerificationError as exc:
                found.add(None, f"{what} does not verify under the log key: {exc}")
                continue
            if cp.size != n or not low <= n <= head_size:
                found.add(None, f"{what} is for size {cp.size}; kept checkpoints lie between the served size {low} "
                                f"and the head {head_size}")
                continue
            why = _tree_root(tx, n, head_size, head_root, cp.root)
            if why is not None:
                found.add(None, f"{what}: {why}")
        start = rows[-1][0] + 1
    for co in tx.cosignatures(0):
        what = f"the cosignature of witness {co.witness} for size {co.size}"
        note = tx.checkpoint_at(co.size)
        if note is None:
            found.add(None, f"{what} is for a checkpoint that is not kept")
            continue
        try:
            witness = NoteVerifier.from_vkey(co.witness)
            got = verify_cosignatures(note + co.line, [witness], 1)
        except VerificationError as exc:
            found.add(None, f"{what} does not verify: {exc}")
            continue
        if got[0].timestamp != co.timestamp:
            found.add(None, f"{what} is dated {got[0].timestamp}, the row says {co.timestamp}")


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _check_static(tx: Tx, log_key: NoteVerifier, size: int, directory: str, found: Findings) -> int | None:
    """Step 5: the static export. Returns the exported size (``None`` without a usable checkpoint)."""
    note = _read_file(os.path.join(directory, "checkpoint"))
    if note is None:
        found.add(None, f"{directory}: no checkpoint file")
        return None
    try:
        cp = open_checkpoint(note, log_key).checkpoint
    except VerificationError as exc:
        found.add(None, f"{directory}/checkpoint does not verify under the log key: {exc}")
        return None
    why = _tree_root(tx, cp.size, *_head_root(tx, log_key), cp.root)
    if why is not None:
        found.add(None, f"{directory}/checkpoint: {why}")
        return cp.size
    exported = cp.size

    def compare(rel: str, want: bytes | None, index: int | None) -> None:
        got = _read_file(os.path.join(directory, rel))
        if got is None:
            found.add(index, f"{directory}/{rel} is missing (the exported checkpoint of size {exported} needs it)")
        elif want is None:
            found.add(index, f"{directory}/{rel}: the database has no such data")
        elif got != want:
            found.add(index, f"{directory}/{rel} differs from the database ({len(got)} bytes, expected {len(want)})")

    for ref in tiles_for_size(exported):
        assert ref.level is not None
        data = tx.tile(ref.level, ref.index)
        want = data[:ref.width * HASH_SIZE] if data is not None and len(data) >= ref.width * HASH_SIZE else None
        compare(ref.path, want, ref.index * TILE_WIDTH if ref.level == 0 else None)
    objects = exported > 0 and os.path.exists(os.path.join(directory, entry_object_path(0)))
    for number in range((exported + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, exported - number * TILE_WIDTH)
        stored = tx.entry_bundle(number) or b""
        try:
            prefix = entry_bundle_prefix(stored, width)
            entries = split_entry_bundle(prefix) if objects else []
        except VerificationError:
            prefix, entries = None, []
        compare(entries_path(number, width), prefix, number * TILE_WIDTH)
        for i, entry in enumerate(entries):
            compare(entry_object_path(number * TILE_WIDTH + i), entry, number * TILE_WIDTH + i)
    for row in tx.trust_roots():
        if row.index < exported:
            compare(trust_root_object_path(row.version), encode_trust_root_object(row.index, row.envelope), row.index)
    return exported


__all__ = ["DEFAULT_MAX_PROBLEMS", "Findings", "Problem", "Report", "fsck_log"]
