"""Witnesses end to end: real witness processes, real distributor processes (``fleetkeys serve
--witness ...``), the real client over HTTP and over a static mirror (DESIGN.md §7, issue 11).

The trust root requires 2 of 3 witnesses (K = 2, N = 3). What that buys: two clients can be shown
two forks only if some witness cosigned both, and any two 2-subsets of 3 witnesses share one; so
split views are stopped as long as that shared witness is honest, i.e. as long as 2K − N = 1 exceeds
the number of faulty witnesses (none here). An operator holding every log key alone can neither
fork nor freeze clients.
"""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from tests.distributor.helpers import ServeProcess, world_data_dir
from tests.factory import World, fleet
from tests.service_process import wait_for
from verifier.checkpoint import open_checkpoint
from verifier.client import Client
from verifier.cosignature import verify_cosignatures
from verifier.errors import ExpiredError, ThresholdError
from verifier.fetch import DirectoryFetcher
from verifier.note import parse_note
from witness.config import STATE_FILE
from witness.state import WitnessState

TOKEN = "test-publish-token-0123456789"


@pytest.fixture
def world() -> World:
    return World(witness_count=3, witness_threshold=2)


def serve(world, tmp_path, name: str, witness_procs, *extra: str) -> ServeProcess:
    data = world_data_dir(tmp_path / name, world)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
            "--workers", "2", "--witness-timeout", "2"]
    for w in witness_procs:
        args += ["--witness", w.option]
    return ServeProcess([*args, *extra], tmp_path / f"{name}.log")


def post(dist: ServeProcess, bundle: bytes) -> requests.Response:
    return requests.post(dist.url + "/api/v1/bundles", data=bundle, timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


def served_size(world: World, url: str) -> int:
    cp = requests.get(url + "/checkpoint", timeout=10).content
    return open_checkpoint(cp, world.log_note.verifier).checkpoint.size


def witnessed_sizes(dist: ServeProcess) -> dict[str, int]:
    return {w["vkey"]: w["size"] for w in requests.get(dist.url + "/api/v1/info", timeout=10).json()["witnesses"]}


def test_a_dead_witness_never_blocks_publishing_and_its_cosignature_arrives_when_it_returns(world, witnesses,
                                                                                            tmp_path):
    chain = world.chain(2)
    with serve(world, tmp_path, "dist", witnesses) as dist:
        client = Client(dist.url, world.trust_root_bytes(), tmp_path / "client")
        assert post(dist, chain[0]).status_code == 201
        wait_for(lambda: served_size(world, dist.url) == 1, 30, "epoch 1 to be witnessed")
        assert client.refresh().epoch == 1
        witnesses[1].kill()
        witnesses[2].kill()
        started = time.monotonic()
        resp = post(dist, chain[1])
        assert resp.status_code == 201 and resp.json()["index"] == 1
        assert time.monotonic() - started < 10  # the append never waits for witnesses
        # One witness of the two required cosigned size 2: not enough, the clients still see size 1.
        wait_for(lambda: witnessed_sizes(dist).get(witnesses[0].vkey) == 2, 30, "witness 1 to cosign size 2")
        assert served_size(world, dist.url) == 1
        assert client.refresh().epoch == 1
        assert requests.get(dist.url + "/api/v1/bundles/latest", timeout=10).json()["epoch"] == 1
        back = witnesses[1].restart()
        try:
            wait_for(lambda: served_size(world, dist.url) == 2, 30, "epoch 2 to be witnessed once witness 2 is back")
            assert client.refresh().epoch == 2
            assert "witness" in dist.log() and "127.0.0.1" in dist.log()  # the failures were logged, with the URL
        finally:
            back.stop()


def test_split_view_at_most_one_fork_gets_cosigned_and_the_other_client_refuses(world, witnesses, tmp_path):
    honest_bundle = world.chain(1)[0]
    forked_bundle = world.bundle(world.keyset(1, [fleet("attacker-controlled")]), 1)
    with serve(world, tmp_path, "honest", witnesses) as honest:
        assert post(honest, honest_bundle).status_code == 201
        wait_for(lambda: served_size(world, honest.url) == 1, 30, "the honest entry to be witnessed")
        # Every witness has now seen the honest head (a witness that had not would cosign a fork's first
        # head: it is not faulty, it just knows nothing yet; one such cosignature is below K anyway).
        wait_for(lambda: set(witnessed_sizes(honest).values()) == {1}, 30, "all three witnesses to cosign it")
        alice = Client(honest.url, world.trust_root_bytes(), tmp_path / "alice")
        assert alice.refresh().epoch == 1
    # The operator runs a second distributor with the same log keys and another history for Bob.
    with serve(world, tmp_path, "fork", witnesses) as fork:
        assert post(fork, forked_bundle).status_code == 201
        wait_for(lambda: all(f"witness {w.url}" in fork.log() for w in witnesses), 30,
                 "every witness to have refused the fork")
        assert witnessed_sizes(fork) == {w.vkey: None for w in witnesses}  # every witness listed, none cosigned
        bob = Client(fork.url, world.trust_root_bytes(), tmp_path / "bob")
        # The fork's own signed checkpoint (log key, fresh freshness cosignature) carries no witness.
        with pytest.raises(ThresholdError, match="0 distinct trusted keys cosigned, 2 required"):
            bob.refresh()
        head = open_checkpoint(requests.get(fork.url + "/checkpoint", timeout=10).content, world.log_note.verifier)
        assert head.checkpoint.size == 0  # nothing of the fork ever became visible
    # Every witness holds the honest tree head, none the fork's.
    honest_root = open_checkpoint(world.checkpoint([honest_bundle]), world.log_note.verifier).checkpoint.root
    for w in witnesses:
        store = WitnessState(w.base / "data" / STATE_FILE)
        try:
            held = store.get(world.origin)
        finally:
            store.close()
        assert held is not None and (held.size, held.root) == (1, honest_root)


def test_an_operator_freeze_is_refused_once_the_witness_cosignatures_are_older_than_the_bound(world, witnesses,
                                                                                             tmp_path):
    chain = world.chain(2)
    with serve(world, tmp_path, "dist", witnesses) as dist:
        assert post(dist, chain[0]).status_code == 201
        wait_for(lambda: served_size(world, dist.url) == 1, 30, "epoch 1 to be witnessed")
        static = tmp_path / "dist" / "static"
        wait_for(lambda: (static / "checkpoint").exists() and served_size_of(world, static) == 1, 30, "the export")
        frozen = tmp_path / "frozen"
        shutil.copytree(static, frozen)
        old = (frozen / "checkpoint").read_bytes()
        assert post(dist, chain[1]).status_code == 201
        wait_for(lambda: served_size(world, dist.url) == 2, 30, "epoch 2 to be witnessed")
    now = int(time.time())
    client = Client(None, world.trust_root_bytes(), tmp_path / "client", fetcher=DirectoryFetcher(frozen),
                    clock=lambda: now)
    assert client.refresh().epoch == 1
    # Two hours later the operator re-serves the size-1 head (hiding epoch 2) with a fresh cosignature of
    # its own freshness key: with witnesses required, that key vouches for nothing.
    later = now + 7200
    text, sigs = parse_note(old)
    fresh_name = world.freshness_cosigner.verifier.name
    kept = b"".join(s.line for s in sigs if s.name != fresh_name)
    (frozen / "checkpoint").write_bytes(text + b"\n" + kept + world.freshness_cosigner.cosign(text, later).line)
    assert verify_cosignatures((frozen / "checkpoint").read_bytes(), [world.freshness_cosigner.verifier], 1)
    frozen_client = Client(None, world.trust_root_bytes(), tmp_path / "client", fetcher=DirectoryFetcher(frozen),
                           clock=lambda: later)
    with pytest.raises(ExpiredError, match="stale witness cosignatures"):
        frozen_client.refresh()


def served_size_of(world: World, static) -> int:
    return open_checkpoint((static / "checkpoint").read_bytes(), world.log_note.verifier).checkpoint.size
