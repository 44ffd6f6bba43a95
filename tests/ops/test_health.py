"""``GET /healthz`` and ``GET /readyz`` on real processes (issue 14, item 2): a distributor whose
witnesses stop answering is alive but not ready within a few freshness intervals, and says which
check failed; the witness is ready with its state store and key."""

from __future__ import annotations

import pytest
import requests

from tests.distributor.helpers import ServeProcess, world_data_dir
from tests.factory import World
from tests.service_process import wait_for
from tests.signer.process import SignerProcess, prepare_data_dir


@pytest.fixture
def world() -> World:
    return World(witness_count=2, witness_threshold=2)


def readyz(url: str) -> tuple[int, dict]:
    resp = requests.get(url + "/readyz", timeout=10)
    assert resp.headers["Content-Type"] == "application/json" and resp.headers["Cache-Control"] == "no-store"
    return resp.status_code, resp.json()


def test_a_distributor_whose_witnesses_died_is_alive_but_not_ready(world, witnesses, tmp_path):
    data = world_data_dir(tmp_path / "dist", world)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
            "--workers", "2", "--freshness-interval", "1", "--witness-timeout", "1"]
    for w in witnesses:
        args += ["--witness", w.option]
    with ServeProcess(args, tmp_path / "dist.log") as dist:
        wait_for(lambda: readyz(dist.url)[0] == 200, 30, "the distributor to be ready")
        status, body = readyz(dist.url)
        assert body["ready"] is True
        assert [c["name"] for c in body["checks"]] == ["storage", "tree", "freshness", "checkpoint", "witnesses"]
        assert all(c["ok"] for c in body["checks"])
        for w in witnesses:
            assert readyz(w.url)[0] == 200
            assert requests.get(w.url + "/healthz", timeout=10).json() == {"alive": True, "service": "witness"}

        witnesses[1].kill()
        # Asked every second; missing after three intervals without a cosignature.
        wait_for(lambda: readyz(dist.url)[0] == 503, 30, "readyz to turn 503 with a witness missing")
        status, body = readyz(dist.url)
        assert set(body) == {"error"}  # the distributor's one error shape
        assert body["error"].startswith("not ready: witnesses: 1 of the 2 required witnesses cosigned")
        assert "storage" not in body["error"] and "freshness" not in body["error"]
        health = requests.get(dist.url + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json() == {"alive": True, "service": "distributor"}
        # The lag is visible per witness, the same from every worker.
        text = requests.get(dist.url + "/metrics", timeout=10).text
        assert "fleetkeys_distributor_witness_cosignature_age_seconds" in text
        assert 'fleetkeys_distributor_witness_exchanges_total{outcome="failed"' in text

        back = witnesses[1].restart()
        try:
            wait_for(lambda: readyz(dist.url)[0] == 200, 30, "ready again once the witness is back")
        finally:
            back.stop()


def test_the_signer_is_ready_with_its_journal_and_key(tmp_path):
    prepare_data_dir(tmp_path / "signer", ("ns",), key_seed=b"\x09" * 32)
    with SignerProcess(tmp_path / "signer") as signer:
        status, body = readyz(signer.url)
        assert status == 200 and [c["name"] for c in body["checks"]] == ["journal", "key"]
        assert requests.get(signer.url + "/healthz", timeout=10).json() == {"alive": True, "service": "signer"}
        assert requests.get(signer.url + "/metrics", timeout=10).status_code == 404  # only on its own listener
