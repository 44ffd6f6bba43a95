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
from tests.service_process import REPO
from tests.signer.keysets import chain, hand_written, make_keyset
from verifier.bundle import parse_bundle, verify_bundle
from verifier.trustroot import load_trust_root

FLEETKEYS = Path(sys.executable).with_name("fleetkeys")


def run(op, keyset: Path, *extra: str, env: dict[str, str] | None = None):
    """``fleetkeys publish`` in process; with ``--trust-root`` of the operator unless ``extra`` names the trust."""
    trust = [] if {"--trust-root", "--anchor-key", "--no-trust"} & set(extra) else ["--trust-root", str(op.trust_root)]
    extra = tuple(e for e in extra if e != "--no-trust")
    args = ["publish", str(keyset), "--signer", op.signer.url, "--countersign-key", f"file:{op.countersign_key}",
            *trust, *extra]
    return CliRunner().invoke(main, args, env=env if env is not None else op.env(), catch_exceptions=False)


def write(op, name: str, data: bytes) -> Path:
    path = op.dir / name
    path.write_bytes(data)
    return path


def test_publish_three_epochs_as_separate_processes_and_every_bundle_verifies(operator, distributor):
    """The whole job over real HTTP between real processes: publish CLI → signer process → distributor."""
    trust_root = load_trust_root(operator.trust_root.read_bytes())
    for epoch, keyset in enumerate(chain(operator.namespace, 3, trust_root=operator.world.root_ref()), start=1):
        # Written without the trust_root name: publish inserts the --trust-root's (the very bytes of ``keyset``).
        path = write(operator, f"keyset-{epoch}.json", hand_written(keyset, without_root=True))
        proc = subprocess.run(
            [str(FLEETKEYS), "publish", str(path), "--signer", operator.signer.url, "--countersign-key",
             f"file:{operator.countersign_key}", "--trust-root", str(operator.trust_root), "--distributor",
             distributor.url, "--signer-token-file", str(operator.signer_token_file), "--token-file",
             str(operator.publish_token_file)],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for step in range(1, 9):
            assert f"[{step}/8]" in proc.stdout
        assert "names trust root v1 (inserted from --trust-root)" in proc.stdout
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
    assert res.exit_code == 1 and "epoch 1 is not the next epoch 2" in res.output
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
    assert res.exit_code == 1 and "the log is empty: epoch 2 is not the next epoch 1" in res.output
    assert run(operator, write(operator, "k1.json", ks1), *args).exit_code == 0
    forked = make_keyset(operator.namespace, 2, previous=b"\x01" * 32)
    res = run(operator, write(operator, "fork.json", forked), *args)
    assert res.exit_code == 1 and "has digest" in res.output
    assert [e["kind"] for e in operator.journal()] == ["signed", "namespace-created"]


def test_publishing_on_top_of_an_epoch_awaiting_witnesses(operator, distributor):
    """Epoch 1 is appended but not yet visible (its checkpoint awaits witness cosignatures): the early
    chain check cannot be made against what clients see, so publish says so and leaves the chain to
    the signer and the distributor, which both check it against what they hold."""
    ks1, ks2 = chain(operator.namespace, 2, trust_root=operator.world.root_ref())
    args = ("--distributor", distributor.url, "--token-file", str(operator.publish_token_file))
    assert run(operator, write(operator, "k1.json", ks1), *args).exit_code == 0
    distributor.visible = 0
    res = run(operator, write(operator, "k2.json", ks2), *args)
    assert res.exit_code == 0, res.output
    assert "the log is empty among the entries clients see, but 1 more await witness cosignatures" in res.output
    assert len(distributor.bundles) == 2


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


def test_digest_only_plexi_path_on_a_digest_namespace_with_an_explicit_anchor_key(digest_operator):
    op = digest_operator
    path = write(op, "k.json", make_keyset(op.namespace, 1, trust_root=op.world.root_ref()))
    res = run(op, path, "--digest-only", "--anchor-key", op.world.anchor.public_key.hex(), "--out",
              str(op.dir / "out.bundle"))
    assert res.exit_code == 0, res.output
    assert "no --trust-root: checking against the given anchor key(s)" in res.output
    verify_bundle((op.dir / "out.bundle").read_bytes(), load_trust_root(op.trust_root.read_bytes()))


def test_digest_only_on_a_keyset_namespace_is_refused_and_nothing_is_signed(operator):
    res = run(operator, write(operator, "k.json", make_keyset(operator.namespace, 1)), "--digest-only")
    assert res.exit_code == 1 and "signer refused (409)" in res.output and "sign-keyset" in res.output
    assert [e["kind"] for e in operator.journal()] == ["refused", "namespace-created"]
    assert run(operator, write(operator, "k1.json", make_keyset(operator.namespace, 1))).exit_code == 0


def test_publish_without_a_trust_root_or_anchor_key_is_a_usage_error_not_trust_in_the_signers_info(operator):
    path = write(operator, "k.json", make_keyset(operator.namespace, 1))
    res = run(operator, path, "--no-trust")
    assert res.exit_code == 2 and "--trust-root" in res.output and "--anchor-key" in res.output
    both = run(operator, path, "--trust-root", str(operator.trust_root), "--anchor-key",
               operator.world.anchor.public_key.hex())
    assert both.exit_code == 2
    assert run(operator, path, "--anchor-key", "zz").exit_code == 2
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


def test_a_signer_whose_key_is_not_a_given_anchor_key_is_refused_before_signing(operator):
    from tests.factory import SeedSigner

    stranger = SeedSigner("not-the-anchor").public_key.hex()
    named = make_keyset(operator.namespace, 1, trust_root=operator.world.root_ref())
    res = run(operator, write(operator, "k.json", named), "--anchor-key", stranger)
    assert res.exit_code == 1 and "is a trusted --anchor-key" in res.output
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


def test_a_ciphersuite_2_keyset_near_the_bundle_limit_is_refused_before_signing(signer_proc, tmp_path, monkeypatch):
    """A bincode statement is larger than a protobuf one: sizing with ciphersuite 1 would spend the epoch."""
    import countersigner.publish
    from countersigner.countersign import build_bundle
    from tests.countersigner.conftest import make_operator
    from verifier.statement import Statement

    op = make_operator(signer_proc, tmp_path, ciphersuite=2)
    keyset = make_keyset(op.namespace, 1, fleets=4)
    digest, ts = hashlib.sha256(keyset).digest(), 1_795_000_000_000

    def size(cs: int) -> int:
        return len(build_bundle(Statement(cs, op.namespace, ts, 1, digest).encode(), keyset,
                                [(bytes(32), bytes(64))], [(bytes(32), bytes(64))]))

    limit = size(2) - 1  # the real bundle cannot fit, though a ciphersuite-1 one would (with the old margin)
    assert size(1) + 16 <= limit
    monkeypatch.setattr(countersigner.publish, "MAX_BUNDLE_SIZE", limit)
    res = run(op, write(op, "k.json", keyset))
    assert res.exit_code == 1 and "limit of one log entry" in res.output
    assert [e["kind"] for e in op.journal()] == ["namespace-created"]


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
    res = CliRunner().invoke(main, ["publish", str(path), "--signer", "http://127.0.0.1:9", "--trust-root",
                                    str(operator.trust_root), "--countersign-key", f"file:{operator.countersign_key}"],
                             env=operator.env())
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


def test_countersign_refuses_an_anchor_response_whose_key_id_names_another_key(operator):
    """Consistent with bundle verification: a signature is tried only under keys matching its one-byte hint."""
    ks = make_keyset(operator.namespace, 1)
    resp = requests.post(operator.signer.url + "/api/v1/sign-keyset", data=ks, timeout=10,
                         headers={"Authorization": f"Bearer {operator.signer.tokens['write']}"})
    body = resp.json()
    body["key_id"] = (body["key_id"] + 1) % 256
    answer = write(operator, "anchor.json", json.dumps(body).encode())
    res = CliRunner().invoke(main, ["countersign", "--keyset", str(write(operator, "k.json", ks)), "--response",
                                    str(answer), "--key", f"file:{operator.countersign_key}", "--trust-root",
                                    str(operator.trust_root)])
    assert res.exit_code == 1 and f"with key id {body['key_id']}" in res.output


def test_publish_and_countersign_refuse_a_pin_value_in_the_countersign_key_reference(operator):
    ref = "pkcs11:token=t;object=k?module-path=/nonexistent/p11.so&pin-value=SuperSecretPin"
    path = write(operator, "k.json", make_keyset(operator.namespace, 1))
    res = CliRunner().invoke(main, ["publish", str(path), "--signer", operator.signer.url, "--countersign-key", ref,
                                    "--trust-root", str(operator.trust_root)], env=operator.env())
    assert res.exit_code == 1 and "pin-source" in res.output and "SuperSecretPin" not in res.output
    answer = write(operator, "anchor.json", json.dumps({
        "ciphersuite": 1, "namespace": operator.namespace, "timestamp": 1, "epoch": 1,
        "digest": hashlib.sha256(make_keyset(operator.namespace, 1)).hexdigest(), "signature": "00" * 64}).encode())
    res = CliRunner().invoke(main, ["countersign", "--keyset", str(path), "--response", str(answer), "--key", ref,
                                    "--trust-root", str(operator.trust_root)])
    assert res.exit_code == 1 and "pin-source" in res.output and "SuperSecretPin" not in res.output
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


# -- the trust root the keyset names (bundles/FORMAT.md §3.3) -----------------------------------------------


def test_publish_names_the_given_trust_root_in_a_keyset_without_the_field(operator, distributor):
    path = write(operator, "k.json", hand_written(make_keyset(operator.namespace, 1)))
    res = run(operator, path, "--distributor", distributor.url, "--token-file", str(operator.publish_token_file))
    assert res.exit_code == 0, res.output
    assert "names trust root v1 (inserted from --trust-root)" in res.output.splitlines()[0]
    keyset = verify_bundle(distributor.bundles[-1], load_trust_root(operator.trust_root.read_bytes())).keyset
    body = operator.world.trust_root_body()
    assert json.loads(keyset.raw)["trust_root"] == {"sha256": hashlib.sha256(body).hexdigest(), "version": 1}
    assert keyset.raw == make_keyset(operator.namespace, 1, trust_root=operator.world.root_ref()), \
        "the name is inserted before canonicalising: the canonical bytes carry it"


def test_a_keyset_naming_the_given_root_itself_is_published_as_written(operator):
    named = make_keyset(operator.namespace, 1, trust_root=operator.world.root_ref())
    res = run(operator, write(operator, "k.json", hand_written(named)))
    assert res.exit_code == 0, res.output
    assert "names trust root v1 (as written, the --trust-root's)" in res.output
    assert parse_bundle((operator.dir / "k.bundle.json").read_bytes()).keyset == named


def test_a_keyset_naming_another_root_is_refused_before_the_signer_is_asked(operator):
    from verifier.keyset import TrustRootRef

    right = operator.world.root_ref()
    for name, ref in (("digest", TrustRootRef(1, bytes(32))), ("version", TrustRootRef(2, right.sha256))):
        res = run(operator, write(operator, f"{name}.json", make_keyset(operator.namespace, 1, trust_root=ref)))
        assert res.exit_code == 1, res.output
        assert "keyset refused" in res.output and "must name the trust root in force, v1" in res.output, res.output
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]


def test_with_anchor_keys_the_keyset_must_carry_its_trust_root_name(operator):
    anchor = operator.world.anchor.public_key.hex()
    res = run(operator, write(operator, "k.json", make_keyset(operator.namespace, 1)), "--anchor-key", anchor)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "it has no trust_root field, and without --trust-root publish has no trust root to name" in text
    assert [e["kind"] for e in operator.journal()] == ["namespace-created"]
    named = make_keyset(operator.namespace, 1, trust_root=operator.world.root_ref())
    res = run(operator, write(operator, "named.json", named), "--anchor-key", anchor)
    assert res.exit_code == 0, res.output
    assert "not checked without --trust-root; the distributor checks it" in res.output
    # The bundle verifies under the real trust root, whose name it carries.
    verify_bundle((operator.dir / "named.bundle.json").read_bytes(), load_trust_root(operator.trust_root.read_bytes()))


def test_countersign_with_anchor_keys_accepts_a_named_keyset(operator):
    ks = make_keyset(operator.namespace, 1, trust_root=operator.world.root_ref())
    resp = requests.post(operator.signer.url + "/api/v1/sign-keyset", data=ks, timeout=10,
                         headers={"Authorization": f"Bearer {operator.signer.tokens['write']}"})
    answer = write(operator, "anchor.json", resp.content)
    res = CliRunner().invoke(main, ["countersign", "--keyset", str(write(operator, "k.json", ks)), "--response",
                                    str(answer), "--key", f"file:{operator.countersign_key}", "--anchor-key",
                                    operator.world.anchor.public_key.hex()])
    assert res.exit_code == 0, res.output
    bundle = res.stdout_bytes.strip()
    assert verify_bundle(bundle, load_trust_root(operator.trust_root.read_bytes())).keyset.raw == ks
