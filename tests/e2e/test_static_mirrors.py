"""The client reads only static files: nginx serving the export alone, a plain file server, a C2SP-only
mirror, failover between mirrors, and ``fleetkeys verify`` against each — no ``/api/`` anywhere.

The log is a real distributor log (SQLite) exported by the distributor's own exporter; the servers are
real processes on loopback; the client talks real HTTP.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributor.export import StaticWriter
from distributor.freshness import Freshness
from distributor.log import Log
from distributor.storage import open_storage
from tests.distributor.helpers import NginxProcess
from tests.factory import World, fleet
from tests.service_process import free_port, wait_for
from verifier.client import Client
from verifier.fetch import HttpFetcher

REPO = Path(__file__).resolve().parents[2]


def bundles(world: World, n: int) -> list[bytes]:
    out, prev = [], None
    for epoch in range(1, n + 1):
        ks = world.keyset(epoch, [fleet("fleet-1"), fleet(f"fleet-{epoch + 1}")], previous=prev)
        prev = hashlib.sha256(ks).digest()
        out.append(world.bundle(ks, epoch))
    return out


class Export:
    """A real log and its static export directory (``entry_objects=False``: a C2SP-only directory)."""

    def __init__(self, tmp: Path, world: World, *, entry_objects: bool = True) -> None:
        self.storage = open_storage(f"sqlite:///{tmp / 'log.db'}")
        self.log = Log(self.storage, origin=world.origin, log_signer=world.log, freshness_signer=world.freshness)
        self.dir = tmp / "static"
        self.writer = StaticWriter(str(self.dir), log_key=self.log.log_key,
                                   freshness=Freshness(world.origin, world.freshness), entry_objects=entry_objects)

    def append(self, entries: list[bytes]) -> None:
        self.log.append_entries(entries)
        self.writer.sync(self.storage)

    def close(self) -> None:
        self.storage.close()


class FileServer:
    """``python -m http.server`` over the export directory: the plainest static mirror there is."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                                      "--directory", str(directory)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: _up(self.url), 15, "http.server")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _up(url: str) -> bool:
    try:
        return HttpFetcher(url, retries=0, timeout=1).fetch("checkpoint", 65536) is not None
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def export(tmp_path: Path, world: World):
    e = Export(tmp_path, world)
    e.append(bundles(world, 300)[:3])
    yield e
    e.close()


def _client(world: World, mirrors, state: Path) -> tuple[Client, list[str]]:
    seen: list[str] = []
    fetcher = HttpFetcher(mirrors, retries=0, timeout=5)
    inner = fetcher.fetch

    def fetch(path: str, limit: int):
        seen.append(path)
        return inner(path, limit)

    fetcher.fetch = fetch  # type: ignore[method-assign]
    return Client(None, world.trust_root_bytes(), state, fetcher=fetcher), seen


def test_nginx_serving_only_the_export_is_enough(tmp_path: Path, world: World, export: Export) -> None:
    chain = bundles(world, 300)
    with NginxProcess(export.dir, tmp_path / "nginx") as nginx:  # no upstream: no /api/ at all
        client, seen = _client(world, nginx.url, tmp_path / "state")
        assert client.refresh().epoch == 3
        assert not any(p.startswith("api/") for p in seen)
        seen.clear()
        assert client.refresh().epoch == 3 and seen == ["checkpoint"]  # nothing new: one request
        export.append([chain[3]])
        seen.clear()
        assert client.refresh().epoch == 4 and seen == ["checkpoint", "entry/003"]
        export.append(chain[4:300])
        seen.clear()
        result = client.refresh()
        assert result.epoch == 300 and result.epochs_verified == tuple(range(5, 301))
        assert len(seen) <= -(-296 // 256) + 6, seen


def test_a_plain_file_server_is_enough(tmp_path: Path, world: World, export: Export) -> None:
    server = FileServer(export.dir)
    try:
        client, seen = _client(world, server.url, tmp_path / "state")
        assert client.refresh().epoch == 3
        export.append([bundles(world, 4)[3]])
        assert client.refresh().epoch == 4
    finally:
        server.stop()


def test_a_c2sp_only_mirror_is_read_through_entry_bundles(tmp_path: Path, world: World) -> None:
    export = Export(tmp_path, world, entry_objects=False)
    chain = bundles(world, 5)
    export.append(chain[:3])
    server = FileServer(export.dir)
    try:
        client, seen = _client(world, server.url, tmp_path / "state")
        assert client.refresh().epoch == 3
        export.append([chain[3]])
        seen.clear()
        assert client.refresh().epoch == 4
        assert seen == ["checkpoint", "entry/003", "tile/entries/000.p/4"], seen  # the object is missing: fallback
    finally:
        server.stop()
        export.close()


def test_mirrors_fail_over_in_order(tmp_path: Path, world: World, export: Export) -> None:
    server = FileServer(export.dir)
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        client, _ = _client(world, [dead, server.url], tmp_path / "state")
        result = client.refresh()
        assert (result.epoch, result.offline) == (3, False)
    finally:
        server.stop()


def test_fleetkeys_verify_against_a_static_mirror_and_a_directory(tmp_path: Path, world: World,
                                                                   export: Export) -> None:
    root = tmp_path / "trust-root.json"
    root.write_bytes(world.trust_root_bytes())
    server = FileServer(export.dir)
    try:
        cmd = [sys.executable, "-m", "fleetkeys", "verify", "--trust-root", str(root), "--state", str(tmp_path / "s1"),
               "--json", "--distributor", f"http://127.0.0.1:{free_port()}", "--distributor", server.url]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert '"epoch": 3' in out.stdout and '"offline": false' in out.stdout
    finally:
        server.stop()
    cmd = [sys.executable, "-m", "fleetkeys", "verify", "--trust-root", str(root), "--state", str(tmp_path / "s2"),
           "--static", str(export.dir)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "epoch: 3" in out.stdout, out.stderr


def test_no_change_refresh_is_one_request_even_after_time_passes(tmp_path: Path, world: World,
                                                                  export: Export) -> None:
    with NginxProcess(export.dir, tmp_path / "nginx") as nginx:
        client, seen = _client(world, nginx.url, tmp_path / "state")
        client.refresh()
        before = client.state.freshness_time
        export.writer.freshness.interval = 1  # renew the served checkpoint at once
        time.sleep(1.1)  # the freshness interval must pass for a renewal: a fixed wait is the point here
        export.writer.sync(export.storage)
        seen.clear()
        client.refresh()
        assert seen == ["checkpoint"] and client.state.freshness_time > before  # renewed, still one request
