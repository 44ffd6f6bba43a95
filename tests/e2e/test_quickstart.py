"""End to end over real HTTP between real processes: the README's quick start, then the CLI verifier.

``fleetkeys quickstart`` runs an anchor signer and a distributor (SQLite) as gunicorn processes,
publishes three epochs through the real publish pipeline and verifies each with the client library.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FLEETKEYS = [sys.executable, "-m", "fleetkeys"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETKEYS, *args], capture_output=True, text=True, timeout=timeout)


def test_quickstart_publishes_and_verifies_three_epochs(serving):
    data, _, output, _ = serving
    assert "client verified epoch 1 (log size 1): +eu-west-1-gen1 (active)" in output
    assert "client verified epoch 2 (log size 2): +us-east-1-gen1 (active)" in output
    assert "client verified epoch 3 (log size 3): eu-west-1-gen1: active -> revoked" in output
    for name in ("operator.key", "distributor/log.key", "distributor/freshness.key", "signer/anchor.key"):
        assert (data / name).stat().st_mode & 0o077 == 0, f"{name} must be 0600"


def test_cli_verify_prints_verified_fleet_keys(serving, tmp_path):
    data, url, _, _ = serving
    result = _run("verify", "--trust-root", str(data / "trust-root.json"), "--distributor", url,
                  "--state", str(tmp_path / "state"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["epoch"] == 3 and out["offline"] is False
    assert [f["fleet_id"] for f in out["fleets"]] == ["us-east-1-gen1"]  # the revoked fleet is not offered


def test_cli_verify_refuses_a_foreign_trust_root_with_one_line(serving, tmp_path):
    data, url, _, _ = serving
    other = tmp_path / "other-root.json"
    from tests.factory import World

    other.write_bytes(World().trust_root_bytes())
    result = _run("verify", "--trust-root", str(other), "--distributor", url, "--state", str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("FAILED: "), result.stderr
    assert not (tmp_path / "s" / "state.json").exists()


def test_cli_verify_bundle_offline_and_tampered(serving, tmp_path):
    data, _, _, _ = serving
    bundle = data / "bundles" / "epoch-3.json"
    ok = _run("verify-bundle", str(bundle), "--trust-root", str(data / "trust-root.json"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["epoch"] == 3
    tampered = tmp_path / "t.json"
    raw = bytearray(bundle.read_bytes())
    raw[raw.index(b'"keyset":"') + 20] ^= 0x01
    tampered.write_bytes(bytes(raw))
    bad = _run("verify-bundle", str(tampered), "--trust-root", str(data / "trust-root.json"))
    assert bad.returncode == 1 and bad.stderr.startswith("FAILED: "), bad.stderr


def test_quickstart_twice_continues_the_same_log(tmp_path):
    data = tmp_path / "data"
    first = _run("quickstart", "--data", str(data), "--exit", "--port", "18180", "--signer-port", "18190")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _run("quickstart", "--data", str(data), "--exit", "--port", "18180", "--signer-port", "18190")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "client verified epoch 6 (log size 6): eu-west-1-gen4: active -> revoked" in second.stdout
    assert sorted(p.name for p in Path(data / "bundles").iterdir()) == [f"epoch-{i}.json" for i in range(1, 7)]


def test_quickstart_keysets_name_its_trust_root(serving):
    """The operator's keyset files carry no name; publish --trust-root inserted the quickstart's (FORMAT.md §3.3)."""
    import hashlib

    from verifier.bundle import verify_bundle
    from verifier.keyset import TrustRootRef
    from verifier.trustroot import load_trust_root

    data, _, output, _ = serving
    root = load_trust_root((data / "trust-root.json").read_bytes())
    assert output.count("names trust root v1 (inserted from --trust-root)") == 3
    for epoch in (1, 2, 3):
        assert "trust_root" not in json.loads((data / "keysets" / f"epoch-{epoch}.json").read_bytes())
        keyset = verify_bundle((data / "bundles" / f"epoch-{epoch}.json").read_bytes(), root).keyset
        assert keyset.trust_root == TrustRootRef(root.version, hashlib.sha256(root.body).digest())
