"""``fleetkeys audit`` and ``fleetkeys log epochs`` against a real quickstart (signer and distributor
processes, three epochs): over HTTP, from the distributor's exported ``static/`` directory, and from a
tampered copy of it, where every problem is one line on stderr and the exit status is 1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.audit.conftest import Quickstart
from verifier.audit import fingerprint
from verifier.keyset import format_time, parse_keyset
from verifier.tiles import entries_path, tile_path

FLEETKEYS = [sys.executable, "-m", "fleetkeys"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETKEYS, *args], capture_output=True, text=True, timeout=60)


def audit(qs: Quickstart, *args: str) -> subprocess.CompletedProcess:
    return run("audit", "--trust-root", str(qs.trust_root), *args)


def published_keyset(qs: Quickstart, epoch: int):
    from verifier.bundle import parse_bundle

    return parse_keyset(parse_bundle((qs.data / "bundles" / f"epoch-{epoch}.json").read_bytes()).keyset)


def problems(result: subprocess.CompletedProcess) -> list[str]:
    lines = result.stderr.splitlines()
    assert all(line.startswith("PROBLEM: ") for line in lines), result.stderr
    return lines


def test_audit_over_http_prints_the_history_and_verifies_the_root(quickstart: Quickstart) -> None:
    result = audit(quickstart, "--distributor", quickstart.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.rstrip().endswith("3 entries, 3 epochs, root verified")
    assert "log:        fleetkeys.local/log" in out
    assert "changes: +eu-west-1-gen1 (active)" in out
    assert "changes: +us-east-1-gen1 (active)" in out
    assert "changes: eu-west-1-gen1: active -> revoked" in out
    epoch3 = published_keyset(quickstart, 3)
    assert f"#2  epoch 3  issued {format_time(epoch3.issued_at)}" in out
    revoked = epoch3.fleet("eu-west-1-gen1")
    assert re.search(rf"eu-west-1-gen1 +x25519 +REVOKED +{fingerprint(revoked.public_key)}", out), out


def test_audit_json_lines(quickstart: Quickstart) -> None:
    result = audit(quickstart, "--distributor", quickstart.url, "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    *entries, summary = lines
    assert summary["type"] == "summary" and summary["ok"] is True and summary["root_verified"] is True
    assert summary["problems"] == 0 and summary["epochs"] == 3
    assert [(e["type"], e["index"], e["epoch"], e["verified"]) for e in entries] == [
        ("entry", 0, 1, True), ("entry", 1, 2, True), ("entry", 2, 3, True)]
    assert entries[2]["changes"]["status"] == [{"fleet_id": "eu-west-1-gen1", "from": "active", "to": "revoked"}]


def test_audit_from_the_static_directory(quickstart: Quickstart) -> None:
    result = audit(quickstart, "--from-static", str(quickstart.static))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("3 entries, 3 epochs, root verified")


def test_tampered_static_copy_exits_1_with_one_line_per_problem(quickstart: Quickstart, tmp_path: Path) -> None:
    copy = tmp_path / "static"
    shutil.copytree(quickstart.static, copy, ignore=shutil.ignore_patterns(".lock"))
    # A wrong level-0 hash tile (clients build proofs from it) and a stale checkpoint (audit 2 h later).
    level0 = copy / tile_path(0, 0, 3)
    level0.write_bytes(bytes(32) + level0.read_bytes()[32:])
    later = format_time(int(published_keyset(quickstart, 3).issued_at) + 7200)
    result = audit(quickstart, "--from-static", str(copy), "--now", later)
    assert result.returncode == 1
    lines = problems(result)
    assert len(lines) == 2, lines
    assert lines[0].startswith("PROBLEM: log: ExpiredError: witness cosignatures: ")  # the quick start requires 2 of 3
    assert "stale witness cosignatures" in lines[0]
    assert lines[1].startswith("PROBLEM: log: ProofError: hash tile tile/0/000.p/3 does not match the log entries")
    assert result.stdout.rstrip().endswith("3 entries, 3 epochs, root verified, 2 problems (first: log)")

    # One byte of one logged bundle changed: the tiles no longer match the signed checkpoint.
    bundles = copy / entries_path(0, 3)
    data = bytearray(bundles.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the second entry (each is about 1.3 KB)
    bundles.write_bytes(bytes(data))
    result = audit(quickstart, "--from-static", str(copy))
    assert result.returncode == 1
    lines = problems(result)
    assert len(lines) == 1 and lines[0].startswith("PROBLEM: log: ProofError: the 3 entries read from the entry "
                                                   "bundles hash to root"), lines
    assert lines[0].endswith("(fatal)")
    assert "3 entries, root NOT verified, 1 problem (first: log)" in result.stdout
    assert "epoch 3" not in result.stdout, "no history is printed from tiles that do not match the checkpoint"


def test_a_foreign_trust_root_fails_at_the_checkpoint(quickstart: Quickstart, tmp_path: Path) -> None:
    from tests.factory import World

    other = tmp_path / "root.json"
    other.write_bytes(World(origin="fleetkeys.local/log").trust_root_bytes())
    result = run("audit", "--trust-root", str(other), "--distributor", quickstart.url)
    assert result.returncode == 1
    [line] = problems(result)
    assert line.startswith("PROBLEM: log: SignatureError: ") and line.endswith("(fatal)")


def test_usage_errors_exit_2(quickstart: Quickstart) -> None:
    assert audit(quickstart).returncode == 2
    assert audit(quickstart, "--distributor", quickstart.url, "--from-static", str(quickstart.static)).returncode == 2
    assert audit(quickstart, "--distributor", quickstart.url, "--now", "yesterday").returncode == 2
    assert run("audit", "--distributor", quickstart.url).returncode == 2


def test_unreachable_distributor_is_one_failed_line() -> None:
    root = Path(__file__).resolve().parents[2] / "bundles" / "vectors" / "trust-root.json"
    result = run("audit", "--trust-root", str(root), "--distributor", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.startswith("FAILED: cannot read the log: GET http://127.0.0.1:9/checkpoint")
    assert result.stderr.count("\n") == 1


def test_log_epochs_is_an_unverified_listing(quickstart: Quickstart) -> None:
    result = run("log", "epochs", "--distributor", quickstart.url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.startswith("UNVERIFIED listing from ") and "fleetkeys audit list" in header
    assert [r.split()[1] for r in rows] == ["3", "2", "1"]
    assert rows[0].endswith("fleets: eu-west-1-gen1, us-east-1-gen1")
    limited = run("log", "epochs", "--distributor", quickstart.url, "--limit", "2", "--json")
    listing = json.loads(limited.stdout)
    assert listing["verified"] is False and [e["epoch"] for e in listing["epochs"]] == [3, 2]


def test_history_of_a_simulated_log_with_a_rotation_and_a_rogue_entry(tmp_path: Path) -> None:
    """--from-static on a directory written from the attack simulator: a rotation is shown with its key
    changes, a logged bundle with a bad signature is marked INVALID, and both runs are offline."""
    from tests.attacks.helpers import ANCHOR_V2, NOW, OPERATOR_V2, v2
    from tests.attacks.simulator import Simulator
    from tests.audit.logfiles import tile_files
    from tests.factory import SeedSigner, fleet

    sim = Simulator()
    sim.add_epoch([fleet("fleet-a")])
    sim.publish_bundle(sim.world.bundle(sim.make_keyset(2, [fleet("attacker")]), 2, anchor=SeedSigner("rogue")), 2)
    sim.publish_trust_root(v2(sim.world))
    sim.publish_bundle(sim.world.bundle(sim.make_keyset(2, [fleet("fleet-a"), fleet("fleet-b")]), 2,
                                        anchor=ANCHOR_V2, countersigner=OPERATOR_V2))
    static = tmp_path / "static"
    for path, data in {**tile_files(sim.entries), "checkpoint": sim.checkpoint()}.items():
        (static / path).parent.mkdir(parents=True, exist_ok=True)
        (static / path).write_bytes(data)
    root = tmp_path / "root.json"
    root.write_bytes(sim.world.trust_root_bytes())
    result = run("audit", "--trust-root", str(root), "--from-static", str(static), "--now", format_time(NOW))
    assert result.returncode == 1
    [line] = problems(result)
    assert line.startswith("PROBLEM: entry 1: ThresholdError: bundle") and "anchor" in line
    out = result.stdout
    assert "#1  epoch 2  issued" in out and "INVALID (contents below NOT verified; see problems)" in out
    assert re.search(r"\n    attacker +x25519 +active ", out), "what the rogue entry claims is visible to the auditor"
    assert "#2  trust root v2  body sha256 " in out and "\n    anchors: +anchor0.example+" in out
    assert "#3  epoch 2" in out and "changes: +fleet-b (active)" in out
    assert out.rstrip().endswith("4 entries, 2 epochs, root verified, 1 problem (first at entry 1)")
