"""Shared end-to-end fixture: a real quickstart (signer + distributor processes) left serving."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

FLEETKEYS = [sys.executable, "-m", "fleetkeys"]


@pytest.fixture(scope="session")
def serving(tmp_path_factory):
    """A quickstart left serving (no --exit): yields (data dir, distributor URL, its first output)."""
    data = tmp_path_factory.mktemp("qs") / "data"
    proc = subprocess.Popen([*FLEETKEYS, "quickstart", "--data", str(data), "--port", "18080",
                             "--signer-port", "18090"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving") or proc.poll() is not None:
            break
    output = "".join(lines)
    assert "serving" in output, output
    url = re.search(r"distributor:\s+(http://\S+)", output).group(1)
    yield data, url, output, proc
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
