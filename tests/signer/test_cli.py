"""``fleetkeys signer init`` / ``token`` / ``serve`` set-up paths (the quickstart relies on them)."""

from __future__ import annotations

import json
import stat

from click.testing import CliRunner

from fleetkeys.cli import main
from signer.journal import Journal
from tests.signer.conftest import NS


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_is_non_interactive_idempotent_and_keeps_secrets_out_of_output(tmp_path):
    data = tmp_path / "d"
    first = CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--namespace", NS])
    assert first.exit_code == 0, first.output
    assert "anchor vkey:       anchor+" in first.output and f"namespace {NS}: created" in first.output
    for name in ("admin", "write"):
        token = (data / "tokens" / f"{name}.token").read_text().strip()
        assert _mode(data / "tokens" / f"{name}.token") == 0o600 and token not in first.output
        assert token not in (data / "signer.json").read_text()
    assert _mode(data / "anchor.key") == 0o600 and _mode(data / "signer.json") == 0o600
    config = json.loads((data / "signer.json").read_text())
    assert [t["role"] for t in config["tokens"]] == ["admin", "write"]

    again = CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--namespace", NS, "--namespace", "b.ns"])
    assert again.exit_code == 0 and f"namespace {NS}: exists" in again.output and "wrote token" not in again.output
    assert [n.name for n in Journal(data / "journal.sqlite").namespaces()] == ["b.ns", NS]
    bad = CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--namespace", "bad name"])
    assert bad.exit_code == 2


def test_token_command_adds_a_scoped_token(tmp_path):
    data = tmp_path / "d"
    CliRunner().invoke(main, ["signer", "init", "--data", str(data)])
    res = CliRunner().invoke(main, ["signer", "token", "--data", str(data), "--name", "ops", "--namespace", NS])
    assert res.exit_code == 0, res.output
    tokens = json.loads((data / "signer.json").read_text())["tokens"]
    assert tokens[-1] == {"name": "ops", "namespaces": [NS], "role": "write", "sha256": tokens[-1]["sha256"]}
    assert CliRunner().invoke(main, ["signer", "token", "--data", str(data), "--name", "ops", "--admin"]).exit_code == 1
    assert CliRunner().invoke(main, ["signer", "token", "--data", str(data), "--name", "x"]).exit_code == 2


def test_serve_refuses_a_missing_explicit_key_without_creating_one(tmp_path):
    data = tmp_path / "d"
    res = CliRunner().invoke(main, ["signer", "serve", "--data", str(data), "--key", f"file:{tmp_path / 'nope.key'}"])
    assert res.exit_code == 1 and "no such file" in res.output
    assert not (data / "anchor.key").exists()


def test_init_creates_keyset_namespaces_unless_mode_digest_is_given(tmp_path):
    data = tmp_path / "d"
    res = CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--namespace", NS])
    assert res.exit_code == 0 and "mode keyset" in res.output
    res = CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--namespace", "plexi.ns", "--mode", "digest"])
    assert res.exit_code == 0 and "mode digest" in res.output
    journal = Journal(data / "journal.sqlite")
    assert {n.name: n.mode for n in journal.namespaces()} == {NS: "keyset", "plexi.ns": "digest"}
    # The mode is fixed: asking for the other one later is refused, not silently ignored.
    res = CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--namespace", NS, "--mode", "digest"])
    assert res.exit_code == 1 and "mode keyset" in res.output
    assert CliRunner().invoke(main, ["signer", "init", "--data", str(data), "--mode", "both"]).exit_code == 2


def test_init_refuses_a_pin_value_in_the_key_reference(tmp_path):
    ref = "pkcs11:token=t;object=anchor?module-path=/nonexistent/p11.so&pin-value=SuperSecretPin"
    res = CliRunner().invoke(main, ["signer", "init", "--data", str(tmp_path / "d"), "--key", ref])
    assert res.exit_code == 1 and "pin-source" in res.output and "SuperSecretPin" not in res.output
