"""The pure client core: verify one update against a trust root and the client's saved state.

:func:`verify_update` takes bytes and a clock value, does no I/O, and either returns a frozen
:class:`VerifiedUpdate` (carrying the new :class:`ClientState` to persist) or raises a
:class:`~verifier.errors.VerificationError` subclass. The caller's state object is immutable, so a
failure can never leave it half-updated.

Verification steps, in this order (mirrored in ``bundles/FORMAT.md`` §7):

1. Byte limits on bundle, proof, checkpoint and consistency proof (:class:`SizeLimitError`).
2. The trust root in force (the bootstrap root, or the newest rotation the state followed) has not
   expired (:class:`ExpiredError`).
3. Anchor signatures over the statement bytes: a threshold of distinct trusted anchor keys
   (:class:`ThresholdError`).
4. Countersignatures over ``"fleetkeys/countersignature/v1\\n" || SHA-256(statement) || anchor sigs``:
   a threshold of distinct countersigner keys (:class:`ThresholdError`).
5. Statement parse, strict (:class:`FormatError`); its namespace is the trusted one (:class:`MismatchError`).
6. ``SHA-256(keyset bytes)`` equals the statement digest (:class:`DigestError`).
7. Keyset parse, strict; its namespace and epoch equal the statement's (:class:`MismatchError`).
8. Rollback and chain: epoch below the saved epoch, or the saved epoch with another digest, is
   refused (:class:`RollbackError`); the next epoch must name the saved digest in ``previous``, and an
   epoch gap is refused (:class:`ChainError`; fetch the missing epochs in order).
9. Freshness of the keyset: ``issued_at - 300 <= now < expires_at`` (:class:`ExpiredError`).
10. Checkpoint: the log key's signature, the trusted origin (:class:`SignatureError`,
    :class:`MismatchError`); its time (:func:`verifier.cosignature.checkpoint_time`): with a witness
    threshold K > 0, K distinct witness cosignatures within ``max_age`` (:class:`ThresholdError`,
    :class:`ExpiredError`) and the K-th newest of their times; with K = 0, the log's freshness
    cosignature within ``max_age``; that time not older than the last one seen (:class:`RollbackError`).
11. Inclusion: the proof's checkpoint is the same tree head, and the bundle's leaf hash is at the
    proof's index (:class:`ProofError`).
12. Consistency with the last checkpoint the client accepted: never smaller, the same size only with
    the same root, otherwise a valid RFC 9162 consistency proof (:class:`ConsistencyError`).
13. Newest entry (unless ``require_latest=False``): the bundle is the last entry of the checkpoint;
    only trust-root rotations the state already followed may come after it (:class:`FreezeError`:
    a newer epoch is being held back under a fresh checkpoint).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .bundle import MAX_BUNDLE_SIZE, parse_bundle, verify_parsed_bundle
from .checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, parse_checkpoint_body
from .cjson import dumps_canonical, expect_int, expect_object, loads_canonical
from .cosignature import checkpoint_time
from .errors import (
    ConsistencyError,
    ExpiredError,
    FormatError,
    FreezeError,
    ProofError,
    RollbackError,
    SizeLimitError,
    TrustRootError,
)
from .keyset import CLOCK_SKEW, Fleet, Keyset, check_next_epoch, parse_keyset
from .merkle import MAX_PROOF_HASHES, frontier_root, leaf_hash, verify_consistency, verify_inclusion
from .note import MAX_NOTE_SIZE, b64decode_strict, parse_note
from .tlogproof import MAX_PROOF_SIZE, TlogProof, parse_tlog_proof
from .trustroot import TrustRoot, load_trust_root, verify_rotation

STATE_FORMAT = "fleetkeys/client-state/v2"
#: The earlier state format, still read (and migrated: see :meth:`ClientState.from_bytes`).
STATE_FORMAT_V1 = "fleetkeys/client-state/v1"
MAX_STATE_SIZE = 4 * 1024 * 1024
#: How much older than the newest one already seen a checkpoint's freshness time may be (seconds):
#: each CDN edge caches ``/checkpoint`` for its max-age (5 s), so two reads may see times a few seconds
#: apart, the later read older. Such a checkpoint is accepted (it must still be within ``max_age``)
#: and never lowers the saved time; one older by more is a replayed checkpoint (:class:`RollbackError`).
FRESHNESS_SLACK = 60
#: Bound on trust-root rotations remembered in the state.
MAX_ROTATIONS = 1024
#: Bound on the revoked fleet ids and keys remembered (160 fleets a keyset: ~100 keysets' worth).
MAX_REVOKED = 16384


def revocation_marks(keyset: Keyset) -> frozenset[str]:
    """What ``keyset`` revokes: ``id:<fleet_id>`` and ``key:<algorithm>:<base64 key>`` of every revoked fleet."""
    return frozenset(m for f in keyset.fleets if f.status == "revoked" for m in _marks(f))


def _marks(fleet: Fleet) -> tuple[str, str]:
    return f"id:{fleet.fleet_id}", f"key:{fleet.algorithm}:{base64.b64encode(fleet.public_key).decode()}"


def check_revocations(revoked: frozenset[str], keyset: Keyset) -> frozenset[str]:
    """The revocation rule: a fleet id or key once revoked is never ``active`` again; returns the new set.

    Raises :class:`RollbackError` naming the fleet when an active fleet reuses a revoked id or key,
    :class:`SizeLimitError` past :data:`MAX_REVOKED` marks.
    """
    for f in keyset.fleets:
        if f.status == "active":
            hit = [m for m in _marks(f) if m in revoked]
            if hit:
                raise RollbackError(f"keyset epoch {keyset.epoch}: fleet {f.fleet_id!r} is active but its "
                                    f"{'id' if hit[0].startswith('id:') else 'key'} was revoked in an earlier epoch "
                                    "(a revocation is never undone)")
    out = revoked | revocation_marks(keyset)
    if len(out) > MAX_REVOKED:
        raise SizeLimitError(f"more than {MAX_REVOKED} revoked fleet ids and keys")
    return out


@dataclass(frozen=True)
class ClientState:
    """What a client remembers between updates. Immutable; every update returns a new one.

    ``keyset`` is the last accepted keyset's bytes (so the client can work offline until it expires)
    and ``bundle`` the exact log entry that carried it; ``checkpoint_size``/``checkpoint_root`` the
    largest tree head it accepted and ``frontier`` that tree's frontier (the roots of its perfect
    subtrees, lowest first: what appending entries needs, :func:`verifier.merkle.frontier_append`);
    ``freshness_time`` the newest freshness time it accepted (never later than the clock then);
    ``trust_root`` the envelope of a rotated trust root it followed (``None`` while the bootstrap root
    is in force) and ``rotation_indexes`` the log indexes of the rotations followed; ``revoked`` the
    revocation marks of every keyset accepted (:func:`check_revocations`).
    """

    keyset: bytes | None = None
    checkpoint_size: int = 0
    checkpoint_root: bytes | None = None
    freshness_time: int = 0
    trust_root: bytes | None = None
    rotation_indexes: tuple[int, ...] = ()
    """Log indexes of the trust-root rotations followed (entries allowed after the newest bundle)."""
    frontier: tuple[bytes, ...] = ()
    """Empty for a state migrated from v1 until its first refresh rebuilds it from checked tiles."""
    bundle: bytes | None = None
    revoked: frozenset[str] = frozenset()

    @functools.cached_property
    def saved_keyset(self) -> Keyset | None:
        """The parsed ``keyset`` (parsed once per state object: a client verifies many times per load)."""
        return parse_keyset(self.keyset) if self.keyset is not None else None

    @functools.cached_property
    def saved_trust_root(self) -> TrustRoot | None:
        """The parsed rotated root (parsed once per state object, like :attr:`saved_keyset`)."""
        return load_trust_root(self.trust_root) if self.trust_root is not None else None

    @property
    def epoch(self) -> int:
        return self.saved_keyset.epoch if self.saved_keyset else 0

    def to_bytes(self) -> bytes:
        """Canonical JSON; see :meth:`from_bytes`."""
        def b64(value: bytes | None) -> str:
            return base64.b64encode(value).decode() if value else ""

        return dumps_canonical({
            "bundle": b64(self.bundle),
            "checkpoint_root": b64(self.checkpoint_root),
            "checkpoint_size": self.checkpoint_size,
            "format": STATE_FORMAT,
            "freshness_time": self.freshness_time,
            "frontier": [b64(h) for h in self.frontier],
            "keyset": b64(self.keyset),
            "revoked": sorted(self.revoked),
            "rotation_indexes": list(self.rotation_indexes),
            "trust_root": b64(self.trust_root),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientState:
        """Parse saved state strictly. The keyset inside is re-parsed (it was verified when saved).

        A ``fleetkeys/client-state/v1`` state (no frontier, entry or revocation marks) is migrated: its
        frontier is rebuilt at the next refresh from hash tiles checked against the saved root, its
        revocation marks start from the saved keyset's revoked fleets, and the next save writes v2.
        """
        v1 = {"checkpoint_root", "checkpoint_size", "format", "freshness_time", "keyset", "rotation_indexes",
              "trust_root"}
        raw = loads_canonical(data, "client state", MAX_STATE_SIZE)
        version = raw.get("format") if isinstance(raw, dict) else None
        fields = v1 if version == STATE_FORMAT_V1 else v1 | {"bundle", "frontier", "revoked"}
        obj = expect_object(raw, fields, "client state")
        if obj["format"] not in (STATE_FORMAT, STATE_FORMAT_V1):
            raise FormatError(f"client state: format must be {STATE_FORMAT!r}")

        def blob(value: object, name: str) -> bytes | None:
            if not isinstance(value, str):
                raise FormatError(f"client state.{name}: expected base64")
            return b64decode_strict(value, f"client state.{name}") if value else None

        root = blob(obj["checkpoint_root"], "checkpoint_root")
        size = expect_int(obj["checkpoint_size"], "client state.checkpoint_size", 0, (1 << 63) - 1)
        if (root is None) != (size == 0) or (root is not None and len(root) != 32):
            raise FormatError("client state: checkpoint size and root disagree")
        keyset = blob(obj["keyset"], "keyset")
        rotations = obj["rotation_indexes"]
        if not isinstance(rotations, list) or len(rotations) > MAX_ROTATIONS:
            raise FormatError(f"client state.rotation_indexes: expected a list of at most {MAX_ROTATIONS} indexes")
        indexes = tuple(expect_int(i, "client state.rotation_indexes[]", 0, size) for i in rotations)
        frontier: tuple[bytes, ...] = ()
        bundle = None
        revoked: frozenset[str] = frozenset()
        if version == STATE_FORMAT:
            hashes = obj["frontier"]
            if not isinstance(hashes, list) or len(hashes) > 64:
                raise FormatError("client state.frontier: expected a list of at most 64 hashes")
            frontier = tuple(blob(h, "frontier[]") or b"" for h in hashes)
            if frontier and (len(frontier) != size.bit_count() or any(len(h) != 32 for h in frontier)
                             or frontier_root(frontier) != root):
                raise FormatError("client state.frontier: does not match the saved tree head")
            bundle = blob(obj["bundle"], "bundle")
            marks = obj["revoked"]
            if (not isinstance(marks, list) or len(marks) > MAX_REVOKED or not all(isinstance(m, str) for m in marks)
                    or marks != sorted(set(marks))):
                raise FormatError(f"client state.revoked: expected a sorted list of at most {MAX_REVOKED} marks")
            revoked = frozenset(marks)
        state = cls(keyset, size, root, expect_int(obj["freshness_time"], "client state.freshness_time", 0, 1 << 62),
                    blob(obj["trust_root"], "trust_root"), indexes, frontier, bundle, revoked)
        ks = state.saved_keyset  # parse (and cache) the keyset now: a corrupt one fails at load
        if version == STATE_FORMAT_V1 and ks is not None:
            state = replace(state, revoked=revocation_marks(ks))
        return state

    def trust_root_in_force(self, bootstrap: TrustRoot) -> TrustRoot:
        """The rotated root this state followed, else the bootstrap root."""
        root = self.saved_trust_root
        if root is None:
            return bootstrap
        if root.namespace != bootstrap.namespace:
            raise RollbackError(f"client state: saved trust root is for {root.namespace!r}, not the bootstrap "
                                f"root's {bootstrap.namespace!r}")
        return root if root.version > bootstrap.version else bootstrap  # a newer app ships a newer root


@dataclass(frozen=True)
class VerifiedUpdate:
    """The result of a successful :func:`verify_update`."""

    epoch: int
    keyset: Keyset
    fleets: tuple[Fleet, ...]
    """Fleets usable now: status ``active`` and ``not_before <= now < not_after``."""
    checkpoint: Checkpoint
    index: int
    state: ClientState
    changed: bool
    """True when the epoch is new to this client (False for a re-check of the same epoch)."""


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    freshness_time: int


def _check_size(data: bytes, limit: int, what: str) -> None:
    if not isinstance(data, bytes | bytearray):
        raise FormatError(f"{what}: expected bytes")
    if len(data) > limit:
        raise SizeLimitError(f"{what}: {len(data)} bytes exceeds the {limit}-byte limit")


def verify_checkpoint(checkpoint: bytes, *, trust_root: TrustRoot, state: ClientState, now: int,
                      consistency: Sequence[bytes]) -> VerifiedCheckpoint:
    """Steps 10 and 12: signature, origin, witnesses, freshness, consistency with ``state``."""
    vcp = verify_checkpoint_note(checkpoint, trust_root=trust_root, state=state, now=now)
    _check_consistency(vcp.checkpoint, state, consistency)
    return vcp


def _check_sizes(checkpoint: bytes, proof: bytes, consistency: Sequence[bytes]) -> None:
    """Step 1 for everything but the entry itself."""
    _check_size(checkpoint, MAX_NOTE_SIZE, "checkpoint")
    _check_size(proof, MAX_PROOF_SIZE, "inclusion proof")
    if len(consistency) > MAX_PROOF_HASHES:
        raise SizeLimitError(f"consistency proof: more than {MAX_PROOF_HASHES} hashes")


def verify_checkpoint_note(checkpoint: bytes, *, trust_root: TrustRoot, state: ClientState, now: int) -> VerifiedCheckpoint:
    """Step 10: log signature and origin, then the checkpoint's time and the rollback check on it.

    The time is :func:`verifier.cosignature.checkpoint_time`: with a witness threshold K > 0 the K-th
    newest witness timestamp within ``[now - max_age, now + CLOCK_SKEW]`` (the log's freshness
    cosignature is then not checked), else the log's freshness cosignature's. The result's
    ``freshness_time`` is what a state saves: that time capped at ``now``, never below the state's (a
    time up to :data:`FRESHNESS_SLACK` older is accepted, not saved; one older by more is a replay).
    """
    signed: SignedCheckpoint = open_checkpoint(checkpoint, trust_root.log.key, trust_root.log.origin)
    cp = signed.checkpoint
    vouched = checkpoint_time(signed.note, trust_root, now)
    if vouched < state.freshness_time - FRESHNESS_SLACK:
        what = "witnessed" if trust_root.witnesses.threshold else "freshness"
        raise RollbackError(f"checkpoint {what} time {vouched} is older than the {state.freshness_time} "
                            "already seen (replayed checkpoint)")
    # A time ahead of ``now`` (within the allowed skew) is accepted but never saved as is: the honest
    # log's next checkpoint, stamped by a correct clock, would otherwise look like a replay. A time a
    # little older than the saved one (a CDN edge's cached copy) is accepted and never saved either.
    return VerifiedCheckpoint(cp, max(state.freshness_time, min(vouched, now)))


def _time_source(root: TrustRoot) -> object:
    """What vouches for checkpoint times under ``root``: its witness group (K > 0) or its freshness key."""
    return root.witnesses if root.witnesses.threshold else root.log.freshness_key


def recheck_after_rotation(checkpoint: bytes, vcp: VerifiedCheckpoint, *, before: TrustRoot, after: TrustRoot,
                           now: int) -> VerifiedCheckpoint:
    """The checkpoint ``before`` verified (``vcp``), verified again under ``after`` when a rotation
    followed in the same update changed the log or witness configuration; returns what to save.

    Unchanged ``(log, witnesses)``: ``vcp`` as is. Otherwise the checkpoint must pass step 10 under
    ``after`` too (so a rotation that turns witnesses on needs K fresh witness cosignatures on the very
    checkpoint that carries it). When what vouches for the time changed (another freshness key, or
    witnesses turned on, off or changed), the time saved restarts at the time the new rule gives: the
    saved one was vouched for by keys ``after`` no longer trusts for time, and comparing a witnessed
    time with the operator's own freshness time would make an honest witness that renews later than
    the log look like a replay. The same checkpoint passed the rollback check under ``before``.
    """
    if (after.log, after.witnesses) == (before.log, before.witnesses):
        return vcp
    again = verify_checkpoint_note(checkpoint, trust_root=after, state=ClientState(), now=now)
    return vcp if _time_source(after) == _time_source(before) else again


def check_not_behind(cp: Checkpoint, state: ClientState) -> None:
    """The checkpoint is not smaller than the tree head ``state`` accepted, nor, at the same size, another
    root (:class:`ConsistencyError`). The part of step 12 that needs no proof."""
    if cp.size < state.checkpoint_size:
        raise ConsistencyError(f"checkpoint size {cp.size} is smaller than the size {state.checkpoint_size} "
                               "already seen: the log went backwards")
    if state.checkpoint_size and cp.size == state.checkpoint_size and cp.root != state.checkpoint_root:
        raise ConsistencyError(f"checkpoint of size {cp.size} has root {cp.root.hex()} but this client saw root "
                               f"{state.checkpoint_root.hex()} at that size: the log forked (split view)")


def _check_consistency(cp: Checkpoint, state: ClientState, consistency: Sequence[bytes]) -> None:
    """Step 12: the checkpoint extends the one ``state`` accepted (never smaller, never a fork)."""
    check_not_behind(cp, state)
    if state.checkpoint_size:
        verify_consistency(state.checkpoint_size, cp.size, consistency, state.checkpoint_root, cp.root)


def _verify_inclusion(entry: bytes, proof: bytes, checkpoint: Checkpoint) -> TlogProof:
    """Step 11: the tlog-proof is for ``checkpoint``'s tree and includes ``entry``."""
    parsed = parse_tlog_proof(proof)
    text, _ = parse_note(parsed.checkpoint)
    if parse_checkpoint_body(text) != checkpoint:
        raise ProofError("inclusion proof: it is relative to another tree head than the verified checkpoint")
    verify_inclusion(parsed.index, checkpoint.size, leaf_hash(entry), parsed.hashes, checkpoint.root)
    return parsed


def _check_newest(index: int, size: int, state: ClientState) -> None:
    """Step 13 (freeze): every entry after ``index`` must be a trust-root rotation already followed."""
    later = size - 1 - index
    if later > len(state.rotation_indexes) or any(i not in state.rotation_indexes for i in range(index + 1, size)):
        raise FreezeError(f"the bundle offered as current is entry {index} but the checkpoint holds {size} entries: "
                          "a newer entry is being held back (freeze attack)")


def _check_epoch(keyset: Keyset, state: ClientState, now: int) -> bool:
    """Steps 8 and 9; returns whether the epoch is new."""
    saved = state.saved_keyset
    if saved is not None:
        if keyset.epoch < saved.epoch:
            raise RollbackError(f"epoch {keyset.epoch} is older than epoch {saved.epoch} already accepted")
        if keyset.epoch == saved.epoch and keyset.digest != saved.digest:
            raise RollbackError(f"epoch {keyset.epoch} has keyset digest {keyset.digest.hex()} but this client "
                                f"accepted {saved.digest.hex()} for that epoch (equivocation)")
        if keyset.epoch > saved.epoch:
            check_next_epoch(saved, keyset)
    if now >= keyset.expires_at:
        raise ExpiredError(f"keyset epoch {keyset.epoch} expired at {keyset.expires_at} (now {now}): "
                           "stale data, possible freeze attack")
    if keyset.issued_at > now + CLOCK_SKEW:
        raise ExpiredError(f"keyset epoch {keyset.epoch} is issued in the future ({keyset.issued_at}, now {now})")
    return saved is None or keyset.epoch != saved.epoch


def verify_update(bundle: bytes, proof: bytes, checkpoint: bytes, *, trust_root: TrustRoot, state: ClientState,
                  now: int, consistency: Sequence[bytes] = (), require_latest: bool = True) -> VerifiedUpdate:
    """Verify a bundle, its inclusion proof and the latest checkpoint; return the new state.

    ``trust_root`` is the bootstrap root shipped with the app; ``state`` the last saved state
    (``ClientState()`` on first run); ``now`` POSIX seconds; ``consistency`` the RFC 9162 proof from
    the state's checkpoint size to the new checkpoint's size (empty when the state has none or the
    size is unchanged). With ``require_latest`` (the default) the bundle must be the newest entry
    of the checkpoint, only trust-root rotations already followed (``state.rotation_indexes``) may
    come after it (step 13, :class:`FreezeError`); pass ``False`` only for the older epochs of a
    catch-up, which are followed by a check of the newest one. Steps are numbered in the module
    docstring.
    """
    _check_size(bundle, MAX_BUNDLE_SIZE, "bundle")                                   # 1
    _check_sizes(checkpoint, proof, consistency)
    root = state.trust_root_in_force(trust_root)
    root.check_not_expired(now)                                                      # 2
    envelope = parse_bundle(bundle)
    if state.keyset is not None and envelope.keyset == state.keyset:
        # Re-check of the keyset already accepted (its signatures verified then, perhaps under an
        # earlier trust root): only its inclusion in a fresh, consistent checkpoint is new.
        keyset = state.saved_keyset
    else:
        keyset = verify_parsed_bundle(envelope, root, bytes(bundle)).keyset                                  # 3-7
    changed = _check_epoch(keyset, state, now)                                       # 8-9
    vcp = verify_checkpoint_note(checkpoint, trust_root=root, state=state, now=now)        # 10
    parsed = _verify_inclusion(bundle, proof, vcp.checkpoint)                        # 11
    _check_consistency(vcp.checkpoint, state, consistency)                           # 12
    if require_latest:
        _check_newest(parsed.index, vcp.checkpoint.size, state)                      # 13
    new_state = replace(state, keyset=keyset.raw, checkpoint_size=vcp.checkpoint.size,
                        checkpoint_root=vcp.checkpoint.root, freshness_time=vcp.freshness_time)
    new_state.__dict__["saved_keyset"] = keyset  # already parsed: seed the cached_property
    return VerifiedUpdate(keyset.epoch, keyset, keyset.active_fleets(now), vcp.checkpoint,
                          parsed.index, new_state, changed)


def verify_trust_root_update(envelope: bytes, proof: bytes, checkpoint: bytes, *, trust_root: TrustRoot,
                             state: ClientState, now: int, consistency: Sequence[bytes] = ()) -> ClientState:
    """Follow one trust-root rotation published in the log; return the new state.

    The envelope must be exactly the next version, signed by the threshold of the current root's
    anchors and countersigners and of its own (:func:`verifier.trustroot.verify_rotation`), and be
    included in a checkpoint that verifies and is consistent with the state (steps 10-12). When the
    new root changes the log or witness configuration, that checkpoint must verify under it too
    (:func:`recheck_after_rotation`, as a client following the log does).
    """
    _check_size(envelope, MAX_BUNDLE_SIZE, "trust root update")
    _check_sizes(checkpoint, proof, consistency)
    current = state.trust_root_in_force(trust_root)
    new_root = verify_rotation(current, envelope)
    vcp = verify_checkpoint(checkpoint, trust_root=current, state=state, now=now, consistency=consistency)
    parsed = _verify_inclusion(envelope, proof, vcp.checkpoint)
    new_root.check_not_expired(now)
    if new_root.version > trust_root.version:  # the root in force from now on (a newer bootstrap stays otherwise)
        vcp = recheck_after_rotation(checkpoint, vcp, before=current, after=new_root, now=now)
    if len(state.rotation_indexes) >= MAX_ROTATIONS:
        raise TrustRootError(f"more than {MAX_ROTATIONS} trust-root rotations")
    return replace(state, trust_root=bytes(envelope), checkpoint_size=vcp.checkpoint.size,
                   checkpoint_root=vcp.checkpoint.root, freshness_time=vcp.freshness_time,
                   rotation_indexes=(*state.rotation_indexes, parsed.index))


__all__ = [
    "ClientState",
    "VerifiedCheckpoint",
    "VerifiedUpdate",
    "check_not_behind",
    "recheck_after_rotation",
    "verify_checkpoint",
    "verify_checkpoint_note",
    "verify_trust_root_update",
    "verify_update",
]
