"""Fixtures for the audit tests: a real quickstart (signer + distributor processes, three epochs)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.attacks.simulator import Simulator
from tests.factory import World

FLEETKEYS = [sys.executable, "-m", "fleetkeys"]
#: The quick start's namespace.
NAMESPACE = "example.messenger/backup-vaults/v1"


@dataclass(frozen=True)
class Quickstart:
    """A ``fleetkeys quickstart`` left serving: its data directory and distributor URL."""

    data: Path
    url: str
    signer_url: str = ""

    @property
    def trust_root(self) -> Path:
        return self.data / "trust-root.json"

    @property
    def static(self) -> Path:
        return self.data / "distributor" / "static"


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> Iterator[Quickstart]:
    """Signer and distributor as real processes with epochs 1-3 published (ports 18280/18290 if free)."""
    data = tmp_path_factory.mktemp("audit-qs") / "data"
    proc = subprocess.Popen([*FLEETKEYS, "quickstart", "--data", str(data), "--port", "18280",
                             "--signer-port", "18290"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving") or proc.poll() is not None:
            break
    output = "".join(lines)
    if "serving" not in output:
        proc.kill()
        pytest.fail(f"quickstart did not start:\n{output}")
    url = re.search(r"distributor:\s+(http://\S+)", output).group(1)
    signer_url = re.search(r"anchor signer:\s+(http://\S+)", output).group(1)
    yield Quickstart(data, url, signer_url)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def sim(world: World) -> Simulator:
    return Simulator(world)
