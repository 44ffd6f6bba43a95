"""Shared test helpers: a real ``fleetkeys serve`` process, a plain static HTTP server, and a
client-side verification of everything a read path (live service or static copy) serves."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.factory import World, seed
from tests.service_process import REPO, ServiceProcess, free_port, wait_for
from verifier.bundle import verify_bundle
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import verify_cosignatures
from verifier.keyset import check_next_epoch
from verifier.merkle import HASH_SIZE, leaf_hash, leaves_reader, tree_root
from verifier.tiles import TILE_WIDTH, TileRef, decode_entry_bundle, entries_path, tile_node_reader, tiles_for_size
from verifier.trustroot import verify_rotation


def write_seed_key(path: Path, label: str) -> Path:
    """The World's fixed-seed key ``label`` as a PKCS#8 PEM file (mode 0600)."""
    pem = Ed25519PrivateKey.from_private_bytes(seed(label)).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def world_data_dir(data: Path, world: World) -> Path:
    """A data directory holding the World's log and freshness keys, a token and its trust root."""
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_seed_key(data / "log.key", "log")
    write_seed_key(data / "freshness.key", "freshness")
    (data / "publish.token").write_text("test-publish-token-0123456789\n")
    (data / "trust-root.json").write_bytes(world.trust_root_bytes())
    return data


TOKEN = "test-publish-token-0123456789"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distributor", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=timeout)


class ServeProcess(ServiceProcess):
    """``python -m distributor serve ARGS --port P`` in its own process group; ``url`` once ready."""

    name = "serve"
    ready_path = "/checkpoint"

    def __init__(self, args: list[str], log_path: Path, *, wait: bool = True) -> None:
        super().__init__(["distributor", "serve", *args], log_path)
        if wait:
            self.wait_ready()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class StaticServer:
    """Python's plain ``http.server`` over a directory, in a thread (a stand-in for any CDN)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StaticServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ReadPathView:
    """What a client learns from a read path after verifying all of it."""

    size: int
    root: bytes
    entries: tuple[bytes, ...]
    epochs: tuple[int, ...]
    trust_root_version: int


def verify_read_path(base: str, world: World, *, now: int | None = None) -> ReadPathView:
    """Verify a read path the way a client would, using only ``/checkpoint`` and ``/tile/...``.

    The checkpoint must be signed by the log key and carry a fresh freshness cosignature; the hash
    tiles must rebuild its root; every entry bundle must match the level-0 tiles; every entry must be
    a bundle that verifies against the trust root in force and continues the epoch chain, or a
    rotation signed by the root in force.
    """
    root = world.trust_root()
    session = requests.Session()

    def get(path: str) -> bytes:
        resp = session.get(f"{base}/{path}", timeout=10)
        assert resp.status_code == 200, f"{path}: HTTP {resp.status_code} {resp.text[:200]}"
        return resp.content

    note = get("checkpoint")
    cp = open_checkpoint(note, root.log.key).checkpoint
    fresh = verify_cosignatures(note, [root.log.freshness_key], 1, what="freshness")[0]
    assert abs((now or int(time.time())) - fresh.timestamp) <= root.log.max_age
    node = tile_node_reader(cp.size, lambda ref: get(ref.path))
    assert tree_root(cp.size, node) == cp.root
    entries: list[bytes] = []
    for n in range((cp.size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, cp.size - n * TILE_WIDTH)
        bundle_entries = decode_entry_bundle(get(entries_path(n, width)), width)
        hashes = get(TileRef(0, n, width).path)
        assert b"".join(leaf_hash(e) for e in bundle_entries) == hashes, f"entry bundle {n} does not match tile 0/{n}"
        entries += bundle_entries
    epochs, last = [], None
    for e in entries:
        if json.loads(e)["format"] == "fleetkeys/trust-root/v1":
            root = verify_rotation(root, e)
            continue
        vb = verify_bundle(e, root)
        check_next_epoch(last, vb.keyset)
        last = vb.keyset
        epochs.append(vb.keyset.epoch)
    assert epochs == list(range(1, len(epochs) + 1))
    return ReadPathView(cp.size, cp.root, tuple(entries), tuple(epochs), root.version)


def expected_tiles(leaves: list[bytes]) -> dict[str, bytes]:
    """Every hash tile of the tree of these leaf hashes, computed with verifier.merkle alone."""
    node = leaves_reader(leaves)
    out = {}
    for ref in tiles_for_size(len(leaves)):
        assert ref.level is not None
        out[ref.path] = b"".join(node(8 * ref.level, ref.index * TILE_WIDTH + i) for i in range(ref.width))
        assert len(out[ref.path]) == ref.width * HASH_SIZE
    return out


NGINX = "/usr/sbin/nginx"


def nginx_conf(workdir: Path, server_block: str, workers: int = 1) -> str:
    """A complete nginx.conf around the README's server block, everything inside ``workdir``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the (private) test directory
    temp = "\n".join(f"    {k}_temp_path {workdir}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes {workers};\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\n"
            f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temp}\n{server_block}}}\n")


class NginxProcess:
    """nginx in the foreground on a free port, serving ``static_dir`` with the README configuration."""

    def __init__(self, static_dir: Path, workdir: Path, workers: int = 1, upstream: str | None = None) -> None:
        from distributor.export import nginx_server_block

        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = workdir / "nginx.conf"
        block = nginx_server_block(str(static_dir), f"127.0.0.1:{self.port}", upstream)
        conf.write_text(nginx_conf(workdir, block, workers))
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        wait_for(lambda: _answers(self.url + "/checkpoint") or self.proc.poll() is not None, 10, "nginx")
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> NginxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
