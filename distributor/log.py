"""The log: validated, atomic, durable appends; proofs; checkpoints (DESIGN.md §5).

Entries are the exact bytes of either a bundle (``fleetkeys/bundle/v1``) or a trust-root rotation
envelope (``fleetkeys/trust-root/v1``); leaf hash = ``verifier.merkle.leaf_hash(entry)``.

Appending (:meth:`Log.publish_batch`, :meth:`Log.rotate_trust_root`, :meth:`Log.append_entries`):

1. outside the writer lock: size bound (an entry must fit a C2SP entry bundle: 65535 bytes), and
   bundle signatures checked against the trust root in force (the expensive part);
2. inside one storage write transaction (exclusive across processes and replicas): read the head;
   if another process moved it, reload the tree edge, the last epoch, the revocation marks and the
   trust root in force from the database; apply the log's rules (identical re-publish returns the
   existing index; the keyset names exactly the trust root in force, ``verifier.bundle.require_root_name``;
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
freshness interval, which does take the writer lock, once for everyone). Start-up
(:func:`check_integrity`) recomputes every tile level from the stored entries and checks the root
against the latest signed checkpoint, and recomputes the revocation marks from the stored bundles and
checks them against the ``revoked`` table; a mismatch raises :class:`IntegrityError`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from verifier.bundle import parse_bundle, require_root_name, verify_bundle
from verifier.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, parse_checkpoint_body, sign_checkpoint
from verifier.errors import ChainError, MismatchError, RollbackError, SizeLimitError, TrustRootError, VerificationError
from verifier.keyset import check_next_epoch, format_time, parse_keyset
from verifier.merkle import EMPTY_ROOT, HASH_SIZE, consistency_proof, inclusion_proof, leaf_hash, verify_inclusion
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
from verifier.update import check_revocations

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
    logged_revocations,
)
from .tree import Edge, check_level, levels_for_size

#: Tile rows read per query during the start-up check.
_CHECK_PAGE = 64


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
    last: EpochRow | None  # the newest epoch (None before epoch 1): what the next-epoch rule needs
    trust_root: TrustRoot | None
    revoked: frozenset[str]  # every logged revocation mark: what the revocation rule needs

    @property
    def size(self) -> int:
        return self.edge.size


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


def check_integrity(storage: Storage, log_key: NoteVerifier, *, entries: bool = True) -> Head:
    """The start-up self-check: recompute the tree from stored data and compare with the checkpoint.

    Steps: (1) the latest checkpoint verifies under ``log_key`` and names the stored size; (2) every
    level-0 tile equals the leaf hashes of the stored entries (``entries=True``; else only widths);
    (3) every higher tile equals the roots of the full tiles below it; (4) no tile or entry lies
    beyond the size; (5) the root from the top tiles equals the checkpoint's root; (6) with
    ``entries=True``, the ``revoked`` table holds exactly the revocation marks of the logged keysets,
    each at the first epoch that revoked it (:func:`distributor.storage.logged_revocations`). Raises
    :class:`IntegrityError` saying which check failed. Returns the verified head.
    """
    with storage.read() as tx:
        head = tx.head()
        if head is None:
            raise IntegrityError(f"{storage.description}: no log head (not a fleetkeys log, or never initialised)")
        signed = _verified_checkpoint(head.checkpoint, log_key).checkpoint
        size = head.size
        if signed.size != size:
            raise IntegrityError(f"stored tree size {size} but the latest signed checkpoint is for size {signed.size}")
        last_bundle = tx.max_entry_bundle()
        if last_bundle is not None and last_bundle * TILE_WIDTH >= size:
            raise IntegrityError(f"entry bundle {last_bundle} is stored beyond the signed tree size {size}")
        below = b""
        try:
            for level in range(levels_for_size(size)):
                below = check_level(level, size, _paged_tiles(tx, level), _expected_hashes(tx, level, below, entries))
            top = tx.max_tile_level()
            if top is not None and top >= levels_for_size(size):
                raise TreeError(f"tile level {top} should not exist at size {size}")
            root = Edge.load(size, tx.tile).root()
        except TreeError as exc:
            raise IntegrityError(f"stored tree does not match the latest signed checkpoint: {exc}") from exc
        if root != signed.root:
            raise IntegrityError(f"stored tree of size {size} has root {root.hex()} but the latest signed checkpoint "
                                 f"says {signed.root.hex()}")
        if entries:
            _check_revoked(tx)
    return head


def _check_revoked(tx: Tx) -> None:
    """Step 6 of :func:`check_integrity`: the ``revoked`` table against the stored keysets."""
    expected = logged_revocations(tx)
    found = tx.revoked()
    missing = sorted(set(expected) - set(found))
    if missing:
        row = expected[missing[0]]
        raise IntegrityError(f"the revoked table lacks {len(missing)} revocation mark(s) of the logged keysets, first "
                             f"{row.mark!r} (revoked by epoch {row.epoch} at index {row.index}): the rule that a "
                             "revocation is never undone cannot be enforced from it")
    extra = sorted(set(found) - set(expected))
    if extra:
        row = found[extra[0]]
        raise IntegrityError(f"the revoked table holds {len(extra)} revocation mark(s) that no logged keyset revokes, "
                             f"first {row.mark!r} (recorded for epoch {row.epoch} at index {row.index})")
    for mark in sorted(expected):
        if found[mark] != expected[mark]:
            raise IntegrityError(f"the revoked table records {mark!r} at epoch {found[mark].epoch} (index "
                                 f"{found[mark].index}), but the logged keysets first revoke it at epoch "
                                 f"{expected[mark].epoch} (index {expected[mark].index})")


def _expected_hashes(tx: Tx, level: int, below: bytes, entries: bool) -> Callable[[int, int], bytes] | None:
    """What tiles of ``level`` must hold: leaf hashes of stored entries (level 0), else ``below``."""
    if level > 0:
        return lambda start, width: below[start * HASH_SIZE:(start + width) * HASH_SIZE]
    if not entries:
        return None

    def leaves(start: int, width: int) -> bytes:
        data = tx.entry_bundle(start // TILE_WIDTH)
        try:
            found = split_entry_bundle(data or b"")
        except VerificationError as exc:
            raise TreeError(f"entry bundle {start // TILE_WIDTH} is damaged: {exc}") from exc
        if len(found) != width:
            raise TreeError(f"entry bundle {start // TILE_WIDTH} holds {len(found)} entries, the tree size implies "
                            f"{width}: the stored entries were changed")
        return b"".join(leaf_hash(e) for e in found)

    return leaves


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
    (:class:`LogConfigError` otherwise), and that the head's checkpoint verifies and matches the tree
    edge (:class:`IntegrityError`; the full check is :meth:`self_check`).

    ``static``: an object with ``submit(batch: Batch)`` (``distributor.export``), called after each
    commit. ``clock``: POSIX seconds (freshness cosignatures, expiry). Every checkpoint it serves
    is the stored served checkpoint (:attr:`served`). Thread-safe.
    """

    def __init__(self, storage: Storage, *, origin: str, log_signer: Any, freshness_signer: Any,
                 trust_root: TrustRoot | None = None, freshness_interval: float = 60,
                 clock: Callable[[], float] = time.time, static: Any = None,
                 witnesses: Sequence[NoteVerifier] | None = None) -> None:
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
            state = self._load_state(tx, head)
            assert head is not None
            tx.put_checkpoint(head.size, head.checkpoint)  # a database from before schema 4 keeps none
            self.served.ensure(tx, head)  # a database from before served checkpoints gets its first one
        self.served.schema_ready()
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

    def _load_state(self, tx: Tx, head: Head | None) -> _State:
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
        tail = b""
        if head.size % TILE_WIDTH:
            try:
                tail = entry_bundle_prefix(tx.entry_bundle(head.size // TILE_WIDTH) or b"", head.size % TILE_WIDTH)
            except VerificationError as exc:
                raise IntegrityError(f"the last entry bundle is damaged: {exc}") from exc
        return _State(edge, tail, head.checkpoint, tx.last_epoch(), self._root_in_force(tx), frozenset(tx.revoked()))

    def self_check(self, *, entries: bool = True) -> Head:
        """Run :func:`check_integrity` on this log's storage."""
        return check_integrity(self.storage, self.log_key, entries=entries)

    # -- writing ----------------------------------------------------------------------------------
    def _commit(self, plan: Callable[[Tx, _State], _Change]) -> list[Published]:
        with self._wlock:
            with self.storage.write() as tx:
                head = tx.head()
                state = self._state
                if state is None or head is None or head.size != state.size or head.checkpoint != state.checkpoint:
                    # Another process or replica appended: start from the database's head.
                    state = self._state = self._load_state(tx, head)
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
                    new_state = _State(edge, tail, checkpoint, change.last, change.trust_root,
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
                row = tx.epoch(epoch)
                if row is not None:
                    if tx.entry(row.index) == data:
                        change.results.append(Published(row.index, False, epoch=epoch))
                        continue
                    raise RuleViolation(f"epoch {epoch} is already logged at index {row.index} with a different "
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
        with self.storage.read() as tx:
            row = tx.epoch(epoch)
            if row is not None and tx.entry(row.index) == data:
                return Published(row.index, False, epoch=epoch)
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
            row = tx.trust_root(version)
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

    def add_cosignature(self, row: CosignatureRow) -> tuple[ServedRow, bool]:
        """Store a verified witness cosignature and re-choose the served checkpoint in the same write
        transaction. Returns the served row and whether its size moved (entries became visible).
        A cosignature for a size no longer kept (the served size passed it) is dropped."""
        with self.storage.write() as tx:
            head = tx.head()
            assert head is not None
            before = tx.served_checkpoint()
            if tx.checkpoint_at(row.size) is not None:
                tx.put_cosignature(row)
            served = self.served.issue(tx, head)
        moved = before is None or served.size != before.size
        if moved and self._static is not None:
            self._static.sync_soon()
        return served, moved

    def cosignature_sizes(self) -> dict[str, tuple[int, int]]:
        """``{witness vkey: (size, timestamp)}`` of each witness's newest stored cosignature."""
        with self.storage.read() as tx:
            rows = tx.cosignatures(0)
        out: dict[str, tuple[int, int]] = {}
        for r in rows:
            if r.witness not in out or (r.size, r.timestamp) > out[r.witness]:
                out[r.witness] = (r.size, r.timestamp)
        return out

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
    "Log",
    "ProvenEntry",
    "Published",
    "check_integrity",
    "epoch_json",
    "parse_checkpoint_root",
]
