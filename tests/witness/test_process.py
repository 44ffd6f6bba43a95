"""The witness as a real gunicorn process over real HTTP: the wire, restarts, kill -9 (right after the
state commit and at random under load), and two workers racing one old size."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass

import pytest
import requests
from click.testing import CliRunner

from fleetkeys.cli import main
from tests.service_process import wait_for
from tests.softhsm import make_token, requires_softhsm
from tests.witness.helpers import WITNESS_NAME, WITNESS_VKEY, TestLog, WitnessProcess, cosigned
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier
from witness.wire import MAX_BODY


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "witness"


@pytest.fixture
def log():
    return TestLog().grow(80)


def _size(resp: requests.Response) -> int:
    assert resp.status_code == 409, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"] == "text/x.tlog.size"
    assert resp.content.endswith(b"\n")
    return int(resp.content)


def test_end_to_end_over_http(data_dir, log):
    with WitnessProcess(data_dir, [log]) as proc, requests.Session() as s:
        info = s.get(proc.url + "/", timeout=5).json()
        assert info["vkey"] == WITNESS_VKEY.vkey and info["name"] == WITNESS_NAME
        before = int(time.time())
        first = proc.add(log.request(0, 10), s)
        after = int(time.time())
        assert first.status_code == 200 and first.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert before <= cosigned(log.note(10), first.content).timestamp <= after  # the request time
        assert proc.add(log.request(10, 25), s).status_code == 200  # same keep-alive connection
        assert _size(proc.add(log.request(10, 30), s)) == 25
        assert proc.add(log.fork(20, "fork").request(25, 25), s).status_code == 409
        assert proc.add(log.request(25, 30, proof=log.proof(24, 30)), s).status_code == 422
        assert proc.add(TestLog(origin="nope.example/log").grow(3).request(0, 3), s).status_code == 404
        assert proc.add(TestLog(key_label="impostor").grow(40).request(25, 30), s).status_code == 403
        assert proc.add(log.request(31, 30, proof=[]), s).status_code == 400
        # Bodies over the cap are refused, also when chunked (no Content-Length).
        resp = s.post(proc.url + "/add-checkpoint", data=(b"x" * 8192 for _ in range(MAX_BODY // 8192 + 2)),
                      timeout=10)
        assert resp.status_code == 413 and resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert s.get(proc.url + "/add-checkpoint", timeout=5).status_code == 405


def test_state_is_kept_across_restarts(data_dir, log):
    with WitnessProcess(data_dir, [log]) as proc:
        assert proc.add(log.request(0, 10)).status_code == 200
        assert proc.add(log.request(10, 20)).status_code == 200
    with WitnessProcess(data_dir, [log]) as proc:
        assert _size(proc.add(log.request(0, 20))) == 20
        assert _size(proc.add(log.request(10, 15))) == 20          # never back to 15
        assert _size(proc.add(log.fork(15, "fork").request(20, 20))) == 20  # never to another root at 20
        resp = proc.add(log.request(20, 20))                        # renew: same tree, new timestamp
        assert resp.status_code == 200 and cosigned(log.note(20), resp.content)


def test_kill_9_right_after_the_commit_never_lets_it_cosign_a_fork(data_dir, log):
    """The worker is SIGKILLed (with the master) after the new state committed and before the answer:
    the log got nothing, but the witness is bound to what it committed. Here that is a fork B of the
    honest log A (they share 30 entries): afterwards A beyond 30 is never cosigned."""
    fork = log.fork(30, "fork")
    with WitnessProcess(data_dir, [log]) as proc:
        assert proc.add(log.request(0, 20)).status_code == 200
    crashing = WitnessProcess(data_dir, [log], module="tests.witness.crashing_witness")
    try:
        with pytest.raises(requests.ConnectionError):
            crashing.add(fork.request(20, 40))
        assert crashing.wait_exit() == -9  # the gunicorn master was SIGKILLed, as was the worker
    finally:
        crashing.kill()
    with WitnessProcess(data_dir, [log]) as proc:
        assert _size(proc.add(log.request(20, 40))) == 40             # the state moved to the fork's 40
        assert _size(proc.add(log.request(40, 40))) == 40             # A's 40 is another root: 409
        assert proc.add(log.request(40, 50)).status_code == 422       # A's own proof does not start at B's 40
        assert proc.add(log.request(40, 50, proof=fork.proof(40, 50))).status_code == 422
        again = proc.add(fork.request(40, 40))                        # the fork's log gets its cosignature now
        assert again.status_code == 200 and cosigned(fork.note(40), again.content)


def test_kill_9_after_the_commit_of_an_honest_checkpoint_then_the_log_recovers(data_dir, log):
    with WitnessProcess(data_dir, [log]) as proc:
        assert proc.add(log.request(0, 10)).status_code == 200
    crashing = WitnessProcess(data_dir, [log], module="tests.witness.crashing_witness")
    try:
        with pytest.raises(requests.ConnectionError):
            crashing.add(log.request(10, 15))
        assert crashing.wait_exit() == -9
    finally:
        crashing.kill()
    with WitnessProcess(data_dir, [log]) as proc:
        known = _size(proc.add(log.request(10, 20)))  # the log retries from what it believes: 409 tells it 15
        assert known == 15
        assert proc.add(log.request(known, 20)).status_code == 200
        assert _size(proc.add(log.fork(12, "fork").request(20, 20))) == 20


@dataclass(frozen=True)
class Cosigned:
    label: str
    size: int
    timestamp: int


def test_kill_9_at_random_under_load_never_cosigns_a_fork_nor_goes_back(data_dir, log):
    """Rounds of: a witness (2 workers), 6 client threads submitting checkpoints of the honest log A or of
    a fork B (sharing A's first 24 entries), each from the size it last heard of; SIGKILL of the whole
    process group after a random number of requests, with requests in flight. Then the cosignatures
    collected must lie on one history (never both an A and a B checkpoint beyond 24), their sizes must
    never decrease as their timestamps increase, and the state found at the end must be at least the
    largest cosigned size, on that same history."""
    shared = 24
    fork = log.fork(shared, "fork")
    trees = {"A": log, "B": fork}
    rng = random.Random(20261201)
    lock = threading.Lock()
    results: list[Cosigned] = []
    belief = {"size": 0}
    sent = {"n": 0}

    def client(proc: WitnessProcess, stop: threading.Event, seed: int) -> None:
        r = random.Random(seed)
        with requests.Session() as s:
            while not stop.is_set():
                label = r.choice("AB")
                tree = trees[label]
                with lock:
                    old = belief["size"]
                    sent["n"] += 1
                new = min(len(tree.entries), old + r.choice([0, 0, 1, 2, 5]))
                body = tree.request(old, new)
                try:
                    resp = s.post(proc.url + "/add-checkpoint", data=body, timeout=10)
                except requests.RequestException:
                    continue
                if resp.status_code == 200:
                    ts = cosigned(tree.note(new), resp.content).timestamp
                    with lock:
                        results.append(Cosigned(label, new, ts))
                        belief["size"] = max(belief["size"], new)
                elif resp.status_code == 409:
                    with lock:
                        belief["size"] = int(resp.content)

    for round_ in range(6):
        proc = WitnessProcess(data_dir, [log], workers=2, threads=4)
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(proc, stop, rng.random()), daemon=True) for _ in range(6)]
        with lock:
            target = sent["n"] + rng.randint(10, 60)
        for t in threads:
            t.start()
        wait_for(lambda target=target: sent["n"] >= target, timeout=60, what=f"round {round_}: {target} requests")
        os.killpg(proc.proc.pid, signal.SIGKILL)  # master and workers, mid-requests
        stop.set()
        for t in threads:
            t.join(30)
        proc.kill()
        with lock:
            belief["size"] = 0  # the log forgets too: it relearns the size from the next 409

    assert results, "no checkpoint was cosigned"
    beyond = {c.label for c in results if c.size > shared}
    assert len(beyond) <= 1, f"both histories cosigned beyond {shared}: {beyond}"
    ordered = sorted(results, key=lambda c: c.timestamp)
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if earlier.timestamp < later.timestamp:
            assert earlier.size <= later.size, (earlier, later)
    largest = max(c.size for c in results)
    with WitnessProcess(data_dir, [log]) as proc:
        resp = proc.add(log.request(0, 0))
        final = 0 if resp.status_code == 200 else _size(resp)
        assert final >= largest
        on = {label for label, tree in trees.items() if proc.add(tree.request(final, final)).status_code == 200}
        assert on, "the state is on neither history"
        assert not beyond or beyond <= on


def test_two_workers_racing_one_old_size_one_200_one_409(data_dir, log):
    with WitnessProcess(data_dir, [log], workers=2, threads=2) as proc:
        old = 0
        for round_ in range(25):
            barrier = threading.Barrier(2)
            out: dict[int, requests.Response] = {}

            def race(i: int, old: int = old, barrier: threading.Barrier = barrier, out: dict = out) -> None:
                body = log.request(old, old + 1 + i)
                with requests.Session() as s:
                    barrier.wait(10)
                    out[i] = s.post(proc.url + "/add-checkpoint", data=body, timeout=30)

            threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            statuses = sorted(r.status_code for r in out.values())
            assert statuses == [200, 409], (round_, statuses)
            winner = next(i for i, r in out.items() if r.status_code == 200)
            loser = out[1 - winner]
            assert _size(loser) == old + 1 + winner
            old += 1 + winner


def test_cli_keygen_and_vkey_print_the_cosigner_vkey(tmp_path):
    runner = CliRunner()
    key = tmp_path / "w.key"
    made = runner.invoke(main, ["witness", "keygen", "--name", WITNESS_NAME, "--out", str(key)])
    assert made.exit_code == 0, made.output
    vkey = made.stdout.strip().splitlines()[0]
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.alg == ALG_COSIGNATURE_V1 and verifier.name == WITNESS_NAME
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    shown = runner.invoke(main, ["witness", "vkey", "--name", WITNESS_NAME, "--key", f"file:{key}"])
    assert shown.exit_code == 0 and shown.stdout.strip() == vkey
    again = runner.invoke(main, ["witness", "keygen", "--name", WITNESS_NAME, "--out", str(key)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    bad = runner.invoke(main, ["witness", "keygen", "--name", "bad name", "--out", str(tmp_path / "x.key")])
    assert bad.exit_code == 2 and not (tmp_path / "x.key").exists()


def test_cli_serve_refuses_bad_configuration(tmp_path, log):
    runner = CliRunner()
    key = tmp_path / "w.key"
    assert runner.invoke(main, ["witness", "keygen", "--name", WITNESS_NAME, "--out", str(key)]).exit_code == 0
    base = ["witness", "serve", "--name", WITNESS_NAME, "--key", f"file:{key}", "--data", str(tmp_path / "d")]
    for logs, message in [(["--log", "no-equals-sign"], "ORIGIN=VKEY"),
                          (["--log", f"{log.origin}={WITNESS_VKEY.vkey}"], "type 0x01"),
                          (["--log", log.log_option, "--log", log.log_option], "given twice")]:
        result = runner.invoke(main, base + logs)
        assert result.exit_code == 1 and message in result.output, result.output
    missing = runner.invoke(main, ["witness", "serve", "--name", WITNESS_NAME, "--data", str(tmp_path / "d"),
                                   "--log", log.log_option])
    assert missing.exit_code == 2 and "--key" in missing.output


@requires_softhsm
def test_softhsm_witness_key(data_dir, tmp_path, log):
    token = make_token(tmp_path)
    public_key = token.generate_key("witness")
    ref = token.key_ref("witness", pin_source=True)  # a PIN never goes on the command line
    vkey = NoteVerifier.from_public_key(WITNESS_NAME, public_key, ALG_COSIGNATURE_V1)
    with WitnessProcess(data_dir, [log], key_ref=ref, env=token.env) as proc:
        assert requests.get(proc.url + "/", timeout=5).json()["vkey"] == vkey.vkey
        resp = proc.add(log.request(0, 10))
        assert resp.status_code == 200 and cosigned(log.note(10), resp.content, vkey)


@requires_softhsm
def test_serve_refuses_a_pin_value_in_its_key_reference(data_dir, tmp_path, log):
    token = make_token(tmp_path)
    token.generate_key("witness")
    proc = WitnessProcess(data_dir, [log], key_ref=token.key_ref("witness"), env=token.env, wait=False)
    try:
        assert proc.wait_exit(30) == 1
        assert "pin-value= in a key reference is refused" in proc.log()
    finally:
        proc.kill()
