"""Strict Ed25519 verification (RFC 8032 with the ``verify_strict`` rules).

libsodium (through PyNaCl) rejects a non-canonical ``S`` (``S >= L``), a small-order or
non-canonical public key ``A``, and a small-order ``R``, which is what ed25519-dalek's
``verify_strict`` does; it is also about twice as fast as OpenSSL's verify here. Public keys are
additionally checked when they are loaded (:func:`check_public_key`), so an invalid trusted key is
refused when a trust root is parsed, not when it is first used.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

from .errors import FormatError, SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


@runtime_checkable
class Signer(Protocol):
    """An Ed25519 private key, wherever it lives.

    ``public_key`` is the raw 32-byte RFC 8032 public key, a canonical prime-order point.
    ``sign(message)`` returns the 64-byte pure Ed25519 signature (no prehash, no context) over
    exactly ``message``; it is safe to call from several threads at once and raises
    an exception of its backend (``keys.KeyBackendError``) if the backend fails.
    """

    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


def check_public_key(public_key: bytes) -> bytes:
    """Return ``public_key`` if it is a canonical, prime-order Ed25519 point; raise otherwise.

    Precondition: none. Raises :class:`FormatError` on a wrong length, a non-canonical encoding or a
    small-order point.
    """
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != PUBLIC_KEY_SIZE:
        raise FormatError(f"Ed25519 public key: expected {PUBLIC_KEY_SIZE} bytes, found "
                          f"{len(public_key) if isinstance(public_key, bytes | bytearray) else type(public_key).__name__}")
    if not crypto_core_ed25519_is_valid_point(bytes(public_key)):
        raise FormatError("Ed25519 public key: not a canonical prime-order point (small order or invalid)")
    return bytes(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes, *, what: str = "signature") -> None:
    """Verify an Ed25519 ``signature`` over ``message`` strictly; return nothing, raise on failure.

    ``what`` names the signature in the error message (e.g. ``"anchor signature"``).
    Raises :class:`SignatureError` on any failure, including wrong lengths.
    """
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"{what}: expected a {SIGNATURE_SIZE}-byte Ed25519 signature, found {len(signature)} bytes")
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"{what}: expected a {PUBLIC_KEY_SIZE}-byte public key, found {len(public_key)} bytes")
    try:
        crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (BadSignatureError, CryptoError, ValueError) as exc:
        raise SignatureError(f"{what}: Ed25519 signature does not verify under key {bytes(public_key).hex()}") from exc


def public_key_from_seed(seed: bytes) -> bytes:
    """Return the Ed25519 public key for a 32-byte private seed."""
    from nacl.signing import SigningKey

    return bytes(SigningKey(seed).verify_key)


def sign_with_seed(seed: bytes, message: bytes) -> bytes:
    """Sign ``message`` with a raw 32-byte seed (test vectors and in-memory signers only)."""
    from nacl.signing import SigningKey

    return SigningKey(seed).sign(message).signature
