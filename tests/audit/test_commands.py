"""``fleetkeys audit verify --state``, ``list``, ``show``, ``diff``, ``monitor`` and ``journal`` as real
processes: against the quick start's signer and distributor over HTTP, and ``monitor`` against a log
that grows, served over HTTP by a static file server process. Each check has its negative control."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.attacks.helpers import ANCHOR_V2, OPERATOR_V2, v2
from tests.attacks.simulator import Simulator
from tests.audit.conftest import NAMESPACE, Quickstart
from tests.audit.logfiles import tile_files
from tests.factory import SeedSigner, fleet
from verifier.audit import fingerprint
from verifier.auditstate import AuditState
from verifier.bundle import parse_bundle
from verifier.keyset import parse_keyset
from verifier.statement import Statement

FLEETKEYS = [sys.executable, "-m", "fleetkeys"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETKEYS, *args], capture_output=True, text=True, timeout=timeout)


def audit(qs: Quickstart, command: str, *args: str) -> subprocess.CompletedProcess:
    return run("audit", command, "--trust-root", str(qs.trust_root), "--distributor", qs.url, *args)


def keyset(qs: Quickstart, epoch: int):
    return parse_keyset(parse_bundle((qs.data / "bundles" / f"epoch-{epoch}.json").read_bytes()).keyset)


# -- verify --state ----------------------------------------------------------------------------------------


def test_verify_with_a_state_file_checks_only_what_is_new(quickstart: Quickstart, tmp_path: Path) -> None:
    state = tmp_path / "audit-state.json"
    first = audit(quickstart, "verify", "--state", str(state))
    assert first.returncode == 0, first.stderr
    saved = AuditState.from_bytes(state.read_bytes())
    assert (saved.size, saved.epochs, saved.keyset_index) == (3, 3, 2) and oct(state.stat().st_mode)[-3:] == "600"
    again = audit(quickstart, "verify", "--state", str(state))
    assert again.returncode == 0, again.stderr
    assert "#0  epoch 1" not in again.stdout
    assert again.stdout.rstrip().endswith("3 entries (0 new since the saved state), 3 epochs, root verified")


def test_a_state_of_a_longer_tree_is_a_fatal_consistency_problem(quickstart: Quickstart, tmp_path: Path) -> None:
    """Negative control: the saved state says the log was bigger than the checkpoint now served."""
    state = tmp_path / "audit-state.json"
    assert audit(quickstart, "verify", "--state", str(state)).returncode == 0
    sim = Simulator()
    for _ in range(4):
        sim.add_epoch()
    bigger = AuditState.from_bytes(state.read_bytes())
    from dataclasses import replace

    from verifier.merkle import frontier_append as fa
    from verifier.merkle import frontier_root, leaf_hash

    frontier = fa(0, (), [leaf_hash(e) for e in sim.entries])
    state.write_bytes(replace(bigger, size=4, frontier=frontier, root=frontier_root(frontier),
                              tiles=((*bigger.tiles[0], bigger.tiles[0][0]),)).to_bytes())
    result = audit(quickstart, "verify", "--state", str(state))
    assert result.returncode == 1
    assert "PROBLEM: log: ConsistencyError: the checkpoint's tree has 3 entries, fewer than the 4" in result.stderr
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_bytes(b"{}")
    result = audit(quickstart, "verify", "--state", str(corrupt))
    assert result.returncode == 1 and result.stderr.startswith("FAILED: audit state") and "corrupt" in result.stderr


# -- list, show, diff ------------------------------------------------------------------------------------------


def test_list_is_verified_newest_first(quickstart: Quickstart) -> None:
    result = audit(quickstart, "list")
    assert result.returncode == 0, result.stderr
    header, *rows, summary = result.stdout.splitlines()
    assert header.startswith("VERIFIED listing of fleetkeys.local/log")
    assert [r.split()[1] for r in rows] == ["3", "2", "1"]
    assert "revoked eu-west-1-gen1" in rows[0] and "+us-east-1-gen1" in rows[1]
    assert keyset(quickstart, 3).digest.hex()[:16] in rows[0]
    assert summary == "3 entries, 3 epochs, root verified"
    limited = json.loads(audit(quickstart, "list", "--limit", "1", "--before", "3", "--json").stdout)
    assert [(e["epoch"], e["added"], e["revoked"]) for e in limited["epochs"]] == [(2, ["us-east-1-gen1"], [])]


def test_show_checks_both_signatures_and_the_inclusion_proof(quickstart: Quickstart) -> None:
    result = audit(quickstart, "show", "2", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    ks = keyset(quickstart, 2)
    assert (shown["epoch"], shown["index"], shown["keyset_digest"]) == (2, 1, ks.digest.hex())
    root = json.loads(quickstart.trust_root.read_text())
    body = json.loads(base64.b64decode(root["root"]))
    assert shown["signed_by"] == {"anchors": body["anchors"]["keys"], "countersigners": body["countersigners"]["keys"]}
    assert shown["inclusion"]["verified"] is True and shown["inclusion"]["tree_size"] == 3
    assert len(shown["inclusion"]["proof"]) == 2
    assert shown["keyset"]["epoch"] == 2
    text = audit(quickstart, "show", "3")
    assert text.returncode == 0 and "anchor        anchor.local+" in text.stdout and "(signature verified)" in text.stdout
    assert "inclusion: entry 2 in the tree of size 3" in text.stdout
    missing = audit(quickstart, "show", "9")
    assert missing.returncode == 1 and "epoch 9 is not in the log" in missing.stderr


def test_diff_table_and_json(quickstart: Quickstart) -> None:
    result = audit(quickstart, "diff", "1", "3", "--json")
    assert result.returncode == 0, result.stderr
    diff = json.loads(result.stdout)
    assert [f["fleet_id"] for f in diff["added"]] == ["us-east-1-gen1"] and diff["removed"] == []
    assert diff["status"] == [{"fleet_id": "eu-west-1-gen1", "from": "active", "to": "revoked"}]
    us = keyset(quickstart, 3).fleet("us-east-1-gen1")
    assert diff["added"][0]["fingerprint"] == fingerprint(us.public_key)
    table = audit(quickstart, "diff", "1", "3").stdout.splitlines()
    assert table[0] == "epoch 1 -> epoch 3 (both verified)"
    assert table[1].split()[:4] == ["change", "fleet", "algorithm", "status"]
    assert table[2].split()[:2] == ["added", "us-east-1-gen1"]
    assert table[3].split()[:5] == ["status", "eu-west-1-gen1", "x25519", "active", "->"]
    same = audit(quickstart, "diff", "2", "2")
    assert same.returncode == 0 and "no changes" in same.stdout


# -- monitor -----------------------------------------------------------------------------------------------------


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_monitor_once_against_the_quickstart(quickstart: Quickstart, tmp_path: Path) -> None:
    result = audit(quickstart, "monitor", "--once")
    assert result.returncode == 0, result.stderr
    start, stop = events(result.stdout)
    assert (start["event"], start["size"], start["epoch"], start["problems"]) == ("start", 3, 3, 0)
    assert (stop["event"], stop["reason"]) == ("stop", "once")
    down = run("audit", "monitor", "--once", "--trust-root", str(quickstart.trust_root), "--distributor",
               "http://127.0.0.1:9")
    assert down.returncode == 3, "could not fetch is not a problem found"
    assert [e["event"] for e in events(down.stdout)] == ["fetch-error", "stop"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticLog:
    """A simulated log exported to a directory, served over HTTP by ``python -m http.server``."""

    def __init__(self, directory: Path) -> None:
        self.sim = Simulator()
        self.dir = directory
        self.port = _free_port()
        self.write()
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                                      "--directory", str(directory)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if requests.get(f"{self.url}/checkpoint", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self) -> None:
        """Tiles first, then the checkpoint (renamed into place), as the exporter does."""
        self.sim.freshness_time = int(time.time())
        self.dir.mkdir(parents=True, exist_ok=True)
        for path, data in tile_files(self.sim.entries).items():
            target = self.dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        tmp = self.dir / ".checkpoint.tmp"
        tmp.write_bytes(self.sim.checkpoint())
        os.replace(tmp, self.dir / "checkpoint")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def static_log(tmp_path: Path) -> Iterator[StaticLog]:
    log = StaticLog(tmp_path / "static")
    log.sim.add_epoch([fleet("fleet-a")])
    log.write()
    yield log
    log.close()


class Lines:
    """Reads a process's stdout lines on a thread; ``wait_for`` waits for a condition, not a time."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 60) -> dict:
        with self.cond:
            assert self.cond.wait_for(lambda: any(predicate(e) for e in self.lines), timeout), self.lines
            return next(e for e in self.lines if predicate(e))


def test_monitor_follows_a_growing_log_and_stops_on_sigterm(static_log: StaticLog, tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(static_log.sim.world.trust_root_bytes())
    seen = tmp_path / "exec.jsonl"
    state = tmp_path / "state.json"
    proc = subprocess.Popen([*FLEETKEYS, "audit", "monitor", "--trust-root", str(root), "--distributor",
                             static_log.url, "--interval", "0.2", "--state", str(state),
                             "--exec", f"sh -c 'cat >> {seen}'"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(proc)
        start = lines.wait_for(lambda e: e["event"] == "start")
        assert (start["size"], start["epoch"], start["problems"]) == (1, 1, 0)
        sim = static_log.sim
        sim.add_epoch([fleet("fleet-a"), fleet("fleet-b", algorithm="p256")])
        static_log.write()
        epoch2 = lines.wait_for(lambda e: e["event"] == "epoch" and e["epoch"] == 2)
        assert epoch2["changes"]["added"] == ["fleet-b"] and epoch2["index"] == 1
        lines.wait_for(lambda e: e["event"] == "checkpoint" and e["size"] == 2)
        sim.publish_trust_root(v2(sim.world))
        sim.add_epoch([fleet("fleet-b", algorithm="p256")], anchor=ANCHOR_V2, countersigner=OPERATOR_V2)
        static_log.write()
        rotation = lines.wait_for(lambda e: e["event"] == "trust-root-rotation")
        assert (rotation["version"], rotation["index"], rotation["after_epoch"]) == (2, 2, 2)
        epoch3 = lines.wait_for(lambda e: e["event"] == "epoch" and e["epoch"] == 3)
        assert epoch3["changes"]["removed"] == ["fleet-a"] and epoch3["trust_root_version"] == 2
        # A bundle signed by a key no trust root lists: a problem event at its index.
        sim.publish_bundle(sim.world.bundle(sim.make_keyset(4, [fleet("attacker")]), 4,
                                            anchor=SeedSigner("rogue")), 4)
        static_log.write()
        problem = lines.wait_for(lambda e: e["event"] == "problem")
        assert (problem["index"], problem["error"], problem["fatal"]) == (4, "ThresholdError", False)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1, "a problem was found during the run"
        stop = lines.wait_for(lambda e: e["event"] == "stop")
        assert (stop["reason"], stop["problems"], stop["size"]) == ("signal", 1, 5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert AuditState.from_bytes(state.read_bytes()).size == 5
    executed = events(seen.read_text())
    assert [e["event"] for e in executed][:2] == ["start", "epoch"] and executed[-1]["event"] == "stop"
    # A restart from the state: the earlier problem is said again, and nothing older is re-reported.
    again = run("audit", "monitor", "--once", "--trust-root", str(root), "--distributor", static_log.url,
                "--state", str(state))
    assert again.returncode == 1
    assert [e["event"] for e in events(again.stdout)] == ["problem", "stop"]


def test_monitor_flags_a_bundle_naming_a_rotation_the_log_never_logged(static_log: StaticLog, tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    sim = static_log.sim
    root.write_bytes(sim.world.trust_root_bytes())
    body_v2 = sim.world.trust_root_body(2, anchors=[ANCHOR_V2], countersigners=[OPERATOR_V2])
    ks = sim.world.keyset(2, [fleet("fleet-a")], previous=sim.keyset_digests[1], root=sim.world.root_ref(body_v2))
    sim.publish_bundle(sim.world.bundle(ks, 2))
    static_log.write()
    result = run("audit", "monitor", "--once", "--trust-root", str(root), "--distributor", static_log.url)
    assert result.returncode == 1
    problem = next(e for e in events(result.stdout) if e["event"] == "problem")
    assert (problem["index"], problem["error"], problem["hidden_rotation"]) == (1, "TrustRootError", True)


def test_monitor_stops_on_sigint_without_a_problem(static_log: StaticLog, tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(static_log.sim.world.trust_root_bytes())
    proc = subprocess.Popen([*FLEETKEYS, "audit", "monitor", "--trust-root", str(root), "--distributor",
                             static_log.url, "--interval", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = Lines(proc)
        lines.wait_for(lambda e: e["event"] == "start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert lines.wait_for(lambda e: e["event"] == "stop")["reason"] == "signal"
    finally:
        if proc.poll() is None:
            proc.kill()


# -- journal ------------------------------------------------------------------------------------------------------


def test_journal_agrees_with_the_log(quickstart: Quickstart) -> None:
    result = audit(quickstart, "journal", "--signer", quickstart.signer_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{quickstart.signer_url}: 3 signed epochs in the journal, 0 invalid, 0 pending" in result.stdout
    assert "journal and log agree" in result.stdout


class _FakeJournal(BaseHTTPRequestHandler):
    """Serves ``GET /api/v1/journal`` from :attr:`entries` (the real journal plus what a test adds)."""

    entries: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"entries": self.entries, "next_before": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _signed_event(signer, epoch: int, digest: bytes, timestamp: int, event_id: int) -> dict:
    st = Statement(1, NAMESPACE, timestamp, epoch, digest).encode()
    sig = signer.sign(st)
    return {"id": event_id, "kind": "signed", "namespace": NAMESPACE, "epoch": epoch, "time": timestamp,
            "signature": {"version": 1, "ciphersuite": 1, "namespace": NAMESPACE, "timestamp": timestamp,
                          "epoch": epoch, "digest": digest.hex(), "signature": sig.hex(),
                          "key_id": signer.public_key[-1], "serialized_message": st.hex()}}


def test_journal_reports_a_withheld_epoch_a_fork_and_an_unauthenticated_entry(quickstart: Quickstart) -> None:
    from keys import load_signer

    anchor = load_signer(f"file:{quickstart.data / 'signer' / 'anchor.key'}")
    real = requests.get(f"{quickstart.signer_url}/api/v1/journal?namespace={NAMESPACE}", timeout=10).json()["entries"]
    now_ms = int(time.time() * 1000)
    withheld = _signed_event(anchor, 4, b"\x44" * 32, now_ms - 3_600_000, 1001)       # signed an hour ago, never logged
    fork = _signed_event(anchor, 2, b"\x22" * 32, now_ms - 3_600_000, 1002)           # a second digest for epoch 2
    forged = _signed_event(SeedSigner("not the anchor"), 5, b"\x55" * 32, now_ms, 1003)
    forged["signature"]["key_id"] = anchor.public_key[-1]
    real_without_epoch_1 = [e for e in real if e.get("epoch") != 1]
    _FakeJournal.entries = [forged, fork, withheld, *real_without_epoch_1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJournal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = audit(quickstart, "journal", "--signer", f"http://127.0.0.1:{server.server_address[1]}", "--json")
    finally:
        server.shutdown()
    assert result.returncode == 1
    found = json.loads(result.stdout)
    errors = sorted((p["error"], str(p["index"])) for p in found["problems"])
    assert errors == [("MissingError", "0"), ("RollbackError", "1"), ("RollbackError", "None"),
                      ("SignatureError", "None"), ("WithheldError", "None")], found["problems"]
    messages = " ".join(p["message"] for p in found["problems"])
    assert "hidden fork or a withheld bundle" in messages and "equivocation" in messages
    assert "logged epoch 1 is not in the journal" in messages
    # The same withheld epoch signed a moment ago is pending (on its way to the log), not a problem.
    _FakeJournal.entries = [_signed_event(anchor, 4, b"\x44" * 32, now_ms, 1001), *real]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJournal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = audit(quickstart, "journal", "--signer", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "3 signed epochs in the journal" not in result.stdout and "1 pending" in result.stdout


def test_static_copy_without_a_distributor(quickstart: Quickstart, tmp_path: Path) -> None:
    copy = tmp_path / "static"
    shutil.copytree(quickstart.static, copy, ignore=shutil.ignore_patterns(".lock"))
    result = run("audit", "list", "--trust-root", str(quickstart.trust_root), "--from-static", str(copy))
    assert result.returncode == 0 and result.stdout.splitlines()[1].split()[1] == "3"
