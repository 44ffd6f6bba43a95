"""Auditing a Plexi-style auditor: ``verifier.plexi_auditor`` on Plexi's own published vectors and on
negative controls (flipped signature byte, another key, another namespace, shifted timestamp, changed
digest), and ``fleetkeys audit auditor`` live against the quick start's signer process and on saved
response files."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audit.conftest import NAMESPACE, Quickstart
from tests.factory import SeedSigner
from verifier.errors import ChainError, ExpiredError, FormatError, MismatchError, SignatureError, VerificationError
from verifier.plexi_auditor import (
    AuditorKey,
    check_sequence,
    parse_auditor_keys,
    parse_response,
    parse_response_bytes,
    verify_response,
)
from verifier.statement import Statement

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "plexi" / "test-vectors.json"
FLEETKEYS = [sys.executable, "-m", "fleetkeys"]


def vector_responses() -> list[tuple[dict, AuditorKey]]:
    """Plexi's vectors as signature responses (``serialized_message`` re-encoded by us)."""
    out = []
    for v in json.loads(VECTORS.read_text()):
        st_bytes = Statement(v["ciphersuite"], v["namespace"], v["timestamp"], v["epoch"],
                             bytes.fromhex(v["digest"])).encode()
        out.append(({"version": v["ciphersuite"], "ciphersuite": v["ciphersuite"], "namespace": v["namespace"],
                     "timestamp": v["timestamp"], "epoch": v["epoch"], "digest": v["digest"],
                     "signature": v["signature"], "key_id": v["key_id"], "serialized_message": st_bytes.hex()},
                    AuditorKey(bytes.fromhex(v["verifying_key"]))))
    return out


@pytest.mark.parametrize("index", [0, 1])
def test_plexi_published_vectors_verify(index: int) -> None:
    obj, key = vector_responses()[index]
    assert verify_response(parse_response(obj), [key], namespace=obj["namespace"], epoch=1) == key


def _signed(signer: SeedSigner, epoch: int, timestamp: int, digest: bytes = b"\x11" * 32, ns: str = "ns.example",
            cs: int = 1) -> dict:
    st_bytes = Statement(cs, ns, timestamp, epoch, digest).encode()
    return {"ciphersuite": cs, "namespace": ns, "timestamp": timestamp, "epoch": epoch, "digest": digest.hex(),
            "signature": signer.sign(st_bytes).hex(), "key_id": signer.public_key[-1], "serialized_message": st_bytes.hex()}


SIGNER = SeedSigner("auditor")
KEY = AuditorKey(SIGNER.public_key)


def _flip_sig(o: dict) -> None:
    o["signature"] = ("%02x" % (int(o["signature"][:2], 16) ^ 1)) + o["signature"][2:]


def _shift_ts(o: dict) -> None:
    o["timestamp"] += 1


def _change_digest(o: dict) -> None:
    o["digest"] = "22" * 32


def _message_too(o: dict, field: str, value) -> None:
    """Change a field and re-encode ``serialized_message`` too: only the signature can catch it then."""
    o[field] = value
    o["serialized_message"] = Statement(o["ciphersuite"], o["namespace"], o["timestamp"], o["epoch"],
                                        bytes.fromhex(o["digest"])).encode().hex()


@pytest.mark.parametrize(("mutate", "error"), [
    (_flip_sig, SignatureError),
    (_shift_ts, MismatchError),                                   # fields no longer the signed message
    (_change_digest, MismatchError),
    (lambda o: _message_too(o, "timestamp", o["timestamp"] + 1), SignatureError),
    (lambda o: _message_too(o, "digest", "22" * 32), SignatureError),
    (lambda o: o.update(key_id=(o["key_id"] + 1) % 256), SignatureError),
])
def test_negative_controls(mutate, error) -> None:
    obj = _signed(SIGNER, 3, 1_000)
    verify_response(parse_response(obj), [KEY], namespace="ns.example", epoch=3)
    mutate(obj)
    with pytest.raises(error):
        verify_response(parse_response(obj), [KEY], namespace="ns.example", epoch=3)


def test_other_key_other_namespace_other_epoch_and_not_before() -> None:
    other = _signed(SeedSigner("another auditor"), 3, 1_000)
    other["key_id"] = KEY.key_id
    other["serialized_message"] = _signed(SIGNER, 3, 1_000)["serialized_message"]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_response(parse_response(other), [KEY], namespace="ns.example")
    obj = parse_response(_signed(SIGNER, 3, 1_000))
    with pytest.raises(MismatchError, match="namespace"):
        verify_response(obj, [KEY], namespace="other.example")
    with pytest.raises(MismatchError, match="epoch 4 was asked"):
        verify_response(obj, [KEY], namespace="ns.example", epoch=4)
    with pytest.raises(SignatureError, match="pinned valid only from"):
        verify_response(obj, [AuditorKey(KEY.public_key, not_before=2_000)], namespace="ns.example")
    assert verify_response(parse_response(_signed(SIGNER, 3, 1_000, cs=2)), [KEY], namespace="ns.example") == KEY


def test_sequence_checks() -> None:
    rs = [parse_response(_signed(SIGNER, e, t)) for e, t in ((1, 1000), (2, 2000), (3, 3000))]
    assert check_sequence(rs, now_ms=3500, max_age=1) == []
    assert [p.error for p in check_sequence(rs, now_ms=5000, max_age=1)] == [ExpiredError.__name__]
    gap = [rs[0], rs[2]]
    assert [(p.epoch, p.error) for p in check_sequence(gap, now_ms=3500)] == [(3, ChainError.__name__)]
    assert [(p.epoch, p.error) for p in check_sequence(rs, now_ms=3500, start_epoch=2)] == [(1, ChainError.__name__)]
    back = [rs[0], parse_response(_signed(SIGNER, 2, 500))]
    assert [p.error for p in check_sequence(back, now_ms=3500)] == ["RollbackError"]
    twice = [rs[0], parse_response(_signed(SIGNER, 1, 1000, digest=b"\x99" * 32))]
    assert "equivocation" in check_sequence(twice, now_ms=3500)[0].message
    future = [parse_response(_signed(SIGNER, 1, 10_000_000))]
    assert [p.error for p in check_sequence(future, now_ms=0)] == ["ExpiredError"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_response_parser_refuses_arbitrary_bytes_with_format_errors(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_response_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["ciphersuite", "namespace", "timestamp", "epoch", "digest", "signature",
                                        "key_id", "serialized_message", "version", "extra"]),
                       st.one_of(st.integers(-2, 300), st.text(max_size=70), st.none(), st.booleans())))
def test_response_parser_on_arbitrary_objects(obj: dict) -> None:
    try:
        parse_response(obj)
    except FormatError:
        return
    raise AssertionError(f"accepted {obj}")  # no random object is a complete valid response


def test_keys_file_shape() -> None:
    good = json.dumps({"keys": [{"public_key": KEY.public_key.hex(), "not_before": 5}], "logs": ["x"]}).encode()
    assert parse_auditor_keys(good) == (AuditorKey(KEY.public_key, 5),)
    for bad in ({"keys": []}, {"keys": [{"public_key": "00" * 32}]}, {"keys": [{"public_key": KEY.public_key.hex(),
                                                                                 "extra": 1}]}, {"other": 1}):
        with pytest.raises(VerificationError):
            parse_auditor_keys(json.dumps(bad).encode())


# -- the command -------------------------------------------------------------------------------------------------


def auditor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETKEYS, "audit", "auditor", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def pinned(quickstart: Quickstart, tmp_path: Path) -> Path:
    """The signer's key, pinned from the trust root (never from the auditor's own /info)."""
    from verifier.trustroot import load_trust_root

    pk = load_trust_root(quickstart.trust_root.read_bytes()).anchors.keys[0].public_key
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"public_key": pk.hex(), "not_before": 0}]}))
    return path


def test_live_against_our_signer(quickstart: Quickstart, pinned: Path) -> None:
    result = auditor("--url", quickstart.signer_url, "--namespace", NAMESPACE, "--keys", str(pinned),
                     "--max-age", "86400")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"3 auditor response(s) verified for {NAMESPACE}"
    stale = auditor("--url", quickstart.signer_url, "--namespace", NAMESPACE, "--keys", str(pinned), "--max-age", "1",
                    "--now", "2099-01-01T00:00:00Z")
    assert stale.returncode == 1 and "ExpiredError" in stale.stderr
    wrong = auditor("--url", quickstart.signer_url, "--namespace", "other.example/ns", "--keys", str(pinned))
    assert wrong.returncode == 1 and "unknown to the auditor" in wrong.stderr


def test_saved_responses_and_their_negative_controls(quickstart: Quickstart, pinned: Path, tmp_path: Path) -> None:
    import requests

    saved = tmp_path / "responses"
    saved.mkdir()
    for epoch in (1, 2, 3):
        body = requests.get(f"{quickstart.signer_url}/namespaces/{NAMESPACE}/audits/{epoch}", timeout=10).json()
        (saved / f"epoch-{epoch}.json").write_text(json.dumps(body))
    ok = auditor("--responses", str(saved), "--namespace", NAMESPACE, "--keys", str(pinned), "--json")
    assert ok.returncode == 0, ok.stderr
    assert [r["epoch"] for r in json.loads(ok.stdout)["verified"]] == [1, 2, 3]
    epoch2 = json.loads((saved / "epoch-2.json").read_text())
    for name, change, error in (("sig", _flip_sig, "SignatureError"), ("ts", _shift_ts, "MismatchError"),
                                ("digest", _change_digest, "MismatchError")):
        bad = dict(epoch2)
        change(bad)
        (saved / "epoch-2.json").write_text(json.dumps(bad))
        result = auditor("--responses", str(saved), "--namespace", NAMESPACE, "--keys", str(pinned))
        assert result.returncode == 1, name
        lines = result.stderr.splitlines()
        assert lines[0].startswith(f"PROBLEM: epoch-2.json: {error}: "), (name, lines)
        assert any("ChainError" in line for line in lines), "epoch 3 no longer follows a verified epoch 2"
    (saved / "epoch-2.json").write_text(json.dumps(epoch2))
    other = tmp_path / "other-keys.json"
    other.write_text(json.dumps({"keys": [{"public_key": KEY.public_key.hex()}]}))
    result = auditor("--responses", str(saved), "--namespace", NAMESPACE, "--keys", str(other))
    assert result.returncode == 1 and result.stderr.count("SignatureError") == 3
    result = auditor("--responses", str(saved), "--namespace", "other.example/ns", "--keys", str(pinned))
    assert result.returncode == 1 and result.stderr.count("MismatchError") == 3


def test_the_published_vectors_through_the_command(tmp_path: Path) -> None:
    (obj, key), _ = vector_responses()
    (tmp_path / "responses").mkdir()
    (tmp_path / "responses" / "r.json").write_text(json.dumps([obj]))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"public_key": key.public_key.hex(), "not_before": 0}]}))
    result = auditor("--responses", str(tmp_path / "responses"), "--namespace", obj["namespace"], "--keys", str(keys))
    assert result.returncode == 0, result.stderr
    assert auditor("--namespace", "x", "--keys", str(keys)).returncode == 2
