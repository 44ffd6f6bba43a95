"""The witness policy of step 10 (bundles/FORMAT.md §7.1, §9.3): with a witness threshold K > 0 a
checkpoint's time is the K-th newest timestamp of distinct witness cosignatures within
``[now - max_age, now + CLOCK_SKEW]``, and the log's own freshness cosignature is not consulted.

Unit cases for each boundary, then properties: the rule against a reference model, and K − 1 witnesses
colluding with the operator cannot move the accepted time past what an honest witness wrote.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factory import T0, SeedSigner, World
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import CosignatureSigner, add_cosignatures, checkpoint_time, witnessed_time
from verifier.errors import ExpiredError, FormatError, RollbackError, SignatureError, ThresholdError
from verifier.keyset import CLOCK_SKEW
from verifier.note import Signature, parse_note
from verifier.trustroot import load_trust_root
from verifier.update import FRESHNESS_SLACK, ClientState, recheck_after_rotation, verify_checkpoint_note

W3 = World(witness_count=3, witness_threshold=2)     # 2 of 3
ROOT = W3.trust_root()
ROOT_K0 = World(witness_count=3).trust_root()           # the same keys, no witnesses required
MAX_AGE = ROOT.log.max_age
NOW = T0 + 10_000
ENTRIES = [b"entry 0", b"entry 1"]


def checkpoint(times: dict[int, int], *, freshness: int | None = NOW, world: World = W3) -> bytes:
    """A checkpoint of :data:`ENTRIES` cosigned by witness ``i`` at ``times[i]`` and by the log's freshness
    key at ``freshness`` (none if ``None``)."""
    return world.checkpoint(ENTRIES, NOW if freshness is None else freshness, witness_times=times,
                            freshness=freshness is not None)


EMPTY = ClientState()


def accept(cp: bytes, *, state: ClientState = EMPTY, root=ROOT, now: int = NOW) -> int:
    """The time :func:`verify_checkpoint_note` saves for ``cp``."""
    return verify_checkpoint_note(cp, trust_root=root, state=state, now=now).freshness_time


def refused(cls, fragment, fn, *args, **kwargs):
    with pytest.raises(cls) as info:
        fn(*args, **kwargs)
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    assert fragment in str(info.value), str(info.value)


# -- which cosignatures count -----------------------------------------------------------------------------


def test_k_fresh_witnesses_are_enough_and_the_time_is_the_kth_newest() -> None:
    assert accept(checkpoint({0: NOW - 100, 1: NOW - 50})) == NOW - 100
    assert accept(checkpoint({0: NOW - 100, 1: NOW - 50, 2: NOW - 10})) == NOW - 50


def test_the_log_freshness_cosignature_is_neither_required_nor_checked_when_k_is_positive() -> None:
    times = {0: NOW - 100, 1: NOW - 50}
    assert accept(checkpoint(times, freshness=None)) == NOW - 100
    assert accept(checkpoint(times, freshness=NOW - 10 * MAX_AGE)) == NOW - 100   # stale: ignored
    assert accept(checkpoint(times, freshness=NOW + 10 * CLOCK_SKEW)) == NOW - 100  # future: ignored, not saved


def test_with_k_zero_the_freshness_cosignature_is_still_required() -> None:
    refused(ThresholdError, "log freshness cosignatures: 0 distinct trusted keys cosigned, 1 required",
            accept, checkpoint({0: NOW, 1: NOW, 2: NOW}, freshness=None), root=ROOT_K0)
    refused(ExpiredError, "stale checkpoint: possible freeze attack",
            accept, checkpoint({0: NOW, 1: NOW, 2: NOW}, freshness=NOW - MAX_AGE - 1), root=ROOT_K0)
    assert accept(checkpoint({}, freshness=NOW - 5), root=ROOT_K0) == NOW - 5


def test_too_few_witnesses_is_a_threshold_error() -> None:
    refused(ThresholdError, "witness cosignatures: 1 distinct trusted keys cosigned, 2 required",
            accept, checkpoint({0: NOW}))
    refused(ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 2 required",
            accept, checkpoint({}))


def test_stale_witness_cosignatures_are_an_expired_error_naming_a_freeze() -> None:
    """K witnesses did cosign this tree head, but one of them long ago: the operator is re-serving it."""
    refused(ExpiredError, "1 stale witness cosignatures", accept, checkpoint({0: NOW, 1: NOW - MAX_AGE - 1}))
    refused(ExpiredError, "possible freeze by the operator", accept,
            checkpoint({0: NOW - MAX_AGE - 1, 1: NOW - MAX_AGE - 2, 2: NOW - 5 * MAX_AGE}))


def test_window_bounds_are_inclusive() -> None:
    assert accept(checkpoint({0: NOW - MAX_AGE, 1: NOW + CLOCK_SKEW})) == NOW - MAX_AGE
    assert accept(checkpoint({0: NOW + CLOCK_SKEW, 1: NOW + CLOCK_SKEW})) == NOW   # accepted, saved as now


def test_future_dated_witness_cosignatures_beyond_the_skew_do_not_count() -> None:
    refused(ThresholdError, f"1 dated more than {CLOCK_SKEW} s in the future do not count",
            accept, checkpoint({0: NOW, 1: NOW + CLOCK_SKEW + 1}))
    assert accept(checkpoint({0: NOW - 30, 1: NOW + CLOCK_SKEW + 1, 2: NOW - 40})) == NOW - 40


def test_a_witness_counts_once_whatever_lines_it_has() -> None:
    cp = checkpoint({0: NOW - 10})
    body = parse_note(cp)[0]
    dup = cp + W3.witness_cosigners[0].cosign(body, NOW - 20).line  # a second line by witness 1
    refused(ThresholdError, "1 distinct trusted keys cosigned, 2 required", accept, dup)
    # Its newest in-window line counts: a stale line first does not hide a fresh one.
    mixed = checkpoint({1: NOW - 5}) + W3.witness_cosigners[0].cosign(body, NOW - MAX_AGE - 100).line \
        + W3.witness_cosigners[0].cosign(body, NOW - 7).line
    assert accept(mixed) == NOW - 7


def test_a_bad_line_by_a_configured_witness_is_a_signature_error() -> None:
    cp = checkpoint({0: NOW, 1: NOW, 2: NOW})
    text, sigs = parse_note(cp)
    bad = [s if s.name != "witness.example/w3" else Signature(s.name, s.key_id, s.sig[:-1] + bytes([s.sig[-1] ^ 1]))
           for s in sigs]
    refused(SignatureError, "", accept, text + b"\n" + b"".join(s.line for s in bad))
    short = [s if s.name != "witness.example/w3" else Signature(s.name, s.key_id, s.sig[:70]) for s in sigs]
    refused(FormatError, "witness cosignature by witness.example/w3: expected 72 bytes, found 70",
            accept, text + b"\n" + b"".join(s.line for s in short))


def test_cosignatures_by_keys_the_root_does_not_list_are_ignored() -> None:
    stranger = CosignatureSigner("witness.example/w9", W3.anchor)
    cp = checkpoint({0: NOW})
    with_stranger = add_cosignatures(cp, [stranger.cosign(parse_note(cp)[0], NOW)])
    refused(ThresholdError, "1 distinct trusted keys cosigned, 2 required", accept, with_stranger)
    # The log's freshness key is no witness either: it is the one key the operator always holds.
    refused(ThresholdError, "1 distinct trusted keys cosigned, 2 required", accept, checkpoint({0: NOW}, freshness=NOW))


def test_witnessed_time_needs_a_positive_threshold() -> None:
    with pytest.raises(ValueError):
        witnessed_time(checkpoint({0: NOW}), World(witness_count=3).witness_group(0), NOW, MAX_AGE)


# -- the time saved for the rollback check ---------------------------------------------------------------


def test_the_saved_time_never_goes_back_and_a_replay_is_refused() -> None:
    state = ClientState(freshness_time=NOW - 100)
    assert accept(checkpoint({0: NOW - 50, 1: NOW - 40}), state=state) == NOW - 50
    # Slightly older (a CDN edge's cached copy): accepted, the saved time stays.
    assert accept(checkpoint({0: NOW - 100 - FRESHNESS_SLACK, 1: NOW}), state=state) == NOW - 100
    refused(RollbackError, f"checkpoint witnessed time {NOW - 161} is older than the {NOW - 100} already seen "
            "(replayed checkpoint)", accept, checkpoint({0: NOW - 161, 1: NOW}), state=state)


def test_k_minus_one_colluding_witnesses_cannot_push_the_saved_time() -> None:
    """Witness 1 colludes and stamps the far edge of the window; the time saved is the honest one, so an
    honest checkpoint later is not taken for a replay."""
    colluded = accept(checkpoint({0: NOW + CLOCK_SKEW, 1: NOW - 600}))
    assert colluded == NOW - 600
    assert accept(checkpoint({1: NOW - 500, 2: NOW - 500}), state=ClientState(freshness_time=colluded)) == NOW - 500


def test_checkpoint_time_is_the_one_rule_every_caller_uses() -> None:
    cp = checkpoint({0: NOW - 9, 1: NOW - 3}, freshness=NOW - 1)
    note = open_checkpoint(cp, ROOT.log.key, ROOT.log.origin).note
    assert checkpoint_time(note, ROOT, NOW) == NOW - 9 == accept(cp)
    assert checkpoint_time(note, ROOT_K0, NOW) == NOW - 1 == accept(cp, root=ROOT_K0)
    assert checkpoint_time(cp, ROOT, NOW) == NOW - 9    # the raw note bytes work too


# -- a rotation that changes who vouches for time -------------------------------------------------------------


def test_recheck_after_rotation_applies_the_new_rule_and_restarts_the_saved_time() -> None:
    cp = checkpoint({0: NOW - 900, 1: NOW - 800}, freshness=NOW - 5)
    state = ClientState(freshness_time=NOW - 10)
    vcp = verify_checkpoint_note(cp, trust_root=ROOT_K0, state=state, now=NOW)
    assert vcp.freshness_time == NOW - 5                      # the operator's own freshness time
    after = recheck_after_rotation(cp, vcp, before=ROOT_K0, after=ROOT, now=NOW)
    assert after.freshness_time == NOW - 900                  # what 2 witnesses vouch for, not the operator
    refused(ThresholdError, "1 distinct trusted keys cosigned, 2 required", recheck_after_rotation,
            checkpoint({0: NOW}, freshness=NOW), vcp, before=ROOT_K0, after=ROOT, now=NOW)
    assert recheck_after_rotation(cp, vcp, before=ROOT_K0, after=ROOT_K0, now=NOW) is vcp


def test_recheck_keeps_the_saved_time_when_the_time_source_is_unchanged() -> None:
    """A rotation of the log's key only: the checkpoint must verify under the new key too, and the time
    (the same witnesses vouch for it) is kept."""
    other = World(witness_count=3, witness_threshold=2, log=SeedSigner("log v2"))
    root2 = load_trust_root(other.trust_root_bytes())
    cp = checkpoint({0: NOW - 30, 1: NOW - 20})
    vcp = verify_checkpoint_note(cp, trust_root=ROOT, state=ClientState(freshness_time=NOW - 25), now=NOW)
    refused(SignatureError, "no signature by a known key", recheck_after_rotation, cp, vcp, before=ROOT,
            after=root2, now=NOW)
    text, sigs = parse_note(cp)
    both = text + b"\n" + other.log_note.signature_line(text) + b"".join(s.line for s in sigs)
    assert recheck_after_rotation(both, vcp, before=ROOT, after=root2, now=NOW) is vcp


# -- properties -----------------------------------------------------------------------------------------------

N = 5
W5 = World(witness_count=N)
OFFSETS = st.integers(-MAX_AGE - 200, CLOCK_SKEW + 200)


def _root(k: int):
    return load_trust_root(World(witness_count=N, witness_threshold=k).trust_root_bytes())


ROOTS = {k: _root(k) for k in range(1, N + 1)}


@settings(max_examples=150, deadline=None)
@given(k=st.integers(1, N), offsets=st.dictionaries(st.integers(0, N - 1), OFFSETS, max_size=N))
def test_rule_matches_the_reference_model(k: int, offsets: dict[int, int]) -> None:
    cp = checkpoint({i: NOW + o for i, o in offsets.items()}, world=W5)
    fresh = sorted((o for o in offsets.values() if -MAX_AGE <= o <= CLOCK_SKEW), reverse=True)
    stale = [o for o in offsets.values() if o < -MAX_AGE]
    try:
        got = accept(cp, root=ROOTS[k])
    except ExpiredError as exc:
        assert len(fresh) < k <= len(offsets) and stale and "stale witness cosignatures" in str(exc)
    except ThresholdError:
        assert len(fresh) < k and not (len(offsets) >= k and stale)
    else:
        assert len(fresh) >= k and got == min(NOW, NOW + fresh[k - 1])


@settings(max_examples=150, deadline=None)
@given(k=st.integers(2, N), honest=st.lists(OFFSETS, min_size=1, max_size=N), colluding=st.lists(OFFSETS, max_size=N))
def test_k_minus_one_colluders_never_move_the_time_past_an_honest_witness(k: int, honest: list[int],
                                                                       colluding: list[int]) -> None:
    """Whatever K − 1 colluding witnesses write, an accepted time is one that an honest witness vouched for
    or earlier (the K-th newest needs at least one honest timestamp at or after it)."""
    colluding = colluding[:k - 1]
    honest = honest[:N - len(colluding)]
    offsets = dict(enumerate([*colluding, *honest]))
    try:
        got = accept(checkpoint({i: NOW + o for i, o in offsets.items()}, world=W5), root=ROOTS[k])
    except (ExpiredError, ThresholdError):
        return
    in_window = [o for o in honest if -MAX_AGE <= o <= CLOCK_SKEW]
    assert in_window and got <= NOW + max(in_window)
