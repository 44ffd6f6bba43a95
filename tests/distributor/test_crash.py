"""kill -9 in the middle of a stream of appends: after a restart every acknowledged entry is there, the
stored tree passes the full self-check, and every acknowledged checkpoint is consistent with the new
one (a prefix of it, never a fork)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time

import requests

from tests.distributor.conftest import make_log
from tests.distributor.helpers import REPO, TOKEN, ServeProcess, verify_read_path, world_data_dir
from verifier.checkpoint import open_checkpoint
from verifier.merkle import verify_consistency

_APPENDER = r"""
import base64, os, sys
from distributor.storage import open_storage
from distributor.log import Log
from tests.factory import World
url, schema = sys.argv[1], sys.argv[2] or None
w = World()
log = Log(open_storage(url, schema=schema), origin=w.origin, log_signer=w.log, freshness_signer=w.freshness)
n = 0
while True:
    batch = [b"batch %d entry %d " % (n, i) + os.urandom(200) for i in range(1 + n % 97)]
    log.append_entries(batch)
    head = log.head()
    # Acknowledged only after append_entries returned, i.e. after COMMIT.
    sys.stdout.write("ACK %d %s\n" % (head.size, base64.b64encode(head.checkpoint).decode()))
    sys.stdout.flush()
    n += 1
"""


def _check_acks(log, world, acks: list[tuple[int, bytes]]) -> None:
    head = log.self_check()
    current = open_checkpoint(head.checkpoint, world.log_note.verifier).checkpoint
    assert head.size >= acks[-1][0], "an acknowledged append was lost"
    for size, signed in acks:
        old = open_checkpoint(signed, world.log_note.verifier).checkpoint
        if size == 0:
            continue
        _, proof = log.consistency(size, head.size)
        verify_consistency(size, head.size, proof, old.root, current.root)


def test_kill_9_during_batch_appends(db, world):
    storage = db.open()
    make_log(storage, world)  # create the log
    storage.close()
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, db.url, db.schema or ""], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    acks: list[tuple[int, bytes]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acks) < 60 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line.startswith("ACK"), line
        _, size, cp = line.split()
        acks.append((int(size), base64.b64decode(cp)))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert len(acks) == 60
    storage = db.open()
    log = make_log(storage, world)
    _check_acks(log, world, acks)
    # The log carries on from where it was.
    size = log.head().size
    assert log.append_entries([b"after the crash"]) == size
    storage.close()


def test_kill_9_of_the_service_during_a_publish_stream(sqlite_db, world, tmp_path):
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--database", sqlite_db.url, "--origin", world.origin, "--trust-root",
            str(data / "trust-root.json"), "--workers", "2"]
    chain = world.chain(40)
    acked: dict[int, tuple[int, bytes]] = {}
    stop = threading.Event()
    server = ServeProcess(args, tmp_path / "serve1.log")

    def stream() -> None:
        session = requests.Session()
        for epoch, bundle in enumerate(chain, start=1):
            if stop.is_set():
                return
            try:
                resp = session.post(server.url + "/api/v1/bundles", data=bundle, timeout=5,
                                    headers={"Authorization": f"Bearer {TOKEN}"})
            except requests.RequestException:
                return
            if resp.status_code != 201:
                return
            acked[epoch] = (resp.json()["index"], resp.json()["checkpoint"].encode())

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 15 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()  # SIGKILL to the master and every worker, mid-stream
    stop.set()
    t.join(10)
    assert len(acked) >= 15
    with ServeProcess(args, tmp_path / "serve2.log") as again:
        for epoch, (index, _) in acked.items():
            got = requests.get(f"{again.url}/api/v1/bundles/{epoch}", timeout=5).json()
            assert got["index"] == index and base64.b64decode(got["bundle"]) == chain[epoch - 1]
        view = verify_read_path(again.url, world)
        storage = sqlite_db.open()
        log = make_log(storage, world)
        _check_acks(log, world, sorted((open_checkpoint(cp, world.log_note.verifier).checkpoint.size, cp)
                                       for _, cp in acked.values()))
        storage.close()
        # Publishing continues with the next epoch.
        nxt = len(view.epochs) + 1
        if nxt <= len(chain):
            resp = requests.post(again.url + "/api/v1/bundles", data=chain[nxt - 1], timeout=5,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
            assert resp.status_code == 201, resp.text
