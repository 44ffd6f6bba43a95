"""The signer as a real process under gunicorn, over real HTTP: restarts, kill -9, racing workers, HSM key."""

from __future__ import annotations

import hashlib
import threading

import pytest
import requests

from signer.journal import Journal
from tests.factory import SeedSigner, seed
from tests.service_process import wait_for
from tests.signer.conftest import NS
from tests.signer.keysets import chain
from tests.signer.process import SignerProcess, prepare_data_dir
from tests.softhsm import make_token, requires_softhsm
from verifier import ed25519
from verifier.statement import parse_statement

ANCHOR = SeedSigner("anchor")
D = [hashlib.sha256(b"process %d" % i).digest() for i in range(10)]


def _sign(url: str, token: str, epoch: int, digest: bytes, session=requests) -> requests.Response:
    return session.post(f"{url}/namespaces/{NS}/audits", json={"epoch": epoch, "digest": digest.hex()},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "signer"


def test_end_to_end_over_http(data_dir):
    tokens = prepare_data_dir(data_dir, (NS,), key_seed=seed("anchor"), mode="digest")
    with SignerProcess(data_dir) as proc, requests.Session() as s:
        info = s.get(proc.url + "/info", timeout=5).json()
        assert info["keys"][0]["public_key"] == ANCHOR.public_key.hex()
        ks = chain(NS, 2)
        for i, keyset in enumerate(ks, start=1):
            resp = s.post(proc.url + "/api/v1/sign-keyset", data=keyset, timeout=10,
                          headers={"Authorization": f"Bearer {tokens['write']}", "Content-Type": "application/json"})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            statement = bytes.fromhex(body["serialized_message"])
            ed25519.verify(ANCHOR.public_key, statement, bytes.fromhex(body["signature"]))
            assert parse_statement(statement).epoch == i
            assert s.get(f"{proc.url}/namespaces/{NS}/audits/{i}", timeout=5).json() == body
        assert _sign(proc.url, tokens["write"], 3, D[3], s).status_code == 200
        # Chunked bodies are bounded too.
        big = (b"x" * 8192 for _ in range(10))
        resp = s.post(f"{proc.url}/namespaces/{NS}/audits", data=big, timeout=10,
                      headers={"Authorization": f"Bearer {tokens['write']}"})
        assert resp.status_code == 413
        assert s.get(proc.url + "/api/v1/journal", timeout=5).json()["entries"][0]["epoch"] == 3


def test_equivocation_refused_across_a_restart(data_dir):
    tokens = prepare_data_dir(data_dir, (NS,), mode="digest")
    with SignerProcess(data_dir) as proc:
        first = _sign(proc.url, tokens["write"], 1, D[1])
        assert first.status_code == 200
    with SignerProcess(data_dir) as proc:
        resp = _sign(proc.url, tokens["write"], 1, D[2])
        assert resp.status_code == 409 and resp.json()["code"] == "equivocation"
        again = _sign(proc.url, tokens["write"], 1, D[1])
        assert again.status_code == 200 and again.json() == first.json()
        kinds = [e["kind"] for e in requests.get(proc.url + "/api/v1/journal", timeout=5).json()["entries"]]
        assert kinds == ["refused", "signed", "namespace-created"]


def test_kill_9_between_journal_commit_and_response_then_retry_gets_the_same_signature(data_dir):
    tokens = prepare_data_dir(data_dir, (NS,), mode="digest")
    crashing = SignerProcess(data_dir, module="tests.signer.crashing_signer")
    try:
        with pytest.raises(requests.ConnectionError):
            _sign(crashing.url, tokens["write"], 1, D[1])
        assert crashing.wait_exit() == -9  # the gunicorn master was SIGKILLed, as was the worker
    finally:
        crashing.kill()
    committed = Journal(data_dir / "journal.sqlite").entry(NS, 1)
    assert committed is not None and committed.digest == D[1]  # committed before the (lost) response

    with SignerProcess(data_dir) as proc:
        retry = _sign(proc.url, tokens["write"], 1, D[1])
        assert retry.status_code == 200
        body = retry.json()
        assert bytes.fromhex(body["signature"]) == committed.signature
        assert body["timestamp"] == committed.timestamp
        assert _sign(proc.url, tokens["write"], 1, D[2]).status_code == 409
        signed = [e for e in requests.get(proc.url + "/api/v1/journal", timeout=5).json()["entries"]
                  if e["kind"] == "signed"]
        assert len(signed) == 1


def test_crash_environment_variable_arms_nothing_in_the_production_entry_point(data_dir):
    """The SIGKILL-after-commit fault hook is test-only: the production ``serve`` ignores the old variable."""
    tokens = prepare_data_dir(data_dir, (NS,), mode="digest")
    with SignerProcess(data_dir, env={"FLEETKEYS_SIGNER_CRASH_AFTER_COMMIT": "1"}) as proc:
        assert _sign(proc.url, tokens["write"], 1, D[1]).status_code == 200
        assert _sign(proc.url, tokens["write"], 2, D[2]).status_code == 200
        assert proc.proc.poll() is None and "crash hook" not in proc.log()


def test_two_workers_racing_two_digests_for_one_epoch_sign_exactly_one(data_dir):
    tokens = prepare_data_dir(data_dir, (NS,), mode="digest")
    with SignerProcess(data_dir, workers=2) as proc:
        # The server is ready as soon as one worker answers; each worker logs its boot in its own time.
        # Wait for the second (a generous deadline, not an assumption) so the races are between two workers.
        wait_for(lambda: proc.log().count("Booting worker") >= 2, 60, "both signer workers to log their boot")
        for epoch in range(1, 9):
            barrier = threading.Barrier(2)
            statuses: list[int] = []

            def race(digest: bytes, barrier=barrier, statuses=statuses, epoch=epoch) -> None:
                with requests.Session() as session:  # separate connections, any worker may take each
                    barrier.wait()
                    statuses.append(_sign(proc.url, tokens["write"], epoch, digest, session).status_code)

            threads = [threading.Thread(target=race, args=(hashlib.sha256(b"%d/%d" % (epoch, i)).digest(),))
                       for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(statuses) == [200, 409], (epoch, statuses)
        # No worker died and was replaced during the races: still exactly the two boots.
        assert proc.log().count("Booting worker") == 2, proc.log()
    journal = Journal(data_dir / "journal.sqlite")
    assert [journal.entry(NS, e) is not None for e in range(1, 10)] == [True] * 8 + [False]


@requires_softhsm
def test_softhsm_key_round_trip(data_dir, tmp_path):
    token = make_token(tmp_path)
    public_key = token.generate_key("anchor")
    ref = token.key_ref("anchor", pin_source=True)  # a PIN never goes on the command line
    tokens = prepare_data_dir(data_dir, (NS,), key_ref=ref, mode="digest")
    with SignerProcess(data_dir, key_ref=ref, env=token.env) as proc:
        info = requests.get(proc.url + "/info", timeout=5).json()
        assert info["keys"][0]["public_key"] == public_key.hex()
        body = _sign(proc.url, tokens["write"], 1, D[1]).json()
        assert body["key_id"] == public_key[-1]
        ed25519.verify(public_key, bytes.fromhex(body["serialized_message"]), bytes.fromhex(body["signature"]))
    assert not (data_dir / "anchor.key").exists()  # a pkcs11: key never makes a file key


@requires_softhsm
def test_serve_refuses_a_pin_value_in_its_key_reference(data_dir, tmp_path):
    token = make_token(tmp_path)
    token.generate_key("anchor")
    prepare_data_dir(data_dir, (NS,), key_ref=token.key_ref("anchor", pin_source=True))
    with pytest.raises(RuntimeError, match="exited with 1") as info:
        SignerProcess(data_dir, key_ref=token.key_ref("anchor"), env=token.env)
    assert "pin-value= in a key reference is refused" in str(info.value)
