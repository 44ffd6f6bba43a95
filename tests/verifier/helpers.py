"""Helpers shared by the verifier tests."""

from __future__ import annotations

from tests.factory import DAY, NAMESPACE, T0, World
from verifier.note import NoteVerifier
from verifier.signatures import KeyGroup
from verifier.trustroot import LogConfig, encode_trust_root_body


def make_root(world: World, *, version: int = 1, anchors=None, anchor_threshold: int = 1, countersigners=None,
              countersigner_threshold: int = 1, namespace: str = NAMESPACE, expires_at: int = T0 + 365 * DAY) -> bytes:
    """A trust-root body for ``world``'s log, with the given anchors and countersigners (no witnesses)."""
    anchors = anchors if anchors is not None else [world.anchor]
    countersigners = countersigners if countersigners is not None else [world.countersigner]
    return encode_trust_root_body(
        version=version, namespace=namespace,
        anchors=KeyGroup(tuple(NoteVerifier.from_public_key(f"anchor{i}", a.public_key) for i, a in enumerate(anchors)),
                         anchor_threshold),
        countersigners=KeyGroup(tuple(NoteVerifier.from_public_key(f"operator{i}", c.public_key)
                                      for i, c in enumerate(countersigners)), countersigner_threshold),
        log=LogConfig(world.origin, world.log_note.verifier, world.freshness_cosigner.verifier, 3600),
        witnesses=KeyGroup((), 0),
        expires_at=expires_at,
    )
