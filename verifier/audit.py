"""Audit replay: read the whole log from its C2SP tiles and check every entry ever published.

An auditor does not take the distributor's word for anything. :func:`replay_log` takes the signed
checkpoint, a ``fetch(path) -> bytes`` function for the C2SP tile paths (HTTP, a static directory,
anything: it is injected, so this module does no I/O), the auditor's trust root and a clock value,
and returns a frozen :class:`AuditReport`: one :class:`EntryRecord` per log entry and every
:class:`Problem` found. Steps, in this order:

1. **Checkpoint.** The log key of the trust root signs the checkpoint and the origin is the trusted
   one (``verifier.checkpoint.open_checkpoint``). Failure is fatal: nothing else can be believed.
   Then, not fatal: the log's freshness cosignature is present and ``now - max_age <= time <= now +
   300`` (``verifier.cosignature``), and the witness threshold when the trust root asks for witnesses.
2. **Entries.** Every entry bundle ``tile/entries/<N>[.p/<W>]`` of the checkpoint's tree (full and
   the right-edge partial one, ``verifier.tiles``) is fetched and decoded; a size above
   ``max_entries`` or a fetch above :func:`max_fetch_size` is refused before anything is read.
3. **Root.** The RFC 9162 root of the leaf hashes ``SHA-256(0x00 || entry)`` must equal the
   checkpoint's root (else ``ProofError``). A mismatch, or an entry bundle that cannot be fetched or
   decoded, is fatal: the report then lists no entries, because none of them is authenticated.
4. **Hash tiles.** Every hash tile ``tile/<L>/<N>[.p/<W>]`` (level 0 = the leaf hashes, level L+1 =
   the roots of the full tiles of level L) must hold exactly the hashes the entries imply; clients
   build their proofs from them. A wrong or missing tile is a problem, not fatal.
5. **Walk**, entry by entry, in log order, with the trust root in force at that position (the one
   given, then each logged rotation that verified):

   * a trust-root envelope (``fleetkeys/trust-root/v1``) must pass ``verifier.trustroot.verify_rotation``
     against the root in force (then it is in force for the entries after it) and keep this log's
     origin and log key;
   * any other entry must be a bundle that passes ``verifier.bundle.verify_bundle`` under the root
     in force, which includes the root its keyset names (``check_names_root``, FORMAT.md §3.3: a
     keyset naming a newer version than the root in force at its position is a ``TrustRootError``
     there, one naming that version with another body digest a ``MismatchError``); its epoch must be
     exactly the last verified epoch + 1 (``ChainError`` for a gap, with the later epoch adopted so
     the walk goes on; ``RollbackError`` for an epoch logged again, equivocation when the keyset
     differs) and its ``previous`` must name the last verified keyset
     (``verifier.keyset.check_next_epoch``);
   * the revocation rule over the whole history (FORMAT.md §3.2, ``verifier.update.check_revocations``):
     an adopted keyset with an active fleet whose fleet id or public key any earlier adopted keyset
     revoked is a ``RollbackError`` at its index (the keyset is still adopted, so the chain checks of
     the next epochs go on from it); more than ``MAX_REVOKED`` marks is a ``SizeLimitError``. The
     marks of every adopted keyset are remembered, whatever its problems.

   A failing entry is recorded with its error class and message and the walk continues; an entry
   that did not verify never becomes the base of the chain checks.
6. **Trust root expiry**: the root in force at the end must not have expired at ``now``.

What changed between epochs (:class:`KeysetChanges`) is computed between consecutive *verified*
epochs: fleets added, removed, status changes and key changes (same fleet id, another key).

Key fingerprints (:func:`fingerprint`) are ``sha256:`` and the first 16 bytes of
``SHA-256(public key bytes)`` in lower-case hex; the audit web page shows the same value.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .bundle import FORMAT as BUNDLE_FORMAT
from .bundle import parse_bundle, verify_bundle
from .checkpoint import open_checkpoint
from .cosignature import check_fresh, verify_cosignatures
from .errors import FetchError, FormatError, ProofError, RollbackError, SizeLimitError, TrustRootError, VerificationError
from .keyset import Fleet, Keyset, check_next_epoch, format_time, parse_keyset
from .merkle import HASH_SIZE, leaf_hash, root
from .signatures import KeyGroup
from .statement import parse_statement
from .tiles import (
    MAX_ENTRY_SIZE,
    TILE_WIDTH,
    decode_entry_bundle,
    entries_path,
    parse_tile_path,
    tile_hashes,
    tile_width_at,
    tiles_for_size,
)
from .trustroot import FORMAT as TRUST_ROOT_FORMAT
from .trustroot import TrustRoot, parse_envelope, parse_trust_root_body, verify_rotation
from .update import check_revocations, revocation_marks

#: Largest log this replay reads (entries); a bigger checkpoint is refused before any fetch.
MAX_ENTRIES = 1_000_000
_BUNDLE_PREFIX = b'{"format":"' + BUNDLE_FORMAT.encode() + b'"'
_ROOT_PREFIX = b'{"format":"' + TRUST_ROOT_FORMAT.encode() + b'"'

Fetch = Callable[[str], bytes]
"""``fetch(path) -> bytes`` for a C2SP tile path such as ``tile/entries/000.p/3``; raises
:class:`TileUnavailable` when the path cannot be read (other exceptions propagate)."""


class TileUnavailable(FetchError):
    """The injected fetch function could not read a tile path (missing file, HTTP error, timeout)."""


def max_fetch_size(path: str) -> int:
    """The most bytes a tile path may hold: ``W * 32`` for a hash tile, ``W * (2 + 65535)`` for an
    entry bundle of width ``W``. Raises :class:`FormatError` for a path that is not a canonical tile path."""
    ref = parse_tile_path(path)
    return ref.width * ((2 + MAX_ENTRY_SIZE) if ref.is_entries else HASH_SIZE)


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
    """What changed from the previous verified epoch to this one."""

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
    entry failed a check (see the report's problems); its epoch, fleets or version are then what it
    *claims*, parsed without any signature check, shown so an auditor can see what was logged.
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
class AuditReport:
    """The result of :func:`replay_log`. ``ok`` only when the root verified and nothing was found."""

    origin: str
    size: int
    root: bytes
    root_verified: bool
    freshness_time: int | None
    trust_root_version: int
    """The trust root in force after the last entry."""
    entries: tuple[EntryRecord, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return self.root_verified and not self.problems

    @property
    def epochs(self) -> tuple[EntryRecord, ...]:
        """The verified bundle entries, in log order."""
        return tuple(e for e in self.entries if e.kind == "bundle" and e.verified)

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": base64.b64encode(self.root).decode(),
                "root_verified": self.root_verified, "freshness_time": self.freshness_time,
                "trust_root_version": self.trust_root_version, "ok": self.ok,
                "entries": [e.to_json() for e in self.entries], "problems": [p.to_json() for p in self.problems]}


def _problem(index: int | None, exc: BaseException, *, fatal: bool = False) -> Problem:
    return Problem(index, type(exc).__name__, str(exc), fatal)


def _fetch(fetch: Fetch, path: str) -> bytes:
    data = fetch(path)
    if not isinstance(data, bytes | bytearray):
        raise TileUnavailable(f"{path}: the fetch function returned {type(data).__name__}, not bytes")
    limit = max_fetch_size(path)
    if len(data) > limit:
        raise SizeLimitError(f"{path}: {len(data)} bytes, more than the {limit} this tile can hold")
    return bytes(data)


def _entries(fetch: Fetch, size: int) -> Iterator[tuple[int, bytes]]:
    """Every entry of the tree of ``size`` leaves, read from the entry bundles (step 2)."""
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = tile_width_at(0, n, size)
        path = entries_path(n, width)
        data = _fetch(fetch, path)
        try:
            entries = decode_entry_bundle(data, width)
        except FormatError as exc:
            raise FormatError(f"{path}: {exc}") from exc
        for i, entry in enumerate(entries):
            yield n * TILE_WIDTH + i, entry


def _check_tiles(fetch: Fetch, size: int, leaves: list[bytes]) -> list[Problem]:
    """Step 4: every hash tile holds the hashes the entries imply."""
    problems: list[Problem] = []
    level_hashes, level = leaves, 0
    for ref in tiles_for_size(size):
        while ref.level != level:  # tiles_for_size lists level by level, bottom up
            level_hashes = [root(level_hashes[i:i + TILE_WIDTH])
                            for i in range(0, len(level_hashes) - TILE_WIDTH + 1, TILE_WIDTH)]
            level += 1
        try:
            found = tile_hashes(_fetch(fetch, ref.path), ref.width)
        except (TileUnavailable, VerificationError) as exc:
            problems.append(Problem(None, type(exc).__name__, f"hash tile {ref.path}: {exc}"))
            continue
        expected = level_hashes[ref.index * TILE_WIDTH:ref.index * TILE_WIDTH + ref.width]
        wrong = [i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b]
        if wrong:
            i = wrong[0]
            problems.append(Problem(None, "ProofError", f"hash tile {ref.path} does not match the log entries: "
                                                        f"{len(wrong)} wrong hash(es), first at position {i} "
                                                        f"({found[i].hex()} instead of {expected[i].hex()})"))
    return problems


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


def _claimed_root(index: int, entry: bytes, lh: bytes, version: int) -> EntryRecord:
    claimed = digest = None
    try:
        body, _ = parse_envelope(entry)
        digest = hashlib.sha256(body).digest()
        claimed = parse_trust_root_body(body).version
    except VerificationError:
        pass
    return EntryRecord(index, "trust-root", False, lh, version, version=claimed, root_digest=digest)


@dataclass
class _Walk:
    """Step 5: the state carried from entry to entry (only verified entries move it)."""

    trust_root: TrustRoot
    records: list[EntryRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    last: Keyset | None = None
    seen: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # epoch -> (index, keyset digest)
    revoked: frozenset[str] = frozenset()  # the revocation marks of every adopted keyset

    def entry(self, index: int, entry: bytes, lh: bytes) -> None:
        if entry.startswith(_ROOT_PREFIX):
            self._rotation(index, entry, lh)
        else:
            self._bundle(index, entry, lh)

    def _rotation(self, index: int, entry: bytes, lh: bytes) -> None:
        current = self.trust_root
        try:
            new = verify_rotation(current, entry)
        except VerificationError as exc:
            self.problems.append(_problem(index, exc))
            self.records.append(_claimed_root(index, entry, lh, current.version))
            return
        if (new.log.origin, new.log.key) != (current.log.origin, current.log.key):
            self.problems.append(_problem(index, TrustRootError(
                f"trust root v{new.version} names the log {new.log.origin!r} with key {new.log.key.vkey}, but this "
                f"log is {current.log.origin!r} signed by {current.log.key.vkey}: clients following it can no "
                "longer verify this log's checkpoints")))
        self.records.append(EntryRecord(index, "trust-root", True, lh, current.version, version=new.version,
                                        root_digest=hashlib.sha256(new.body).digest(),
                                        root_changes=trust_root_changes(current, new)))
        self.trust_root = new

    def _bundle(self, index: int, entry: bytes, lh: bytes) -> None:
        version = self.trust_root.version
        try:
            keyset = verify_bundle(entry, self.trust_root).keyset
        except VerificationError as exc:
            self.problems.append(_problem(index, exc))
            self.records.append(_claimed_bundle(index, entry, lh, version))
            return
        try:
            adopt = self._check_epoch(index, keyset)
        except VerificationError as exc:
            self.problems.append(_problem(index, exc))
            adopt = not isinstance(exc, RollbackError)
        changes = keyset_changes(self.last, keyset) if adopt else None
        self.records.append(EntryRecord(index, "bundle", True, lh, version, epoch=keyset.epoch,
                                        keyset_digest=keyset.digest, issued_at=keyset.issued_at,
                                        expires_at=keyset.expires_at, fleets=self._shared(keyset), changes=changes))
        if adopt:
            self._check_revocations(index, keyset)
            self.last = keyset
            self.seen.setdefault(keyset.epoch, (index, keyset.digest))

    def _check_revocations(self, index: int, keyset: Keyset) -> None:
        """The revocation rule against every keyset adopted before; remembers this one's marks."""
        try:
            self.revoked = check_revocations(self.revoked, keyset)
        except (RollbackError, SizeLimitError) as exc:
            self.problems.append(_problem(index, exc))
            self.revoked = self.revoked | revocation_marks(keyset)

    def _check_epoch(self, index: int, keyset: Keyset) -> bool:
        """Epoch exactly last + 1 and the ``previous`` chain; raises, else returns True (adopt)."""
        last_epoch = self.last.epoch if self.last is not None else 0
        if keyset.epoch <= last_epoch:
            first_index, digest = self.seen.get(keyset.epoch, (None, None))
            if digest == keyset.digest:
                raise RollbackError(f"epoch {keyset.epoch} is logged again (same keyset as entry {first_index})")
            where = f"entry {first_index} has keyset {digest.hex()}" if digest else f"the log is already at {last_epoch}"
            raise RollbackError(f"epoch {keyset.epoch} logged after epoch {last_epoch} with keyset "
                                f"{keyset.digest.hex()}; {where} (equivocation or rollback)")
        check_next_epoch(self.last, keyset)
        return True

    def _shared(self, keyset: Keyset) -> tuple[Fleet, ...]:
        """The keyset's fleets, reusing the previous epoch's equal objects (a long log repeats most fleets)."""
        if self.last is None:
            return keyset.fleets
        previous = {f.fleet_id: f for f in self.last.fleets}
        return tuple(previous[f.fleet_id] if previous.get(f.fleet_id) == f else f for f in keyset.fleets)


def replay_log(fetch: Fetch, *, trust_root: TrustRoot, checkpoint: bytes, now: int,
               max_entries: int = MAX_ENTRIES) -> AuditReport:
    """Replay the whole log behind ``checkpoint``; see the module docstring for the numbered steps.

    ``trust_root`` is the auditor's root of trust: the bootstrap root the log started under (logged
    rotations are followed from it). ``now`` is POSIX seconds. Exceptions from ``fetch`` other than
    :class:`TileUnavailable` propagate. Never raises :class:`VerificationError`: every failure is a
    :class:`Problem` in the report, and ``report.ok`` is True only for a clean log.
    """
    origin = trust_root.log.origin
    try:                                                                               # 1
        signed = open_checkpoint(checkpoint, trust_root.log.key, origin)
    except VerificationError as exc:
        return AuditReport(origin, 0, b"", False, None, trust_root.version,
                           problems=(_problem(None, exc, fatal=True),))
    cp = signed.checkpoint
    log_problems: list[Problem] = []
    freshness_time = None
    try:
        fresh = verify_cosignatures(signed.note, [trust_root.log.freshness_key], 1, what="log freshness")[0]
        freshness_time = fresh.timestamp
        check_fresh(fresh.timestamp, now, trust_root.log.max_age, what="checkpoint freshness cosignature")
    except VerificationError as exc:
        log_problems.append(_problem(None, exc))
    if trust_root.witnesses.threshold:
        try:
            verify_cosignatures(signed.note, trust_root.witnesses.keys, trust_root.witnesses.threshold)
        except VerificationError as exc:
            log_problems.append(_problem(None, exc))

    def fatal(exc: BaseException) -> AuditReport:
        return AuditReport(cp.origin, cp.size, cp.root, False, freshness_time, trust_root.version,
                           problems=(*log_problems, _problem(None, exc, fatal=True)))

    if cp.size > max_entries:
        return fatal(SizeLimitError(f"the checkpoint has {cp.size} entries, more than this replay reads "
                                    f"({max_entries})"))
    walk = _Walk(trust_root)
    leaves: list[bytes] = []
    try:                                                                               # 2
        for index, entry in _entries(fetch, cp.size):
            lh = leaf_hash(entry)
            leaves.append(lh)
            walk.entry(index, entry, lh)                                               # 5
    except (TileUnavailable, VerificationError) as exc:
        return fatal(exc)
    computed = root(leaves)                                                            # 3
    if computed != cp.root:
        return fatal(ProofError(f"the {cp.size} entries read from the entry bundles hash to root "
                                   f"{computed.hex()} but the signed checkpoint says {cp.root.hex()}: the tiles "
                                   "served are not the log the checkpoint signs"))
    log_problems += _check_tiles(fetch, cp.size, leaves)                               # 4
    try:                                                                               # 6
        walk.trust_root.check_not_expired(now)
    except VerificationError as exc:
        log_problems.append(_problem(None, exc))
    return AuditReport(cp.origin, cp.size, cp.root, True, freshness_time, walk.trust_root.version,
                       tuple(walk.records), (*log_problems, *walk.problems))


__all__ = [
    "MAX_ENTRIES",
    "AuditReport",
    "EntryRecord",
    "Fetch",
    "KeysetChanges",
    "Problem",
    "StatusChange",
    "TileUnavailable",
    "fingerprint",
    "keyset_changes",
    "max_fetch_size",
    "replay_log",
    "trust_root_changes",
]
