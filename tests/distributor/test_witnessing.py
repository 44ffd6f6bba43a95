"""The distributor as a witness client (distributor.witnessing) against real witness processes over HTTP.

The log runs in this process on SQLite and PostgreSQL; the three witnesses are ``fleetkeys witness
serve`` processes (tests/witnesses.py). The trust root requires 2 of the 3. ``ask`` is called by the
tests themselves where the order matters; the background loop where it is what is tested.
"""

from __future__ import annotations

import logging
import time

import pytest
import requests

from distributor.errors import LogConfigError, RuleViolation, WitnessAnswerError
from distributor.export import StaticWriter
from distributor.freshness import Freshness
from distributor.storage import CosignatureRow, open_storage
from distributor.witnessing import LEASE_META, Witnessing, cosignature_line, parse_witness_option
from tests.distributor.conftest import make_log
from tests.factory import World, fleet
from tests.service_process import free_port, wait_for
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import verify_cosignatures
from verifier.note import parse_note
from verifier.tlogwitness import encode_add_checkpoint
from verifier.trustroot import sign_trust_root

K = 2


@pytest.fixture(scope="module")
def wworld() -> World:
    return World(witness_count=3, witness_threshold=K)


@pytest.fixture
def world(wworld) -> World:
    return wworld


def endpoints(procs):
    return [parse_witness_option(w.option) for w in procs]


def wlog(storage, world, procs, **kwargs):
    return make_log(storage, world, witnesses=[ep.key for ep in endpoints(procs)], **kwargs)


def visible(log) -> int:
    return open_checkpoint(log.checkpoint(), log.log_key).checkpoint.size


def witness_times(world: World, served: bytes) -> dict[str, int]:
    cosigs = verify_cosignatures(served, [c.verifier for c in world.witness_cosigners], 0)
    return {c.verifier.name: c.timestamp for c in cosigs}


def test_an_append_becomes_visible_once_the_threshold_of_witnesses_cosigned(db, wworld, witnesses):
    storage = db.open()
    log = wlog(storage, wworld, witnesses)
    w = Witnessing(log, endpoints(witnesses), interval=60)
    eps = w.endpoints
    for ep in eps:  # the empty tree first: every witness vouches for size 0
        assert w.ask(ep) is not None
    assert visible(log) == 0
    published = log.publish(wworld.chain(1)[0])
    assert published.created and log.head().size == 1
    # Durable and acknowledged, not visible: checkpoint, proofs, listings, tiles all show size 0.
    assert visible(log) == 0 and log.entry(0) is None and log.epochs(None, 10)[0] == []
    proven, shown = log.prove_published(0)
    assert not shown and open_checkpoint(proven.checkpoint, log.log_key).checkpoint.size == 1
    row = w.ask(eps[0])
    assert row is not None and row.size == 1
    assert visible(log) == 0  # 1 of 2
    assert w.ask(eps[1]) is not None
    served = log.checkpoint()
    assert visible(log) == 1 and log.entry(0) == wworld.chain(1)[0]
    assert set(witness_times(wworld, served)) == {"witness.example/w1", "witness.example/w2"}
    assert log.prove_published(0)[1] is True
    # Another process over the same database (a replica) serves the very same bytes.
    other = wlog(db.open(), wworld, witnesses)
    assert other.checkpoint() == served
    other.storage.close()
    storage.close()


def test_the_served_checkpoint_never_goes_back_and_old_sizes_are_pruned(db, wworld, witnesses):
    storage = db.open()
    log = wlog(storage, wworld, witnesses)
    w = Witnessing(log, endpoints(witnesses), interval=60)
    chain = wworld.chain(3)
    for bundle in chain:
        log.publish(bundle)
        for ep in w.endpoints[:K]:
            assert w.ask(ep) is not None
        assert visible(log) == log.head().size
    with storage.read() as tx:
        assert tx.checkpoint_sizes(0) == [3]  # sizes below the served one are forgotten
        assert {r.size for r in tx.cosignatures(0)} == {3}
    # A stale cosignature for a pruned size is dropped, not stored.
    stale = CosignatureRow(w.endpoints[2].key.vkey, 1, 1, b"")
    log.add_cosignature(stale, b"")
    with storage.read() as tx:
        assert all(r.size == 3 for r in tx.cosignatures(0))
    storage.close()


def test_a_witness_that_knows_a_larger_size_is_caught_up_from_it(db, wworld, witnesses):
    storage = db.open()
    log = wlog(storage, wworld, witnesses)
    chain = wworld.chain(2)
    for bundle in chain:
        log.publish(bundle)
    # The witness already cosigned size 1 of this log (asked by an earlier deployment, say), which
    # this database never recorded: asked from old size 0 it answers 409 with size 1.
    first = wworld.checkpoint(chain[:1], freshness=False)
    resp = requests.post(witnesses[0].url + "/add-checkpoint", data=encode_add_checkpoint(0, [], first), timeout=10)
    assert resp.status_code == 200
    w = Witnessing(log, endpoints(witnesses), interval=60)
    row = w.ask(w.endpoints[0])  # old 0 -> 409 "1" -> old 1 with a proof from 1 -> 200
    assert row is not None and row.size == 2
    assert w.status()[0]["size"] == 2 and w.status()[0]["last_error"] is None
    storage.close()


def test_a_witness_holding_a_fork_never_cosigns_and_is_reported(db, wworld, witnesses, caplog, tmp_path):
    # The operator (holding the log key) showed witness 1 another history of the same origin.

    fork_storage = open_storage(f"sqlite:///{tmp_path / 'fork.db'}")
    fork = make_log(fork_storage, wworld)
    fork.publish(wworld.bundle(wworld.keyset(1, [fleet("evil")]), 1))
    fw = Witnessing(fork, endpoints(witnesses)[:1], interval=60)
    assert fw.ask(fw.endpoints[0]) is not None  # witness 1 now holds the fork at size 1
    fork_storage.close()
    storage = db.open()
    log = wlog(storage, wworld, witnesses)
    for bundle in wworld.chain(2):
        log.publish(bundle)
    w = Witnessing(log, endpoints(witnesses), interval=60)
    with caplog.at_level(logging.WARNING, logger="fleetkeys.distributor.witnessing"):
        assert w.ask(w.endpoints[0]) is None  # 409 size 1, then 422: the proof from its fork fails
    assert "HTTP 422" in caplog.text
    with storage.read() as tx:
        assert not [r for r in tx.cosignatures(0) if r.witness == w.endpoints[0].key.vkey]
    # The two honest witnesses still make the real history visible.
    for ep in w.endpoints[1:]:
        assert w.ask(ep) is not None
    assert visible(log) == 2
    storage.close()


def test_the_loop_publishes_despite_a_dead_witness_and_renews_cosignatures(db, wworld, witnesses):
    storage = db.open()
    dead_port = free_port()
    eps = endpoints(witnesses[:2]) + [parse_witness_option(
        f"http://127.0.0.1:{dead_port}={wworld.witness_cosigners[2].verifier.vkey}")]
    log = make_log(storage, wworld, witnesses=[ep.key for ep in eps], freshness_interval=2)
    w = Witnessing(log, eps, interval=2, timeout=2, period=0.05)
    w.start()
    try:
        log.publish(wworld.chain(1)[0])
        wait_for(lambda: visible(log) == 1, 30, "the append to be witnessed by the two live witnesses")
        first = witness_times(wworld, log.checkpoint())
        wait_for(lambda: w.status()[2]["last_error"] is not None, 15, "the dead witness's failure to be recorded")
        # Renewal: the same size re-cosigned with newer timestamps (2 s interval).
        wait_for(lambda: all(witness_times(wworld, log.checkpoint()).get(n, 0) > t for n, t in first.items()), 30,
                 "the witnesses to renew their cosignatures")
        assert visible(log) == 1
    finally:
        w.stop()
        storage.close()


def test_only_the_lease_holder_asks(db, wworld, witnesses):
    a_store, b_store = db.open(), db.open()
    a = Witnessing(wlog(a_store, wworld, witnesses), endpoints(witnesses), interval=60)
    b = Witnessing(wlog(b_store, wworld, witnesses), endpoints(witnesses), interval=60)
    assert a._leader() is True
    assert b._leader() is False
    with a_store.read() as tx:
        assert tx.meta(LEASE_META).startswith(a._token)
    a_store.close()
    b_store.close()


def test_a_root_whose_witnesses_are_not_configured_is_refused(db, wworld, witnesses):
    storage = db.open()
    with pytest.raises(LogConfigError, match="requires cosignatures from 2 of its 3 witnesses"):
        make_log(storage, wworld, witnesses=[endpoints(witnesses)[0].key])
    storage.close()
    # A rotation turning witnesses on is refused by a distributor that does not ask enough of them.
    plain = World()
    storage = db.open()
    log = make_log(storage, plain, witnesses=[])
    body = plain.trust_root_body(version=2, witness_threshold=1)
    envelope = sign_trust_root(body, [("anchor", plain.anchor), ("countersigner", plain.countersigner)])
    with pytest.raises(RuleViolation, match="asks only 0 of them"):
        log.rotate_trust_root(envelope)
    storage.close()


def test_the_static_export_shows_only_the_witnessed_tree(db, wworld, witnesses, tmp_path):
    storage = db.open()
    log = wlog(storage, wworld, witnesses)
    writer = StaticWriter(str(tmp_path / "static"), log_key=log.log_key,
                          freshness=Freshness(wworld.origin, wworld.freshness))
    w = Witnessing(log, endpoints(witnesses), interval=60)
    log.publish(wworld.chain(1)[0])
    assert writer.sync(storage) == 0  # appended, not witnessed: the export stays at the empty tree
    assert not (tmp_path / "static" / "tile" / "entries").exists()
    for ep in w.endpoints[:K]:
        w.ask(ep)
    assert writer.sync(storage) == 1
    exported = (tmp_path / "static" / "checkpoint").read_bytes()
    assert exported.startswith(parse_note(log.checkpoint())[0])
    assert len(witness_times(wworld, exported)) == K
    storage.close()


def test_an_answer_that_is_not_a_valid_cosignature_is_refused(wworld):
    signed = wworld.checkpoint([b"x"], freshness=False)
    good = wworld.witness_cosigners[0].cosign(parse_note(signed)[0], 5).line
    key = wworld.witness_cosigners[0].verifier
    assert cosignature_line(good, signed, key) == (good, 5)
    other = wworld.witness_cosigners[1].cosign(parse_note(signed)[0], 5).line
    for bad in (b"", good[:-1], other, b"not a line\n", good.replace(b"\xe2\x80\x94", b"-")):
        with pytest.raises(WitnessAnswerError):
            cosignature_line(bad, signed, key)
    tampered = good[:-6] + (b"AAAA" if good[-6:-2] != b"AAAA" else b"BBBB") + good[-2:]
    with pytest.raises(WitnessAnswerError):
        cosignature_line(tampered, signed, key)
    # Two lines, ours second: found.
    assert cosignature_line(other + good, signed, key)[0] == good


def test_a_future_dated_cosignature_is_never_stored_and_a_url_with_credentials_is_refused(db, wworld, witnesses):
    """A witness whose clock runs ahead: its line would shadow every honest renewal (the newest time wins
    per size) and no client counts it; it is refused as a failed exchange, and the witness stays due."""
    storage = db.open()
    log = wlog(storage, wworld, witnesses)
    ahead = Witnessing(log, endpoints(witnesses), interval=60, clock=lambda: time.time() - 3600)
    assert ahead.ask(ahead.endpoints[0]) is None  # dated an hour "in the future" by this clock
    assert "in the future" in ahead.status()[0]["last_error"]
    with storage.read() as tx:
        assert tx.cosignatures(0) == []
    storage.close()
    with pytest.raises(LogConfigError, match="credentials"):
        parse_witness_option(f"https://user:secret@w.example={wworld.witness_cosigners[0].verifier.vkey}")
