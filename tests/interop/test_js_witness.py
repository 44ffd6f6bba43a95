"""Interop with an independent C2SP implementation: the JavaScript client and witness in ``tests/interop/js``,
written from the spec texts (tlog-witness v1.0.0, tlog-cosignature v1.0.1, signed-note, tlog-checkpoint,
RFC 9162), not from our Python.

* our witness (a real ``python -m witness serve`` process) ⇄ the JS client: requests built, signed and proven
  by JS, cosignatures verified by the JS tlog-cosignature/v1 verifier;
* the JS witness (a real ``node`` process) ⇄ our encoder (:mod:`verifier.tlogwitness`) and our verifier
  (:func:`verifier.cosignature.verify_cosignatures`);
* one status suite that both witnesses pass, request for request;
* a checkpoint carrying cosignature lines still opens for a signed-note verifier that knows only the log key
  (as Go's ``sumdb/note`` ignores unknown signature lines), in JS and in Python.
"""

from __future__ import annotations

import base64
import json
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.factory import SeedSigner, seed
from tests.witness.helpers import ORIGIN, WITNESS_VKEY, TestLog, WitnessProcess
from verifier.cosignature import CosignatureSigner, add_cosignatures, verify_cosignatures
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier, open_note
from verifier.tlogwitness import SIZE_CONTENT_TYPE, encode_add_checkpoint, parse_size_body

NODE = shutil.which("node")
JS = Path(__file__).resolve().parent / "js"
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js 20+) is not installed: no JS implementation to run")

JS_WITNESS_NAME = "js-witness.example/w1"
JS_WITNESS_KEY = SeedSigner("js witness")
JS_WITNESS_VKEY = NoteVerifier.from_public_key(JS_WITNESS_NAME, JS_WITNESS_KEY.public_key, ALG_COSIGNATURE_V1)


def run_js_client(request: dict) -> dict:
    done = subprocess.run([NODE, str(JS / "witness_client.mjs")], input=json.dumps(request).encode(),
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def js_add(url: str, log: TestLog, requests_: list[dict], *, witnesses: list[str] | None = None) -> dict:
    return run_js_client({"url": url, "log": {"origin": log.origin, "seed": seed(log.key_label).hex()},
                          "witnesses": witnesses if witnesses is not None else [WITNESS_VKEY.vkey],
                          "entries": [e.decode() for e in log.entries], "requests": requests_})


def js_verify(note: bytes, log_vkeys: list[str], witnesses: list[str]) -> dict:
    return run_js_client({"mode": "verify", "note": note.decode(), "log_vkeys": log_vkeys, "witnesses": witnesses})


class JSWitness:
    """``node witness_server.mjs CONFIG`` on a free port, its state in ``data_dir/state.json``."""

    def __init__(self, data_dir: Path, logs: list[TestLog]) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.state_path = data_dir / "state.json"
        trusted: dict[str, list[str]] = {}
        for log in logs:
            trusted.setdefault(log.origin, []).append(log.vkey)
        config = {"name": JS_WITNESS_NAME, "seed": JS_WITNESS_KEY._seed.hex(),  # noqa: SLF001 - the test seed
                  "state": str(self.state_path), "logs": [{"origin": o, "vkeys": v} for o, v in trusted.items()]}
        self.config_path = data_dir / "config.json"
        self.config_path.write_text(json.dumps(config))
        self.proc = subprocess.Popen([NODE, str(JS / "witness_server.mjs"), str(self.config_path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        if not ready:
            self.kill()
            raise RuntimeError("the JS witness did not start within 30 s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the JS witness exited: {self.proc.stderr.read().decode()}")
        started = json.loads(line)
        self.url = f"http://127.0.0.1:{started['port']}"
        self.vkey = started["vkey"]

    def add(self, body: bytes, session=None) -> requests.Response:
        return (session or requests).post(self.url + "/add-checkpoint", data=body, timeout=30)

    def state(self) -> str | None:
        return self.state_path.read_text() if self.state_path.exists() else None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@pytest.fixture
def log():
    return TestLog().grow(60)


# --- our witness ⇄ the JS client -----------------------------------------------------------------------------------

def test_js_client_gets_verified_cosignatures_from_our_witness(tmp_path, log):
    with WitnessProcess(tmp_path / "witness", [log]) as proc:
        before = int(time.time())
        out = js_add(proc.url, log, [{"old": 0, "size": 10}, {"old": 10, "size": 25}, {"old": 25, "size": 25},
                                     {"old": "auto", "size": 40}, {"old": 40, "size": 41, "extensions": ["x y"]}])
        after = int(time.time())
    assert out["log_vkey"] == log.vkey  # the JS key ID derivation agrees with ours
    for result in out["results"]:
        assert (result["status"], result["content_type"], result.get("error")) == (200, "text/plain; charset=utf-8",
                                                                                    None), result
        (cosig,) = result["cosignatures"]
        assert cosig["vkey"] == WITNESS_VKEY.vkey and before <= int(cosig["timestamp"]) <= after
    assert out["results"][3]["old"] == 25 and out["results"][3]["attempts"] == 1
    # The JS note verifier with the log key alone opens the cosigned note (the cosignature line is ignored).
    note = out["results"][1]["cosigned_note"].encode()
    opened = js_verify(note, [log.vkey], [])
    assert opened == {"text": log.checkpoint(25).body().decode(), "verified_by": [log.vkey], "cosignatures": []}
    assert len(js_verify(note, [log.vkey], [WITNESS_VKEY.vkey])["cosignatures"]) == 1


def test_js_client_reads_our_witness_refusals(tmp_path, log):
    impostor_seed = seed("impostor").hex()
    with WitnessProcess(tmp_path / "witness", [log]) as proc:
        out = js_add(proc.url, log, [
            {"old": 0, "size": 20},                        # 200
            {"old": 0, "size": 30},                        # 409 "20\n"
            {"old": 20, "size": 30, "proof_from": 19},     # 422
            {"old": 20, "size": 30, "sign_seed": impostor_seed},  # 403
            {"old": 31, "size": 30, "proof_hex": []},      # 400
        ])["results"]
        assert [r["status"] for r in out] == [200, 409, 422, 403, 400]
        assert out[1]["content_type"] == SIZE_CONTENT_TYPE and out[1]["size_body"] == "20"
        # A fresh client knows nothing: "auto" starts at 0, learns 20 from the 409 and retries from there.
        (fresh,) = js_add(proc.url, log, [{"old": "auto", "size": 33}])["results"]
        assert (fresh["status"], fresh["attempts"], fresh["old"]) == (200, 2, 20)
        other = TestLog(origin="other.example/log").grow(3)
        assert js_add(proc.url, other, [{"old": 0, "size": 3}])["results"][0]["status"] == 404


# --- the JS witness ⇄ our encoder and verifier ---------------------------------------------------------------------

def test_our_client_gets_verified_cosignatures_from_the_js_witness(tmp_path, log):
    with JSWitness(tmp_path / "js", [log]) as js, requests.Session() as s:
        assert js.vkey == JS_WITNESS_VKEY.vkey  # its vkey, key ID derivation included, is the one we compute
        verifier = NoteVerifier.from_vkey(js.vkey)
        last = 0
        for old, new in ((0, 10), (10, 25), (25, 25), (25, 60)):
            before = int(time.time())
            resp = js.add(encode_add_checkpoint(old, log.proof(old, new), log.note(new)), s)
            assert resp.status_code == 200, resp.text
            (found,) = verify_cosignatures(log.note(new) + resp.content, [verifier], 1)
            assert found.verifier == verifier and before <= found.timestamp <= int(time.time()) and found.timestamp >= last
            last = found.timestamp
        assert json.loads(js.state())[ORIGIN]["size"] == "60"


def test_the_js_witness_persists_before_responding(tmp_path, log):
    with JSWitness(tmp_path / "js", [log]) as js:
        assert js.add(log.request(0, 17)).status_code == 200
        js.kill()  # SIGKILL right after the answer
    with JSWitness(tmp_path / "js", [log]) as js:
        resp = js.add(log.request(0, 30))
        assert (resp.status_code, parse_size_body(resp.content)) == (409, 17)


def test_the_js_witness_serialises_a_race_on_one_old_size(tmp_path, log):
    with JSWitness(tmp_path / "js", [log]) as js:
        assert js.add(log.request(0, 10)).status_code == 200
        bodies = [log.request(10, n) for n in (20, 30, 40, 50)]
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda b=b: statuses.append(js.add(b).status_code)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 409, 409, 409]


# --- one status suite, both witnesses ------------------------------------------------------------------------------

@pytest.fixture(params=["fleetkeys", "js"])
def any_witness(request, tmp_path, log):
    if request.param == "fleetkeys":
        with WitnessProcess(tmp_path / "witness", [log]) as proc:
            proc.verifier = WITNESS_VKEY
            yield proc
    else:
        with JSWitness(tmp_path / "js", [log]) as js:
            js.verifier = NoteVerifier.from_vkey(js.vkey)
            yield js


def test_both_witnesses_answer_the_spec_status_for_each_request(any_witness, log):
    w, s = any_witness, requests.Session()
    fork = log.fork(15, "fork")

    def add(body: bytes) -> requests.Response:
        return w.add(body, s)

    cases = [
        (log.request(5, 20), 409, b"0\n"),                               # never cosigned: size 0
        (encode_add_checkpoint(0, log.proof(5, 20), log.note(20)), 422, None),  # a proof with old size 0
        (log.request(0, 20), 200, None),
        (log.request(0, 20), 409, b"20\n"),
        (fork.request(20, 20), 409, b"20\n"),                            # same size, other root (v1.0.0)
        (log.request(20, 30, proof=log.proof(19, 30)), 422, None),
        (fork.request(20, 30, proof=fork.proof(20, 30)), 422, None),     # a fork with its own proof
        (log.request(21, 20, proof=[]), 400, None),                      # old size above the checkpoint's
        (b"old 020\n\n" + log.note(20), 400, None),
        (b"old 20\n" + b"AAAA\n" + b"\n" + log.note(30), 400, None),     # a proof line that is not one hash
        (TestLog(key_label="impostor").grow(30).request(20, 30), 403, None),
        (TestLog(origin="unknown.example/log").grow(3).request(0, 3), 404, None),
        (log.request(20, 20), 200, None),                                # renewal: same tree, new timestamp
        (log.request(20, 45), 200, None),
    ]
    for body, status, size_body in cases:
        resp = add(body)
        assert resp.status_code == status, (status, resp.status_code, resp.text, body[:60])
        if status == 409:
            assert resp.headers["Content-Type"] == SIZE_CONTENT_TYPE and resp.content == size_body
        if status == 200:
            note = body[body.index(b"\n\n") + 2:]
            verify_cosignatures(note + resp.content, [w.verifier], 1)
        else:
            assert "\u2014".encode() not in resp.content
    assert s.get(w.url + "/add-checkpoint", timeout=5).status_code == 405
    s.close()


# --- cosignature lines and signed-note verifiers that do not know the cosigners -----------------------------------

def test_cosigned_checkpoints_open_for_verifiers_that_know_only_the_log_key(tmp_path, log):
    with WitnessProcess(tmp_path / "witness", [log]) as ours, JSWitness(tmp_path / "js", [log]) as js:
        note = log.note(12)
        ours_line = ours.add(log.request(0, 12)).content
        js_line = js.add(log.request(0, 12)).content
    freshness = CosignatureSigner(f"{ORIGIN}/freshness", SeedSigner("freshness")).cosign(log.checkpoint(12).body(), 7)
    cosigned = add_cosignatures(note + ours_line + js_line, [freshness])
    # JS signed-note verifier with the log key alone: every cosignature line is an unknown key's, ignored.
    assert js_verify(cosigned, [log.vkey], []) == {"text": log.checkpoint(12).body().decode(),
                                                   "verified_by": [log.vkey], "cosignatures": []}
    # ... and as a tlog-cosignature/v1 verifier it verifies both witnesses' lines.
    both = js_verify(cosigned, [log.vkey], [WITNESS_VKEY.vkey, JS_WITNESS_VKEY.vkey])["cosignatures"]
    assert [c["vkey"] for c in both] == [WITNESS_VKEY.vkey, JS_WITNESS_VKEY.vkey]
    # Ours, likewise.
    assert open_note(cosigned, [log.note_signer.verifier]).text == log.checkpoint(12).body()
    assert len(verify_cosignatures(cosigned, [WITNESS_VKEY, JS_WITNESS_VKEY], 2)) == 2
    # A broken line by a configured cosigner is refused by the JS verifier (not silently skipped).
    assert "error" in js_verify(cosigned.replace(js_line, flip_last_byte(js_line)), [log.vkey], [JS_WITNESS_VKEY.vkey])
    assert "error" not in js_verify(cosigned.replace(js_line, flip_last_byte(js_line)), [log.vkey], [WITNESS_VKEY.vkey])


def flip_last_byte(line: bytes) -> bytes:
    """The same signature line with the last byte of its signature changed."""
    prefix, _, b64 = line[:-1].rpartition(b" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    return prefix + b" " + base64.b64encode(bytes(raw)) + b"\n"
