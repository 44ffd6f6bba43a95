"""The log: validated, atomic, durable appends; proofs; checkpoints (DESIGN.md §5).

Entries are the exact bytes of either a bundle (``fleetkeys/bundle/v1``) or a trust-root rotation
envelope (``fleetkeys/trust-root/v1``); leaf hash = ``verifier.merkle.leaf_hash(entry)``.

Appending (:meth:`Log.publish_batch`, :meth:`Log.rotate_trust_root`, :meth:`Log.append_entries`):

1. outside the writer lock: size bound (an entry must fit a C2SP entry bundle: 65535 bytes), and
   bundle signatures checked against the trust root in force (the expensive part);
2. inside one storage write transaction (exclusive across processes and replicas): read the head;
   if another process moved it, reload the tree edge and bring the last epoch, the revocation marks
   and the trust root in force forward from the new entries (:class:`Derived`); apply the log's rules
   (identical re-publish returns the existing index; the keyset names exactly the trust root in
   force, ``verifier.bundle.require_root_name``;
   epoch = last + 1, ``previous`` = last digest, ``issued_at`` not earlier; no active fleet reuses a
   fleet id or key revoked by any logged keyset, ``verifier.update.check_revocations``; a rotation is
   signed by the root in force); extend the tree; sign the new checkpoint; write entry bundles, tile
   rows, epoch/trust-root rows, the new revocation marks and the new head;
3. COMMIT. When it returns the append is durable (see the backends) and only then is it
   acknowledged, cached, and handed to the static writer.

The same write transaction also keeps the log-signed checkpoint of the new size (``checkpoints``)
and stores the new served checkpoint (the log-signed checkpoint with the witness cosignatures it has
and its freshness cosignature, :mod:`distributor.freshness`), so every worker and replica serves the
same bytes, with a freshness time never below the previous one. When the trust root in force
requires witnesses (``witnesses.threshold`` > 0) the served checkpoint stays at the last size enough
witnesses cosigned until they cosign the new one (:mod:`distributor.witnessing` asks them): an
appended entry is durable and acknowledged at once, and **visible** to clients — checkpoint, tiles,
entries, proofs, listings — once witnessed. Every read below serves the visible tree.

Reads never take the writer lock: each reads the head, the served checkpoint and the tile rows it
needs in one read transaction (renewing the served checkpoint first when it is older than the
freshness interval, which does take the writer lock, once for everyone).

Derived state. The ``epochs``, ``trust_roots`` and ``revoked`` tables are indexes of the entries, for
reads. Every process that opens the log runs :func:`check_log` (every tile level recomputed from the
stored entries, the root against the latest signed checkpoint, and in the same pass the three tables
against the rows the entries imply; a mismatch raises :class:`IntegrityError` naming the row) and
keeps what the entries imply (:class:`Derived`: the newest epoch, the rotations, the revocation
marks). The writer's rules run on that, brought forward from the new entries when another process
appended, never on the tables; so the same bytes never become a second entry whatever the tables
hold (antispam): a bundle is appended only as the epoch after the newest one the entries hold, a
rotation only as the version after theirs, and an identical re-post is found through the ``epochs``
index only if the entry it names is that bundle, else through the entries (:func:`_find_epoch`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from verifier.bundle import parse_bundle, require_root_name, verify_bundle
from verifier.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, parse_checkpoint_body, sign_checkpoint
from verifier.errors import ChainError, MismatchError, RollbackError, SizeLimitError, TrustRootError, VerificationError
from verifier.keyset import Fleet, Keyset, check_next_epoch, format_time, parse_keyset, parse_time
from verifier.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from verifier.note import NoteSigner, NoteVerifier, parse_note
from verifier.statement import parse_statement
from verifier.tiles import (
    MAX_ENTRY_SIZE,
    TILE_WIDTH,
    TileRef,
    encode_entry_bundle,
    entry_bundle_prefix,
    split_entry_bundle,
    tile_node_reader,
    tile_width_at,
)
from verifier.tlogproof import TlogProof
from verifier.trustroot import (
    TrustRoot,
    encode_trust_root_object,
    parse_envelope,
    parse_trust_root_body,
    verify_rotation,
)
from verifier.update import check_revocations, revocation_marks

from .errors import (
    DistributorError,
    EntryTooLarge,
    IntegrityError,
    InvalidEntry,
    LogConfigError,
    NotConfigured,
    NotFound,
    RuleViolation,
    TreeError,
)
from .freshness import Freshness, ServedCheckpoint, visible_head
from .roots import Roots, record_bootstrap
from .storage import (
    CosignatureRow,
    EpochRow,
    Head,
    RevokedRow,
    ServedRow,
    Storage,
    TrustRootRow,
    Tx,
)
from .tree import Edge, check_level, levels_for_size

#: Tile rows read per query during the start-up check.
_CHECK_PAGE = 64
#: Stored ``epochs`` rows read per query when they are compared with the entries.
_ROW_PAGE = 512


@dataclass(frozen=True)
class Published:
    """Where an entry is: ``created`` is False for an identical re-publish of a logged entry."""

    index: int
    created: bool
    epoch: int | None = None
    version: int | None = None


@dataclass(frozen=True)
class Batch:
    """A committed append, handed to the static writer: the tree grew from ``start`` to ``end`` leaves;
    ``tiles`` and ``bundles`` are the hash tiles and entry bundles that changed, at their new widths;
    ``checkpoint`` is the log-signed checkpoint of ``end`` and ``served`` the served checkpoint
    (with its freshness cosignature) stored with it; ``roots`` the trust-root rotations appended
    (their per-version objects, FORMAT.md §9.7)."""

    start: int
    end: int
    tiles: dict[tuple[int, int], bytes]
    bundles: dict[int, bytes]
    checkpoint: bytes
    served: bytes
    roots: tuple[TrustRootRow, ...] = ()


@dataclass(frozen=True)
class ProvenEntry:
    """An entry with a ``c2sp.org/tlog-proof@v1`` to the current served checkpoint (``checkpoint``)."""

    index: int
    data: bytes
    proof: bytes
    checkpoint: bytes


@dataclass(frozen=True)
class _State:
    """What the writer caches between appends (always the state of some committed head)."""

    edge: Edge
    tail: bytes  # the incomplete entry bundle (entries since the last multiple of 256)
    checkpoint: bytes
    derived: Derived  # what the entries imply, read from the entries (never from the derived tables)
    trust_root: TrustRoot | None  # in force: the newest logged rotation (derived.rotations) or the bootstrap
    revoked: frozenset[str]  # every logged revocation mark (derived.revoked): what the revocation rule needs

    @property
    def size(self) -> int:
        return self.edge.size

    @property
    def last(self) -> EpochRow | None:
        """The newest epoch (None before epoch 1): what the next-epoch rule needs."""
        return self.derived.last


@dataclass
class _Change:
    """What one write transaction appends, and the answers for the caller."""

    entries: list[bytes] = field(default_factory=list)
    epochs: list[EpochRow] = field(default_factory=list)
    roots: list[TrustRootRow] = field(default_factory=list)
    results: list[Published] = field(default_factory=list)
    last: EpochRow | None = None
    trust_root: TrustRoot | None = None
    revoked: frozenset[str] | None = None  # the marks after this change (None: unchanged)
    marks: list[RevokedRow] = field(default_factory=list)  # the marks this change adds


def _verified_checkpoint(signed: bytes, log_key: NoteVerifier) -> SignedCheckpoint:
    try:
        return open_checkpoint(signed, log_key)
    except VerificationError as exc:
        raise IntegrityError(f"the latest stored checkpoint does not verify under the log key {log_key.vkey}: "
                             f"{exc}") from exc


@dataclass(frozen=True)
class Derived:
    """What the first ``size`` entries imply, read from the entries themselves, never from the derived
    tables: the epoch row of the newest bundle (``last``), every logged trust-root rotation
    (``rotations``, oldest first; a log holds a handful) and every revocation mark with the first keyset
    that revoked it (``revoked``). The writer applies the log's rules to this, so a damaged ``epochs``,
    ``trust_roots`` or ``revoked`` table can never let a bundle or rotation in twice (see
    :meth:`Log.publish_batch`)."""

    size: int = 0
    last: EpochRow | None = None
    rotations: tuple[TrustRootRow, ...] = ()
    revoked: Mapping[str, RevokedRow] = field(default_factory=dict)


#: How every bundle and every trust-root envelope begins (canonical JSON, keys sorted, ``format`` first).
_BUNDLE_START = b'{"format":"fleetkeys/bundle/v1",'
_ENVELOPE_START = b'{"format":"fleetkeys/trust-root/v1",'


def derived_row(index: int, entry: bytes) -> tuple[EpochRow | TrustRootRow | None, Keyset | None]:
    """The derived-table row entry ``index`` implies, and the keyset of a bundle.

    A bundle gives its ``epochs`` row, a trust-root envelope its ``trust_roots`` row; anything else
    gives none (only the trusted :meth:`Log.append_entries` path, used by benchmarks and tests, appends
    other bytes). The keyset is read by :func:`_logged_keyset`, not verified: every entry was verified
    when it was logged and the tree check shows it unchanged (``fleetkeys fsck`` verifies each again).
    """
    if entry.startswith(_BUNDLE_START):
        keyset = _logged_keyset(entry)
        if keyset is not None:
            return EpochRow(keyset.epoch, index, keyset.digest, tuple(f.fleet_id for f in keyset.fleets),
                            keyset.issued_at, keyset.expires_at), keyset
    elif entry.startswith(_ENVELOPE_START):
        try:
            return TrustRootRow(parse_trust_root_body(parse_envelope(entry)[0]).version, index, entry), None
        except VerificationError:
            pass
    return None, None


def _logged_keyset(entry: bytes) -> Keyset | None:
    """The keyset of a *logged* bundle (``None`` if ``entry`` is no bundle), read with the plain JSON and
    base64 decoders: about seven times faster than the strict ``parse_bundle`` and ``parse_keyset``,
    which is what keeps the start-up pass over every entry short. Sound only for bytes that were
    strictly parsed when they were logged, where both readings agree (tests/distributor/
    test_derived_state.py checks that they do on generated bundles)."""
    try:
        raw = base64.b64decode(json.loads(entry)["keyset"], validate=True)
        k = json.loads(raw)
        fleets = tuple(Fleet(f["fleet_id"], f["algorithm"], base64.b64decode(f["public_key"], validate=True),
                             parse_time(f["not_before"], "not_before"), parse_time(f["not_after"], "not_after"),
                             f["status"]) for f in k["fleets"])
        keyset = Keyset(int(k["epoch"]), k["namespace"], parse_time(k["issued_at"], "issued_at"),
                        parse_time(k["expires_at"], "expires_at"), bytes.fromhex(k["previous"]), fleets, raw,
                        hashlib.sha256(raw).digest())
    except (ValueError, KeyError, TypeError, AttributeError, VerificationError):
        return None
    return keyset


class _Deriving:
    """Builds a :class:`Derived` entry by entry, in log order, applying the rules every logged entry
    passed: each bundle is the next epoch (``verifier.keyset.check_next_epoch``), each rotation the
    next version. ``check`` (optional) is told every row derived (the start-up check compares them
    with the stored rows as they come)."""

    def __init__(self, base: Derived, check: Callable[[EpochRow | TrustRootRow], None] | None = None,
                 problem: Problem | None = None) -> None:
        self.size, self.last = base.size, base.last
        self.rotations = list(base.rotations)
        self.revoked = dict(base.revoked)
        self._check = check
        self._problem = problem or _raise

    def add(self, index: int, entry: bytes) -> None:
        """Entry ``index``, the next after those already added (entries of a damaged bundle may be
        missing when problems are listed rather than raised)."""
        self.size = index + 1
        row, keyset = derived_row(index, entry)
        if isinstance(row, EpochRow):
            try:
                check_next_epoch(self.last, keyset)
            except ChainError as exc:
                self._problem(index, f"entry {index}, the bundle of epoch {row.epoch}, breaks the epoch chain of "
                                     f"the logged bundles: {exc}")
            self.last = row
            for mark in sorted(revocation_marks(keyset)):
                self.revoked.setdefault(mark, RevokedRow(mark, row.epoch, index))
        elif isinstance(row, TrustRootRow):
            if self.rotations and row.version != self.rotations[-1].version + 1:
                self._problem(index, f"entry {index} is trust root version {row.version}, but the previous logged "
                                     f"rotation is version {self.rotations[-1].version}")
            self.rotations.append(row)
        if row is not None and self._check is not None:
            self._check(row)

    def result(self) -> Derived:
        return Derived(self.size, self.last, tuple(self.rotations), self.revoked)


Problem = Callable[[int | None, str], None]
"""Where a check reports an inconsistency: ``(index of the entry it concerns or None, message)``."""


def _raise(index: int | None, message: str) -> None:
    raise IntegrityError(message)


class _EpochRows:
    """The stored ``epochs`` rows, paged in epoch order, compared with the rows derived from the entries
    (which come in index order, that is epoch order: the chain makes epochs grow by one)."""

    def __init__(self, tx: Tx, problem: Problem) -> None:
        self._tx, self._problem = tx, problem
        self._page: list[EpochRow] = []
        self._pos = 0
        self._after = -(1 << 62)

    def _peek(self) -> EpochRow | None:
        if self._pos == len(self._page):
            self._page, self._pos = self._tx.epoch_rows(self._after, _ROW_PAGE), 0
            if not self._page:
                return None
            self._after = self._page[-1].epoch
        return self._page[self._pos]

    def _extra(self, row: EpochRow) -> None:
        self._problem(row.index, f"the epochs table holds a row for epoch {row.epoch} (index {row.index}) that no "
                                 "logged bundle has")
        self._pos += 1

    def expect(self, want: EpochRow) -> None:
        while (row := self._peek()) is not None and row.epoch < want.epoch:
            self._extra(row)
        if row is None or row.epoch > want.epoch:
            self._problem(want.index, f"the epochs table lacks the row of epoch {want.epoch}: entry {want.index} is "
                                      "its bundle (without the row a re-post of that bundle could not be found)")
            return
        self._pos += 1
        if row != want:
            fields = [name for name in ("index", "digest", "fleet_ids", "issued_at", "expires_at")
                      if getattr(row, name) != getattr(want, name)]
            self._problem(want.index, f"the epochs row of epoch {row.epoch} (index {row.index}) does not match entry "
                                      f"{want.index}, the bundle of epoch {want.epoch}: its {', '.join(fields)} "
                                      "differ")

    def finish(self) -> None:
        while (row := self._peek()) is not None:
            self._extra(row)


@dataclass(frozen=True)
class Checked:
    """The result of :func:`check_log`: the verified head and, when the entries were read, what they
    imply (:class:`Derived`)."""

    head: Head
    derived: Derived | None


def check_integrity(storage: Storage, log_key: NoteVerifier, *, entries: bool = True) -> Head:
    """The start-up self-check (:func:`check_log` in one read transaction). Returns the verified head."""
    with storage.read() as tx:
        return check_log(tx, log_key, entries=entries).head


def check_log(tx: Tx, log_key: NoteVerifier, *, entries: bool = True,
              visit: Callable[[int, bytes], None] | None = None, problem: Problem = _raise) -> Checked:
    """Recompute the tree and the derived tables from the stored entries and compare with what is stored.

    The one home of the tree re-derivation (``Log`` start-up, ``fleetkeys export`` and ``fleetkeys
    fsck`` all run it). Steps: (1) the latest checkpoint verifies under ``log_key`` and names the stored
    size; (2) every level-0 tile equals the leaf hashes of the stored entries (``entries=True``; else
    only widths); (3) every higher tile equals the roots of the full tiles below it; (4) no tile or
    entry lies beyond the size; (5) the root from the top tiles equals the checkpoint's root; with
    ``entries=True`` also, from the same single pass over the entries (:class:`Derived`): (6) the
    logged bundles form one epoch chain and the rotations one version sequence; (7) the ``epochs``
    table holds exactly one row per logged bundle, equal to the row its entry implies; (8) the
    ``trust_roots`` table exactly the logged rotations; (9) the ``revoked`` table exactly the
    revocation marks of the logged keysets, each at the first epoch that revoked it.

    Memory is bounded by a page of rows and one entry bundle, whatever the log size. ``visit(index,
    entry)`` is called for every entry in order (fsck verifies signatures there). Each inconsistency
    goes to ``problem(index, message)``; the default raises :class:`IntegrityError` at the first, and
    a ``problem`` that returns lets the check go on to list the others. Inconsistencies that leave
    nothing to compare against (no head, a checkpoint that does not verify) always raise.
    """
    head = tx.head()
    if head is None:
        raise IntegrityError("no log head (not a fleetkeys log, or never initialised)")
    signed = _verified_checkpoint(head.checkpoint, log_key).checkpoint
    size = head.size
    if signed.size != size:
        raise IntegrityError(f"stored tree size {size} but the latest signed checkpoint is for size {signed.size}")
    last_bundle = tx.max_entry_bundle()
    if last_bundle is not None and last_bundle * TILE_WIDTH >= size:
        problem(last_bundle * TILE_WIDTH, f"entry bundle {last_bundle} is stored beyond the signed tree size {size}")
    epochs = _EpochRows(tx, problem) if entries else None
    deriving = _Deriving(Derived(), None if epochs is None else
                         lambda row: epochs.expect(row) if isinstance(row, EpochRow) else None, problem)
    reader = _EntryReader(tx, size, deriving if entries else None, visit, problem)
    below = b""
    try:
        for level in range(levels_for_size(size)):
            below = check_level(level, size, _paged_tiles(tx, level),
                                reader.leaves if level == 0 and entries else _tiles_below(level, below))
    except TreeError as exc:
        problem(None, f"stored tree does not match the latest signed checkpoint: {exc}")
    if entries:
        reader.finish()  # the entries a failed tile check did not reach (only when problems are listed)
    top = tx.max_tile_level()
    if top is not None and top >= levels_for_size(size):
        problem(None, f"stored tree does not match the latest signed checkpoint: tile level {top} should not exist "
                      f"at size {size}")
    try:
        root = Edge.load(size, tx.tile).root()
    except TreeError as exc:
        problem(None, f"stored tree does not match the latest signed checkpoint: {exc}")
    else:
        if root != signed.root:
            problem(None, f"stored tree of size {size} has root {root.hex()} but the latest signed checkpoint "
                          f"says {signed.root.hex()}")
    if not entries:
        return Checked(head, None)
    assert epochs is not None
    epochs.finish()
    derived = deriving.result()
    _check_trust_roots(tx, derived, problem)
    _check_revoked(tx, derived, problem)
    return Checked(head, derived)


class _EntryReader:
    """Level 0 of :func:`check_log`: the leaf hashes of the stored entries, one entry bundle at a time,
    each entry also handed to the derivation and to ``visit``."""

    def __init__(self, tx: Tx, size: int, deriving: _Deriving | None, visit: Callable[[int, bytes], None] | None,
                 problem: Problem) -> None:
        self._tx, self._size, self._deriving, self._visit, self._problem = tx, size, deriving, visit, problem
        self.next = 0  # the next entry bundle to read

    def _read(self, number: int, width: int) -> list[bytes]:
        self.next = number + 1
        data = self._tx.entry_bundle(number)
        try:
            found = split_entry_bundle(data or b"")
        except VerificationError as exc:
            raise TreeError(f"entry bundle {number} is damaged: {exc}") from exc
        if len(found) != width:
            raise TreeError(f"entry bundle {number} holds {len(found)} entries, the tree size implies {width}: "
                            "the stored entries were changed")
        base = number * TILE_WIDTH
        for i, entry in enumerate(found):
            if self._deriving is not None:
                self._deriving.add(base + i, entry)
            if self._visit is not None:
                self._visit(base + i, entry)
        return found

    def leaves(self, start: int, width: int) -> bytes:
        return b"".join(leaf_hash(e) for e in self._read(start // TILE_WIDTH, width))

    def finish(self) -> None:
        """Read the entry bundles the tile check did not reach (it stopped at a damaged tile)."""
        count = (self._size + TILE_WIDTH - 1) // TILE_WIDTH
        while self.next < count:
            number = self.next
            try:
                self._read(number, min(TILE_WIDTH, self._size - number * TILE_WIDTH))
            except TreeError as exc:
                self._problem(number * TILE_WIDTH, str(exc))


def _tiles_below(level: int, below: bytes) -> Callable[[int, int], bytes] | None:
    """What tiles of ``level`` > 0 must hold: the roots of the full tiles of the level below."""
    if level == 0:
        return None
    return lambda start, width: below[start * HASH_SIZE:(start + width) * HASH_SIZE]


def _check_trust_roots(tx: Tx, derived: Derived, problem: Problem) -> None:
    """Step 8 of :func:`check_log`: the ``trust_roots`` table against the logged rotations."""
    found = {row.version: row for row in tx.trust_roots()}
    want = {row.version: row for row in derived.rotations}
    for version in sorted(set(found) | set(want)):
        row, logged = found.get(version), want.get(version)
        if row is None:
            assert logged is not None
            problem(logged.index, f"the trust_roots table lacks the row of version {version}: entry {logged.index} is "
                                  "its rotation")
        elif logged is None:
            problem(row.index, f"the trust_roots table holds a row for version {version} (index {row.index}) that no "
                               "logged rotation has")
        elif row != logged:
            what = "index" if row.index != logged.index else "envelope"
            problem(logged.index, f"the trust_roots row of version {version} (index {row.index}) does not match entry "
                                  f"{logged.index}, the rotation to version {version}: its {what} differs")


def _check_revoked(tx: Tx, derived: Derived, problem: Problem) -> None:
    """Step 9 of :func:`check_log`: the ``revoked`` table against the logged keysets."""
    expected = derived.revoked
    found = tx.revoked()
    missing = sorted(set(expected) - set(found))
    if missing:
        row = expected[missing[0]]
        problem(row.index, f"the revoked table lacks {len(missing)} revocation mark(s) of the logged keysets, first "
                           f"{row.mark!r} (revoked by epoch {row.epoch} at index {row.index}): the rule that a "
                           "revocation is never undone cannot be enforced from it")
    extra = sorted(set(found) - set(expected))
    if extra:
        row = found[extra[0]]
        problem(row.index, f"the revoked table holds {len(extra)} revocation mark(s) that no logged keyset revokes, "
                           f"first {row.mark!r} (recorded for epoch {row.epoch} at index {row.index})")
    for mark in sorted(set(expected) & set(found)):
        if found[mark] != expected[mark]:
            problem(expected[mark].index, f"the revoked table records {mark!r} at epoch {found[mark].epoch} (index "
                                          f"{found[mark].index}), but the logged keysets first revoke it at epoch "
                                          f"{expected[mark].epoch} (index {expected[mark].index})")



#: The command that brings back entries a restored database lacks (:mod:`distributor.recover`).
RECOVER_COMMAND = "fleetkeys distributor recover"


def static_directory(static: Any) -> str | None:
    """The directory of a ``static`` writer handed to :class:`Log`: a ``distributor.export``
    ``StaticWriter`` (``directory``) or the ``BackgroundWriter`` around one (``writer.directory``)."""
    writer = getattr(static, "writer", static)
    directory = getattr(writer, "directory", None)
    return directory if isinstance(directory, str) else None


def check_not_behind(tx: Tx, head: Head, log_key: NoteVerifier, *, database: str, static_dir: str | None = None) -> None:
    """Refuse a log that is behind a checkpoint it already showed (docs/DESIGN.md §5, "Restoring a backup").

    A database restored from a backup taken at size 3 of a log that had exported (or had witnesses
    cosign) size 5 would sign a *different* size-4 or size-5 tree as soon as it appended: every client
    and witness that saw size 5 refuses it forever (no consistency proof can exist). So, in every
    process that opens the log, before the served checkpoint is renewed:

    1. the stored served checkpoint (``served_checkpoint``) must be for a size at most the head's;
    2. ``<static_dir>/checkpoint``, when it exists, must verify under ``log_key`` and name either a
       size above the head (refused: the entries between are missing, and ``fleetkeys distributor
       recover`` reads them back from the export), or the head's size with the head's root, or a
       smaller size from which the head is consistent (a consistency proof from the stored tiles).
       Any other root at a size the database has is a fork: refused, with nothing to recover.

    Raises :class:`IntegrityError` naming both sizes and the recovery command.
    """
    recover = f"{RECOVER_COMMAND} --database {database} --from-static DIR (the export) or --from URL (a mirror)"
    served = tx.served_checkpoint()
    if served is not None and served.size > head.size:
        raise IntegrityError(f"{database} is at size {head.size} but its stored served checkpoint is for size "
                             f"{served.size}: the log already served a larger tree than it holds (restored from an "
                             f"older backup?), and clients that saw size {served.size} would refuse it forever. "
                             f"Bring the missing entries back with {recover}")
    if static_dir is None:
        return
    path = os.path.join(static_dir, "checkpoint")
    try:
        with open(path, "rb") as f:
            note = f.read(64 * 1024)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IntegrityError(f"cannot read the exported checkpoint {path}: {exc}") from exc
    try:
        exported = open_checkpoint(note, log_key).checkpoint
    except VerificationError as exc:
        raise IntegrityError(f"the exported checkpoint {path} is not a checkpoint of this log (it does not verify "
                             f"under {log_key.vkey}: {exc}): refusing to serve or export over it") from exc
    if exported.size > head.size:
        raise IntegrityError(f"the static export {static_dir} holds the signed checkpoint of size {exported.size}, but "
                             f"{database} is only at size {head.size}: the database was restored from an older "
                             f"backup (or is not this log's), and clients and witnesses that saw size "
                             f"{exported.size} would refuse it forever. Recover entries {head.size}.."
                             f"{exported.size - 1} with {RECOVER_COMMAND} --database {database} --from-static "
                             f"{static_dir} (or --from URL of a mirror), then start again")
    if not holds_tree(tx, head, log_key, exported):
        raise IntegrityError(f"fork: the static export {static_dir} holds the signed checkpoint of size {exported.size} "
                             f"with root {exported.root.hex()}, but the tree in {database} (size {head.size}) has "
                             f"another root at that size: this log signed two different histories, and clients that "
                             "saw the exported one refuse this one forever. Not serving; there is nothing to recover "
                             "(restore the database that produced the export, or start a new log)")


def holds_tree(tx: Tx, head: Head, log_key: NoteVerifier, tree: Checkpoint) -> bool:
    """Whether the stored tree at ``tree.size`` (at most ``head.size``) has ``tree.root``: the head's
    root at the head's size, else a consistency proof from the stored tiles to the head."""
    head_root = _verified_checkpoint(head.checkpoint, log_key).checkpoint.root
    if tree.size in (0, head.size):
        return tree.root == (head_root if tree.size else EMPTY_ROOT)
    try:
        proof = consistency_proof(tree.size, head.size, _node_reader(tx, head.size))
        verify_consistency(tree.size, head.size, proof, tree.root, head_root)
    except VerificationError:
        return False
    return True


def _derive(tx: Tx, base: Derived, size: int) -> Derived:
    """What the entries ``base.size .. size-1`` add to ``base`` (the writer's catch-up after another
    process appended); each entry's leaf hash is checked against its level-0 tile first."""
    deriving = _Deriving(base)
    start = base.size
    for number in range(start // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1 if size > start else 0):
        first, width = number * TILE_WIDTH, min(TILE_WIDTH, size - number * TILE_WIDTH)
        try:
            entries = split_entry_bundle(tx.entry_bundle(number) or b"", width)
        except VerificationError as exc:
            raise IntegrityError(f"entry bundle {number} is damaged: {exc}") from exc
        hashes = tx.tile(0, number) or b""
        for i in range(max(start, first) - first, width):
            if leaf_hash(entries[i]) != hashes[i * HASH_SIZE:(i + 1) * HASH_SIZE]:
                raise IntegrityError(f"entry {first + i} does not match its hash in tile 0/{number}")
            deriving.add(first + i, entries[i])
    return deriving.result()


def _find_epoch(tx: Tx, epoch: int, size: int) -> tuple[int, bytes] | None:
    """``(index, bytes)`` of the bundle of ``epoch`` among the first ``size`` entries, found through the
    entries alone: a binary search, since the epochs of the logged bundles grow with their index (the
    next-epoch rule). About log2(size) entry-bundle reads (measured: see docs/DESIGN.md §5); used only
    when the ``epochs`` index does not lead to the bundle."""
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi) // 2
        found: tuple[int, bytes, EpochRow] | None = None
        probe = mid
        while found is None and probe < hi:
            chunk = tx.entries(probe, min(hi, (probe // TILE_WIDTH + 1) * TILE_WIDTH))
            if not chunk:
                break
            for i, data in enumerate(chunk, probe):
                row, _ = derived_row(i, data)
                if isinstance(row, EpochRow):
                    found = (i, data, row)
                    break
            probe += len(chunk)
        if found is None:
            hi = mid
        elif found[2].epoch == epoch:
            return found[0], found[1]
        elif found[2].epoch < epoch:
            lo = found[0] + 1
        else:
            hi = mid
    return None


def _extend_bundles(size: int, tail: bytes, entries: Sequence[bytes]) -> tuple[bytes, dict[int, bytes]]:
    """Append entries to the entry bundles of a ``size``-entry log whose incomplete bundle is ``tail``.

    Returns the new incomplete bundle and every bundle that changed (a filled one at full width).
    """
    changed: dict[int, bytes] = {}
    index, count, buf, pos = size // TILE_WIDTH, size % TILE_WIDTH, tail, 0
    while pos < len(entries):
        take = min(TILE_WIDTH - count, len(entries) - pos)
        buf += encode_entry_bundle(entries[pos:pos + take])
        changed[index] = buf
        count, pos = count + take, pos + take
        if count == TILE_WIDTH:
            index, count, buf = index + 1, 0, b""
    return buf, changed


def _paged_tiles(tx: Tx, level: int) -> Iterator[tuple[int, bytes]]:
    start = 0
    while True:
        rows = tx.level_tiles(level, start, _CHECK_PAGE)
        yield from rows
        if len(rows) < _CHECK_PAGE:
            return
        start = rows[-1][0] + 1


def _node_reader(tx: Tx, size: int):
    def fetch(ref: TileRef) -> bytes:
        data = tx.tile(ref.level, ref.index)
        if data is None or len(data) < ref.width * HASH_SIZE:
            raise IntegrityError(f"tile {ref.level}/{ref.index} is missing or shorter than {ref.width} hashes")
        return data[:ref.width * HASH_SIZE]

    return tile_node_reader(size, fetch)


class Log:
    """One log over a :class:`~distributor.storage.Storage` (see the module docstring).

    Opening an empty database creates the log: meta rows (origin, log and freshness vkeys) and the
    signed checkpoint of the empty tree. Opening an existing one checks that the origin and keys are
    the ones it was created with, and that the trust root in force names this log's keys
    (:class:`LogConfigError` otherwise), and runs the start-up check :func:`check_log`
    (:class:`IntegrityError`; :meth:`self_check` runs it again).

    ``static``: an object with ``submit(batch: Batch)`` (``distributor.export``), called after each
    commit; its directory's checkpoint is checked at the open (:func:`check_not_behind`: a log restored
    from a backup older than its export is refused). ``recovering`` (only
    :mod:`distributor.recover`): skip that check and leave the served checkpoint untouched, so that
    :meth:`append_recovered` can bring the missing entries back. ``clock``: POSIX seconds (freshness
    cosignatures, expiry). Every checkpoint it serves is the stored served checkpoint (:attr:`served`).
    Thread-safe.
    """

    def __init__(self, storage: Storage, *, origin: str, log_signer: Any, freshness_signer: Any,
                 trust_root: TrustRoot | None = None, freshness_interval: float = 60,
                 clock: Callable[[], float] = time.time, static: Any = None,
                 witnesses: Sequence[NoteVerifier] | None = None, recovering: bool = False) -> None:
        self.storage = storage
        self.origin = origin
        self._note_signer = NoteSigner.from_signer(origin, log_signer)
        self.log_key = self._note_signer.verifier
        self.freshness = Freshness(origin, freshness_signer, interval=freshness_interval, clock=clock)
        self.roots = Roots()
        self.served = ServedCheckpoint(storage, self.freshness, self.roots)
        self._clock = clock
        self._bootstrap = trust_root
        self._static = static
        self._witnesses = None if witnesses is None else tuple(witnesses)
        self._wlock = threading.Lock()
        self._state: _State | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._recovering = recovering
        self._open()

    # -- opening ----------------------------------------------------------------------------------
    def _open(self) -> None:
        with self._wlock, self.storage.write() as tx:
            stored_origin = tx.meta("origin")
            if stored_origin is None:
                if tx.head() is not None:
                    raise IntegrityError(f"{self.storage.description}: a log head exists but no log metadata")
                tx.set_meta("origin", self.origin)
                tx.set_meta("log_vkey", self.log_key.vkey)
                tx.set_meta("freshness_vkey", self.freshness.vkey)
                tx.set_head(0, sign_checkpoint(Checkpoint(self.origin, 0, EMPTY_ROOT), self._note_signer))
            else:
                self._check_meta(tx, stored_origin)
            record_bootstrap(tx, self._bootstrap)
            head = tx.head()
            self._verified_edge(tx, head)  # before anything below cosigns it
            assert head is not None
            tx.put_checkpoint(head.size, head.checkpoint)  # a database from before schema 4 keeps none
            if not self._recovering:
                # Before the served checkpoint is renewed (which would re-serve the head at a fresh
                # time): a log behind what it already showed (restored from an older backup) is never
                # served. Recovering, the served row is left as it is until the entries are back.
                check_not_behind(tx, head, self.log_key, database=self.storage.description,
                                 static_dir=static_directory(self._static))
                self.served.ensure(tx, head)  # a database from before served checkpoints gets its first one
        self.served.schema_ready()
        # The start-up check, in every process that opens the log (each worker, replica, exporter): the
        # whole tree and the derived tables from the entries (check_log). It runs in a read transaction,
        # so the other workers and replicas go on serving and appending meanwhile; the writer's state is
        # what the entries of the checked head imply, and _commit brings it forward from there.
        with self.storage.read() as tx:
            checked = check_log(tx, self.log_key)
            assert checked.derived is not None
            state = self._state_at(tx, checked.head, checked.derived)
        self._state = state
        if self._bootstrap is not None:
            self._check_root_names_log(self._bootstrap, "the configured trust root")
        if state.trust_root is not None:
            what = f"the trust root in force (version {state.trust_root.version})"
            self._check_root_names_log(state.trust_root, what)
            self._check_witnesses_configured(state.trust_root, what)

    def _check_meta(self, tx: Tx, stored_origin: str) -> None:
        found = {"origin": stored_origin, "log key": tx.meta("log_vkey"), "freshness key": tx.meta("freshness_vkey")}
        given = {"origin": self.origin, "log key": self.log_key.vkey, "freshness key": self.freshness.vkey}
        for what, value in found.items():
            if value != given[what]:
                raise LogConfigError(f"{self.storage.description} holds the log {stored_origin!r} whose {what} is "
                                  f"{value}, but this distributor was started with {what} {given[what]}")

    def _check_root_names_log(self, root: TrustRoot, what: str) -> None:
        if root.log.origin != self.origin:
            raise LogConfigError(f"{what} names the log origin {root.log.origin!r}, but this log is {self.origin!r}")
        if root.log.key != self.log_key:
            raise LogConfigError(f"{what} trusts the log key {root.log.key.vkey}, but this log signs with "
                              f"{self.log_key.vkey}")
        if root.log.freshness_key != self.freshness.cosigner.verifier:
            raise LogConfigError(f"{what} trusts the freshness key {root.log.freshness_key.vkey}, but this log "
                              f"cosigns with {self.freshness.vkey}")

    def _check_witnesses_configured(self, root: TrustRoot, what: str) -> None:
        """``root``'s witness threshold can be met by the witnesses this distributor asks (when it was
        told which: ``witnesses``), else nothing appended under it would ever become visible."""
        if self._witnesses is None or not root.witnesses.threshold:
            return
        trusted = {k.public_key for k in root.witnesses.keys}
        asked = {k.public_key for k in self._witnesses} & trusted
        if len(asked) < root.witnesses.threshold:
            raise LogConfigError(f"{what} requires cosignatures from {root.witnesses.threshold} of its "
                                 f"{len(trusted)} witnesses, but this distributor asks only {len(asked)} of them "
                                 "(configure them with --witness URL=VKEY): no new entry could become visible")

    def _root_in_force(self, tx: Tx, size: int | None = None) -> TrustRoot | None:
        return self.roots.in_force(tx, size, self._bootstrap)

    def _visible(self, tx: Tx) -> Head:
        """The tree clients see (:func:`distributor.freshness.visible_head`)."""
        head = tx.head()
        assert head is not None
        return visible_head(tx, head, tx.served_checkpoint())

    def add_listener(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(new_size)`` after every committed append of this process (the witness loop)."""
        self._listeners.append(fn)

    def _verified_edge(self, tx: Tx, head: Head | None) -> Edge:
        """The stored tree edge of ``head``, whose signed checkpoint must verify and match it."""
        if head is None:
            raise IntegrityError(f"{self.storage.description}: log metadata exists but no head")
        signed = _verified_checkpoint(head.checkpoint, self.log_key).checkpoint
        try:
            edge = Edge.load(head.size, tx.tile)
        except TreeError as exc:
            raise IntegrityError(f"stored tree edge is damaged: {exc}") from exc
        if signed.size != head.size or edge.root() != signed.root:
            raise IntegrityError(f"the latest signed checkpoint (size {signed.size}, root {signed.root.hex()}) does not "
                                 f"match the stored tree (size {head.size}, root {edge.root().hex()})")
        return edge

    def _state_at(self, tx: Tx, head: Head | None, derived: Derived) -> _State:
        """The writer's state at ``head``, whose entries imply ``derived``."""
        edge = self._verified_edge(tx, head)
        assert head is not None and derived.size == head.size
        tail = b""
        if head.size % TILE_WIDTH:
            try:
                tail = entry_bundle_prefix(tx.entry_bundle(head.size // TILE_WIDTH) or b"", head.size % TILE_WIDTH)
            except VerificationError as exc:
                raise IntegrityError(f"the last entry bundle is damaged: {exc}") from exc
        bootstrap = self._bootstrap if self._bootstrap is not None else self.roots.bootstrap(tx)
        root = self.roots.newest(derived.rotations[-1] if derived.rotations else None, bootstrap)
        return _State(edge, tail, head.checkpoint, derived, root, frozenset(derived.revoked))

    def _reload(self, tx: Tx, head: Head | None, state: _State | None) -> _State:
        """The state of the database's head after another process or replica appended: when the head
        extends ``state`` (a consistency proof from the tiles) only the new entries are read, checked
        against the level-0 tiles and derived; otherwise all of them."""
        if head is not None and state is not None and state.size < head.size:
            new_root = _verified_checkpoint(head.checkpoint, self.log_key).checkpoint.root
            try:
                proof = consistency_proof(state.size, head.size, _node_reader(tx, head.size))
                verify_consistency(state.size, head.size, proof, state.edge.root(), new_root)
            except VerificationError:
                pass
            else:
                return self._state_at(tx, head, _derive(tx, state.derived, head.size))
        return self._state_at(tx, head, _derive(tx, Derived(), head.size if head is not None else 0))

    def _logged_bundle(self, tx: Tx, state: _State, epoch: int) -> tuple[int, bytes] | None:
        """``(index, bytes)`` of the logged bundle of ``epoch`` among the entries of ``state``, or ``None``.

        An epoch above the newest one the entries hold (``state.last``, derived from the entries) is not
        logged: no lookup. Else the ``epochs`` row is tried, and believed only if its entry is that
        epoch's bundle; if it is not (a damaged index), the entries themselves are searched
        (:func:`_find_epoch`). Either way the answer comes from the entries."""
        if state.last is None or epoch > state.last.epoch:
            return None
        row = tx.epoch(epoch)
        if row is not None and row.index < state.size:
            data = tx.entry(row.index)
            found, _ = derived_row(row.index, data or b"")
            if data is not None and isinstance(found, EpochRow) and found.epoch == epoch:
                return row.index, data
        return _find_epoch(tx, epoch, state.size)

    def self_check(self, *, entries: bool = True) -> Head:
        """Run :func:`check_integrity` on this log's storage again (the open ran it once)."""
        return check_integrity(self.storage, self.log_key, entries=entries)

    # -- writing ----------------------------------------------------------------------------------
    def _commit(self, plan: Callable[[Tx, _State], _Change]) -> list[Published]:
        with self._wlock:
            with self.storage.write() as tx:
                head = tx.head()
                state = self._state
                if state is None or head is None or head.size != state.size or head.checkpoint != state.checkpoint:
                    # Another process or replica appended: start from the database's head.
                    state = self._state = self._reload(tx, head, state)
                change = plan(tx, state)
                new_state, batch = state, None
                if change.entries:
                    sha = hashlib.sha256
                    edge, tiles = state.edge.extend([sha(b"\x00" + e).digest() for e in change.entries])
                    tail, bundles = _extend_bundles(state.size, state.tail, change.entries)
                    checkpoint = sign_checkpoint(Checkpoint(self.origin, edge.size, edge.root()), self._note_signer)
                    tx.put_entry_bundles(bundles)
                    tx.put_tiles(tiles)
                    tx.put_epochs(change.epochs)
                    tx.put_trust_roots(change.roots)
                    tx.put_revoked(change.marks)
                    tx.set_head(edge.size, checkpoint)
                    tx.put_checkpoint(edge.size, checkpoint)
                    served = self.served.issue(tx, Head(edge.size, checkpoint))
                    revoked = {**state.derived.revoked, **{m.mark: m for m in change.marks}}
                    derived = Derived(edge.size, change.last, state.derived.rotations + tuple(change.roots), revoked)
                    new_state = _State(edge, tail, checkpoint, derived, change.trust_root,
                                       state.revoked if change.revoked is None else change.revoked)
                    if served.size == edge.size:
                        batch = Batch(state.size, edge.size, tiles, bundles, checkpoint, served.checkpoint,
                                      tuple(change.roots))
            # COMMIT returned: the append is durable. Only now is it cached and exported.
            self._state = new_state
            if batch is not None and self._static is not None:
                self._static.submit(batch)
        if change.entries:
            for fn in self._listeners:
                fn(new_state.size)
        return change.results

    @staticmethod
    def _check_size(data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise InvalidEntry("an entry must be bytes")
        if not data:
            raise InvalidEntry("empty entry")
        if len(data) > MAX_ENTRY_SIZE:
            raise EntryTooLarge(f"entry of {len(data)} bytes exceeds the {MAX_ENTRY_SIZE}-byte limit of a C2SP "
                                "tile entry")

    def append_entries(self, entries: Sequence[bytes]) -> int:
        """Append raw entries in one transaction with one checkpoint; return the first index.

        Trusted internal path: no validation besides the size bound (benchmarks and tests use it with
        arbitrary bytes; the publish API uses :meth:`publish_batch`).
        """
        entries = [e if type(e) is bytes else bytes(e) for e in entries]
        if entries and (not min(map(len, entries)) or max(map(len, entries)) > MAX_ENTRY_SIZE):
            for e in entries:
                self._check_size(e)

        if not entries:
            return self.head().size

        def plan(tx: Tx, state: _State) -> _Change:
            return _Change(entries=list(entries), results=[Published(state.size, True)],
                           last=state.last, trust_root=state.trust_root)

        return self._commit(plan)[0].index

    def append_recovered(self, start: int, entries: Sequence[bytes], expected: Checkpoint) -> None:
        """Append entries read back from an export or a mirror (:mod:`distributor.recover`), all in one
        write transaction, only if the log is still at size ``start`` and the result is exactly the tree
        of ``expected`` (a checkpoint this log signed, verified by the caller): same size, same root.

        Each entry passes again the rules it passed when it was logged (as ``fleetkeys fsck`` checks
        them): a bundle verifies under the trust root in force at its index, is the next epoch and
        keeps the revocation rule; a rotation verifies under the root in force and is the next version;
        other bytes are refused. Not the expiry rule: a keyset that expired since is still what the
        log held at that index. Raises :class:`IntegrityError` naming the entry (nothing is written).
        """
        entries = [bytes(e) for e in entries]
        for e in entries:
            self._check_size(e)

        def refuse(message: str) -> IntegrityError:
            return IntegrityError(f"the entries were not appended: {message}")

        def problem(index: int | None, message: str) -> None:
            raise refuse(message)

        def plan(tx: Tx, state: _State) -> _Change:
            if state.size != start:
                raise refuse(f"the log moved from size {start} to {state.size} meanwhile (is it being served?)")
            edge, _ = state.edge.extend([leaf_hash(e) for e in entries])
            if edge.size != expected.size or edge.root() != expected.root:
                raise refuse(f"appending the {len(entries)} entries gives size {edge.size} with root "
                             f"{edge.root().hex()}, not the signed checkpoint's size {expected.size} with root "
                             f"{expected.root.hex()}: the database's first {start} entries are not that tree's (a fork)")
            change = _Change(entries=entries, results=[Published(start, True)])
            deriving = _Deriving(state.derived, problem=problem)
            root, revoked = state.trust_root, state.revoked
            for index, data in enumerate(entries, start):
                row, _ = derived_row(index, data)
                if root is None:
                    raise refuse(f"entry {index}: no trust root is recorded for this log (give --trust-root)")
                try:
                    if isinstance(row, EpochRow):
                        new = check_revocations(revoked, verify_bundle(data, root).keyset)
                        change.marks += [RevokedRow(m, row.epoch, index) for m in sorted(new - revoked)]
                        change.epochs.append(row)
                        revoked = new
                    elif isinstance(row, TrustRootRow):
                        root = verify_rotation(root, data)
                        self.roots.remember(root)
                        change.roots.append(row)
                    else:
                        raise refuse(f"entry {index} is neither a bundle nor a trust-root rotation")
                except VerificationError as exc:
                    raise refuse(f"entry {index} does not pass the log's rules under trust root version "
                                 f"{root.version}: {exc}") from exc
                deriving.add(index, data)  # the epoch chain and the version sequence
            change.last, change.trust_root, change.revoked = deriving.result().last, root, revoked
            return change

        self._commit(plan)

    def publish(self, data: bytes) -> Published:
        """Validate and append one bundle (see :meth:`publish_batch`)."""
        return self.publish_batch([data])[0]

    def publish_batch(self, bundles: Sequence[bytes]) -> list[Published]:
        """Validate bundles and append them in order, all in one transaction with one checkpoint.

        Each must verify against the trust root in force (:class:`InvalidEntry`); one that is
        byte-for-byte a logged bundle returns its existing index (also one logged before keysets
        named their root). Every other must (:class:`RuleViolation` otherwise): name exactly the
        trust root in force (``verifier.bundle.require_root_name``, FORMAT.md §3.3), be the next
        epoch (``previous`` = the last keyset digest, ``issued_at`` not earlier), not be expired, and
        keep the revocation rule over the whole log (``verifier.update.check_revocations``: no active
        fleet whose id or key any logged keyset revoked, FORMAT.md §3.2). Any refusal refuses the
        whole batch.
        """
        for data in bundles:
            self._check_size(data)
        state = self._state
        root = state.trust_root if state else None
        if root is None:
            raise NotConfigured("no trust root is configured (start the distributor with --trust-root): "
                                "bundles cannot be verified, so none are accepted")
        pre: list[tuple[bytes, Any]] = []
        for i, data in enumerate(bundles):
            try:
                pre.append((bytes(data), (root.version, verify_bundle(data, root))))
            except VerificationError as exc:
                logged = self._logged_identical(data)
                if logged is None:
                    raise self._refusal(exc, i, len(bundles), data, root) from exc
                pre.append((bytes(data), logged))

        def plan(tx: Tx, state: _State) -> _Change:
            current = state.trust_root
            if current is None:
                raise NotConfigured("no trust root is configured")
            change = _Change(last=state.last, trust_root=current, revoked=state.revoked)
            pending: dict[int, int] = {}
            for i, (data, checked) in enumerate(pre):
                if isinstance(checked, Published):
                    change.results.append(checked)
                    continue
                version, verified = checked
                if version != current.version:
                    try:
                        verified = verify_bundle(data, current)
                    except VerificationError as exc:
                        raise self._refusal(exc, i, len(pre), data, current) from exc
                epoch = verified.keyset.epoch
                if epoch in pending:
                    raise RuleViolation(f"epoch {epoch} appears twice in the batch")
                logged = self._logged_bundle(tx, state, epoch)
                if logged is not None:
                    if logged[1] == data:
                        change.results.append(Published(logged[0], False, epoch=epoch))
                        continue
                    raise RuleViolation(f"epoch {epoch} is already logged at index {logged[0]} with a different "
                                        "bundle")
                where = f"bundle {i} of {len(pre)}: " if len(pre) > 1 else ""
                try:
                    require_root_name(verified.keyset, current)
                except MismatchError as exc:
                    raise RuleViolation(f"{where}{exc}") from exc
                try:
                    check_next_epoch(change.last, verified.keyset)
                except ChainError as exc:
                    next_epoch = change.last.epoch + 1 if change.last else 1
                    raise RuleViolation(f"the next epoch of this log is {next_epoch}: {exc}") from exc
                if verified.keyset.expires_at <= int(self._clock()):
                    # Every client would refuse it, and as the log's newest epoch it would freeze them all.
                    raise RuleViolation(f"keyset epoch {epoch} already expired at "
                                        f"{format_time(verified.keyset.expires_at)}")
                index = state.size + len(change.entries)
                ks = verified.keyset
                assert change.revoked is not None
                try:
                    revoked = check_revocations(change.revoked, ks)
                except (RollbackError, SizeLimitError) as exc:
                    raise RuleViolation(f"{where}{exc}") from exc
                change.marks += [RevokedRow(m, epoch, index) for m in sorted(revoked - change.revoked)]
                change.revoked = revoked
                pending[epoch] = index
                change.entries.append(data)
                change.last = EpochRow(epoch, index, ks.digest, tuple(f.fleet_id for f in ks.fleets), ks.issued_at,
                                       ks.expires_at)
                change.epochs.append(change.last)
                change.results.append(Published(index, True, epoch=epoch))
            return change

        return self._commit(plan)

    @staticmethod
    def _refusal(exc: VerificationError, i: int, n: int, data: bytes, root: TrustRoot) -> DistributorError:
        """The refusal of a bundle that ``verify_bundle`` refused under ``root``: a rule break (409) for a
        chain break, a rollback, or a keyset naming another trust root (``verify_bundle`` ran its name
        check, ``check_names_root``, after the signatures; the answer is ``require_root_name``'s), else
        an invalid entry (400)."""
        where = f"bundle {i} of {n}: " if n > 1 else ""
        if isinstance(exc, ChainError | RollbackError):
            return RuleViolation(f"{where}{exc}")
        if isinstance(exc, MismatchError | TrustRootError):
            try:
                require_root_name(parse_keyset(parse_bundle(data).keyset), root)
            except MismatchError as named:
                return RuleViolation(f"{where}{named}")
            except VerificationError:
                pass
        return InvalidEntry(f"{where}bundle does not verify: {exc}")

    def _logged_identical(self, data: bytes) -> Published | None:
        """The index of ``data`` if it is byte-for-byte a logged bundle (checked without signatures)."""
        try:
            epoch = parse_statement(parse_bundle(data).statement).epoch
        except VerificationError:
            return None
        state = self._state
        if state is None:
            return None
        with self.storage.read() as tx:
            logged = self._logged_bundle(tx, state, epoch)
        if logged is not None and logged[1] == data:
            return Published(logged[0], False, epoch=epoch)
        return None

    def rotate_trust_root(self, envelope: bytes) -> Published:
        """Append a trust-root rotation envelope signed per ``verifier.trustroot.verify_rotation``.

        After the commit the new root is in force for later bundles (and after restarts). An identical
        re-publish returns the existing index; a different envelope for a logged version, or a version
        that is not exactly the next one, is a :class:`RuleViolation`; bad signatures are
        :class:`InvalidEntry`.
        """
        self._check_size(envelope)
        data = bytes(envelope)
        try:
            version = parse_trust_root_body(parse_envelope(data)[0]).version
        except VerificationError as exc:
            raise InvalidEntry(f"trust root envelope is malformed: {exc}") from exc

        def plan(tx: Tx, state: _State) -> _Change:
            current = state.trust_root
            if current is None:
                raise NotConfigured("no trust root is configured (start the distributor with --trust-root)")
            change = _Change(last=state.last, trust_root=current)
            # The rotations the entries hold (derived from them, not from the trust_roots table).
            row = next((r for r in state.derived.rotations if r.version == version), None)
            if row is not None:
                if row.envelope != data:
                    raise RuleViolation(f"trust root version {version} is already logged at index {row.index} "
                                        "with a different envelope")
                change.results.append(Published(row.index, False, version=version))
                return change
            try:
                new = verify_rotation(current, data)
            except RollbackError as exc:
                raise RuleViolation(str(exc)) from exc
            except VerificationError as exc:
                raise InvalidEntry(f"trust root rotation does not verify: {exc}") from exc
            try:
                self._check_root_names_log(new, f"trust root version {new.version}")
            except LogConfigError as exc:
                raise RuleViolation(f"{exc}; this log cannot serve under that root") from exc
            try:
                self._check_witnesses_configured(new, f"trust root version {new.version}")
            except LogConfigError as exc:
                raise RuleViolation(str(exc)) from exc
            self.roots.remember(new)
            change.entries.append(data)
            change.roots.append(TrustRootRow(new.version, state.size, data))
            change.results.append(Published(state.size, True, version=new.version))
            change.trust_root = new
            return change

        return self._commit(plan)[0]

    # -- reading ----------------------------------------------------------------------------------
    def head(self) -> Head:
        with self.storage.read() as tx:
            head = tx.head()
        assert head is not None
        return head

    def checkpoint(self) -> bytes:
        """The served checkpoint (what ``GET /checkpoint`` serves; see :mod:`distributor.freshness`)."""
        return self.served.get().checkpoint

    def entry(self, index: int) -> bytes | None:
        """The exact bytes of entry ``index`` (``None`` at or beyond the visible size)."""
        with self.storage.read() as tx:
            return tx.entry(index) if 0 <= index < self._visible(tx).size else None

    @property
    def trust_root(self) -> TrustRoot | None:
        """The trust root in force for new entries (the latest logged rotation, else the configured root)."""
        with self.storage.read() as tx:
            return self._root_in_force(tx)

    def tile(self, ref: TileRef) -> bytes | None:
        """A hash tile or entry bundle of the visible tree (``None`` if it does not exist yet)."""
        with self.storage.read() as tx:
            head = self._visible(tx)
            if ref.level is None:
                available = max(0, min(TILE_WIDTH, head.size - ref.index * TILE_WIDTH))
                if ref.width > available:
                    return None
                try:
                    return entry_bundle_prefix(tx.entry_bundle(ref.index) or b"", ref.width)
                except VerificationError as exc:
                    raise IntegrityError(f"entry bundle {ref.index}: {exc}") from exc
            if ref.width > tile_width_at(ref.level, ref.index, head.size):
                return None
            data = tx.tile(ref.level, ref.index)
        if data is None or len(data) < ref.width * HASH_SIZE:
            raise IntegrityError(f"tile {ref.level}/{ref.index} is shorter than the tree size implies")
        return data[:ref.width * HASH_SIZE]

    def _prove(self, tx: Tx, head: Head, served: ServedRow, index: int, data: bytes) -> ProvenEntry:
        signed = parse_checkpoint_root(head.checkpoint)
        hashes = inclusion_proof(index, head.size, _node_reader(tx, head.size))
        # Never serve a proof that does not verify (a damaged row would otherwise reach clients).
        try:
            verify_inclusion(index, head.size, leaf_hash(data), hashes, signed)
        except VerificationError as exc:
            raise IntegrityError(f"inclusion proof for index {index} does not verify: {exc}") from exc
        return ProvenEntry(index, data, TlogProof(index, tuple(hashes), served.checkpoint).encode(), served.checkpoint)

    def prove_published(self, index: int) -> tuple[ProvenEntry, bool]:
        """What a publisher is told: entry ``index`` with its proof to the served checkpoint and
        ``True`` when it is visible; else (awaiting witnesses) its proof to the log-signed head
        checkpoint and ``False``."""
        try:
            return self.prove_index(index), True
        except NotFound:
            pass
        with self.storage.read() as tx:
            head = tx.head()
            data = tx.entry(index) if head is not None and index < head.size else None
            if head is None or data is None:
                raise NotFound(f"no entry at index {index}")
            return self._prove(tx, head, ServedRow(head.size, 0, head.checkpoint), index, data), False

    # -- witnesses (distributor.witnessing) -------------------------------------------------------
    def witness_request(self, old_size: int) -> tuple[int, bytes, list[bytes]]:
        """``(size, log-signed checkpoint, consistency proof from old_size)`` of the head: what a
        witness that last cosigned ``old_size`` is asked to cosign (c2sp.org/tlog-witness)."""
        with self.storage.read() as tx:
            head = tx.head()
            assert head is not None
            if not 0 <= old_size <= head.size:
                raise InvalidEntry(f"a witness at size {old_size} is ahead of this log (size {head.size})")
            proof = (consistency_proof(old_size, head.size, _node_reader(tx, head.size))
                     if 0 < old_size < head.size else [])
            return head.size, head.checkpoint, proof

    def add_cosignature(self, row: CosignatureRow, signed: bytes) -> tuple[ServedRow, bool]:
        """Store a verified witness cosignature and re-choose the served checkpoint in the same write
        transaction. Returns the served row and whether its size moved (entries became visible).
        ``signed`` is the log-signed checkpoint the line was verified over: a cosignature for a size no
        longer kept (the served size passed it), or whose checkpoint is not the one kept for its size
        (a log restored and recovered in between), is dropped."""
        with self.storage.write() as tx:
            head = tx.head()
            assert head is not None
            before = tx.served_checkpoint()
            if tx.checkpoint_at(row.size) == signed and row.size <= head.size:  # the checkpoint it verified over
                tx.put_cosignature(row)
            served = self.served.issue(tx, head)
        moved = before is None or served.size != before.size
        if moved and self._static is not None:
            self._static.sync_soon()
        return served, moved

    def cosignature_sizes(self) -> dict[str, tuple[int, int]]:
        """``{witness vkey: (size, timestamp)}`` of each witness's newest stored cosignature."""
        with self.storage.read() as tx:
            return tx.newest_cosignatures()

    def prove_index(self, index: int) -> ProvenEntry:
        """Entry ``index`` with its inclusion proof to the served checkpoint."""

        def find(tx: Tx, head: Head, served: ServedRow) -> ProvenEntry:
            data = tx.entry(index) if index < head.size else None
            if data is None:
                raise NotFound(f"no entry at index {index}")
            return self._prove(tx, head, served, index, data)

        return self.served.read(find)

    def bundle(self, epoch: int | None = None) -> tuple[EpochRow, ProvenEntry]:
        """The bundle of ``epoch`` (the latest if ``None``) with its inclusion proof."""

        def find(tx: Tx, head: Head, served: ServedRow) -> tuple[EpochRow, ProvenEntry]:
            row = tx.last_epoch(head.size) if epoch is None else tx.epoch(epoch)
            if row is not None and row.index >= head.size:
                row = None  # logged, not yet witnessed: not visible
            if row is None:
                raise NotFound("no bundle has been logged yet" if epoch is None else f"no bundle for epoch {epoch}")
            data = tx.entry(row.index)
            if data is None:
                raise IntegrityError(f"epoch {row.epoch} points at missing entry {row.index}")
            return row, self._prove(tx, head, served, row.index, data)

        return self.served.read(find)

    def trust_root_object(self, version: int) -> bytes | None:
        """The per-version object ``trust-root/<version>`` (FORMAT.md §9.7) of a logged rotation:
        its index and exact envelope (``None`` for a version never logged, e.g. the bootstrap root)."""
        with self.storage.read() as tx:
            row = tx.trust_root(version)
            if row is not None and row.index >= self._visible(tx).size:
                row = None
        return None if row is None else encode_trust_root_object(row.index, row.envelope)

    def logged_trust_root(self, version: int) -> tuple[TrustRootRow, ProvenEntry]:
        """A logged trust-root envelope by version, with its inclusion proof."""

        def find(tx: Tx, head: Head, served: ServedRow) -> tuple[TrustRootRow, ProvenEntry]:
            row = tx.trust_root(version)
            if row is None or row.index >= head.size:
                raise NotFound(f"trust root version {version} was never logged")
            return row, self._prove(tx, head, served, row.index, row.envelope)

        return self.served.read(find)

    def consistency(self, first: int, second: int | None = None) -> tuple[int, list[bytes]]:
        """Consistency proof from ``first`` to ``second`` (default: the visible size)."""
        with self.storage.read() as tx:
            head = self._visible(tx)
            to = head.size if second is None else second
            if not 0 < first <= to <= head.size:
                raise InvalidEntry(f"consistency proof needs 0 < from <= to <= {head.size} (the visible size), "
                                   f"got from={first} to={to}")
            return to, consistency_proof(first, to, _node_reader(tx, to))

    def epochs(self, before: int | None, limit: int) -> tuple[list[EpochRow], int | None]:
        """A page of epochs, newest first, and the ``before`` value of the next page (or ``None``)."""
        with self.storage.read() as tx:
            rows = tx.epochs(before, limit + 1, self._visible(tx).size)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].epoch if more and rows else None)

    def info(self) -> dict[str, Any]:
        with self.storage.read() as tx:
            head = self._visible(tx)
            appended = tx.head().size
            root = self._root_in_force(tx, head.size)
        cosigned: dict[str, tuple[int | None, int | None]] = {k.vkey: (None, None) for k in self._witnesses or ()}
        cosigned.update(self.cosignature_sizes())
        return {
            "origin": self.origin,
            "log_vkey": self.log_key.vkey,
            "freshness_vkey": self.freshness.vkey,
            "size": head.size,
            "trust_root": base64.b64encode(root.envelope).decode() if root else None,
            "trust_root_version": root.version if root else None,
            "appended_size": appended,
            "witnesses": [{"vkey": vkey, "size": size, "timestamp": ts} for vkey, (size, ts) in sorted(cosigned.items())],
        }


def parse_checkpoint_root(signed: bytes) -> bytes:
    """The root hash of a (trusted, locally stored) signed checkpoint."""
    return parse_checkpoint_body(parse_note(signed)[0]).root


def epoch_json(row: EpochRow) -> dict[str, Any]:
    return {"epoch": row.epoch, "index": row.index, "digest": row.digest.hex(), "fleet_ids": list(row.fleet_ids),
            "issued_at": format_time(row.issued_at), "expires_at": format_time(row.expires_at)}


__all__ = [
    "Batch",
    "Checked",
    "Derived",
    "Log",
    "ProvenEntry",
    "Published",
    "RECOVER_COMMAND",
    "check_integrity",
    "check_log",
    "check_not_behind",
    "holds_tree",
    "derived_row",
    "epoch_json",
    "parse_checkpoint_root",
]
