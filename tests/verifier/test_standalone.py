"""The client library alone: ``verifier`` in a virtualenv that has only it and its own dependencies.

A fresh ``python -m venv --without-pip`` gets, through one ``.pth`` file, a directory holding a symlink
to the repository's ``verifier`` package and symlinks to the installed files of the verifier's own
third-party distributions (PyNaCl, cffi, cryptography, requests and what requests needs), found
through ``importlib.metadata`` in the running interpreter. Nothing of the server stack, and no other
project package, is reachable there. ``standalone_vectors.py`` then runs in it: the server stack does
not import, importing the verifier loads none of it, and every golden vector verifies as its manifest
says.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "bundles" / "vectors"
SCRIPT = Path(__file__).with_name("standalone_vectors.py")

#: The verifier's own third-party distributions: Ed25519 (PyNaCl, over cffi), point validation
#: (cryptography), HTTP for the OTA client (requests and its dependencies).
VERIFIER_DISTRIBUTIONS = ("pynacl", "cffi", "cryptography", "requests", "urllib3", "idna", "charset-normalizer",
                          "certifi")
#: Import names that must come from those distributions (checked against the running interpreter).
VERIFIER_IMPORTS = ("nacl", "_cffi_backend", "cffi", "cryptography", "requests", "urllib3", "idna",
                    "charset_normalizer", "certifi")
#: The server stack: none of it may be linked into the restricted environment.
SERVER_DISTRIBUTIONS = ("flask", "gunicorn", "click", "psycopg", "psycopg-binary", "python-pkcs11", "werkzeug",
                        "jinja2", "itsdangerous", "markupsafe", "blinker")


def top_level_entries(distribution: str) -> set[Path]:
    """The top-level files and directories a distribution installed into site-packages (dist-info included)."""
    dist = importlib.metadata.distribution(distribution)
    assert dist.files, f"{distribution}: no RECORD of installed files"
    return {Path(dist.locate_file(f.parts[0])) for f in dist.files if f.parts[0] != ".."}


def build_restricted_venv(root: Path) -> Path:
    """Create the virtualenv under ``root``; return its python."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    assert Path(site).is_dir() and sorted(p.name for p in Path(site).iterdir()) == [], \
        f"a fresh --without-pip venv should have an empty site-packages: {site}"

    lib = root / "lib"
    lib.mkdir()
    (lib / "verifier").symlink_to(REPO / "verifier", target_is_directory=True)
    linked: dict[str, Path] = {}
    for distribution in VERIFIER_DISTRIBUTIONS:
        for entry in top_level_entries(distribution):
            assert entry.exists(), f"{distribution}: {entry} is in its RECORD but not installed"
            assert entry.name not in linked or linked[entry.name] == entry, entry
            linked[entry.name] = entry
    for name, entry in sorted(linked.items()):
        (lib / name).symlink_to(entry, target_is_directory=entry.is_dir())
    (Path(site) / "fleetkeys-verifier-only.pth").write_text(f"{lib}\n", encoding="utf-8")
    return python


def test_the_linked_distributions_are_the_verifiers_and_only_those():
    """What the restricted venv gets is what this interpreter imports for the verifier, and no server."""
    entries = {e.resolve() for d in VERIFIER_DISTRIBUTIONS for e in top_level_entries(d)}
    for name in VERIFIER_IMPORTS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin).resolve()
        assert any(origin == e or e in origin.parents for e in entries), f"{name} ({origin}) would not be linked"
    installed = {d.metadata["Name"].lower().replace("_", "-") for d in importlib.metadata.distributions()}
    assert not set(VERIFIER_DISTRIBUTIONS) & set(SERVER_DISTRIBUTIONS)
    for server in set(SERVER_DISTRIBUTIONS) & installed:
        server_entries = {e.resolve() for e in top_level_entries(server)}
        assert not server_entries & entries, f"{server} shares files with the verifier's dependencies"


@pytest.mark.slow
def test_verifier_alone_imports_and_verifies_every_golden_vector(tmp_path):
    python = build_restricted_venv(tmp_path)
    cases = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))["cases"]
    assert len(cases) > 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    run = subprocess.run([str(python), "-I", "-B", str(SCRIPT), str(VECTORS)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    lines = dict(line.split(": ", 1) for line in run.stdout.splitlines() if ": " in line)
    assert Path(lines["verifier"]).resolve() == REPO / "verifier" / "__init__.py"
    assert int(lines["vectors verified"]) == len(cases), run.stdout + run.stderr


@pytest.mark.slow
def test_the_restricted_venv_really_is_restricted(tmp_path):
    """The check can fail: in that venv a project package other than verifier, or flask, is not importable,
    and a module importing one fails, as ``verifier`` would if it grew such an import."""
    python = build_restricted_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    probe = ("import importlib, sys\n"
             "for name in ('flask', 'click', 'gunicorn', 'psycopg', 'pkcs11', 'werkzeug', 'jinja2', 'keys', 'signer',"
             " 'distributor', 'countersigner', 'fleetkeys', 'bundles', 'tests'):\n"
             "    try:\n"
             "        importlib.import_module(name)\n"
             "    except ImportError:\n"
             "        print('absent', name)\n"
             "    else:\n"
             "        print('PRESENT', name)\n"
             "import nacl.signing, cryptography, requests, verifier.client\n"
             "print('ok')\n")
    run = subprocess.run([str(python), "-I", "-B", "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "PRESENT" not in run.stdout and run.stdout.splitlines()[-1] == "ok", run.stdout
    assert run.stdout.count("absent ") == 14
