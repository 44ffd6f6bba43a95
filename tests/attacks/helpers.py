"""Assertions and helpers shared by the attack tests.

Every attack test checks three things: the exact error class, a fragment of its message that names
the failed check, and that nothing the client persists changed (:func:`refused`, :func:`disk`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.attacks.simulator import Simulator
from tests.factory import T0, SeedSigner, World, fleet
from verifier.bundle import parse_bundle
from verifier.checkpoint import parse_checkpoint_body
from verifier.client import Client
from verifier.note import parse_note
from verifier.tiles import encode_entry_bundle
from verifier.trustroot import TrustRoot, load_trust_root, sign_trust_root
from verifier.update import ClientState, VerifiedUpdate, verify_update

#: The clock of most tests: one minute after the simulator's default freshness cosignature time.
NOW = T0 + 60


@contextmanager
def refused(cls: type[BaseException], fragment: str) -> Iterator[pytest.ExceptionInfo]:
    """Expect exactly ``cls`` (not a subclass, not a base) with ``fragment`` in its message."""
    with pytest.raises(cls) as info:
        yield info
    assert type(info.value) is cls, f"expected exactly {cls.__name__}, got {type(info.value).__name__}: {info.value}"
    assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def disk(client: Client) -> bytes | None:
    """The client's persisted ``state.json`` bytes (``None`` before the first successful refresh)."""
    return client.state_path.read_bytes() if client.state_path.exists() else None


@contextmanager
def client_refuses(client: Client, cls: type[BaseException], fragment: str) -> Iterator[pytest.ExceptionInfo]:
    """:func:`refused` around a client call, and the state on disk and in memory is unchanged."""
    before, memory = disk(client), client.state
    with refused(cls, fragment) as info:
        yield info
    assert disk(client) == before, "a failed refresh changed state.json"
    assert client.state == memory, "a failed refresh changed the client's in-memory state"


@contextmanager
def core_refuses(state: ClientState, cls: type[BaseException], fragment: str) -> Iterator[pytest.ExceptionInfo]:
    """:func:`refused` around a pure-core call, and the (frozen) state passed in is unchanged."""
    before = state.to_bytes()
    with refused(cls, fragment) as info:
        yield info
    assert state.to_bytes() == before, "the pure core changed the state it was given"


def consistency_for(sim: Simulator, state: ClientState, checkpoint: bytes) -> list[bytes]:
    """What a client would fetch from ``sim``: the proof from the state's size to ``checkpoint``'s size
    (none when the sizes need none, or when ``sim``'s log is too short to prove it)."""
    size = parse_checkpoint_body(parse_note(checkpoint)[0]).size
    if not state.checkpoint_size or not state.checkpoint_size < size <= len(sim.entries):
        return []
    return sim.consistency(state.checkpoint_size, size)


def verify(sim: Simulator, epoch: int, state: ClientState, *, now: int = NOW, bundle: bytes | None = None,
           proof: bytes | None = None, checkpoint: bytes | None = None, consistency: Sequence[bytes] | None = None,
           trust_root: TrustRoot | None = None, require_latest: bool = False) -> VerifiedUpdate:
    """Run :func:`verify_update` on what ``sim`` serves for ``epoch``, any part replaced.

    ``require_latest`` is off by default: most attacks here target the steps before the freeze check,
    and their setups verify older epochs against the full log, as a catch-up does.
    """
    served_bundle, served_proof, served_checkpoint = sim.material(epoch)
    checkpoint = served_checkpoint if checkpoint is None else checkpoint
    return verify_update(served_bundle if bundle is None else bundle, served_proof if proof is None else proof,
                         checkpoint, trust_root=trust_root or sim.world.trust_root(), state=state, now=now,
                         consistency=consistency_for(sim, state, checkpoint) if consistency is None else consistency,
                         require_latest=require_latest)


# -- the static read path ---------------------------------------------------------------------------------

#: The clock of the long-log tests: epoch ``e`` is issued at ``T0 + e``, so the clock must be past them all.
LONG_NOW = T0 + 2000
#: Entries of the longest log built by :func:`long_log` (a catch-up of more than 1,000 entries).
LONG_LOG_SIZE = 1101


@functools.cache
def _long_log_bundles() -> tuple[tuple[bytes, bytes], ...]:
    """``(bundle, keyset digest)`` of epochs 1..LONG_LOG_SIZE, one fleet each (built once per session)."""
    sim = Simulator(World())
    one = [fleet("fleet-1")]
    for _ in range(LONG_LOG_SIZE):
        sim.add_epoch(one)
    return tuple((bundle, sim.keyset_digests[i + 1]) for i, bundle in enumerate(sim.entries))


def long_log(size: int = LONG_LOG_SIZE) -> Simulator:
    """A simulator over ``World()`` whose log is epochs 1..``size`` (entry ``i`` is epoch ``i + 1``), freshly
    cosigned for a client whose clock is :data:`LONG_NOW`; more epochs can be added as usual."""
    assert 0 < size <= LONG_LOG_SIZE
    sim = Simulator(World())
    for i, (bundle, digest) in enumerate(_long_log_bundles()[:size]):
        sim.entries.append(bundle)
        sim.bundle_index[i + 1] = i
        sim.keyset_digests[i + 1] = digest
    sim.freshness_time = LONG_NOW - 60
    return sim


def client_at(sim: Simulator, state_dir: Path, size: int, **kwargs) -> Client:
    """A client that verified ``sim``'s log when it held its first ``size`` entries (the log moved on since);
    ``sim.requests`` is cleared so a test sees only what the next refresh reads."""
    before = sim.view_size
    sim.view_size = size
    try:
        client = sim.client(state_dir, **kwargs)
        assert client.refresh().checkpoint_size == size
    finally:
        sim.view_size = before
    sim.requests.clear()
    return client


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """The C2SP entry-bundle bytes of ``entries`` (what ``tile/entries/<N>[.p/<W>]`` holds)."""
    return encode_entry_bundle(list(entries))


def replace_bundle(bundle: bytes, **changes) -> bytes:
    """Re-encode ``bundle`` with some envelope fields replaced (statement, keyset, signatures)."""
    return dataclasses.replace(parse_bundle(bundle), **changes).encode()


def state_at(sim: Simulator, epoch: int, *, now: int = NOW, trust_root: TrustRoot | None = None) -> ClientState:
    """The state of a client that verified epochs 1..``epoch`` in order from ``sim``."""
    state = ClientState()
    for e in range(1, epoch + 1):
        state = verify(sim, e, state, now=now, trust_root=trust_root).state
    return state


def assert_next_epoch_refused(sim: Simulator, state_dir: Path, forged: bytes, cls: type[Exception], fragment: str,
                              *, trust_root: bytes | None = None, client_fragment: str | None = None) -> None:
    """A client that verified every honest epoch so far is offered ``forged`` as the next epoch, which the
    malicious distributor has *logged* (so proofs, checkpoint and the tree root all verify). Checked in the
    pure core and through :class:`Client` (which reads it as the next log entry), each time with the state
    unchanged. ``client_fragment`` (default ``fragment``) is the client's reason when it differs: an entry
    that does not even start like a bundle is refused as a log entry of no known kind."""
    client = sim.client(state_dir, trust_root=trust_root)
    root = load_trust_root(trust_root) if trust_root else sim.world.trust_root()
    if sim.epoch:
        client.refresh()
    epoch = sim.epoch + 1
    state = state_at(sim, epoch - 1, trust_root=root)
    sim.publish_bundle(forged, epoch)
    with core_refuses(state, cls, fragment):
        verify(sim, epoch, state, trust_root=root)
    with client_refuses(client, cls, fragment if client_fragment is None else client_fragment):
        client.refresh()


# -- trust-root rotations -------------------------------------------------------------------------

ANCHOR_V2, OPERATOR_V2 = SeedSigner("anchor v2"), SeedSigner("operator v2")
ANCHOR_V3, OPERATOR_V3 = SeedSigner("anchor v3"), SeedSigner("operator v3")


def root_envelope(world: World, version: int, anchor: SeedSigner, operator: SeedSigner, signers) -> bytes:
    body = world.trust_root_body(version, anchors=[anchor], countersigners=[operator])
    return sign_trust_root(body, signers)


def v2(world: World, *, old: bool = True, new: bool = True) -> bytes:
    """Root v2 with new anchor and operator keys, signed by the old keys, the new keys, or both."""
    signers = ([("anchor", world.anchor), ("countersigner", world.countersigner)] if old else []) + (
        [("anchor", ANCHOR_V2), ("countersigner", OPERATOR_V2)] if new else [])
    return root_envelope(world, 2, ANCHOR_V2, OPERATOR_V2, signers)
