"""Fixtures for the signer tests: an in-process app (Flask test client) with a fixed key and clock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from signer.app import create_app
from signer.config import load_config
from tests.factory import SeedSigner
from tests.signer.process import prepare_data_dir

NS = "example.messenger/backup-vaults/v1"


class Clock:
    """A settable millisecond clock."""

    def __init__(self, ms: int = 1_795_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class Signer:
    """An in-process signer app and what the tests need to talk to it."""

    client: object
    tokens: dict[str, str]
    clock: Clock
    key: SeedSigner
    data_dir: Path

    def auth(self, role: str = "write") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def sign(self, epoch: int, digest: bytes, ns: str = NS, role: str = "write"):
        return self.client.post(f"/namespaces/{ns}/audits", json={"epoch": epoch, "digest": digest.hex()},
                                headers=self.auth(role))

    def sign_keyset(self, keyset: bytes, role: str = "write"):
        return self.client.post("/api/v1/sign-keyset", data=keyset, headers=self.auth(role),
                                content_type="application/json")

    def journal(self, **query):
        return self.client.get("/api/v1/journal", query_string=query).get_json()["entries"]


def make_signer(data_dir: Path, *, key: SeedSigner | None = None, clock: Clock | None = None,
                namespaces: tuple[str, ...] = (NS,), mode: str = "keyset", **overrides) -> Signer:
    """An in-process signer whose ``namespaces`` are created in ``mode`` (``keyset``, as the signer's
    default, or ``digest`` for Plexi's digest-only path)."""
    tokens = prepare_data_dir(data_dir, namespaces, mode=mode)
    key = key or SeedSigner("anchor")
    clock = clock or Clock()
    app = create_app(load_config(data_dir, signer=key, clock=clock, **overrides))
    return Signer(app.test_client(), tokens, clock, key, data_dir)


@pytest.fixture
def signer(tmp_path) -> Signer:
    """A signer whose namespace NS is a ``digest`` namespace (the Plexi-compatible digest-only path)."""
    return make_signer(tmp_path / "signer", mode="digest")


@pytest.fixture
def keyset_signer(tmp_path) -> Signer:
    """A signer whose namespace NS is a ``keyset`` namespace (the default)."""
    return make_signer(tmp_path / "signer")
