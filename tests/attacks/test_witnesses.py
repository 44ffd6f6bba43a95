"""Attacks that witnesses stop (docs/DESIGN.md §7; bundles/FORMAT.md §7.1 step 10, §9.3), on the in-process
simulator: an operator freezing chosen clients on an old tree head, split views, witnesses colluding with
the operator, witnesses whose clocks run ahead, and a deployed root without witnesses turning them on
through a logged rotation.

The operator holds the log key and the log's freshness key throughout: everything it signs verifies.
What it cannot make is a cosignature by a witness, and an honest witness cosigns only checkpoints
consistent with the last one it cosigned, with its own clock's time.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.attacks.helpers import client_refuses, core_refuses, verify
from tests.attacks.simulator import SimResponse, Simulator, witnesses
from tests.factory import T0, World, fleet
from verifier.cosignature import add_cosignatures
from verifier.errors import ExpiredError, ThresholdError
from verifier.keyset import CLOCK_SKEW
from verifier.note import parse_note
from verifier.trustroot import load_trust_root, sign_trust_root
from verifier.update import ClientState, verify_trust_root_update, verify_update

MAX_AGE = 3600


def witnessed_log(n: int = 3, k: int = 2, *, epochs: int = 3) -> Simulator:
    """A log whose trust root requires ``k`` of ``n`` witnesses, all honest and asked for every checkpoint."""
    world = World(witness_count=n, witness_threshold=k)
    sim = Simulator(world, witnesses=witnesses(world))
    for _ in range(epochs):
        sim.add_epoch()
    return sim


def self_refreshed(checkpoint: bytes, sim: Simulator, timestamp: int) -> bytes:
    """``checkpoint`` with a new freshness cosignature by the log's own key: what the operator can always make."""
    body = parse_note(checkpoint)[0]
    return add_cosignatures(checkpoint, [sim.world.freshness_cosigner.cosign(body, timestamp)])


# -- operator freeze ---------------------------------------------------------------------------------------


def test_operator_re_serving_an_old_checkpoint_with_fresh_self_made_freshness_is_refused(tmp_path: Path) -> None:
    """Epoch 4 revokes a fleet; the operator keeps a victim on the witnessed size-3 checkpoint, re-cosigned
    each hour with its own freshness key. Once the witness cosignatures are older than ``max_age`` the
    victim refuses: it does not take the operator's word for the time."""
    sim = witnessed_log()
    victim = sim.client(tmp_path / "victim", name="victim")
    assert victim.refresh().epoch == 3
    old = sim.checkpoint()                              # size 3, witnessed at T0
    sim.add_epoch(fleets=[fleet("fleet-1", "revoked"), fleet("fleet-2"), fleet("fleet-3"), fleet("fleet-4")])
    later = T0 + MAX_AGE + 61
    sim.freshness_time = later - 30
    assert sim.client(tmp_path / "other", now=later).refresh().epoch == 4   # everyone else sees epoch 4

    frozen = self_refreshed(old, sim, later - 30)
    sim.override("/checkpoint", SimResponse(200, frozen))
    victim.clock = lambda: later
    with client_refuses(victim, ExpiredError, "stale witness cosignatures"):
        victim.refresh()
    with core_refuses(ClientState(), ExpiredError, "possible freeze by the operator"):
        verify(sim, 3, ClientState(), now=later, checkpoint=frozen, bundle=sim.entries[2],
               proof=sim.tlog_proof(2, checkpoint=frozen, size=3))

    # Nor can it get the old tree head freshly witnessed: the witnesses have cosigned size 4 since.
    sim.heal()
    sim.view_size = 3
    with client_refuses(victim, ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 2 required"):
        victim.refresh()


def test_the_same_freeze_succeeds_without_witnesses(tmp_path: Path) -> None:
    """The gap witnesses close: with threshold 0 the log's freshness key alone vouches for time, and the
    operator holds it."""
    world = World(witness_count=3)
    sim = Simulator(world)
    for _ in range(3):
        sim.add_epoch()
    old = sim.checkpoint()
    sim.add_epoch()
    later = T0 + MAX_AGE + 61
    frozen = self_refreshed(old, sim, later - 30)
    sim.override("/checkpoint", SimResponse(200, frozen))
    assert sim.client(tmp_path, now=later).refresh().epoch == 3   # frozen, and the client cannot tell


# -- split views and colluding witnesses -------------------------------------------------------------------


def fork(world: World, shown_to: str) -> Simulator:
    """One of two histories the operator serves: the same epochs 1-2, then its own epoch 3."""
    sim = Simulator(world)
    sim.add_epoch()
    sim.add_epoch()
    sim.add_epoch(fleets=[fleet(f"shown-to-{shown_to}")])
    return sim


def test_split_view_client_shown_the_fork_the_witnesses_did_not_cosign_refuses(tmp_path: Path) -> None:
    world = World(witness_count=3, witness_threshold=2)
    view_a, view_b = fork(world, "a"), fork(world, "b")
    view_a.witnesses = view_b.witnesses = witnesses(world)    # the operator asks every witness for both
    client_a, client_b = view_a.client(tmp_path / "a", name="a"), view_b.client(tmp_path / "b", name="b")
    assert client_a.refresh().epoch == 3               # the witnesses saw A first
    with client_refuses(client_b, ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 2 required"):
        client_b.refresh()
    with core_refuses(ClientState(), ThresholdError, "0 distinct trusted keys cosigned, 2 required"):
        verify(view_b, 3, ClientState())


# (N, K, faulty): any two K-subsets of N witnesses share 2K − N of them, so two forks can both be cosigned by
# K witnesses only if 2K − N ≤ faulty (the shared ones all collude). 2-of-3 thus stops split views by the
# operator alone, not by the operator with one colluding witness; 3-of-3 (and 4-of-5) stop K − 1 colluders.
PROTECTED = [(3, 2, 0), (3, 3, 2), (5, 4, 2)]
BROKEN = [(3, 2, 1), (5, 4, 3)]


def split_view_outcomes(tmp_path: Path, n: int, k: int, faulty: int) -> list[tuple[bool, bool]]:
    """For every way the operator can split the honest witnesses (which fork each is shown first), then
    asking every witness to cosign both forks, whether a fresh client of each fork accepts it. The first
    ``faulty`` witnesses cosign whatever they are shown."""
    outcomes = []
    for run, first in enumerate(itertools.product("ab", repeat=n - faulty)):
        world = World(witness_count=n, witness_threshold=k)
        pool = witnesses(world, faulty=faulty)
        views = {s: fork(world, s) for s in "ab"}
        for s, view in views.items():
            view.witnesses = [w for w, f in zip(pool[faulty:], first, strict=True) if f == s]
            view.checkpoint()                          # shown first: an honest witness now refuses the other fork
        accepted = []
        for s, view in views.items():
            view.witnesses = pool
            try:
                view.client(tmp_path / f"{run}{s}", name=s).refresh()
            except ThresholdError:
                accepted.append(False)
            else:
                accepted.append(True)
        outcomes.append((accepted[0], accepted[1]))
    return outcomes


@pytest.mark.parametrize(("n", "k", "faulty"), PROTECTED, ids=[f"{k}-of-{n}-{f}-faulty" for n, k, f in PROTECTED])
def test_colluding_witnesses_and_operator_cannot_get_a_fork_accepted_when_2k_minus_n_exceeds_them(
        tmp_path: Path, n: int, k: int, faulty: int) -> None:
    assert 2 * k - n > faulty
    outcomes = split_view_outcomes(tmp_path, n, k, faulty)
    assert (True, True) not in outcomes, "both forks accepted"
    assert any(a or b for a, b in outcomes), "the positive control: some split gets one fork accepted"


@pytest.mark.parametrize(("n", "k", "faulty"), BROKEN, ids=[f"{k}-of-{n}-{f}-faulty" for n, k, f in BROKEN])
def test_the_bound_is_tight_when_2k_minus_n_does_not_exceed_the_faulty_witnesses(
        tmp_path: Path, n: int, k: int, faulty: int) -> None:
    """Not an attack the client can stop: it documents what a threshold buys (README, "what the threshold
    buys")."""
    assert 2 * k - n <= faulty
    assert (True, True) in split_view_outcomes(tmp_path, n, k, faulty)


# -- witnesses' clocks -------------------------------------------------------------------------------------


def test_future_dated_witness_cosignatures_beyond_the_skew_do_not_count(tmp_path: Path) -> None:
    """Two witnesses stamp times beyond the allowed skew (colluding to pin clients' saved time in the
    future, or a clock gone wrong): they do not count, and the time saved is never theirs."""
    sim = witnessed_log()
    now = T0 + 60
    for w in sim.witnesses[:2]:
        w.clock = now + CLOCK_SKEW + 1
    client = sim.client(tmp_path, now=now)
    with client_refuses(client, ThresholdError, f"2 dated more than {CLOCK_SKEW} s in the future do not count"):
        client.refresh()
    sim.witnesses[1].clock = None                       # back in step with the log (T0)
    assert client.refresh().epoch == 3
    assert client.state.freshness_time == T0
    sim.witnesses[0].clock = now + CLOCK_SKEW           # within the skew: counts, but only K-th newest is saved
    sim.freshness_time = T0 + 30
    client.refresh()
    assert client.state.freshness_time == T0 + 30


def test_one_witness_down_is_not_an_attack_and_two_are_a_refusal(tmp_path: Path) -> None:
    sim = witnessed_log()
    sim.witnesses[2].online = False
    client = sim.client(tmp_path)
    assert client.refresh().epoch == 3
    sim.witnesses[1].online = False
    sim.add_epoch()
    with client_refuses(client, ThresholdError, "1 distinct trusted keys cosigned, 2 required"):
        client.refresh()


# -- a deployed root without witnesses turns them on -------------------------------------------------------


def witness_rotation(world: World, k: int) -> bytes:
    """Root v2: the same keys, the world's witnesses required ``k`` of them; signed by v1's (= v2's) keys."""
    body = world.trust_root_body(2, witness_threshold=k)
    return sign_trust_root(body, [("anchor", world.anchor), ("countersigner", world.countersigner)])


def test_rotation_from_no_witnesses_to_two_of_three_is_enforced_from_the_checkpoint_that_carries_it(
        tmp_path: Path) -> None:
    world = World(witness_count=3)                      # v1: witnesses listed, threshold 0
    sim = Simulator(world)
    sim.add_epoch()
    client = sim.client(tmp_path)
    assert client.refresh().epoch == 1
    envelope = witness_rotation(world, 2)
    sim.publish_trust_root(envelope)
    sim.add_epoch()

    # The checkpoint carrying the rotation has only the log's own freshness cosignature: refused, since
    # under v2 it needs 2 fresh witness cosignatures.
    with client_refuses(client, ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 2 required"):
        client.refresh()
    # Two witnesses, one of them with a cosignature older than max_age: refused as stale.
    pool = witnesses(world)
    sim.witnesses = pool[:2]
    pool[1].clock = T0 - MAX_AGE - 1
    with client_refuses(client, ExpiredError, "stale witness cosignatures"):
        client.refresh()
    # Two fresh witness cosignatures: accepted; v2 is in force, the saved time is the witnessed one.
    pool[1].clock = T0 - 100
    result = client.refresh()
    assert result.epochs_verified == (2,) and client.state.trust_root == envelope
    assert client.state.freshness_time == T0 - 100
    # Had the operator's own (later) freshness time been kept, the honest witnessed time would now look
    # like a replay: the saved time restarts when the rotation changes who vouches for it.
    assert client.refresh().epochs_verified == ()
    # Later checkpoints need them too.
    sim.add_epoch()
    pool[1].online = False
    with client_refuses(client, ThresholdError, "1 distinct trusted keys cosigned, 2 required"):
        client.refresh()
    sim.witnesses = pool                                 # the third witness answers
    assert client.refresh().epochs_verified == (3,)
    # A fresh client on the v1 root follows the same path (the rotation is named by the keysets).
    assert sim.client(tmp_path / "fresh").refresh().epoch == 3
    sim.witnesses = []
    sim.freshness_time = T0 + 10
    fresh = sim.client(tmp_path / "fresh")
    with client_refuses(fresh, ThresholdError, "0 distinct trusted keys cosigned"):
        fresh.refresh()


def test_rotation_from_no_witnesses_in_the_pure_core() -> None:
    """``verify_trust_root_update`` applies the new root's witness rule to the checkpoint carrying the
    rotation, and ``verify_update`` to every later one."""
    world = World(witness_count=3)
    sim = Simulator(world)
    sim.add_epoch()
    v1 = world.trust_root()
    state = verify(sim, 1, ClientState(), trust_root=v1).state
    envelope = witness_rotation(world, 2)
    sim.publish_trust_root(envelope)

    def rotate(state: ClientState) -> ClientState:
        env, proof, checkpoint = sim.trust_root_material(2)
        return verify_trust_root_update(env, proof, checkpoint, trust_root=v1, state=state, now=T0 + 60,
                                        consistency=sim.consistency(state.checkpoint_size, sim.size))

    with core_refuses(state, ThresholdError, "witness cosignatures: 0 distinct trusted keys cosigned, 2 required"):
        rotate(state)
    sim.witnesses = witnesses(world)[:2]
    rotated = rotate(state)
    assert load_trust_root(rotated.trust_root).witnesses.threshold == 2
    sim.add_epoch()
    bundle, proof, checkpoint = sim.material(2)
    consistency = sim.consistency(rotated.checkpoint_size, sim.size)
    assert verify_update(bundle, proof, checkpoint, trust_root=v1, state=rotated, now=T0 + 60,
                         consistency=consistency).epoch == 2
    sim.witnesses = sim.witnesses[:1]
    bundle, proof, checkpoint = sim.material(2)
    with core_refuses(rotated, ThresholdError, "1 distinct trusted keys cosigned, 2 required"):
        verify_update(bundle, proof, checkpoint, trust_root=v1, state=rotated, now=T0 + 60, consistency=consistency)
