"""A real anchor-signer process for tests: ``python -m signer serve`` on a free port, under gunicorn.

Also shared by ``tests/countersigner``. The process runs in its own session (process group), so
:meth:`SignerProcess.kill` can SIGKILL the gunicorn master and its workers together, by that id.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signer.config import init_data_dir
from signer.journal import Journal
from signer.rules import MODE_KEYSET, STATUS_ONLINE
from tests.service_process import ServiceProcess


def write_seed_key(path: Path, seed: bytes) -> Path:
    """Write a fixed-seed Ed25519 key as a PKCS#8 PEM file (mode 0600), as keygen would."""
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def prepare_data_dir(data_dir: Path, namespaces: tuple[str, ...] = (), *, key_seed: bytes | None = None,
                     key_ref: str | None = None, ciphersuite: int = 1, mode: str = MODE_KEYSET) -> dict[str, str]:
    """Create a signer data directory (tokens, key, namespaces); return ``{"admin": tok, "write": tok}``.

    Namespaces are created in ``mode`` (``keyset`` by default, as the signer does; ``digest`` for tests
    of Plexi's digest-only path)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if key_seed is not None and not (data_dir / "anchor.key").exists():
        write_seed_key(data_dir / "anchor.key", key_seed)
    init_data_dir(data_dir, key_ref)
    journal = Journal(data_dir / "journal.sqlite")
    for ns in namespaces:
        journal.create_namespace(ns, ciphersuite=ciphersuite, status=STATUS_ONLINE, log_directory=None,
                                 now_ms=int(time.time() * 1000), client="test", mode=mode)
    journal.close()
    return {name: (data_dir / "tokens" / f"{name}.token").read_text().strip() for name in ("admin", "write")}


class SignerProcess(ServiceProcess):
    """``python -m signer serve --data DIR --port P`` as a child process; ``url`` once ready.

    ``module`` is the entry point run with ``-m``: ``signer`` (production), or
    ``tests.signer.crashing_signer`` (the same server with the test-only SIGKILL-after-commit hook).
    """

    name = "signer"
    ready_path = "/info"
    stop_timeout = 15.0

    def __init__(self, data_dir: Path, *, workers: int = 1, key_ref: str | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None, module: str = "signer") -> None:
        self.data_dir = data_dir
        args = [module, "serve", "--data", str(data_dir), "--workers", str(workers)]
        if key_ref is not None:
            args += ["--key", key_ref]
        super().__init__(args, log_path or (lambda port: data_dir.parent / f"signer-{port}.log"), env=env)
        self.wait_ready(20.0)
