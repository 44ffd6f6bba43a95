"""``fleetkeys serve``: first start, restarts, and refusals (exit status and message)."""

from __future__ import annotations

import stat

import requests

from tests.distributor.helpers import ServeProcess, run_cli, world_data_dir
from tests.factory import SeedSigner, World
from verifier.checkpoint import open_checkpoint
from verifier.note import NoteVerifier


def _printed(log: str, label: str) -> str:
    return next(line.split(": ", 1)[1] for line in log.splitlines() if line.startswith(label + ": "))


def test_first_start_creates_the_keys_and_prints_origin_and_vkeys(tmp_path):
    data = tmp_path / "data"
    with ServeProcess(["--data", str(data), "--origin", "example.org/fleetkeys"], tmp_path / "1.log") as server:
        out = server.log()
        cp = requests.get(server.url + "/checkpoint", timeout=5).content
    for name in ("log.key", "freshness.key", "publish.token"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        assert "created " in out and str(data / name) in out
    assert _printed(out, "origin") == "example.org/fleetkeys"
    log_key = NoteVerifier.from_vkey(_printed(out, "log vkey"))
    assert log_key.name == "example.org/fleetkeys"
    assert NoteVerifier.from_vkey(_printed(out, "freshness vkey")).name == "example.org/fleetkeys/freshness"
    assert open_checkpoint(cp, log_key).checkpoint.size == 0
    assert "publishing is refused" in out
    # A restart reuses everything and keeps the stored origin.
    with ServeProcess(["--data", str(data)], tmp_path / "2.log") as again:
        out2 = again.log()
    assert "created" not in out2 and _printed(out2, "origin") == "example.org/fleetkeys"
    assert _printed(out2, "log vkey") == log_key.vkey


def test_a_trust_root_for_other_keys_is_refused(tmp_path):
    world = World()
    data = world_data_dir(tmp_path / "data", world)
    other = tmp_path / "other-root.json"
    other.write_bytes(World(freshness=SeedSigner("not ours")).trust_root_bytes())
    result = run_cli("serve", "--data", str(data), "--origin", world.origin, "--trust-root", str(other))
    assert result.returncode == 1
    assert "refusing to start" in result.stderr and "freshness key" in result.stderr
    wrong_origin = run_cli("serve", "--data", str(data), "--origin", "another.example/log", "--trust-root",
                           str(data / "trust-root.json"))
    assert wrong_origin.returncode == 1 and "origin" in wrong_origin.stderr


def test_a_different_origin_than_the_stored_one_is_refused(tmp_path):
    world = World()
    data = world_data_dir(tmp_path / "data", world)
    with ServeProcess(["--data", str(data), "--origin", world.origin], tmp_path / "1.log"):
        pass
    result = run_cli("serve", "--data", str(data), "--origin", "renamed.example/log")
    assert result.returncode == 1 and "holds the log" in result.stderr


def test_unreadable_key_reference_is_a_clear_error(tmp_path):
    result = run_cli("serve", "--data", str(tmp_path / "d"), "--log-key", "nope:thing")
    assert result.returncode == 1 and "refusing to start" in result.stderr and "unsupported scheme" in result.stderr
