"""Test material for the witness: a log that signs checkpoints and makes proofs, the witness in-process
(Flask test client) and as a real gunicorn process, and the checks every 200 answer must pass."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.factory import SeedSigner
from tests.service_process import ServiceProcess
from tests.signer.process import write_seed_key
from verifier.checkpoint import Checkpoint, sign_checkpoint
from verifier.cosignature import VerifiedCosignature, verify_cosignatures
from verifier.merkle import EMPTY_ROOT, consistency_proof, leaf_hash, leaves_reader, root
from verifier.note import ALG_COSIGNATURE_V1, NoteSigner, NoteVerifier
from witness.app import create_app
from witness.config import WitnessConfig
from witness.wire import encode_add_checkpoint

ORIGIN = "log.fleetkeys.example/v1"
WITNESS_NAME = "witness.example/w1"
WITNESS_KEY = SeedSigner("witness w1")
WITNESS_VKEY = NoteVerifier.from_public_key(WITNESS_NAME, WITNESS_KEY.public_key, ALG_COSIGNATURE_V1)
T = 1_795_000_000


@dataclass
class TestLog:
    """A log: its entries, its key, signed checkpoints of any prefix, RFC 6962 consistency proofs.

    ``fork(at, label)`` is another log with the same key and the first ``at`` entries, then others.
    """

    origin: str = ORIGIN
    key_label: str = "witness test log"
    entries: list[bytes] = field(default_factory=list)
    label: str = "main"

    __test__ = False  # not a pytest class

    def __post_init__(self) -> None:
        self.key = SeedSigner(self.key_label)
        self.note_signer = NoteSigner.from_signer(self.origin, self.key)

    @property
    def vkey(self) -> str:
        return self.note_signer.verifier.vkey

    @property
    def log_option(self) -> str:
        return f"{self.origin}={self.vkey}"

    def grow(self, n: int) -> TestLog:
        start = len(self.entries)
        self.entries += [f"{self.label} entry {i}".encode() for i in range(start, start + n)]
        return self

    def fork(self, at: int, label: str) -> TestLog:
        other = TestLog(self.origin, self.key_label, list(self.entries[:at]), label)
        return other.grow(len(self.entries) - at)

    def root(self, size: int) -> bytes:
        return root([leaf_hash(e) for e in self.entries[:size]]) if size else EMPTY_ROOT

    def checkpoint(self, size: int, extensions: tuple[str, ...] = ()) -> Checkpoint:
        return Checkpoint(self.origin, size, self.root(size), extensions)

    def note(self, size: int, extensions: tuple[str, ...] = ()) -> bytes:
        return sign_checkpoint(self.checkpoint(size, extensions), self.note_signer)

    def proof(self, old: int, new: int) -> list[bytes]:
        if old == 0 or old == new:
            return []
        return consistency_proof(old, new, leaves_reader([leaf_hash(e) for e in self.entries[:new]]))

    def request(self, old: int, new: int, *, proof: list[bytes] | None = None, note: bytes | None = None) -> bytes:
        return encode_add_checkpoint(old, self.proof(old, new) if proof is None else proof,
                                     self.note(new) if note is None else note)


class Clock:
    """A settable POSIX-seconds clock."""

    def __init__(self, now: int = T) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make_config(data_dir: Path, logs: list[TestLog] | None = None, *, clock: Clock | None = None,
                signer=WITNESS_KEY, **overrides) -> WitnessConfig:
    logs = logs if logs is not None else [TestLog()]
    trusted: dict[str, tuple[NoteVerifier, ...]] = {}
    for log in logs:
        trusted[log.origin] = (*trusted.get(log.origin, ()), log.note_signer.verifier)
    return WitnessConfig(name=WITNESS_NAME, data_dir=data_dir, logs=trusted, signer=signer,
                         clock=clock or Clock(), **overrides)


def make_client(data_dir: Path, logs: list[TestLog] | None = None, **kwargs):
    data_dir.mkdir(parents=True, exist_ok=True)
    return create_app(make_config(data_dir, logs, **kwargs)).test_client()


def cosigned(note: bytes, response_body: bytes, vkey: NoteVerifier = WITNESS_VKEY) -> VerifiedCosignature:
    """The spec's client check: the 200 body is signature lines that, appended to the checkpoint, verify
    as a tlog-cosignature/v1 by the witness's vkey. Returns the verified cosignature (its timestamp)."""
    assert response_body.startswith("\u2014 ".encode()) and response_body.endswith(b"\n"), response_body
    (found,) = verify_cosignatures(note + response_body, [vkey], 1)
    return found


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class WitnessProcess(ServiceProcess):
    """``python -m MODULE serve --name ... --key file:... --data DIR --log ...`` under gunicorn, on a free port.

    ``module`` is ``witness`` (production) or ``tests.witness.crashing_witness`` (the same server with
    the test-only SIGKILL-after-commit hook).
    """

    name = "witness"
    ready_path = "/"
    stop_timeout = 15.0

    def __init__(self, data_dir: Path, logs: list[TestLog], *, workers: int = 1, threads: int = 4,
                 module: str = "witness", key_ref: str | None = None, env: dict[str, str] | None = None,
                 wait: bool = True) -> None:
        self.data_dir = data_dir
        if key_ref is None:
            key_path = data_dir.parent / "witness.key"
            if not key_path.exists():
                key_path.parent.mkdir(parents=True, exist_ok=True)
                write_seed_key(key_path, _seed_of(WITNESS_KEY))
            key_ref = f"file:{key_path}"
        args = [module, "serve", "--name", WITNESS_NAME, "--key", key_ref, "--data", str(data_dir),
                "--workers", str(workers), "--threads", str(threads)]
        for log in logs:
            args += ["--log", log.log_option]
        super().__init__(args, lambda port: data_dir.parent / f"witness-{port}.log", env=env)
        if wait:
            self.wait_ready(30.0)

    def add(self, body: bytes, session=None):
        return (session or requests).post(self.url + "/add-checkpoint", data=body, timeout=30)


def _seed_of(signer: SeedSigner) -> bytes:
    return signer._seed  # noqa: SLF001 - the fixed test seed, written as the key file the process loads
