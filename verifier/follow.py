"""The pure core of a client that follows the log: verify a checkpoint, then every new entry in order.

No I/O: :class:`verifier.client.Client` fetches the bytes and persists the states returned here.
A refresh (``bundles/FORMAT.md`` §7.4) is, step by step:

1. :func:`open_checkpoint_for` — the checkpoint's log signature and origin, and its time
   (:func:`verifier.cosignature.checkpoint_time`: K fresh witness cosignatures when the witness
   threshold K > 0, else the log's freshness cosignature) no older than ``max_age``, not older than the
   time the state saved, and not smaller than (or, at the same size, different from) the tree head it saved.
2. :func:`extend_tree` — the new entries' leaf hashes appended to the saved frontier must give the
   checkpoint's root (or, for a batch that stops short of it, a root the checkpoint is proven
   consistent with, from hash tiles). That single comparison authenticates the entries and the
   consistency of the new tree with the old one; no unauthenticated number steers what is read.
3. :func:`apply_entry` for each entry, in log order — a bundle is verified under the trust root in
   force at its position and must be the next epoch (§3.1) and keep every revocation (§3.2); a
   trust-root rotation must be the next version signed by the old and the new keys; anything else is
   refused (:class:`~verifier.errors.FormatError`).
4. :func:`finish` — the trust root in force has not expired, the last keyset has not expired, there
   is one, and the checkpoint verifies again under the root in force if a rotation changed the log
   or witness keys (then the time saved is the one the new root's rule gives).

Every function returns a new :class:`~verifier.update.ClientState` and leaves the given one as it
was; any failure raises a :class:`~verifier.errors.VerificationError` subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .bundle import FORMAT as BUNDLE_FORMAT
from .bundle import MAX_BUNDLE_SIZE, parse_bundle, verify_parsed_bundle
from .checkpoint import Checkpoint
from .errors import (
    ConsistencyError,
    EmptyLogError,
    ExpiredError,
    FormatError,
    RollbackError,
    SizeLimitError,
    TrustRootError,
)
from .keyset import CLOCK_SKEW, Keyset, check_next_epoch
from .merkle import frontier_append, frontier_root, leaf_hash, verify_consistency
from .note import MAX_NOTE_SIZE
from .trustroot import FORMAT as TRUST_ROOT_FORMAT
from .trustroot import TrustRoot, verify_rotation
from .update import (
    MAX_ROTATIONS,
    ClientState,
    VerifiedCheckpoint,
    check_not_behind,
    check_revocations,
    recheck_after_rotation,
    verify_checkpoint_note,
)

BUNDLE_PREFIX = b'{"format":"' + BUNDLE_FORMAT.encode() + b'"'
TRUST_ROOT_PREFIX = b'{"format":"' + TRUST_ROOT_FORMAT.encode() + b'"'


def entry_kind(entry: bytes) -> str:
    """``"bundle"`` or ``"trust-root"`` from the entry's leading ``format`` member (canonical JSON puts it
    first); anything else is not a fleetkeys log entry (:class:`FormatError`)."""
    if entry.startswith(BUNDLE_PREFIX):
        return "bundle"
    if entry.startswith(TRUST_ROOT_PREFIX):
        return "trust-root"
    raise FormatError("log entry is neither a fleetkeys bundle nor a trust-root rotation")


def open_checkpoint_for(checkpoint: bytes, *, bootstrap: TrustRoot, state: ClientState, now: int) -> VerifiedCheckpoint:
    """Step 1 (module docstring). ``freshness_time`` of the result is never later than ``now``."""
    if len(checkpoint) > MAX_NOTE_SIZE:
        raise SizeLimitError(f"checkpoint: {len(checkpoint)} bytes exceeds the {MAX_NOTE_SIZE}-byte limit")
    vcp = verify_checkpoint_note(checkpoint, trust_root=state.trust_root_in_force(bootstrap), state=state, now=now)
    check_not_behind(vcp.checkpoint, state)
    return vcp


def extend_tree(state: ClientState, entries: Sequence[bytes], checkpoint: Checkpoint,
                consistency: Sequence[bytes] = ()) -> tuple[int, bytes, tuple[bytes, ...]]:
    """Step 2: the tree head after appending ``entries`` to the state's tree, proven against ``checkpoint``.

    The entries are the leaves at ``state.checkpoint_size ..``; precondition: ``state.frontier``
    matches the state's tree head (an empty state has an empty frontier). When the new size is the
    checkpoint's, its root must be the checkpoint's root; when it stops short (a batch of a long
    catch-up), ``consistency`` must prove the checkpoint's tree extends it. Returns
    ``(size, root, frontier)``; raises :class:`ConsistencyError` (a fork, or entries that are not the
    log's) or :class:`~verifier.errors.ProofError`.
    """
    start = state.checkpoint_size
    if start and not state.frontier:
        raise ConsistencyError("the saved state has no frontier for its tree head (rebuild it from tiles first)")
    size = start + len(entries)
    if size > checkpoint.size:
        raise ConsistencyError(f"{len(entries)} entries after {start} exceed the checkpoint's {checkpoint.size}")
    frontier = frontier_append(start, state.frontier, [leaf_hash(e) for e in entries])
    root = frontier_root(frontier)
    if size == checkpoint.size:
        if root != checkpoint.root:
            raise ConsistencyError(f"the {len(entries)} entries served after index {start - 1} and the tree this client "
                                   f"saw give root {root.hex()}, but the checkpoint of size {size} says "
                                   f"{checkpoint.root.hex()}: the entries are not the log's, or the log forked")
    else:
        verify_consistency(size, checkpoint.size, consistency, root, checkpoint.root)
    return size, root, frontier


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_entry` did: the new state, and the epoch or trust-root version it accepted."""

    state: ClientState
    kind: str
    epoch: int | None = None
    version: int | None = None


def apply_entry(state: ClientState, entry: bytes, index: int, *, bootstrap: TrustRoot, now: int) -> Applied:
    """Step 3 for the entry at log ``index`` (see the module docstring)."""
    if len(entry) > MAX_BUNDLE_SIZE:
        raise SizeLimitError(f"log entry {index}: {len(entry)} bytes exceeds the {MAX_BUNDLE_SIZE}-byte limit")
    kind = entry_kind(entry)
    root = state.trust_root_in_force(bootstrap)
    if kind == "trust-root":
        new_root = verify_rotation(root, entry)
        if len(state.rotation_indexes) >= MAX_ROTATIONS:
            raise TrustRootError(f"more than {MAX_ROTATIONS} trust-root rotations")
        if new_root.version <= bootstrap.version:
            # The app already ships this version (or a newer one): the bootstrap stays in force.
            return Applied(replace(state, rotation_indexes=(*state.rotation_indexes, index)), kind,
                           version=new_root.version)
        return Applied(replace(state, trust_root=bytes(entry), rotation_indexes=(*state.rotation_indexes, index)),
                       kind, version=new_root.version)
    keyset = verify_parsed_bundle(parse_bundle(entry), root, bytes(entry)).keyset
    saved = state.saved_keyset
    if saved is not None:
        if keyset.epoch <= saved.epoch:
            same = keyset.epoch == saved.epoch and keyset.digest == saved.digest
            raise RollbackError(f"log entry {index}: epoch {keyset.epoch} logged again after epoch {saved.epoch}"
                                + (" (the same keyset)" if same else f" with keyset {keyset.digest.hex()} "
                                   "(equivocation or rollback)"))
        check_next_epoch(saved, keyset)
    if keyset.issued_at > now + CLOCK_SKEW:
        raise ExpiredError(f"keyset epoch {keyset.epoch} is issued in the future ({keyset.issued_at}, now {now})")
    revoked = check_revocations(state.revoked, keyset)
    new = replace(state, keyset=keyset.raw, bundle=bytes(entry), revoked=revoked)
    new.__dict__["saved_keyset"] = keyset  # already parsed: seed the cached_property
    return Applied(new, kind, epoch=keyset.epoch)


def with_tree_head(state: ClientState, size: int, root: bytes, frontier: tuple[bytes, ...]) -> ClientState:
    """The state with a new verified tree head (after :func:`extend_tree` and the entries' :func:`apply_entry`)."""
    new = replace(state, checkpoint_size=size, checkpoint_root=root, frontier=frontier)
    if state.saved_keyset is not None:
        new.__dict__["saved_keyset"] = state.saved_keyset
    return new


def finish(state: ClientState, vcp: VerifiedCheckpoint, checkpoint: bytes, *, bootstrap: TrustRoot, before: TrustRoot,
           now: int) -> tuple[ClientState, Keyset]:
    """Step 4: the checks on the outcome of a refresh; returns the state to save and the keyset in force.

    ``before`` is the trust root that verified ``checkpoint`` (step 1); ``vcp.freshness_time`` is
    already capped at ``now`` (:func:`verifier.update.verify_checkpoint_note`). When the rotations
    followed changed the log or witness keys, the checkpoint is verified again under the root now in
    force, and the time saved is the one its rule gives (:func:`verifier.update.recheck_after_rotation`).
    """
    root = state.trust_root_in_force(bootstrap)
    root.check_not_expired(now)
    vcp = recheck_after_rotation(checkpoint, vcp, before=before, after=root, now=now)
    keyset = state.saved_keyset
    if keyset is None:
        raise EmptyLogError(f"the log (size {state.checkpoint_size}) holds no bundle yet")
    if now >= keyset.expires_at:
        raise ExpiredError(f"keyset epoch {keyset.epoch} expired at {keyset.expires_at} (now {now}): the log's newest "
                           "epoch is stale, possible freeze attack")
    new = replace(state, freshness_time=vcp.freshness_time)
    new.__dict__["saved_keyset"] = keyset
    return new, keyset


__all__ = [
    "BUNDLE_PREFIX",
    "TRUST_ROOT_PREFIX",
    "Applied",
    "apply_entry",
    "entry_kind",
    "extend_tree",
    "finish",
    "open_checkpoint_for",
    "with_tree_head",
]
