"""Interop, our distributor ⇄ an independent C2SP witness: a real ``fleetkeys serve`` process asks the JavaScript
witness (``tests/interop/js/witness_server.mjs``, written from the tlog-witness v1.0.0 and tlog-cosignature
v1.0.1 texts, not from our Python) to cosign, and our client verifies what it then serves (issue 11, item 6).

The trust root requires 2 of 3 witnesses. Each JS witness runs under the name and seed of one of the World's
witness keys (``World.witness_cosigners``), so the trust root the client holds names them.

* three JS witnesses: a publish becomes visible once two cosigned; with two of them killed (``kill -9``) the
  next publish stays invisible, and starting one again on the same port with the same state file makes it
  visible; the other, started later, is caught up with a proof from the size its state file kept;
* two JS witnesses and ours, one JS witness holding a fork of the log (it cosigned another size-1 tree):
  the distributor logs that it has seen another tree, never stores or serves a cosignature of it, and the
  log's checkpoints become visible through the other two.
"""

from __future__ import annotations

import base64
import json
import select
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.distributor.helpers import ServeProcess, world_data_dir
from tests.factory import World, fleet
from tests.service_process import wait_for
from tests.witnesses import WorldWitness, witness_seed
from verifier.checkpoint import open_checkpoint
from verifier.client import Client
from verifier.cosignature import verify_cosignatures
from verifier.errors import ThresholdError
from verifier.tlogwitness import encode_add_checkpoint

NODE = shutil.which("node")
JS = Path(__file__).resolve().parent / "js"
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js 20+) is not installed: no JS witness to run")

TOKEN = "test-publish-token-0123456789"


class JSWorldWitness:
    """``node witness_server.mjs`` as witness ``index`` of ``world`` (its name and seed), trusting the world's log
    key; its state in ``base/state.json``; ``port`` to start it again where it was (:meth:`restart`)."""

    def __init__(self, world: World, index: int, base: Path, *, port: int = 0) -> None:
        assert NODE is not None
        self.world, self.index, self.base = world, index, base
        base.mkdir(parents=True, exist_ok=True)
        self.state_path = base / "state.json"
        name = world.witness_cosigners[index].verifier.name
        config = {"name": name, "seed": witness_seed(world, index).hex(), "state": str(self.state_path),
                  "logs": [{"origin": world.origin, "vkeys": [world.log_note.verifier.vkey]}], "port": port}
        config_path = base / "config.json"
        config_path.write_text(json.dumps(config))
        self._stderr = open(base / "stderr.log", "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen([NODE, str(JS / "witness_server.mjs"), str(config_path)],
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.kill()
            raise RuntimeError(f"the JS witness did not start: {(base / 'stderr.log').read_text()}")
        started = json.loads(line)
        self.port = started["port"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.vkey = started["vkey"]
        assert self.vkey == world.witness_cosigners[index].verifier.vkey  # the key the trust root names

    @property
    def option(self) -> str:
        """The distributor's ``--witness`` value for this witness."""
        return f"{self.url}={self.vkey}"

    def state(self) -> dict | None:
        """The JS witness's state for the world's origin (``size``, ``root``, ``timestamp``), as on disk."""
        if not self.state_path.exists():
            return None
        return json.loads(self.state_path.read_text()).get(self.world.origin)

    def restart(self) -> JSWorldWitness:
        """The same witness (seed, state file, port) started again after :meth:`kill`."""
        return JSWorldWitness(self.world, self.index, self.base, port=self.port)

    def kill(self) -> None:
        """SIGKILL (``kill -9``): no chance to write anything more."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def world() -> World:
    return World(witness_count=3, witness_threshold=2)


@pytest.fixture
def running():
    """Witness processes to kill at the end of the test (whichever are alive then)."""
    procs: list = []
    yield procs
    for p in procs:
        p.kill()


def serve(world: World, tmp_path: Path, witnesses) -> ServeProcess:
    data = world_data_dir(tmp_path / "dist", world)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
            "--workers", "2", "--witness-timeout", "2"]
    for w in witnesses:
        args += ["--witness", w.option]
    return ServeProcess(args, tmp_path / "dist.log")


def post(dist: ServeProcess, bundle: bytes) -> dict:
    resp = requests.post(dist.url + "/api/v1/bundles", data=bundle, timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def served(world: World, dist: ServeProcess) -> tuple[bytes, int, bytes]:
    """The served checkpoint note, its size and root (the log signature verified)."""
    note = requests.get(dist.url + "/checkpoint", timeout=10).content
    cp = open_checkpoint(note, world.log_note.verifier).checkpoint
    return note, cp.size, cp.root


def witnessed_sizes(dist: ServeProcess) -> dict[str, int | None]:
    return {w["vkey"]: w["size"] for w in requests.get(dist.url + "/api/v1/info", timeout=10).json()["witnesses"]}


def keys_of(world: World, indexes) -> list:
    return [world.witness_cosigners[i].verifier for i in indexes]


def test_js_witnesses_cosign_our_checkpoints_and_a_restarted_one_makes_the_next_publish_visible(world, running,
                                                                                               tmp_path):
    chain = world.chain(3)
    w = [JSWorldWitness(world, i, tmp_path / f"js{i + 1}") for i in range(3)]
    running += w
    with serve(world, tmp_path, w) as dist:
        client = Client(dist.url, world.trust_root_bytes(), tmp_path / "client")
        assert post(dist, chain[0])["index"] == 0
        wait_for(lambda: served(world, dist)[1] == 1, 30, "size 1 to be cosigned by 2 JS witnesses")
        note, _, root = served(world, dist)
        assert len(verify_cosignatures(note, keys_of(world, range(3)), 2, what="witness")) >= 2
        assert client.refresh().epoch == 1
        wait_for(lambda: witnessed_sizes(dist) == {x.vkey: 1 for x in w}, 30, "the third JS witness to cosign size 1")
        assert all(x.state()["size"] == "1" and base64.b64decode(x.state()["root"]) == root for x in w)

        # Two of three witnesses die: one cosignature is not enough, the publish stays invisible.
        w[0].kill()
        w[1].kill()
        answer = post(dist, chain[1])
        assert (answer["index"], answer["visible"]) == (1, False)
        wait_for(lambda: witnessed_sizes(dist).get(w[2].vkey) == 2, 30, "the live JS witness to cosign size 2")
        wait_for(lambda: f"witness {w[0].url}" in dist.log(), 30, "the dead witness's failure to be logged")
        assert served(world, dist)[1] == 1
        assert client.refresh().epoch == 1

        # kill -9, then the same witness on the same port with the same state file: it kept size 1, is
        # caught up from there, and its cosignature makes size 2 visible.
        w[0] = w[0].restart()
        running.append(w[0])
        assert w[0].state()["size"] == "1"
        wait_for(lambda: served(world, dist)[1] == 2, 30, "size 2 to be visible once a JS witness is back")
        note, _, root = served(world, dist)
        assert {c.verifier for c in verify_cosignatures(note, keys_of(world, range(3)), 2)} == set(keys_of(world,
                                                                                                          [0, 2]))
        assert client.refresh().epoch == 2
        assert w[0].state()["size"] == "2" and base64.b64decode(w[0].state()["root"]) == root

        # The next publish is visible with the two live witnesses; the other, back later, is caught up from
        # the size its state file kept (1) to 3 with one consistency proof.
        post(dist, chain[2])
        wait_for(lambda: served(world, dist)[1] == 3, 30, "size 3 to be visible")
        assert client.refresh().epoch == 3
        w[1] = w[1].restart()
        running.append(w[1])
        wait_for(lambda: witnessed_sizes(dist).get(w[1].vkey) == 3, 30, "the restarted JS witness to catch up to 3")
        assert w[1].state()["size"] == "3"


def test_a_js_witness_holding_a_fork_is_reported_and_its_cosignatures_never_count(world, running, tmp_path):
    honest = world.chain(2)
    forked = world.bundle(world.keyset(1, [fleet("attacker-controlled")]), 1)
    forked_checkpoint = world.checkpoint([forked], freshness=False)
    w0 = JSWorldWitness(world, 0, tmp_path / "js1")
    running.append(w0)
    # The operator once showed witness 1 another size-1 tree of this origin, and it cosigned it.
    fork = requests.post(w0.url + "/add-checkpoint", data=encode_add_checkpoint(0, [], forked_checkpoint), timeout=10)
    assert fork.status_code == 200
    fork_state = w0.state()
    w1 = JSWorldWitness(world, 1, tmp_path / "js2")
    running.append(w1)
    ours = WorldWitness(world, 2, tmp_path / "ours")
    running.append(ours)
    with serve(world, tmp_path, [w0, w1, ours]) as dist:
        client = Client(dist.url, world.trust_root_bytes(), tmp_path / "client")
        for size, bundle in enumerate(honest, 1):
            post(dist, bundle)
            wait_for(lambda s=size: served(world, dist)[1] == s, 30, f"size {size} to be cosigned by the other two")
            note = served(world, dist)[0]
            assert len(verify_cosignatures(note, keys_of(world, [1, 2]), 2)) == 2
            with pytest.raises(ThresholdError):
                verify_cosignatures(note, keys_of(world, [0]), 1)
            assert client.refresh().epoch == size
        # The fork was reported: the witness's 409 names a size-1 tree this log cannot prove consistent with
        # (at start-up, before the honest size 1 existed), then a proof from size 1 of this log fails
        # against the fork's root (422).
        wait_for(lambda: f"witness {w0.url}" in dist.log() and "another tree" in dist.log(), 30,
                 "the fork to be reported")
        wait_for(lambda: f"witness {w0.url}: HTTP 422" in dist.log(), 30, "the refused proof to be reported")
        assert witnessed_sizes(dist).get(w0.vkey) is None
        assert witnessed_sizes(dist).get(w1.vkey) == witnessed_sizes(dist).get(ours.vkey) == 2
    assert w0.state() == fork_state  # the JS witness kept its fork: nothing moved it onto this log's tree
