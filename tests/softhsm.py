"""Real SoftHSM2 tokens for tests (no mocks).

Usage from any test suite::

    from tests.softhsm import make_token, requires_softhsm

    @requires_softhsm
    def test_something(tmp_path):
        token = make_token(tmp_path)                    # label "fleetkeys", PIN "1234"
        public_key = token.generate_key("anchor")       # persistent Ed25519 pair on the token
        signer = load_signer(token.key_ref("anchor", pin_source=True))  # ...&pin-source=file:<0600 file>
        signer = load_signer(token.key_ref("anchor"), allow_pin_value=True)  # ...&pin-value=... (library only)

``load_signer`` refuses ``pin-value`` unless ``allow_pin_value=True`` (commands never allow it), so a
reference handed to a command or a subprocess must use ``pin_source=True`` (or ``pin=False`` and
``FLEETKEYS_PKCS11_PIN``).

What :func:`make_token` does, and what it changes for the whole test process:

* writes ``<tmp_path>/softhsm/softhsm2.conf`` with its own ``directories.tokendir`` (so nothing
  touches ``/var/lib/softhsm``) and sets ``os.environ["SOFTHSM2_CONF"]`` to it. The variable stays
  set after the test (the next ``make_token`` overwrites it); subprocesses (e.g. a gunicorn signer)
  inherit it, or take it from :attr:`SoftHSMToken.env`.
* runs ``softhsm2-util --init-token --free --label L --pin P --so-pin S``;
* re-initialises the SoftHSM2 library inside this process
  (:func:`keys.pkcs11_reinitialize`), because SoftHSM2 reads ``SOFTHSM2_CONF`` and scans
  its token directory only in ``C_Initialize``: without it a token created after the first PKCS#11
  use in the process is invisible. Every PKCS#11 session of the process is lost; signers made on
  earlier tokens of the *same* directory log in again on next use, those of other directories fail.

Several tokens in one test share one directory (call ``make_token`` again with another label).
Skip PKCS#11 tests only when ``softhsm2-util`` is missing (:data:`requires_softhsm`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SOFTHSM2_UTIL = shutil.which("softhsm2-util")

_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def find_module() -> str | None:
    """Path of the SoftHSM2 PKCS#11 library: ``$SOFTHSM2_MODULE`` or the first usual place found."""
    env = os.environ.get("SOFTHSM2_MODULE")
    if env:
        return env
    return next((p for p in _MODULE_CANDIDATES if os.path.isfile(p)), None)


#: Marker: skip when softhsm2-util is not installed (CI installs it, so the tests run there).
requires_softhsm = pytest.mark.skipif(SOFTHSM2_UTIL is None, reason="softhsm2-util is not installed")


def _q(value: str, safe: str = "") -> str:
    return urllib.parse.quote(value, safe=safe)


@dataclass(frozen=True)
class SoftHSMToken:
    """An initialised SoftHSM2 token in a temporary directory."""

    module: str
    label: str
    pin: str = field(repr=False)
    so_pin: str = field(repr=False)
    conf_path: Path
    tokendir: Path

    @property
    def env(self) -> dict[str, str]:
        """Environment a subprocess needs to see this token."""
        return {"SOFTHSM2_CONF": str(self.conf_path)}

    @property
    def pin_file(self) -> Path:
        """A mode-0600 file holding this token's PIN (written on first use), for ``pin-source``."""
        path = self.conf_path.parent / f"pin-{_q(self.label)}"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.pin + "\n")
        return path

    def key_ref(self, object_label: str, *, pin: bool = True, module: bool = True, pin_source: bool = False) -> str:
        """The RFC 7512 reference of key ``object_label`` on this token, values percent-encoded.

        ``pkcs11:token=L;object=O?module-path=M&pin-value=P`` (default: ``load_signer`` needs
        ``allow_pin_value=True`` for it); ``pin_source=True`` gives ``pin-source=file:<pin_file>``
        instead, which commands accept; drop the PIN (``pin=False``) to test ``pin-source`` or
        ``FLEETKEYS_PKCS11_PIN``, drop the module to test its fallback.
        """
        ref = f"pkcs11:token={_q(self.label)};object={_q(object_label)}"
        query = []
        if module:
            query.append(f"module-path={_q(self.module, safe='/')}")
        if pin and pin_source:
            query.append(f"pin-source={_q('file:' + str(self.pin_file), safe='/:')}")
        elif pin:
            query.append(f"pin-value={_q(self.pin)}")
        return ref + ("?" + "&".join(query) if query else "")

    def generate_key(self, object_label: str) -> bytes:
        """Create a persistent Ed25519 key pair ``object_label`` on the token; return the public key."""
        from keys import generate_pkcs11_key

        return generate_pkcs11_key(module=self.module, token=self.label, pin=self.pin, label=object_label)


def make_token(tmp_path: Path | str, label: str = "fleetkeys", pin: str = "1234", *,
               so_pin: str = "5678", module: str | None = None) -> SoftHSMToken:
    """Initialise a new SoftHSM2 token under ``tmp_path`` and make it visible in this process.

    Preconditions: ``softhsm2-util`` and the SoftHSM2 library are installed; ``label`` is not yet
    used by a token under this ``tmp_path``; PINs are 4-255 characters. Raises ``RuntimeError``
    (with softhsm2-util's output) if initialisation fails.
    """
    if SOFTHSM2_UTIL is None:
        raise RuntimeError("softhsm2-util is not installed")
    module = module or find_module()
    if module is None:
        raise RuntimeError("softhsm2-util is installed but libsofthsm2.so was not found; set SOFTHSM2_MODULE")
    base = Path(tmp_path) / "softhsm"
    tokendir = base / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf_path = base / "softhsm2.conf"
    if not conf_path.exists():
        conf_path.write_text(
            f"directories.tokendir = {tokendir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
            "slots.mechanisms = ALL\n"
            "library.reset_on_fork = false\n")
    labels_file = base / "labels"
    labels = labels_file.read_text().splitlines() if labels_file.exists() else []
    if label in labels:
        raise RuntimeError(f"a SoftHSM2 token labelled {label!r} already exists under {base}")
    os.environ["SOFTHSM2_CONF"] = str(conf_path)
    proc = subprocess.run(
        [SOFTHSM2_UTIL, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        env={**os.environ, "SOFTHSM2_CONF": str(conf_path)},
        capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"softhsm2-util --init-token failed ({proc.returncode}): "
                           f"{proc.stdout.strip()} {proc.stderr.strip()}")
    labels_file.write_text("".join(f"{x}\n" for x in [*labels, label]))

    from keys import pkcs11_reinitialize

    pkcs11_reinitialize(module)
    return SoftHSMToken(module=module, label=label, pin=pin, so_pin=so_pin, conf_path=conf_path,
                        tokendir=tokendir)
