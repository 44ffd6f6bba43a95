"""The log's rules, each test named after what it stops: forks, gaps, replays, unsigned or tampered
bundles, rotations not authorised by the root in force. Both storage backends."""

from __future__ import annotations

import hashlib

import pytest

from distributor.errors import (
    EntryTooLarge,
    InvalidEntry,
    LogConfigError,
    NotConfigured,
    NotFound,
    RuleViolation,
)
from distributor.log import Published
from tests.distributor.conftest import make_log
from tests.factory import SeedSigner, World, fleet
from verifier.bundle import parse_bundle
from verifier.checkpoint import open_checkpoint
from verifier.keyset import parse_keyset
from verifier.merkle import leaf_hash, verify_inclusion
from verifier.tlogproof import parse_tlog_proof
from verifier.trustroot import sign_trust_root

NEW_ANCHOR, NEW_OPERATOR = SeedSigner("anchor v2"), SeedSigner("operator v2")


def bundles(world: World, epochs, *, previous: bytes | None = None, anchor=None, countersigner=None,
            fleet_prefix: str = "fleet", root=True) -> list[bytes]:
    """Bundles of one fleet each, chained from ``previous``; their keysets name ``root`` (``World.keyset``:
    default the world's v1 root; :func:`v2_ref` after :func:`rotation`)."""
    out, prev = [], previous
    for epoch in epochs:
        ks = world.keyset(epoch, [fleet(f"{fleet_prefix}-{epoch}")], previous=prev, root=root)
        prev = hashlib.sha256(ks).digest()
        out.append(world.bundle(ks, epoch, anchor=anchor, countersigner=countersigner))
    return out


def digest_of(bundle: bytes) -> bytes:
    return hashlib.sha256(parse_bundle(bundle).keyset).digest()


def rotated_body(world: World, version: int = 2) -> bytes:
    """The body of the root :func:`rotation` logs: the new anchor and operator keys."""
    return world.trust_root_body(version=version, anchors=[NEW_ANCHOR], countersigners=[NEW_OPERATOR])


def v2_ref(world: World, version: int = 2):
    """The name keysets signed under the rotated root carry (FORMAT.md §3.3)."""
    return world.root_ref(rotated_body(world, version))


def rotation(world: World, version: int = 2, signers=None) -> bytes:
    body = rotated_body(world, version)
    if signers is None:
        signers = [("anchor", world.anchor), ("countersigner", world.countersigner),
                   ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)]
    return sign_trust_root(body, signers)


def check_proof(log, world, index: int, data: bytes) -> None:
    proven = log.prove_index(index)
    proof = parse_tlog_proof(proven.proof)
    cp = open_checkpoint(proof.checkpoint, world.log_note.verifier).checkpoint
    verify_inclusion(index, cp.size, leaf_hash(data), proof.hashes, cp.root)


def test_a_chain_of_bundles_is_logged_in_order(log, world):
    chain = world.chain(4)
    assert [log.publish(b) for b in chain[:2]] == [Published(0, True, epoch=1), Published(1, True, epoch=2)]
    assert log.publish_batch(chain[2:]) == [Published(2, True, epoch=3), Published(3, True, epoch=4)]
    row, proven = log.bundle()
    assert (row.epoch, row.index, proven.data) == (4, 3, chain[3])
    assert row.digest == digest_of(chain[3]) and row.fleet_ids == ("fleet-1", "fleet-2", "fleet-3", "fleet-4")
    for i, b in enumerate(chain):
        check_proof(log, world, i, b)
    rows, next_before = log.epochs(None, 3)
    assert [r.epoch for r in rows] == [4, 3, 2] and next_before == 2
    rows, next_before = log.epochs(2, 3)
    assert [r.epoch for r in rows] == [1] and next_before is None


def test_identical_republish_returns_the_existing_index(log, world):
    chain = world.chain(2)
    log.publish_batch(chain)
    assert log.publish(chain[0]) == Published(0, False, epoch=1)
    assert log.publish_batch(chain) == [Published(0, False, epoch=1), Published(1, False, epoch=2)]
    assert log.head().size == 2


def test_fork_another_bundle_for_a_logged_epoch_is_refused(log, world):
    log.publish(world.chain(1)[0])
    fork = bundles(world, [1], fleet_prefix="rogue")[0]
    with pytest.raises(RuleViolation, match="epoch 1 is already logged"):
        log.publish(fork)
    assert log.head().size == 1


def test_epoch_gap_is_refused(log, world):
    chain = world.chain(3)
    log.publish(chain[0])
    with pytest.raises(RuleViolation, match="next epoch of this log is 2"):
        log.publish(chain[2])


def test_first_bundle_must_be_epoch_one(log, world):
    with pytest.raises(RuleViolation, match="next epoch of this log is 1"):
        log.publish(world.chain(2)[1])


def test_broken_previous_chain_is_refused(log, world):
    log.publish(world.chain(1)[0])
    wrong_previous = bundles(world, [2], previous=b"\x11" * 32)[0]
    with pytest.raises(RuleViolation, match="previous"):
        log.publish(wrong_previous)


def test_bundle_by_an_untrusted_anchor_is_refused(log, world):
    rogue = bundles(world, [1], anchor=SeedSigner("rogue anchor"))[0]
    with pytest.raises(InvalidEntry, match="does not verify"):
        log.publish(rogue)
    with pytest.raises(InvalidEntry):
        log.publish(b'{"format":"fleetkeys/bundle/v1"}')
    with pytest.raises(InvalidEntry):
        log.publish(world.chain(1)[0].replace(b'"anchor"', b'"Anchor"'))
    assert log.head().size == 0


def test_a_batch_is_all_or_nothing(log, world):
    chain = world.chain(2)
    bad = bundles(world, [3], previous=b"\x22" * 32)[0]
    with pytest.raises(RuleViolation):
        log.publish_batch([*chain, bad])
    assert log.head().size == 0
    with pytest.raises(RuleViolation, match="twice"):
        log.publish_batch([chain[0], chain[0]])


def test_without_a_trust_root_nothing_is_accepted(storage, world):
    log = make_log(storage, world, trust_root=False)
    with pytest.raises(NotConfigured, match="--trust-root"):
        log.publish(world.chain(1)[0])


def test_entries_larger_than_a_tile_entry_are_refused(log):
    with pytest.raises(EntryTooLarge, match="65535"):
        log.append_entries([b"x" * 65536])
    with pytest.raises(EntryTooLarge):
        log.publish(b"{" + b" " * 70000 + b"}")
    assert log.append_entries([b"x" * 65535]) == 0


def test_rotation_puts_the_new_root_in_force(storage, world):
    log = make_log(storage, world)
    log.publish(world.chain(1)[0])
    env = rotation(world)
    assert log.rotate_trust_root(env) == Published(1, True, version=2)
    assert log.trust_root.version == 2 and log.info()["trust_root_version"] == 2
    check_proof(log, world, 1, env)
    # Bundles signed by the old anchor are refused now; bundles by the new keys continue the chain.
    digest1 = digest_of(world.chain(1)[0])
    with pytest.raises(InvalidEntry):
        log.publish(bundles(world, [2], previous=digest1)[0])
    new = bundles(world, [2, 3], previous=digest1, anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR, root=v2_ref(world))
    assert [p.index for p in log.publish_batch(new)] == [2, 3]
    # The old epoch-1 bundle re-published identically is still the existing entry.
    assert log.publish(world.chain(1)[0]) == Published(0, False, epoch=1)
    # Idempotent rotation; a logged root is served with a proof; the bootstrap root was never logged.
    assert log.rotate_trust_root(env) == Published(1, False, version=2)
    row, proven = log.logged_trust_root(2)
    assert (row.index, row.envelope, proven.data) == (1, env, env)
    with pytest.raises(NotFound):
        log.logged_trust_root(1)


def test_rotation_survives_a_restart(db, world):
    first = db.open()
    log = make_log(first, world)
    log.rotate_trust_root(rotation(world))
    first.close()
    again = db.open()
    log2 = make_log(again, world)
    assert log2.trust_root.version == 2
    b1 = bundles(world, [1], anchor=NEW_ANCHOR, countersigner=NEW_OPERATOR, root=v2_ref(world))[0]
    assert log2.publish(b1).index == 1
    again.close()


def test_rotation_not_signed_by_the_root_in_force_is_refused(log, world):
    only_new = rotation(world, signers=[("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    with pytest.raises(InvalidEntry, match="does not verify"):
        log.rotate_trust_root(only_new)
    with pytest.raises(RuleViolation, match="expected version 2"):
        log.rotate_trust_root(rotation(world, version=3))
    with pytest.raises(InvalidEntry):
        log.rotate_trust_root(b"not json")
    assert log.head().size == 0


def test_rotation_to_a_root_trusting_another_log_key_is_refused(log, world):
    other = World(log=SeedSigner("another log"))
    body = other.trust_root_body(version=2, anchors=[NEW_ANCHOR], countersigners=[NEW_OPERATOR])
    env = sign_trust_root(body, [("anchor", world.anchor), ("countersigner", world.countersigner),
                                 ("anchor", NEW_ANCHOR), ("countersigner", NEW_OPERATOR)])
    with pytest.raises(RuleViolation, match="log key"):
        log.rotate_trust_root(env)


def test_reopening_with_other_keys_or_origin_is_refused(db, world):
    storage = db.open()
    make_log(storage, world)
    with pytest.raises(LogConfigError, match="log key"):
        make_log(storage, World(log=SeedSigner("another log")), trust_root=False)
    with pytest.raises(LogConfigError, match="freshness key"):
        make_log(storage, World(freshness=SeedSigner("another freshness")), trust_root=False)
    with pytest.raises(LogConfigError, match="origin"):
        make_log(storage, World(origin="other.example/log"), trust_root=False)
    storage.close()


def test_trust_root_naming_another_log_is_refused_at_start(storage, world):
    from distributor.log import Log

    other = World(log=SeedSigner("another log"))
    with pytest.raises(LogConfigError, match="trusts the log key"):
        Log(storage, origin=world.origin, log_signer=world.log, freshness_signer=world.freshness,
            trust_root=other.trust_root())


def test_two_log_instances_on_one_database_follow_each_other(db, world):
    """Another process or replica appended: the writer reloads the head instead of forking it."""
    s1, s2 = db.open(), db.open()
    a, b = make_log(s1, world), make_log(s2, world)
    chain = world.chain(4)
    a.publish(chain[0])
    assert b.publish(chain[1]).index == 1
    assert a.publish(chain[2]).index == 2
    a.append_entries([b"raw"])
    assert b.publish(chain[3]).index == 4
    assert b.self_check().size == 5
    assert parse_keyset(parse_bundle(a.bundle()[1].data).keyset).epoch == 4
    s1.close()
    s2.close()


def test_already_expired_keyset_is_refused(log, world):
    """An expired epoch would be refused by every client and, as the newest, freeze them all."""
    from tests.factory import T0

    expired = world.bundle(world.keyset(1, [fleet("fleet-1")], expires_at=T0 + 10), 1)
    with pytest.raises(RuleViolation, match="already expired"):
        log.publish(expired)
    assert log.head().size == 0
