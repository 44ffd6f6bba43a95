"""The committed golden vectors are exactly what the generator makes, and each case verifies as stated.

A vector that drifts from the generator (or a generator that stopped being deterministic) fails
``test_committed_vectors_are_regenerated_byte_for_byte`` naming the file; a verifier change that makes
any case pass, fail, or fail with another class fails ``test_case_outcome``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bundles import generate_vectors
from verifier.errors import VerificationError
from verifier.trustroot import load_trust_root
from verifier.update import ClientState, verify_update

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "bundles" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_committed_vectors_are_regenerated_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "vectors"
    run = subprocess.run([sys.executable, "-m", "bundles.generate_vectors", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    fresh, committed = _tree(out), _tree(VECTORS)
    assert sorted(fresh.keys() - committed.keys()) == [], "generated but not committed"
    assert sorted(committed.keys() - fresh.keys()) == [], "committed but no longer generated"
    differing = [path for path in sorted(fresh) if fresh[path] != committed[path]]
    assert differing == [], f"committed vector files differ from the generator: {differing}"


def test_generator_is_deterministic_within_a_process() -> None:
    assert generate_vectors.build() == generate_vectors.build()


def test_check_mode_names_a_changed_file(tmp_path: Path) -> None:
    out = tmp_path / "vectors"
    assert generate_vectors.main(["--out", str(out)]) == 0
    (out / "log" / "bundle-epoch-1.json").write_bytes(b"{}")
    (out / "stray.txt").write_bytes(b"x")
    assert generate_vectors.differences(generate_vectors.build(), out) == [
        "differs: log/bundle-epoch-1.json", "unexpected: stray.txt"]
    assert generate_vectors.main(["--check", "--out", str(out)]) == 1


def test_manifest_covers_every_failure_kind() -> None:
    expected = {c["expect"] for c in CASES}
    assert expected >= {"ok", "DigestError", "ThresholdError", "FormatError", "MismatchError", "ExpiredError",
                        "SignatureError", "ProofError", "SizeLimitError", "RollbackError", "ChainError",
                        "ConsistencyError"}
    assert len({c["name"] for c in CASES}) == len(CASES)


def _read(path: str) -> bytes:
    return (VECTORS / path).read_bytes()


def _consistency(files: dict[str, str]) -> list[bytes]:
    if "consistency" not in files:
        return []
    return [base64.b64decode(h, validate=True) for h in json.loads(_read(files["consistency"]))["proof"]]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_outcome(case: dict) -> None:
    files = case["files"]
    state_bytes = _read(case["state"]) if case["state"] else None
    state = ClientState.from_bytes(state_bytes) if state_bytes else ClientState()
    before = state.to_bytes()
    try:
        update = verify_update(_read(files["bundle"]), _read(files["proof"]), _read(files["checkpoint"]),
                               trust_root=load_trust_root(_read(files["trust_root"])), state=state,
                               now=case["now"], consistency=_consistency(files))
    except VerificationError as exc:
        assert type(exc).__name__ == case["expect"], f"{case['name']}: {type(exc).__name__}: {exc}"
        # A failed update leaves the caller's state exactly as it was (object and serialisation).
        assert state.to_bytes() == before
        assert state == (ClientState.from_bytes(state_bytes) if state_bytes else ClientState())
        if state_bytes:
            assert _read(case["state"]) == state_bytes
        return
    assert case["expect"] == "ok", f"{case['name']}: accepted, expected {case['expect']}"
    result = case["result"]
    assert update.epoch == result["epoch"]
    assert [f.fleet_id for f in update.fleets] == result["fleets"]
    assert update.index == result["index"]
    assert update.changed == result["changed"]
    if "state" in result:
        assert update.state.to_bytes() == _read(result["state"])
    assert state.to_bytes() == before
