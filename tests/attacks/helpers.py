"""Assertions and helpers shared by the attack tests.

Every attack test checks three things: the exact error class, a fragment of its message that names
the failed check, and that nothing the client persists changed (:func:`refused`, :func:`disk`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.attacks.simulator import Simulator
from tests.factory import T0, SeedSigner, World
from verifier.bundle import parse_bundle
from verifier.checkpoint import parse_checkpoint_body
from verifier.client import Client
from verifier.note import parse_note
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


def with_fields(body: bytes, **fields) -> bytes:
    """A JSON API response ``body`` with some fields replaced (for :meth:`Simulator.tamper`)."""
    return json.dumps({**json.loads(body), **fields}).encode()


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
                              *, trust_root: bytes | None = None) -> None:
    """A client that verified every honest epoch so far is offered ``forged`` as the next epoch, which the
    malicious distributor has *logged* (so proofs and checkpoint verify). Checked in the pure core and
    through :class:`Client`, each time with the state unchanged."""
    client = sim.client(state_dir, trust_root=trust_root)
    root = load_trust_root(trust_root) if trust_root else sim.world.trust_root()
    if sim.epoch:
        client.refresh()
    epoch = sim.epoch + 1
    state = state_at(sim, epoch - 1, trust_root=root)
    sim.publish_bundle(forged, epoch)
    with core_refuses(state, cls, fragment):
        verify(sim, epoch, state, trust_root=root)
    with client_refuses(client, cls, fragment):
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
