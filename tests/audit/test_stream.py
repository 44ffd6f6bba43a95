"""The streaming audit: chunks authenticated before they are reported, incremental runs from a saved
state (and the attacks on them: a shrunk or forked log, a foreign state), worker processes that
change nothing in what is reported, stopping between chunks, and the state file's strict parser."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.attacks.helpers import NOW
from tests.attacks.simulator import Simulator
from tests.audit.logfiles import MemoryFetcher, Report, replay, tile_files
from tests.factory import SeedSigner, World, fleet
from verifier.auditstate import AuditState
from verifier.errors import FormatError, MismatchError, VerificationError
from verifier.tiles import entries_path


def files_of(sim: Simulator) -> dict[str, bytes]:
    return {**tile_files(sim.entries), "checkpoint": sim.checkpoint()}


def run(sim: Simulator, files: dict[str, bytes] | None = None, **kwargs) -> Report:
    return replay(MemoryFetcher(files_of(sim) if files is None else files), sim.world.trust_root(), NOW, **kwargs)


def grow(sim: Simulator, n: int) -> None:
    for _ in range(n):
        sim.add_epoch([fleet("fleet-1"), fleet(f"fleet-{sim.epoch % 5 + 2}")])


def flip(files: dict[str, bytes], path: str, at: int) -> None:
    data = bytearray(files[path])
    data[at] ^= 0x01
    files[path] = bytes(data)


# -- authentication before anything is reported ---------------------------------------------------------------


def test_a_tampered_later_chunk_stops_the_replay_after_the_authenticated_chunks(sim: Simulator) -> None:
    grow(sim, 300)
    files = files_of(sim)
    flip(files, entries_path(1, 44), 12)  # inside entry 256
    report = run(sim, files)
    assert [e.index for e in report.entries] == list(range(256)), "only chunk 0, which the checkpoint authenticates"
    [problem] = report.problems
    assert (problem.error, problem.fatal) == ("ProofError", True) and "hash to root" in problem.message
    assert not report.summary.root_verified and report.result.state is None


def test_a_tampered_first_chunk_reports_nothing(sim: Simulator) -> None:
    """Chunk 0 of a 300-entry log is proven a prefix by a consistency proof from hash tiles."""
    grow(sim, 300)
    files = files_of(sim)
    flip(files, entries_path(0), 12)
    report = run(sim, files)
    assert report.entries == []
    [problem] = report.problems
    assert (problem.error, problem.fatal) == ("ProofError", True) and "not a prefix" in problem.message


def test_an_entry_bundle_that_does_not_decode_is_fatal_and_named(sim: Simulator) -> None:
    grow(sim, 3)
    files = files_of(sim)
    files[entries_path(0, 3)] = files[entries_path(0, 3)][:-1]
    [problem] = run(sim, files).problems
    assert (problem.error, problem.fatal) == ("FormatError", True) and "tile/entries/000.p/3" in problem.message


# -- incremental runs -------------------------------------------------------------------------------------------


def test_an_incremental_run_checks_only_what_is_new_and_equals_a_full_run(sim: Simulator) -> None:
    grow(sim, 3)
    first = run(sim)
    assert first.ok and first.result.state is not None and first.result.state.size == 3
    saved = AuditState.from_bytes(first.result.state.to_bytes())
    grow(sim, 300)
    fetcher = MemoryFetcher(files_of(sim))
    later = replay(fetcher, sim.world.trust_root(), NOW, state=saved)
    assert later.ok, later.problems
    assert [e.index for e in later.entries] == list(range(3, 303)), "only the new entries"
    assert (later.summary.start_size, later.summary.entries_checked, later.summary.epochs) == (3, 300, 303)
    full = run(sim)
    assert later.result.state == full.result.state, "the same state as a replay from entry 0"
    again = replay(MemoryFetcher(files_of(sim)), sim.world.trust_root(), NOW, state=later.result.state)
    assert again.ok and again.entries == [] and again.summary.entries_checked == 0


def test_the_chain_and_revocations_carry_across_runs(sim: Simulator) -> None:
    sim.add_epoch([fleet("fleet-a"), fleet("fleet-b")])
    sim.add_epoch([fleet("fleet-a", "revoked"), fleet("fleet-b")])
    state = run(sim).result.state
    sim.add_epoch([fleet("fleet-a"), fleet("fleet-b")])  # re-activates a revoked fleet
    keyset = sim.make_keyset(5, [fleet("fleet-b")], previous=sim.keyset_digests[3])
    sim.publish_bundle(sim.world.bundle(keyset, 5))  # skips epoch 4
    report = run(sim, state=state)
    assert [(p.index, p.error) for p in report.problems] == [(2, "RollbackError"), (3, "ChainError")]


def test_a_log_that_shrank_or_forked_since_the_saved_state_is_fatal(sim: Simulator) -> None:
    grow(sim, 5)
    state = run(sim).result.state
    shorter = Simulator(sim.world)
    shorter.entries = sim.entries[:4]
    [problem] = run(shorter, state=state).problems
    assert (problem.error, problem.fatal) == ("ConsistencyError", True) and "fewer than the 5" in problem.message
    fork = Simulator(sim.world)
    grow(fork, 3)
    fork.add_epoch([fleet("attacker")])
    fork.add_epoch([fleet("attacker")])
    [problem] = run(fork, state=state).problems
    assert (problem.error, problem.fatal) == ("ConsistencyError", True) and "forked" in problem.message
    grow(fork, 3)  # a longer fork: the new entries do not extend the audited tree
    [problem] = run(fork, state=state).problems
    assert (problem.error, problem.fatal) == ("ProofError", True)
    assert run(sim, state=state).ok, "the honest log still audits clean from the state"


def test_problems_of_earlier_runs_are_never_forgotten(sim: Simulator) -> None:
    sim.add_epoch()
    sim.publish_bundle(sim.world.bundle(sim.make_keyset(2, [fleet("x")]), 2, anchor=SeedSigner("rogue")), 2)
    bad = run(sim)
    assert bad.summary.problems == 1 and bad.result.state.problems == 1
    sim.publish_bundle(sim.world.bundle(sim.make_keyset(2), 2))
    later = run(sim, state=bad.result.state)
    assert later.problems == [] and not later.ok
    assert (later.summary.problems, later.summary.earlier_problems, later.summary.first_problem.index) == (1, 1, 1)


def test_a_state_of_another_log_is_refused(sim: Simulator) -> None:
    grow(sim, 2)
    other = Simulator(World(log=SeedSigner("other log"), origin="other.example/log"))
    grow(other, 2)
    with pytest.raises(MismatchError):
        run(sim, state=run(other).result.state)


# -- workers and stopping ---------------------------------------------------------------------------------------


def _noisy_log(sim: Simulator) -> None:
    grow(sim, 520)
    sim.append(sim.world.bundle(sim.make_keyset(521, [fleet("x")]), 521, anchor=SeedSigner("rogue")))
    sim.append(b"\x00garbage")
    grow(sim, 100)


def test_worker_processes_report_exactly_what_one_process_does(sim: Simulator) -> None:
    _noisy_log(sim)
    one = run(sim, jobs=1)
    two = run(sim, jobs=2)
    assert [(p.index, p.error) for p in one.problems] == [(520, "ThresholdError"), (521, "FormatError")]
    assert one.entries == two.entries and one.problems == two.problems and one.result.state == two.result.state


def test_stopping_between_chunks_keeps_verified_progress(sim: Simulator) -> None:
    grow(sim, 700)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2  # after two chunks

    part = run(sim, should_stop=stop)
    assert part.summary.stopped and part.result.state is not None and part.result.state.size == 512
    rest = run(sim, state=part.result.state)
    assert rest.ok and [e.index for e in rest.entries] == list(range(512, 700))
    assert rest.result.state == run(sim).result.state


def test_until_epoch_stops_the_walk(sim: Simulator) -> None:
    grow(sim, 10)
    report = run(sim, until_epoch=4)
    assert [e.epoch for e in report.entries] == [1, 2, 3, 4] and report.result.state is None


# -- the state file -------------------------------------------------------------------------------------------------


def test_state_round_trip_and_corruption(sim: Simulator) -> None:
    sim.add_epoch([fleet("a")])
    sim.add_epoch([fleet("a", "revoked")])
    state = run(sim).result.state
    data = state.to_bytes()
    assert AuditState.from_bytes(data) == state
    assert state.revoked and state.keyset_index == 1
    for bad in (data.replace(b'"size":2', b'"size":3'), data.replace(b'"epochs":2', b'"epochs":-1'),
                data[:-1], data + b" ", data.replace(b'"format":"fleetkeys/audit-state/v1"', b'"format":"x"')):
        with pytest.raises(FormatError):
            AuditState.from_bytes(bad)
    wrong_root = data.replace(state.to_bytes()[data.index(b'"root":"') + 8:][:4], b"AAAA", 1)
    with pytest.raises(VerificationError):
        AuditState.from_bytes(wrong_root)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_state_parser_raises_only_format_errors_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        AuditState.from_bytes(data)


_STATE = AuditState.fresh(World().trust_root()).to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_STATE) - 1), st.integers(1, 255))
def test_state_parser_refuses_every_single_byte_change(at: int, delta: int) -> None:
    mutated = bytearray(_STATE)
    mutated[at] = (mutated[at] + delta) % 256
    try:
        parsed = AuditState.from_bytes(bytes(mutated))
    except VerificationError:
        return
    # the only accepted mutations are of a field's value that is still valid (e.g. another origin)
    assert parsed.to_bytes() == bytes(mutated) and hashlib.sha256(parsed.to_bytes()).digest()
