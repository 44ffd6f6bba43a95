"""``verifier.audit.replay_log`` on logs built by the attack simulator: the honest log replays clean,
and every way a log can misbehave is reported with the class of the check that caught it, the
replay going on past each bad entry (only entries that the signed checkpoint does not authenticate
stop it, and nothing of them is reported)."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.attacks.helpers import ANCHOR_V2, NOW, OPERATOR_V2, v2
from tests.attacks.simulator import Simulator
from tests.audit.logfiles import MemoryFetcher, Report, tile_files
from tests.audit.logfiles import replay as replay_files
from tests.factory import T0, SeedSigner, World, fleet
from verifier.audit import Problem, fingerprint
from verifier.errors import FetchError
from verifier.tiles import entries_path, tile_path


def files_of(sim: Simulator, checkpoint: bytes | None = None) -> dict[str, bytes]:
    return {**tile_files(sim.entries), "checkpoint": sim.checkpoint() if checkpoint is None else checkpoint}


def replay(sim: Simulator, files: dict[str, bytes] | None = None, *, now: int = NOW,
           checkpoint: bytes | None = None, **kwargs) -> Report:
    files = dict(tile_files(sim.entries) if files is None else files)
    files["checkpoint"] = sim.checkpoint() if checkpoint is None else checkpoint
    return replay_files(MemoryFetcher(files), sim.world.trust_root(), now, **kwargs)


def only(report: Report) -> Problem:
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


def revoke_plan(sim: Simulator) -> None:
    """Epoch 1: fleet-a; epoch 2: + fleet-b; epoch 3: fleet-a revoked."""
    sim.add_epoch([fleet("fleet-a")])
    sim.add_epoch([fleet("fleet-a"), fleet("fleet-b", algorithm="p256")])
    sim.add_epoch([fleet("fleet-a", "revoked"), fleet("fleet-b", algorithm="p256")])


# -- the honest log -------------------------------------------------------------------------------------------


def test_honest_log_with_a_rotation_replays_clean(sim: Simulator) -> None:
    revoke_plan(sim)
    sim.publish_trust_root(v2(sim.world))
    sim.add_epoch([fleet("fleet-b", algorithm="p256"), fleet("fleet-c", algorithm="ed25519")],
                  anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    report = replay(sim)
    s = report.summary
    assert report.ok and s.root_verified and report.problems == []
    assert (s.origin, s.size, s.freshness_time, s.trust_root_version, s.epochs, s.last_epoch) == (
        sim.world.origin, 5, T0, 2, 4, 4)
    assert [(e.index, e.kind, e.epoch, e.version, e.trust_root_version) for e in report.entries] == [
        (0, "bundle", 1, None, 1), (1, "bundle", 2, None, 1), (2, "bundle", 3, None, 1),
        (3, "trust-root", None, 2, 1), (4, "bundle", 4, None, 2)]
    assert [e.epoch for e in report.epochs] == [1, 2, 3, 4]
    changes = [e.changes.describe() for e in report.epochs]
    assert changes == [("+fleet-a (active)",), ("+fleet-b (active)",), ("fleet-a: active -> revoked",),
                       ("+fleet-c (active)", "-fleet-a")]
    rotation = report.entries[3]
    assert rotation.verified and rotation.root_digest == hashlib.sha256(sim.world.trust_root_body(
        2, anchors=[ANCHOR_V2], countersigners=[OPERATOR_V2])).digest()
    assert "version: 1 -> 2" in rotation.root_changes and sum(c.startswith("anchors: ") for c in rotation.root_changes) == 2
    epoch3 = report.entries[2]
    assert [(f.fleet_id, f.status) for f in epoch3.fleets] == [("fleet-a", "revoked"), ("fleet-b", "active")]
    assert epoch3.keyset_digest == sim.keyset_digests[3]
    as_json = json.loads(json.dumps(epoch3.to_json()))
    assert as_json["fleets"][0]["fingerprint"] == fingerprint(fleet("fleet-a").public_key)
    assert json.loads(json.dumps(s.to_json()))["ok"] is True


def test_empty_log_replays_clean(sim: Simulator) -> None:
    report = replay(sim)
    assert report.ok and report.summary.size == 0 and report.entries == []


def test_several_entry_bundles_and_a_level_one_tile(sim: Simulator) -> None:
    """300 entries: a full and a partial entry bundle, level-0 tiles 000 and 001.p/44, tile 1/000.p/1."""
    for _ in range(300):
        sim.add_epoch([fleet("fleet-1")])
    files = tile_files(sim.entries)
    assert {entries_path(0), entries_path(1, 44), tile_path(0, 0), tile_path(0, 1, 44), tile_path(1, 0, 1)} == set(files)
    report = replay(sim, files)
    assert report.ok and len(report.epochs) == 300 and report.epochs[-1].epoch == 300
    files[tile_path(1, 0, 1)] = bytes(32)
    problem = only(replay(sim, files))
    assert (problem.index, problem.error, problem.fatal) == (None, "ProofError", False)
    assert "hash tile tile/1/000.p/1 does not match" in problem.message


# -- the tree itself ------------------------------------------------------------------------------------------


def test_flipped_byte_in_an_entry_bundle_is_a_fatal_root_mismatch(sim: Simulator) -> None:
    revoke_plan(sim)
    files = tile_files(sim.entries)
    path = entries_path(0, 3)
    data = bytearray(files[path])
    data[len(data) // 2] ^= 0x01
    files[path] = bytes(data)
    report = replay(sim, files)
    problem = only(report)
    assert (problem.error, problem.fatal, report.summary.root_verified, report.ok) == ("ProofError", True, False, False)
    assert "hash to root" in problem.message and "the signed checkpoint says" in problem.message
    assert report.entries == [], "nothing read from tiles that do not match the checkpoint is reported as history"


def test_missing_entry_bundle_is_a_fetch_error_and_an_oversized_one_fatal(sim: Simulator) -> None:
    revoke_plan(sim)
    files = tile_files(sim.entries)
    missing = dict(files)
    del missing[entries_path(0, 3)]
    with pytest.raises(FetchError, match="tile/entries/000.p/3"):
        replay(sim, missing)  # cannot read is not a verdict on the log
    files[entries_path(0, 3)] = bytes(3 * 65537 + 1)
    problem = only(replay(sim, files))
    assert (problem.error, problem.fatal) == ("SizeLimitError", True)


def test_truncated_entry_bundle_is_a_fatal_format_error(sim: Simulator) -> None:
    revoke_plan(sim)
    files = tile_files(sim.entries)
    files[entries_path(0, 3)] = files[entries_path(0, 3)][:-1]
    problem = only(replay(sim, files))
    assert (problem.error, problem.fatal) == ("FormatError", True) and "tile/entries/000.p/3" in problem.message


def test_wrong_or_missing_hash_tile_is_reported_but_the_entries_are_still_audited(sim: Simulator) -> None:
    revoke_plan(sim)
    files = tile_files(sim.entries)
    files[tile_path(0, 0, 3)] = files[tile_path(0, 0, 3)][:32] + bytes(64)
    report = replay(sim, files)
    problem = only(report)
    assert (problem.index, problem.error, problem.fatal) == (None, "ProofError", False)
    assert "2 wrong hash(es), first at position 1" in problem.message
    assert report.summary.root_verified and len(report.epochs) == 3
    del files[tile_path(0, 0, 3)]
    assert only(replay(sim, files)).error == "FetchError"


# -- the checkpoint --------------------------------------------------------------------------------------------


def test_checkpoint_of_another_log_key_is_fatal(sim: Simulator) -> None:
    revoke_plan(sim)
    other = Simulator(World(log=SeedSigner("another log")))
    other.entries = list(sim.entries)
    report = replay(sim, checkpoint=other.checkpoint())
    problem = only(report)
    assert (problem.index, problem.error, problem.fatal) == (None, "SignatureError", True)
    assert report.entries == [] and not report.summary.root_verified


def test_stale_freshness_cosignature_is_reported_and_the_log_still_audited(sim: Simulator) -> None:
    revoke_plan(sim)
    report = replay(sim, now=T0 + 7200)
    problem = only(report)
    assert (problem.error, problem.fatal) == ("ExpiredError", False) and "freeze" in problem.message
    assert report.summary.root_verified and len(report.epochs) == 3


def test_expired_trust_root_is_reported(sim: Simulator) -> None:
    revoke_plan(sim)
    after = sim.world.trust_root().expires_at
    problem = only(replay(sim, now=after, checkpoint=sim.checkpoint(timestamp=after)))
    assert problem.error == "ExpiredError" and "trust root version 1 expired" in problem.message


# -- entries that must not be in a log --------------------------------------------------------------------------


def test_logged_bundle_with_a_bad_signature_is_listed_and_the_replay_continues(sim: Simulator) -> None:
    sim.add_epoch()
    sim.add_epoch()
    rogue = sim.world.bundle(sim.make_keyset(3, [fleet("attacker")]), 3, anchor=SeedSigner("rogue anchor"))
    sim.publish_bundle(rogue, 3)
    sim.publish_bundle(sim.world.bundle(sim.make_keyset(3), 3))  # then the honest epoch 3, chained to epoch 2
    report = replay(sim)
    problem = only(report)
    assert (problem.index, problem.error, problem.fatal) == (2, "ThresholdError", False)
    assert "anchor" in problem.message and problem.line.startswith("entry 2: ThresholdError: ")
    bad = report.entries[2]
    assert not bad.verified and bad.epoch == 3 and [f.fleet_id for f in bad.fleets] == ["attacker"], \
        "what the rogue entry claims is shown (marked unverified)"
    assert [(e.index, e.epoch) for e in report.epochs] == [(0, 1), (1, 2), (3, 3)]


def test_epoch_gap_is_a_chain_error(sim: Simulator) -> None:
    sim.add_epoch()
    sim.add_epoch()
    keyset = sim.make_keyset(4, previous=sim.keyset_digests[2])
    sim.publish_bundle(sim.world.bundle(keyset, 4))
    problem = only(replay(sim))
    assert (problem.index, problem.error) == (2, "ChainError")
    assert "epoch 4 skips epochs 3..3" in problem.message


def test_broken_previous_chain_is_a_chain_error(sim: Simulator) -> None:
    sim.add_epoch()
    sim.add_epoch()
    keyset = sim.make_keyset(3, previous=hashlib.sha256(b"another history").digest())
    sim.publish_bundle(sim.world.bundle(keyset, 3))
    sim.add_epoch()  # epoch 4 chains to the (forked) epoch 3: one problem, not a cascade
    report = replay(sim)
    problem = only(report)
    assert (problem.index, problem.error) == (2, "ChainError") and "forked history" in problem.message
    assert [e.epoch for e in report.epochs] == [1, 2, 3, 4]


def test_first_epoch_must_be_one(sim: Simulator) -> None:
    keyset = sim.world.keyset(2, [fleet("fleet-1")], previous=hashlib.sha256(b"x").digest())
    sim.publish_bundle(sim.world.bundle(keyset, 2))
    problem = only(replay(sim))
    assert problem.error == "ChainError" and "epoch 2 is not the next epoch 1 (the first epoch is 1)" in problem.message


def test_two_keysets_for_one_epoch_is_equivocation(sim: Simulator) -> None:
    sim.add_epoch()
    sim.add_epoch([fleet("fleet-1")])
    other = sim.world.bundle(sim.make_keyset(2, [fleet("attacker")], previous=sim.keyset_digests[1]), 2)
    sim.publish_bundle(other, 2)
    problem = only(replay(sim))
    assert (problem.index, problem.error) == (2, "RollbackError") and "equivocation" in problem.message
    sim.publish_bundle(sim.entries[1], 2)
    assert "logged again (same keyset as entry 1)" in replay(sim).problems[1].message


def test_rotation_signed_only_by_the_new_keys_is_not_followed(sim: Simulator) -> None:
    sim.add_epoch()
    sim.publish_trust_root(v2(sim.world, old=False))
    sim.add_epoch(anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    report = replay(sim)
    assert [(p.index, p.error) for p in report.problems] == [(1, "ThresholdError"), (2, "ThresholdError")]
    assert "trust root rotation from v1" in report.problems[0].message
    assert not report.entries[1].verified and report.entries[1].version == 2 and report.summary.trust_root_version == 1
    assert not report.entries[2].verified, "epoch 2 signed by keys of a root that was never validly rotated to"


def test_rotation_replayed_is_a_rollback(sim: Simulator) -> None:
    sim.add_epoch()
    envelope = v2(sim.world)
    sim.publish_trust_root(envelope)
    sim.publish_trust_root(envelope)
    problem = only(replay(sim))
    assert (problem.index, problem.error) == (2, "RollbackError")


def test_garbage_entry_is_a_format_error(sim: Simulator) -> None:
    sim.add_epoch()
    sim.append(b"\x00not a bundle")
    sim.add_epoch()
    report = replay(sim)
    problem = only(report)
    assert (problem.index, problem.error) == (1, "FormatError")
    assert report.entries[1].kind == "unknown" and [e.epoch for e in report.epochs] == [1, 2]


def test_report_is_frozen(sim: Simulator) -> None:
    sim.add_epoch()
    report = replay(sim)
    with pytest.raises(AttributeError):
        report.summary.size = 7  # type: ignore[misc]
    with pytest.raises(AttributeError):
        report.entries[0].epoch = 7  # type: ignore[misc]


# -- the revocation rule and the root a keyset names, over the whole history ------------------------------------


def test_a_revoked_fleet_id_or_key_active_again_is_a_problem_at_its_index(sim: Simulator) -> None:
    from verifier.keyset import Fleet

    revoke_plan(sim)                                                      # epoch 3 (index 2) revokes fleet-a
    sim.add_epoch([fleet("fleet-b", algorithm="p256")])                   # index 3: fine (fleet-a gone)
    sim.add_epoch([fleet("fleet-a", algorithm="ed25519"), fleet("fleet-b", algorithm="p256")])  # index 4: id reused
    a = fleet("fleet-a")
    sim.add_epoch([fleet("fleet-b", algorithm="p256"), Fleet("fleet-z", a.algorithm, a.public_key, a.not_before,
                                                              a.not_after, "active")])  # index 5: key reused
    sim.add_epoch([fleet("fleet-b", algorithm="p256")])                   # index 6: chains on, fine
    report = replay(sim)
    assert [(p.index, p.error) for p in report.problems] == [(4, "RollbackError"), (5, "RollbackError")]
    assert "fleet 'fleet-a' is active but its id was revoked" in report.problems[0].message
    assert "fleet 'fleet-z' is active but its key was revoked" in report.problems[1].message
    assert report.problems[0].line.startswith("entry 4: RollbackError: keyset epoch 5: ")
    assert [e.epoch for e in report.epochs] == [1, 2, 3, 4, 5, 6, 7], \
        "the reusing keysets are listed (verified bundles), and the chain goes on from them"


def test_a_revocation_is_remembered_across_a_rotation_and_epochs_that_drop_the_fleet(sim: Simulator) -> None:
    revoke_plan(sim)
    sim.add_epoch([fleet("fleet-b", algorithm="p256")])
    sim.publish_trust_root(v2(sim.world))
    sim.add_epoch([fleet("fleet-b", algorithm="p256")], anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    sim.add_epoch([fleet("fleet-a"), fleet("fleet-b", algorithm="p256")], anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
    problem = only(replay(sim))
    assert (problem.index, problem.error) == (6, "RollbackError") and "fleet-a" in problem.message


def _named(sim: Simulator, root) -> None:
    """Publish the next epoch (fleet-1) with its keyset naming ``root``."""
    epoch = sim.epoch + 1
    keyset = sim.world.keyset(epoch, [fleet("fleet-1")], previous=sim.keyset_digests.get(epoch - 1), root=root)
    sim.publish_bundle(sim.world.bundle(keyset, epoch))


def test_a_bundle_naming_a_newer_root_than_the_one_in_force_is_a_problem_at_its_index(sim: Simulator) -> None:
    """A rotation hidden between two bundles: the log never logged v2, but a keyset names it."""
    from verifier.keyset import TrustRootRef

    body_v2 = sim.world.trust_root_body(2, anchors=[ANCHOR_V2], countersigners=[OPERATOR_V2])
    sim.add_epoch([fleet("fleet-1")])
    _named(sim, sim.world.root_ref(body_v2))                              # index 1: names v2, v1 in force
    _named(sim, TrustRootRef(1, hashlib.sha256(b"another v1 body").digest()))  # index 2: v1, another body
    report = replay(sim)
    assert [(p.index, p.error) for p in report.problems] == [(1, "TrustRootError"), (2, "MismatchError")]
    assert "names trust root v2, but it is being verified under v1" in report.problems[0].message
    assert not report.entries[1].verified and not report.entries[2].verified
    # Once the rotation to v2 is logged, a keyset naming v2 is in order, and one naming v1 still verifies.
    sim = Simulator(sim.world)
    sim.add_epoch([fleet("fleet-1")])
    sim.publish_trust_root(v2(sim.world))
    epoch = sim.epoch + 1
    keyset = sim.world.keyset(epoch, [fleet("fleet-1")], previous=sim.keyset_digests[1],
                              root=sim.world.root_ref(body_v2))
    sim.publish_bundle(sim.world.bundle(keyset, epoch, anchor=ANCHOR_V2, countersigner=OPERATOR_V2))
    assert replay(sim).ok
