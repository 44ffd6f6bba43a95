"""Fixtures for the publish pipeline: a real signer process, a stand-in distributor, operator files.

The stand-in distributor is a few lines of Flask served by werkzeug in a thread, speaking only the two
calls the pipeline makes (``GET /api/v1/bundles/latest``, ``POST /api/v1/bundles``); the real
distributor is tested end to end elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from tests.factory import World, seed
from tests.service_process import free_port
from tests.signer.process import SignerProcess, prepare_data_dir, write_seed_key
from verifier.bundle import parse_bundle
from verifier.keyset import parse_keyset

PUBLISH_TOKEN = "publish-token-for-tests"
_names = itertools.count(1)


class StandInDistributor:
    """An in-memory log that appends bundles whose epoch and ``previous`` continue the last one."""

    def __init__(self) -> None:
        self.bundles: list[bytes] = []
        #: How many entries clients see (``None``: all); fewer while "witnesses" have not cosigned.
        self.visible: int | None = None
        app = Flask("standin")

        def shown() -> list[bytes]:
            return self.bundles if self.visible is None else self.bundles[:self.visible]

        @app.get("/api/v1/bundles/latest")
        def latest():
            if not shown():
                return jsonify({"error": "the log is empty"}), 404
            ks = parse_keyset(parse_bundle(shown()[-1]).keyset)
            return jsonify({"bundle": base64.b64encode(shown()[-1]).decode(), "epoch": ks.epoch,
                            "index": len(shown()) - 1, "proof": "c2sp.org/tlog-proof@v1\n"})

        @app.get("/api/v1/info")
        def info():
            return jsonify({"size": len(shown()), "appended_size": len(self.bundles)})

        @app.post("/api/v1/bundles")
        def post():
            if request.headers.get("Authorization") != f"Bearer {PUBLISH_TOKEN}":
                return jsonify({"error": "bad token"}), 401
            data = request.get_data()
            if data in self.bundles:
                return jsonify({"index": self.bundles.index(data), "checkpoint": "o\n1\nx\n", "proof": ""}), 200
            ks = parse_keyset(parse_bundle(data).keyset)
            last = parse_keyset(parse_bundle(self.bundles[-1]).keyset) if self.bundles else None
            if ks.epoch != (last.epoch + 1 if last else 1) or (last and ks.previous != last.digest):
                return jsonify({"error": f"epoch {ks.epoch} does not continue the log"}), 409
            self.bundles.append(data)
            n = len(self.bundles)
            return jsonify({"index": n - 1, "epoch": ks.epoch, "checkpoint": f"o\n{n}\nroot\n", "proof": ""}), 201

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def distributor():
    d = StandInDistributor()
    yield d
    d.close()


@pytest.fixture(scope="session")
def signer_proc(tmp_path_factory):
    """One real signer for the publish tests (each test uses its own namespace)."""
    data = tmp_path_factory.mktemp("publish-signer") / "signer"
    tokens = prepare_data_dir(data, key_seed=seed("anchor"))
    proc = SignerProcess(data)
    proc.tokens = tokens
    yield proc
    proc.stop()


@dataclass
class Operator:
    """One operator's files for one namespace: trust root, countersign key, token files."""

    namespace: str
    world: World
    dir: Path
    signer: SignerProcess
    trust_root: Path
    countersign_key: Path
    signer_token_file: Path
    publish_token_file: Path

    def env(self) -> dict[str, str]:
        return {"FLEETKEYS_SIGNER_TOKEN": self.signer.tokens["write"]}

    def journal(self) -> list[dict]:
        return requests.get(self.signer.url + "/api/v1/journal", params={"namespace": self.namespace},
                            timeout=5).json()["entries"]


def _secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def make_operator(signer_proc: SignerProcess, tmp_path: Path, **namespace: object) -> Operator:
    """An operator with a fresh namespace on the signer, created with the extra ``namespace`` fields
    (e.g. ``mode="digest"``, ``ciphersuite=2``; the signer's defaults otherwise: keyset mode, ciphersuite 1)."""
    ns = f"example.messenger/publish-{next(_names)}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    resp = requests.post(signer_proc.url + "/namespaces", json={"name": ns, **namespace}, timeout=5,
                         headers={"Authorization": f"Bearer {signer_proc.tokens['admin']}"})
    assert resp.status_code == 201, resp.text
    world = World(namespace=ns)
    trust_root = tmp_path / "trust-root.json"
    trust_root.write_bytes(world.trust_root_bytes())
    return Operator(ns, world, tmp_path, signer_proc, trust_root,
                    write_seed_key(tmp_path / "countersigner.key", seed("countersigner")),
                    _secret(tmp_path / "signer.token", signer_proc.tokens["write"]),
                    _secret(tmp_path / "publish.token", PUBLISH_TOKEN))


@pytest.fixture
def operator(signer_proc, tmp_path) -> Operator:
    """An operator whose namespace is a keyset namespace (the signer's default)."""
    return make_operator(signer_proc, tmp_path)


@pytest.fixture
def digest_operator(signer_proc, tmp_path) -> Operator:
    """An operator whose namespace is a digest-mode namespace (Plexi's digest-only path allowed)."""
    return make_operator(signer_proc, tmp_path, mode="digest")
