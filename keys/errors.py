"""The one error of key custody."""

from __future__ import annotations


class KeyBackendError(Exception):
    """A key could not be created, loaded or used.

    The message names what failed (file path, token and key label, PKCS#11 error name) and never
    contains a PIN, a passphrase or private key material.
    """




__all__ = ["KeyBackendError"]
