"""Fixtures for the signing-key backend tests."""

from __future__ import annotations

import pytest

from tests.softhsm import SoftHSMToken, make_token


@pytest.fixture(autouse=True)
def _clean_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without the fleetkeys key variables the host may have set."""
    for name in ("FLEETKEYS_KEY_PASSPHRASE", "FLEETKEYS_PKCS11_PIN", "FLEETKEYS_PKCS11_MODULE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def token(tmp_path) -> SoftHSMToken:
    """A fresh SoftHSM2 token (label ``fleetkeys``, PIN ``1234``) visible in this process."""
    return make_token(tmp_path)
