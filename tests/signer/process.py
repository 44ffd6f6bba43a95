"""A real anchor-signer process for tests: ``python -m signer serve`` on a free port, under gunicorn.

Also shared by ``tests/publish``. The process runs in its own session (process group), so
:meth:`SignerProcess.kill` can SIGKILL the gunicorn master and its workers together, by that id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signer.config import init_data_dir
from signer.journal import Journal
from signer.rules import MODE_KEYSET, STATUS_ONLINE

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class SignerProcess:
    """``python -m signer serve --data DIR --port P`` as a child process; ``url`` once ready.

    ``module`` is the entry point run with ``-m``: ``signer`` (production), or
    ``tests.signer.crashing_signer`` (the same server with the test-only SIGKILL-after-commit hook).
    """

    def __init__(self, data_dir: Path, *, workers: int = 1, key_ref: str | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None, module: str = "signer") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir.parent / f"signer-{self.port}.log"
        args = [sys.executable, "-m", module, "serve", "--data", str(data_dir), "--port", str(self.port),
                "--workers", str(workers)]
        if key_ref is not None:
            args += ["--key", key_ref]
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"signer exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/info", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"signer not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the master and its workers (the process group this object started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the master), then make sure the whole group is gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        self.kill()

    def __enter__(self) -> SignerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
