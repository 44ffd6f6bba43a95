"""``fleetkeys publish`` and ``fleetkeys countersign`` end to end: a real signer process over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from fleetkeys.cli import main
from tests.signer.keysets import chain, hand_written, make_keyset
from tests.signer.process import REPO
from verifier.bundle import verify_bundle
from verifier.trustroot import load_trust_root

FLEETKEYS = Path(sys.executable).with_name("fleetkeys")


def run(op, keyset: Path, *extra: str, env: dict[str, str] | None = None):
    args = ["publish", str(keyset), "--signer", op.signer.url, "--countersign-key", f"file:{op.countersign_key}",
            *extra]
    return CliRunner().invoke(main, args, env=env if env is not None else op.env(), catch_exceptions=False)


def write(op, name: str, data: bytes) -> Path:
    path = op.dir / name
    path.write_bytes(data)
    return path


def test_publish_three_epochs_as_separate_processes_and_every_bundle_verifies(operator, distributor):
    """The whole job over real HTTP between real processes: publish CLI → signer process → distributor."""
    trust_root = load_trust_root(operator.trust_root.read_bytes())
    for epoch, keyset in enumerate(chain(operator.namespace, 3), start=1):
        path = write(operator, f"keyset-{epoch}.json", hand_written(keyset))
        proc = subprocess.run(
            [str(FLEETKEYS), "publish", str(path), "--signer", operator.signer.url, "--countersign-key",
             f"file:{operator.countersign_key}", "--trust-root", str(operator.trust_root), "--distributor",
             distributor.url, "--signer-token-file", str(operator.signer_token_file), "--token-file",
             str(operator.publish_token_file)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for step in range(1, 9):
            assert f"[{step}/8]" in proc.stdout
        assert f"published {operator.namespace} epoch {epoch}" in proc.stdout
        assert f"index {epoch - 1}" in proc.stdout
        bundle = (operator.dir / f"keyset-{epoch}.bundle.json").read_bytes()
        verified = verify_bundle(bundle, trust_root)
        assert verified.keyset.raw == keyset  # hand-written JSON was canonicalised; the canonical bytes were signed
        assert distributor.bundles[-1] == bundle
    assert [e["epoch"] for e in operator.journal() if e["kind"] == "signed"] == [3, 2, 1]


def test_rerunning_an_interrupted_publish_is_idempotent(operator, distributor):
    path = write(operator, "k1.json", make_keyset(operator.namespace, 1))
    args = ("--trust-root", str(operator.trust_root), "--distributor", distributor.url, "--token-file",
            str(operator.publish_token_file))
    first = run(operator, path, *args)
    assert first.exit_code == 0, first.output
    again = run(operator, path, *args)
    assert again.exit_code == 0, again.output
    assert "already the log's latest" in again.output and "already had it at index 0" in again.output
    assert len(distributor.bundles) == 1
    assert len([e for e in operator.journal() if e["kind"] == "signed"]) == 1


def test_a_second_keyset_for_a_published_epoch_is_refused_exit_1(operator, distributor):
    args = ("--distributor", distributor.url, "--token-file", str(operator.publish_token_file))
    assert run(operator, write(operator, "a.json", make_keyset(operator.namespace, 1)), *args).exit_code == 0
    other = write(operator, "b.json", make_keyset(operator.namespace, 1, label="other"))
    # With the distributor the chain check stops it before the signer is even asked ...
    res = run(operator, other, *args)
    assert res.exit_code == 1 and "this keyset must be epoch 2, not 1" in res.output
    # ... and without it, the anchor signer itself refuses to equivocate.
    res = run(operator, other)
    assert res.exit_code == 1
    assert "publish refused: signer refused (409)" in res.output and "refusing to sign a second digest" in res.output
    kinds = [e["kind"] for e in operator.journal()]
    assert kinds == ["refused", "signed", "namespace-created"]


def test_log_chain_checked_before_the_signer_is_asked(operator, distributor):
    ks1, ks2 = chain(operator.namespace, 2)
    args = ("--distributor", distributor.url, "--token-file", str(operator.publish_token_file))
    res = run(operator, write(operator, "k2.json", ks2), *args)
    assert res.exit_code == 1 and "the log is empty, so the first keyset must be epoch 1" in res.output
    assert run(operator, write(operator, "k1.json", ks1), *args).exit_code == 0
    forked = make_keyset(operator.namespace, 2, previous=b"\x01" * 32)
    res = run(operator, write(operator, "fork.json", forked), *args)
    assert res.exit_code == 1 and "has digest" in res.output
    assert [e["kind"] for e in operator.journal()] == ["signed", "namespace-created"]


def test_invalid_keysets_are_refused_before_the_signer_is_asked(operator):
    good = json.loads(make_keyset(operator.namespace, 1))
    cases = {
        "bad-point": {**good, "fleets": [{**good["fleets"][0], "public_key": "AAAA" * 10 + "AAA="}]},
        "expired": {**good, "issued_at": "2020-01-01T00:00:00Z", "expires_at": "2020-02-01T00:00:00Z"},
        "future": {**good, "issued_at": "2099-01-01T00:00:00Z", "expires_at": "2099-02-01T00:00:00Z"},
        "epoch-0": {**good, "epoch": 0},
        "float": None,
    }
    for name, obj in cases.items():
        data = b'{"epoch": 1.5}' if obj is None else json.dumps(obj, indent=2).encode()
        res = run(operator, write(operator, f"{name}.json", data))
        assert res.exit_code == 1, (name, res.output)
        assert "refused" in res.output
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


def test_a_keyset_too_big_for_one_log_entry_is_refused_before_signing(operator, monkeypatch):
    """An anchor signature is final, so a bundle the log could not hold must be caught before it."""
    import countersigner.publish

    keyset = make_keyset(operator.namespace, 1, fleets=8)
    monkeypatch.setattr(countersigner.publish, "MAX_BUNDLE_SIZE", len(keyset) * 4 // 3)
    res = run(operator, write(operator, "big.json", keyset))
    assert res.exit_code == 1 and "limit of one log entry" in res.output
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


def test_an_untrusted_countersign_key_is_refused_before_signing(operator, tmp_path):
    from tests.factory import seed
    from tests.signer.process import write_seed_key

    other_key = write_seed_key(tmp_path / "other.key", seed("not-the-operator"))
    res = CliRunner().invoke(main, [
        "publish", str(write(operator, "k.json", make_keyset(operator.namespace, 1))), "--signer", operator.signer.url,
        "--countersign-key", f"file:{other_key}", "--trust-root", str(operator.trust_root)], env=operator.env())
    assert res.exit_code == 1 and "not one of the trust root's countersigners" in res.output
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


def test_digest_only_plexi_path_and_derived_trust_root(operator):
    path = write(operator, "k.json", make_keyset(operator.namespace, 1))
    res = run(operator, path, "--digest-only", "--out", str(operator.dir / "out.bundle"))
    assert res.exit_code == 0, res.output
    assert "no --trust-root" in res.output
    verify_bundle((operator.dir / "out.bundle").read_bytes(), load_trust_root(operator.trust_root.read_bytes()))


@pytest.mark.parametrize("args", [
    [],                                                             # no KEYSET
    ["k.json"],                                                     # no --signer
    ["k.json", "--signer", "http://127.0.0.1:1"],                   # no --countersign-key
])
def test_usage_errors_exit_2(args):
    assert CliRunner().invoke(main, ["publish", *args]).exit_code == 2


def test_missing_tokens_are_usage_errors_and_never_read_from_argv(operator, distributor):
    path = write(operator, "k.json", make_keyset(operator.namespace, 1))
    res = run(operator, path, env={"FLEETKEYS_SIGNER_TOKEN": ""})
    assert res.exit_code == 2 and "FLEETKEYS_SIGNER_TOKEN" in res.output
    res = run(operator, path, "--distributor", distributor.url, env={**operator.env(), "FLEETKEYS_PUBLISH_TOKEN": ""})
    assert res.exit_code == 2 and "FLEETKEYS_PUBLISH_TOKEN" in res.output
    loose = write(operator, "loose.token", b"x\n")
    os.chmod(loose, 0o644)
    res = run(operator, path, "--signer-token-file", str(loose), env={})
    assert res.exit_code == 1 and "chmod 600" in res.output


def test_unreachable_signer_exit_1_with_reason(operator):
    path = write(operator, "k.json", make_keyset(operator.namespace, 1))
    res = CliRunner().invoke(main, ["publish", str(path), "--signer", "http://127.0.0.1:9",
                                    "--countersign-key", f"file:{operator.countersign_key}"], env=operator.env())
    assert res.exit_code == 1 and "unreachable" in res.output


def test_countersign_command_checks_the_anchor_answer(operator):
    ks = make_keyset(operator.namespace, 1)
    resp = requests.post(operator.signer.url + "/api/v1/sign-keyset", data=ks, timeout=10,
                         headers={"Authorization": f"Bearer {operator.signer.tokens['write']}"})
    answer = write(operator, "anchor.json", resp.content)
    keyset = write(operator, "k.json", hand_written(ks))
    out = operator.dir / "bundle.json"
    base = ["countersign", "--keyset", str(keyset), "--response", str(answer), "--key",
            f"file:{operator.countersign_key}"]
    res = CliRunner().invoke(main, [*base, "--trust-root", str(operator.trust_root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    verify_bundle(out.read_bytes(), load_trust_root(operator.trust_root.read_bytes()))
    anchor_hex = operator.world.anchor.public_key.hex()
    res = CliRunner().invoke(main, [*base, "--anchor-key", anchor_hex])
    assert res.exit_code == 0 and res.stdout_bytes.startswith(b'{"format":"fleetkeys/bundle/v1"')
    other = write(operator, "other.json", make_keyset(operator.namespace, 1, label="x"))
    res = CliRunner().invoke(main, ["countersign", "--keyset", str(other), "--response", str(answer), "--key",
                                    f"file:{operator.countersign_key}", "--anchor-key", anchor_hex])
    assert res.exit_code == 1 and "countersign refused" in res.output
    assert CliRunner().invoke(main, base).exit_code == 2  # neither --trust-root nor --anchor-key
    assert hashlib.sha256(ks).hexdigest() in json.loads(answer.read_bytes())["digest"]
