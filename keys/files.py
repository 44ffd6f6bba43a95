"""Ed25519 keys in process memory and in PKCS#8 PEM files (optionally passphrase-encrypted).

See :mod:`keys` for the ``file:`` key reference grammar and the 0600 rule.
"""

from __future__ import annotations

import os
import re
from typing import Any

from nacl.signing import SigningKey

from verifier.atomicfile import create_exclusive
from verifier.ed25519 import check_public_key

from .errors import KeyBackendError
from .privatefile import read_private_file

#: Upper bound on a key file read from disk (a PKCS#8 Ed25519 PEM is < 300 bytes).
MAX_KEY_FILE_SIZE = 64 * 1024


def message_bytes(message: Any) -> bytes:
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError(f"sign() takes bytes, not {type(message).__name__}")
    return bytes(message)



class InMemorySigner:
    """An Ed25519 key held in process memory, from its 32-byte RFC 8032 private seed.

    For tests and golden vectors; :func:`load_key_file` returns the :class:`FileSigner` subclass.
    Signing uses libsodium (deterministic, thread-safe). Raises :class:`KeyBackendError` if
    ``seed`` is not exactly 32 bytes. ``repr()`` shows the public key only.
    """

    __slots__ = ("_signing_key", "public_key", "description")

    def __init__(self, seed: bytes, *, description: str = "in-memory key") -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise KeyBackendError("Ed25519 seed: expected 32 bytes")
        self._signing_key = SigningKey(bytes(seed))
        #: Raw 32-byte Ed25519 public key.
        self.public_key: bytes = check_public_key(bytes(self._signing_key.verify_key))
        #: Where the key came from, for logs (never secret).
        self.description: str = description

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature over ``message`` (pure EdDSA)."""
        return self._signing_key.sign(message_bytes(message)).signature

    def close(self) -> None:
        """Nothing to release; present so every signer can be closed the same way."""

    def __enter__(self) -> InMemorySigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} public_key={self.public_key.hex()}>"


class FileSigner(InMemorySigner):
    """An Ed25519 key loaded from a PKCS#8 PEM file by :func:`load_key_file`."""

    __slots__ = ("path",)

    def __init__(self, seed: bytes, *, path: str) -> None:
        super().__init__(seed, description=f"file:{path}")
        #: The key file the key was read from.
        self.path: str = path



_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def load_key_file(path: str | os.PathLike[str], *, passphrase: bytes | None = None) -> FileSigner:
    """Load an Ed25519 PKCS#8 PEM private key file into a :class:`FileSigner`.

    Preconditions checked (each failure raises :class:`KeyBackendError`): ``path`` is a regular
    file of at most 64 KiB with no group/other permission bits; it holds exactly one PEM block
    labelled ``PRIVATE KEY`` or ``ENCRYPTED PRIVATE KEY``; an encrypted key needs ``passphrase``
    (non-empty bytes) and must decrypt with it; the key is Ed25519. ``passphrase`` is ignored for an
    unencrypted key. Any PBES2 encryption pyca ``cryptography`` reads is accepted (PBKDF2 or scrypt).
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path_str = os.fspath(path)
    data = read_private_file(path_str, what="key file", max_size=MAX_KEY_FILE_SIZE)
    labels = _PEM_BEGIN.findall(data)
    if len(labels) != 1:
        raise KeyBackendError(
            f"key file {path_str}: expected exactly one PEM block, found {len(labels)}")
    label = labels[0].decode("ascii")
    if label == "ENCRYPTED PRIVATE KEY":
        if not passphrase:
            raise KeyBackendError(f"key file {path_str}: the key is encrypted and no passphrase was given")
        password: bytes | None = bytes(passphrase)
    elif label == "PRIVATE KEY":
        password = None
    else:
        raise KeyBackendError(
            f"key file {path_str}: expected a PKCS#8 PEM key ('PRIVATE KEY' or 'ENCRYPTED PRIVATE KEY'), "
            f"found a '{label}' block")
    try:
        key = serialization.load_pem_private_key(data, password)
    except ValueError:
        if password is not None:
            raise KeyBackendError(
                f"key file {path_str}: could not decrypt the key (wrong passphrase?)") from None
        raise KeyBackendError(f"key file {path_str}: malformed PKCS#8 PEM private key") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyBackendError(f"key file {path_str}: cannot load the key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyBackendError(f"key file {path_str}: expected an Ed25519 key, found {type(key).__name__}")
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    signer = FileSigner(seed, path=path_str)
    expected = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if signer.public_key != expected:  # pragma: no cover - libsodium and OpenSSL disagree
        raise KeyBackendError(f"key file {path_str}: public key derivation mismatch")
    return signer



def generate_key_file(path: str | os.PathLike[str], *, passphrase: bytes | None = None) -> bytes:
    """Create a new Ed25519 key as a PKCS#8 PEM file at ``path`` and return its raw public key.

    The file is created with ``O_CREAT | O_EXCL`` and mode ``0600`` (so it is never readable by
    others, not even for an instant, whatever the umask), written, fsync'd, and its directory
    fsync'd. An existing file or symlink at ``path`` is never overwritten. With ``passphrase``
    (non-empty bytes) the key is encrypted with pyca's ``BestAvailableEncryption`` (today PBES2,
    PBKDF2-HMAC-SHA256 with 2048 iterations, AES-256-CBC): use a high-entropy passphrase, or
    re-encrypt with ``openssl pkcs8 -topk8 -scrypt`` for a stronger KDF (it still loads). Raises
    :class:`KeyBackendError`; on failure no partial file is left behind.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if passphrase is not None and (not isinstance(passphrase, bytes) or not passphrase):
        raise KeyBackendError("key file passphrase must be non-empty bytes")
    path_str = os.fspath(path)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_key = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        create_exclusive(path_str, pem)
    except FileExistsError:
        raise KeyBackendError(f"key file {path_str}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise KeyBackendError(f"key file {path_str}: cannot create ({exc.strerror})") from None
    return check_public_key(public_key)



__all__ = ["MAX_KEY_FILE_SIZE", "FileSigner", "InMemorySigner", "generate_key_file", "load_key_file"]
