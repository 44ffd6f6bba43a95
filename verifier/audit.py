"""Audit replay: read the log from its C2SP tiles and check every entry ever published, streaming.

An auditor does not take the distributor's word for anything. :func:`replay_log` reads the log
through the client's own reader (a :class:`~verifier.fetch.Fetcher` — HTTP mirrors or a static
directory — and :class:`verifier.client.LogReader`), checks it against the auditor's trust root and
a clock value, and reports each entry (:class:`EntryRecord`) and each :class:`Problem` to callbacks
as it goes; it keeps nothing per entry, so its memory is bounded by the current keyset, the
revocation marks and a few hundred hashes, whatever the size of the log. Steps, in this order
(``bundles/FORMAT.md`` §15):

1. **Checkpoint.** ``GET checkpoint``; the log key of the trust root in force signs it and the origin
   is the trusted one. Failure is fatal: nothing else can be believed. Then, not fatal: the time that
   vouches for it (the log's freshness cosignature, or the witness threshold when the trust root
   asks for witnesses: ``verifier.cosignature.checkpoint_time``) is within ``max_age`` and not older
   than the one a saved state saw; with a saved state (:mod:`verifier.auditstate`), the tree is not
   smaller and, at the same size, has the same root (else fatal ``ConsistencyError``).
2. **Entries, in chunks** that end on entry-bundle boundaries (256 entries), from the saved size (0
   without a state) to the checkpoint's. Each chunk is **authenticated before anything in it is
   reported**: its leaf hashes ``SHA-256(0x00 || entry)`` extend the Merkle frontier, and the root must
   be the checkpoint's (last chunk) or be proven a prefix of it by a consistency proof computed from
   hash tiles (earlier chunks). A chunk that fails is a fatal ``ProofError``/``ConsistencyError``:
   nothing of it or after it is reported. An entry bundle that does not decode is a fatal
   ``FormatError``; one that cannot be read raises :class:`~verifier.errors.FetchError` (not a verdict
   on the log).
3. **Hash tiles.** Every hash tile ``tile/<L>/<N>[.p/<W>]`` must hold exactly the hashes the entries
   imply (full tiles as they complete, the partial ones at the end); clients build their proofs from
   them. A wrong or missing tile is a problem, not fatal.
4. **Signatures**, the independent part, on ``jobs`` worker processes: every bundle passes
   ``verifier.bundle.verify_bundle`` under the trust root in force at its position (both thresholds,
   statement, digest, keyset, and the root the keyset names, FORMAT.md §3.3). Trust-root rotations are
   checked by the reader as it reads (``verify_rotation`` against the root in force; the new root must
   keep this log's origin and log key), so the root each bundle needs is known before it is checked.
5. **Walk**, entry by entry in log order: a verified bundle's epoch must be exactly the last adopted
   epoch + 1 with ``previous`` naming it and ``issued_at`` not going back (``check_next_epoch``:
   ``ChainError``, the later epoch adopted so the walk goes on; ``RollbackError`` for an epoch logged
   again, equivocation when the keyset differs); and the revocation rule over the whole history
   (``check_revocations``: ``RollbackError`` at the index, the keyset still adopted; more than
   ``MAX_REVOKED`` marks is one ``SizeLimitError`` and no more marks are kept). A failing entry is
   reported with its error class and message and the walk continues; an entry that did not verify
   never becomes the base of the chain checks.
6. **End**: the partial hash tiles; the root in force at the end has not expired at ``now`` (and the
   checkpoint's time is checked again under it if a rotation changed the log or witness keys).

What changed between epochs (:class:`KeysetChanges`) is computed between consecutive *adopted* epochs.
Key fingerprints (:func:`fingerprint`) are ``sha256:`` and the first 16 bytes of SHA-256(public key)
in lower-case hex; the audit web page shows the same value.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from .auditstate import AuditState, FirstProblem
from .bundle import FORMAT as BUNDLE_FORMAT
from .bundle import parse_bundle, verify_bundle
from .checkpoint import SignedCheckpoint, open_checkpoint
from .client import LogReader
from .cosignature import checkpoint_time
from .errors import (
    ConsistencyError,
    FetchError,
    FormatError,
    ProofError,
    RollbackError,
    SizeLimitError,
    TrustRootError,
    VerificationError,
)
from .fetch import Fetcher
from .keyset import Fleet, Keyset, check_next_epoch, format_time, parse_keyset
from .merkle import HASH_SIZE, frontier_append, frontier_root, leaf_hash, root, verify_consistency
from .note import MAX_NOTE_SIZE
from .signatures import KeyGroup
from .statement import parse_statement
from .tiles import TILE_HEIGHT, TILE_WIDTH, TileRef, entries_path, tile_hashes, tile_width_at
from .trustroot import FORMAT as TRUST_ROOT_FORMAT
from .trustroot import TrustRoot, parse_envelope, parse_trust_root_body, verify_rotation
from .update import FRESHNESS_SLACK, MAX_REVOKED, check_revocations, revocation_marks

_BUNDLE_PREFIX = b'{"format":"' + BUNDLE_FORMAT.encode() + b'"'
_ROOT_PREFIX = b'{"format":"' + TRUST_ROOT_FORMAT.encode() + b'"'
#: Below this many new entries the signatures are checked in this process (a pool costs ~0.2 s to start).
PARALLEL_MIN = 2 * TILE_WIDTH


def default_jobs() -> int:
    """Worker processes for the signature checks: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def fingerprint(public_key: bytes) -> str:
    """``sha256:`` + the first 16 bytes of SHA-256(public key), lower-case hex."""
    return "sha256:" + hashlib.sha256(public_key).hexdigest()[:32]


@dataclass(frozen=True)
class StatusChange:
    fleet_id: str
    old: str
    new: str


@dataclass(frozen=True)
class KeysetChanges:
    """What changed from one keyset to another (consecutive adopted epochs, or any two for ``diff``)."""

    added: tuple[Fleet, ...] = ()
    removed: tuple[Fleet, ...] = ()
    status: tuple[StatusChange, ...] = ()
    rekeyed: tuple[str, ...] = ()
    """Fleet ids kept with another algorithm or public key."""

    def describe(self) -> tuple[str, ...]:
        """One short phrase per change, e.g. ``+eu-1 (active)``, ``eu-1: active -> revoked``."""
        return (*(f"+{f.fleet_id} ({f.status})" for f in self.added),
                *(f"{c.fleet_id}: {c.old} -> {c.new}" for c in self.status),
                *(f"{fid}: new key" for fid in self.rekeyed),
                *(f"-{f.fleet_id}" for f in self.removed))

    @property
    def revoked(self) -> tuple[str, ...]:
        """Fleet ids that became ``revoked`` (or were added revoked)."""
        return (*(f.fleet_id for f in self.added if f.status == "revoked"),
                *(c.fleet_id for c in self.status if c.new == "revoked"))

    def to_json(self) -> dict[str, Any]:
        return {"added": [f.fleet_id for f in self.added], "removed": [f.fleet_id for f in self.removed],
                "status": [{"fleet_id": c.fleet_id, "from": c.old, "to": c.new} for c in self.status],
                "rekeyed": list(self.rekeyed)}


def keyset_changes(before: Keyset | None, after: Keyset) -> KeysetChanges:
    """The changes from ``before`` (``None``: nothing before) to ``after``."""
    old = {f.fleet_id: f for f in before.fleets} if before is not None else {}
    new = {f.fleet_id: f for f in after.fleets}
    return KeysetChanges(
        added=tuple(f for fid, f in new.items() if fid not in old),
        removed=tuple(f for fid, f in old.items() if fid not in new),
        status=tuple(StatusChange(fid, old[fid].status, f.status) for fid, f in new.items()
                     if fid in old and old[fid].status != f.status),
        rekeyed=tuple(fid for fid, f in new.items()
                      if fid in old and (old[fid].public_key, old[fid].algorithm) != (f.public_key, f.algorithm)))


@dataclass(frozen=True)
class EntryRecord:
    """One log entry as the replay saw it.

    ``kind`` is ``"bundle"``, ``"trust-root"`` or ``"unknown"``. When ``verified`` is False the
    entry failed a check (see the problems); its epoch, fleets or version are then what it *claims*,
    parsed without any signature check, shown so an auditor can see what was logged. ``keyset`` is
    the adopted keyset of a verified bundle (``None`` otherwise).
    """

    index: int
    kind: str
    verified: bool
    leaf_hash: bytes
    trust_root_version: int
    """The trust root in force when this entry was checked."""
    epoch: int | None = None
    keyset_digest: bytes | None = None
    issued_at: int | None = None
    expires_at: int | None = None
    fleets: tuple[Fleet, ...] = ()
    changes: KeysetChanges | None = None
    version: int | None = None
    root_digest: bytes | None = None
    """SHA-256 of a logged trust-root body."""
    root_changes: tuple[str, ...] = ()
    keyset: Keyset | None = field(default=None, repr=False, compare=False)
    new_root: TrustRoot | None = field(default=None, repr=False, compare=False)
    """The trust root a verified rotation put in force."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "kind": self.kind, "verified": self.verified,
                               "leaf_hash": self.leaf_hash.hex(), "trust_root_version": self.trust_root_version}
        if self.kind == "bundle":
            out.update({
                "epoch": self.epoch,
                "keyset_digest": self.keyset_digest.hex() if self.keyset_digest else None,
                "issued_at": format_time(self.issued_at) if self.issued_at is not None else None,
                "expires_at": format_time(self.expires_at) if self.expires_at is not None else None,
                "fleets": [{**f.to_json(), "fingerprint": fingerprint(f.public_key)} for f in self.fleets],
                "changes": self.changes.to_json() if self.changes is not None else None,
            })
        elif self.kind == "trust-root":
            out.update({"version": self.version, "root_digest": self.root_digest.hex() if self.root_digest else None,
                        "changes": list(self.root_changes)})
        return out


@dataclass(frozen=True)
class Problem:
    """One finding: ``index`` is the entry (``None`` for the checkpoint, tree or tiles), ``error`` the
    error class name (``ThresholdError``, ``ChainError``, ...), ``fatal`` when it stopped the replay."""

    index: int | None
    error: str
    message: str
    fatal: bool = False

    @property
    def line(self) -> str:
        """The problem on one line."""
        where = "log" if self.index is None else f"entry {self.index}"
        text = " ".join(self.message.split())
        return f"{where}: {self.error}: {text}" + (" (fatal)" if self.fatal else "")

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error, "message": self.message, "fatal": self.fatal}


@dataclass(frozen=True)
class AuditSummary:
    """The outcome of one :func:`replay_log` run. ``ok`` only when the whole tree verified and no
    problem was ever found (this run or, with a saved state, an earlier one)."""

    origin: str
    size: int
    root: bytes
    root_verified: bool
    """Every entry up to the checkpoint's size was authenticated against it (False: fatal, or stopped)."""
    freshness_time: int | None
    trust_root_version: int
    start_size: int = 0
    """The audited size the run started from (a saved state's; 0 for a full replay)."""
    entries_checked: int = 0
    epochs: int = 0
    """Verified epochs in the whole log (the saved state's and this run's)."""
    last_epoch: int | None = None
    problems: int = 0
    """Problems found, including those of earlier runs."""
    earlier_problems: int = 0
    first_problem: Problem | None = None
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return self.root_verified and self.problems == 0

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": self.root.hex(), "root_verified": self.root_verified,
                "freshness_time": self.freshness_time, "trust_root_version": self.trust_root_version,
                "start_size": self.start_size, "entries_checked": self.entries_checked, "epochs": self.epochs,
                "last_epoch": self.last_epoch, "problems": self.problems, "earlier_problems": self.earlier_problems,
                "first_problem": self.first_problem.to_json() if self.first_problem else None, "ok": self.ok}


@dataclass(frozen=True)
class AuditResult:
    """:attr:`summary`, and :attr:`state` to save for the next incremental run (``None`` when the run
    did not end on an authenticated tree head: fatal problem, or stopped inside a chunk)."""

    summary: AuditSummary
    state: AuditState | None
    checkpoint: SignedCheckpoint | None = None
    trust_root: TrustRoot | None = None
    """The trust root in force where the walk ended."""


# -- step 4: the independent checks, run in worker processes --------------------------------------------


@dataclass(frozen=True)
class _Checked:
    index: int
    keyset: Keyset | None
    error: str = ""
    message: str = ""
    claimed: EntryRecord | None = None


def _claimed_bundle(index: int, entry: bytes, lh: bytes, version: int) -> EntryRecord:
    """What a bundle that failed verification claims (parsed without believing it)."""
    kind = "bundle" if entry.startswith(_BUNDLE_PREFIX) else "unknown"
    epoch = digest = keyset = None
    try:
        bundle = parse_bundle(entry)
        epoch = parse_statement(bundle.statement).epoch
        digest = hashlib.sha256(bundle.keyset).digest()
        keyset = parse_keyset(bundle.keyset)
    except VerificationError:
        pass
    return EntryRecord(index, kind, False, lh, version, epoch=epoch, keyset_digest=digest,
                       issued_at=keyset.issued_at if keyset else None, expires_at=keyset.expires_at if keyset else None,
                       fleets=keyset.fleets if keyset else ())


def check_bundles(roots: Sequence[tuple[bytes, bytes]], items: Sequence[tuple[int, bytes, int]]) -> list[_Checked]:
    """Step 4 for ``items`` = ``(index, entry, root slot)``, ``roots[slot]`` = ``(body, envelope)`` of the
    trust root in force at that index. Pure; runs in a worker process (arguments and result pickle)."""
    parsed = [parse_trust_root_body(body, envelope) for body, envelope in roots]
    out = []
    for index, entry, slot in items:
        tr = parsed[slot]
        try:
            out.append(_Checked(index, verify_bundle(entry, tr).keyset))
        except VerificationError as exc:
            out.append(_Checked(index, None, type(exc).__name__, str(exc),
                                _claimed_bundle(index, entry, leaf_hash(entry), tr.version)))
    return out


class _Inline:
    """A finished future (the checks run here when a pool would cost more than it saves)."""

    def __init__(self, value: list[_Checked]) -> None:
        self._value = value

    def result(self) -> list[_Checked]:
        return self._value


# -- step 3: hash tiles, streaming ----------------------------------------------------------------------


class _TileCheck:
    """Per tile level, the hashes not yet in a full tile; a tile is compared as soon as it is complete."""

    def __init__(self, fetcher: Fetcher, pending: Sequence[Sequence[bytes]], report: Callable[[Problem], None]) -> None:
        self.fetcher = fetcher
        self.levels = [list(p) for p in pending] or [[]]
        self.report = report

    def add_leaves(self, leaves: Sequence[bytes], size_after: int) -> None:
        self._push(0, leaves, size_after)

    def _push(self, level: int, hashes: Sequence[bytes], count_after: int) -> None:
        while len(self.levels) <= level:
            self.levels.append([])
        pending = self.levels[level]
        count = count_after - len(hashes)
        up = []
        for h in hashes:
            pending.append(h)
            count += 1
            if len(pending) == TILE_WIDTH:
                self._compare(level, count // TILE_WIDTH - 1, pending)
                up.append(root(pending))
                pending = self.levels[level] = []
        if up:
            self._push(level + 1, up, count_after // TILE_WIDTH)

    def finish(self, size: int) -> None:
        for level, pending in enumerate(self.levels):
            if pending:
                self._compare(level, (size >> (TILE_HEIGHT * level)) // TILE_WIDTH, pending)

    def export(self, size: int) -> tuple[tuple[bytes, ...], ...]:
        n = 0
        while size >> (TILE_HEIGHT * n):
            n += 1
        levels = [*self.levels, *([] for _ in range(n))][:n]
        return tuple(tuple(level) for level in levels)

    def _compare(self, level: int, index: int, expected: Sequence[bytes]) -> None:
        ref = TileRef(level, index, len(expected))
        try:
            data = self.fetcher.fetch(ref.path, ref.width * HASH_SIZE)
            if data is None:
                raise FetchError(f"{ref.path}: not found")
            found = tile_hashes(data, ref.width)
        except (FetchError, VerificationError) as exc:
            self.report(Problem(None, type(exc).__name__, f"hash tile {ref.path}: {exc}"))
            return
        wrong = [i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b]
        if wrong:
            i = wrong[0]
            self.report(Problem(None, "ProofError", f"hash tile {ref.path} does not match the log entries: "
                                                    f"{len(wrong)} wrong hash(es), first at position {i} "
                                                    f"({found[i].hex()} instead of {expected[i].hex()})"))


# -- step 5: the walk -----------------------------------------------------------------------------------------


def _group_changes(name: str, old: KeyGroup, new: KeyGroup) -> list[str]:
    old_keys, new_keys = [k.vkey for k in old.keys], [k.vkey for k in new.keys]
    out = [f"{name}: +{k}" for k in new_keys if k not in old_keys]
    out += [f"{name}: -{k}" for k in old_keys if k not in new_keys]
    if old.threshold != new.threshold:
        out.append(f"{name} threshold: {old.threshold} -> {new.threshold}")
    return out


def trust_root_changes(old: TrustRoot, new: TrustRoot) -> tuple[str, ...]:
    """Readable differences between two trust roots (keys added/removed, thresholds, log, expiry)."""
    out = [f"version: {old.version} -> {new.version}"]
    out += _group_changes("anchors", old.anchors, new.anchors)
    out += _group_changes("countersigners", old.countersigners, new.countersigners)
    out += _group_changes("witnesses", old.witnesses, new.witnesses)
    for what, a, b in (("log origin", old.log.origin, new.log.origin), ("log key", old.log.key.vkey, new.log.key.vkey),
                       ("log freshness key", old.log.freshness_key.vkey, new.log.freshness_key.vkey),
                       ("log max_age", old.log.max_age, new.log.max_age),
                       ("expires_at", format_time(old.expires_at), format_time(new.expires_at))):
        if a != b:
            out.append(f"{what}: {a} -> {b}")
    return tuple(out)


def _claimed_root(index: int, entry: bytes, lh: bytes, version: int) -> EntryRecord:
    claimed = digest = None
    try:
        body, _ = parse_envelope(entry)
        digest = hashlib.sha256(body).digest()
        claimed = parse_trust_root_body(body).version
    except VerificationError:
        pass
    return EntryRecord(index, "trust-root", False, lh, version, version=claimed, root_digest=digest)


def _rotation(current: TrustRoot, index: int, entry: bytes, lh: bytes) -> tuple[EntryRecord, list[Problem], TrustRoot]:
    """Step 4 for a rotation entry: its record, its problems, and the root in force after it."""
    try:
        new = verify_rotation(current, entry)
    except VerificationError as exc:
        return _claimed_root(index, entry, lh, current.version), [_problem(index, exc)], current
    problems = []
    if (new.log.origin, new.log.key) != (current.log.origin, current.log.key):
        problems.append(_problem(index, TrustRootError(
            f"trust root v{new.version} names the log {new.log.origin!r} with key {new.log.key.vkey}, but this "
            f"log is {current.log.origin!r} signed by {current.log.key.vkey}: clients following it can no "
            "longer verify this log's checkpoints")))
    record = EntryRecord(index, "trust-root", True, lh, current.version, version=new.version,
                         root_digest=hashlib.sha256(new.body).digest(), root_changes=trust_root_changes(current, new),
                         new_root=new)
    return record, problems, new


def _problem(index: int | None, exc: BaseException, *, fatal: bool = False) -> Problem:
    return Problem(index, type(exc).__name__, str(exc), fatal)


class _Walk:
    """Step 5: the state carried from entry to entry (only adopted keysets move the chain)."""

    def __init__(self, state: AuditState, bootstrap: TrustRoot, on_entry: Callable[[EntryRecord], None] | None,
                 on_problem: Callable[[Problem], None] | None) -> None:
        self.trust_root = state.trust_root_in_force(bootstrap)
        self.rotated = state.trust_root
        self.last = state.last_keyset()
        self.last_index = state.keyset_index
        self.revoked = state.revoked
        self.revoked_full = False
        self.epochs = state.epochs
        self.problems = state.problems
        self.first = (Problem(state.first_problem.index, state.first_problem.error, state.first_problem.message)
                      if state.first_problem else None)
        self.on_entry = on_entry
        self.on_problem = on_problem
        self.done = False

    def report(self, problem: Problem) -> None:
        self.problems += 1
        if self.first is None:
            self.first = problem
        if self.on_problem is not None:
            self.on_problem(problem)

    def emit(self, record: EntryRecord) -> None:
        if self.on_entry is not None:
            self.on_entry(record)

    def rotation(self, record: EntryRecord, problems: Sequence[Problem], new: TrustRoot, entry: bytes) -> None:
        for p in problems:
            self.report(p)
        if record.verified:
            self.trust_root = new
            self.rotated = entry
        self.emit(record)

    def bundle(self, lh: bytes, checked: _Checked) -> None:
        index = checked.index
        keyset = checked.keyset
        if keyset is None:
            self.report(Problem(index, checked.error, checked.message))
            assert checked.claimed is not None
            self.emit(checked.claimed)
            return
        try:
            adopt = self._check_epoch(keyset)
        except VerificationError as exc:
            self.report(_problem(index, exc))
            adopt = not isinstance(exc, RollbackError)
        changes = keyset_changes(self.last, keyset) if adopt else None
        if adopt:
            self._check_revocations(index, keyset)
        self.emit(EntryRecord(index, "bundle", True, lh, self.trust_root.version, epoch=keyset.epoch,
                              keyset_digest=keyset.digest, issued_at=keyset.issued_at, expires_at=keyset.expires_at,
                              fleets=keyset.fleets, changes=changes, keyset=keyset))
        if adopt:
            self.last, self.last_index = keyset, index
            self.epochs += 1

    def _check_epoch(self, keyset: Keyset) -> bool:
        """Epoch exactly last + 1 and the ``previous`` chain; raises, else returns True (adopt)."""
        last = self.last
        last_epoch = last.epoch if last is not None else 0
        if keyset.epoch <= last_epoch:
            if last is not None and keyset.epoch == last.epoch and keyset.digest == last.digest:
                raise RollbackError(f"epoch {keyset.epoch} is logged again (same keyset as entry {self.last_index})")
            raise RollbackError(f"epoch {keyset.epoch} logged after epoch {last_epoch} with keyset "
                                f"{keyset.digest.hex()} (equivocation or rollback)")
        check_next_epoch(last, keyset)
        return True

    def _check_revocations(self, index: int, keyset: Keyset) -> None:
        """The revocation rule against every keyset adopted before; remembers this one's marks (bounded)."""
        try:
            self.revoked = check_revocations(self.revoked, keyset)
            return
        except RollbackError as exc:
            self.report(_problem(index, exc))
        except SizeLimitError:
            pass
        marks = self.revoked | revocation_marks(keyset)
        if len(marks) <= MAX_REVOKED:
            self.revoked = marks
        elif not self.revoked_full:
            self.revoked_full = True
            self.report(_problem(index, SizeLimitError(
                f"more than {MAX_REVOKED} revoked fleet ids and keys: every client refuses this keyset, and the "
                "audit remembers no further revocations")))


# -- the driver -----------------------------------------------------------------------------------------


def _read_chunk(reader: LogReader, start: int, end: int) -> list[bytes]:
    try:
        return reader.entries(start, end)
    except FormatError as exc:
        n = start // TILE_WIDTH
        raise type(exc)(f"{entries_path(n, tile_width_at(0, n, reader.size))}: {exc}") from exc


def replay_log(fetcher: Fetcher, *, trust_root: TrustRoot, now: int, state: AuditState | None = None, jobs: int = 1,
               on_entry: Callable[[EntryRecord], None] | None = None,
               on_problem: Callable[[Problem], None] | None = None,
               on_progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               until_epoch: int | None = None) -> AuditResult:
    """Replay the log (from ``state``'s tree head, else from entry 0); see the module docstring.

    ``trust_root`` is the auditor's root of trust: the bootstrap root the log started under (logged
    rotations are followed from it). ``now`` is POSIX seconds. ``jobs`` > 1 checks signatures on that
    many worker processes (when there are at least :data:`PARALLEL_MIN` new entries). ``on_progress``
    gets ``(entries walked, entries to walk)`` after each chunk; ``should_stop`` is asked between
    chunks (the run then ends on the last walked chunk, whose state is returned); ``until_epoch`` ends
    the walk once that epoch is adopted (no state is returned then).

    Raises :class:`~verifier.errors.FetchError` when the log cannot be read (and
    :class:`~verifier.errors.MismatchError` for a state of another log); every verification failure
    is a :class:`Problem` given to ``on_problem`` and counted in the summary.
    """
    st = state if state is not None else AuditState.fresh(trust_root)
    st.check_bootstrap(trust_root)
    walk = _Walk(st, trust_root, on_entry, on_problem)
    start_root = walk.trust_root
    origin = trust_root.log.origin

    def summary(size: int, root_hash: bytes, verified: bool, fresh: int | None, checked: int = 0,
                stopped: bool = False) -> AuditSummary:
        return AuditSummary(origin, size, root_hash, verified, fresh, walk.trust_root.version, st.size, checked,
                            walk.epochs, walk.last.epoch if walk.last else None, walk.problems, st.problems,
                            walk.first, stopped)

    try:
        note = fetcher.fetch("checkpoint", MAX_NOTE_SIZE)                                       # 1
        if note is None:
            raise FetchError("checkpoint: not found")
        signed = open_checkpoint(note, start_root.log.key, start_root.log.origin)
    except VerificationError as exc:
        walk.report(_problem(None, exc, fatal=True))
        return AuditResult(summary(0, b"", False, None), None)
    cp = signed.checkpoint
    fresh: int | None = None
    try:
        fresh = checkpoint_time(signed.note, start_root, now)
        if fresh < st.freshness_time - FRESHNESS_SLACK:
            raise RollbackError(f"checkpoint time {fresh} is older than the {st.freshness_time} the saved audit state "
                                "saw (replayed checkpoint)")
    except VerificationError as exc:
        walk.report(_problem(None, exc))

    def fatal(exc: VerificationError, size: int = st.size) -> AuditResult:
        walk.report(_problem(None, exc, fatal=True))
        return AuditResult(summary(cp.size, cp.root, False, fresh, size - st.size), None, signed, walk.trust_root)

    if cp.size < st.size:
        return fatal(ConsistencyError(f"the checkpoint's tree has {cp.size} entries, fewer than the {st.size} already "
                                      "audited: the log shrank or forked"))
    if cp.size == st.size and cp.root != st.root:
        return fatal(ConsistencyError(f"the checkpoint of size {cp.size} has root {cp.root.hex()}, but the audited "
                                      f"tree of that size has {st.root.hex()}: the log forked"))

    reader = LogReader(fetcher, cp.size)
    tiles = _TileCheck(fetcher, st.tiles, walk.report)
    frontier = st.frontier
    read_root = walk.trust_root
    pos = st.size
    total = cp.size - st.size
    pool: ProcessPoolExecutor | None = None
    if jobs > 1 and total >= PARALLEL_MIN:
        # fork: the workers need nothing but this module, and a spawned child would re-run the caller's
        # __main__ (``python -m fleetkeys``: the command itself). Elsewhere spawn is the only choice.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method))
    pending: deque[tuple[int, list[tuple], Future[list[_Checked]] | _Inline]] = deque()
    walked = st.size
    stopped = False

    def walk_chunk(end: int, items: list[tuple], future: Future[list[_Checked]] | _Inline) -> None:
        nonlocal walked
        results = iter(future.result())
        for item in items:
            if walk.done:
                break
            if item[0] == "r":
                _, _, _, record, problems, new, entry = item
                walk.rotation(record, problems, new, entry)
            else:
                walk.bundle(item[2], next(results))
                if until_epoch is not None and walk.last is not None and walk.last.epoch >= until_epoch:
                    walk.done = True
        walked = end
        if on_progress is not None:
            on_progress(end - st.size, total)

    try:
        while pos < cp.size and not walk.done:                                                   # 2
            if should_stop is not None and should_stop():
                stopped = True
                break
            end = min(cp.size, (pos // TILE_WIDTH + 1) * TILE_WIDTH)
            try:
                entries = _read_chunk(reader, pos, end)
                leaves = [leaf_hash(e) for e in entries]
                frontier = frontier_append(pos, frontier, leaves)
                got = frontier_root(frontier)
                if end == cp.size:
                    if got != cp.root:
                        raise ProofError(f"the {end} entries read from the entry bundles hash to root {got.hex()} but "
                                         f"the signed checkpoint says {cp.root.hex()}: the tiles served are not the "
                                         "log the checkpoint signs")
                else:
                    verify_consistency(end, cp.size, reader.consistency(end), got, cp.root)
            except (VerificationError, FetchError) as exc:
                while pending:  # authenticated already: report them before stopping
                    walk_chunk(*pending.popleft())
                if isinstance(exc, FetchError):
                    raise
                if isinstance(exc, ProofError) and end < cp.size:
                    exc = ProofError(f"entries 0..{end - 1} read from the entry bundles are not a prefix of the "
                                     f"signed checkpoint's tree (size {cp.size}): {exc}")
                return fatal(exc, walked)
            tiles.add_leaves(leaves, end)                                                        # 3
            items: list[tuple] = []
            roots: list[tuple[bytes, bytes]] = []
            jobs_items: list[tuple[int, bytes, int]] = []
            for i, (entry, lh) in enumerate(zip(entries, leaves, strict=True)):
                index = pos + i
                if entry.startswith(_ROOT_PREFIX):                                              # 4
                    record, problems, new = _rotation(read_root, index, entry, lh)
                    items.append(("r", index, lh, record, problems, new, entry))
                    read_root = new
                    continue
                if not roots or roots[-1][0] != read_root.body:
                    roots.append((read_root.body, read_root.envelope))
                jobs_items.append((index, entry, len(roots) - 1))
                items.append(("b", index, lh))
            if pool is not None and jobs_items:
                future: Future[list[_Checked]] | _Inline = pool.submit(check_bundles, roots, jobs_items)
            else:
                future = _Inline(check_bundles(roots, jobs_items) if jobs_items else [])
            pending.append((end, items, future))
            while pending and (len(pending) > 2 * jobs or pool is None):
                walk_chunk(*pending.popleft())                                                   # 5
            pos = end
        while pending:
            walk_chunk(*pending.popleft())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    complete = walked == cp.size and not walk.done
    if complete:                                                                                  # 6
        tiles.finish(cp.size)
        try:
            walk.trust_root.check_not_expired(now)
        except VerificationError as exc:
            walk.report(_problem(None, exc))
        if (walk.trust_root.log, walk.trust_root.witnesses) != (start_root.log, start_root.witnesses):
            try:
                open_checkpoint(note, walk.trust_root.log.key, walk.trust_root.log.origin)
                fresh = checkpoint_time(signed.note, walk.trust_root, now)
            except VerificationError as exc:
                walk.report(_problem(None, exc))
    new_state = None
    if complete or (stopped and walked % TILE_WIDTH == 0):
        tree_root = cp.root if complete else frontier_root(frontier)
        first = walk.first
        new_state = replace(
            st, size=walked, root=tree_root, frontier=frontier, tiles=tiles.export(walked), trust_root=walk.rotated,
            keyset=walk.last.raw if walk.last else None, keyset_index=walk.last_index, revoked=walk.revoked,
            freshness_time=max(st.freshness_time, min(fresh, now)) if fresh is not None else st.freshness_time,
            epochs=walk.epochs, problems=walk.problems,
            first_problem=FirstProblem(first.index, first.error, first.message) if first else None)
    return AuditResult(summary(cp.size, cp.root, complete, fresh, walked - st.size, stopped or walk.done),
                       new_state, signed, walk.trust_root)


__all__ = [
    "PARALLEL_MIN",
    "AuditResult",
    "AuditSummary",
    "EntryRecord",
    "KeysetChanges",
    "Problem",
    "StatusChange",
    "check_bundles",
    "default_jobs",
    "fingerprint",
    "keyset_changes",
    "replay_log",
    "trust_root_changes",
]
