"""Ed25519 signing-key backends: key files, PKCS#11 tokens (HSMs) and in-memory test keys.

Every private key fleetkeys uses (anchor, countersigner, log, witness, docs/DESIGN.md §3) is an Ed25519
key held behind the :class:`Signer` protocol: a raw 32-byte ``public_key`` and a ``sign(message)``
that returns a 64-byte pure Ed25519 signature (RFC 8032, no prehash, no context) over exactly the
bytes given. Which key a service uses is configured as a *key reference* string, resolved by
:func:`load_signer`:

``file:PATH`` or a bare ``PATH``
    A PKCS#8 PEM Ed25519 private key (``-----BEGIN PRIVATE KEY-----``), optionally
    passphrase-encrypted (``-----BEGIN ENCRYPTED PRIVATE KEY-----``). ``PATH`` after ``file:`` is taken
    literally (no percent-decoding); the RFC 8089 form ``file:///abs/path`` (or
    ``file://localhost/abs/path``) is percent-decoded. The file must be a regular file that neither
    group nor others can access (mode ``0600`` or stricter); anything else is refused before the key
    is read. The passphrase of an encrypted key is read from the environment variable named by
    ``passphrase_env`` (never from the command line); an empty value counts as unset, and a
    passphrase is ignored for a key that is not encrypted.

``pkcs11:PATH-ATTRS[?QUERY-ATTRS]`` (RFC 7512)
    A key in a PKCS#11 token. Path attributes are separated by ``;``, query attributes by ``&``;
    every value is percent-decoded (``%XX``; a malformed escape is an error). Supported path
    attributes: ``token`` (token label), ``serial``, ``manufacturer``, ``model``, ``slot-id``
    (decimal) select the token, at least one of them is required and every given one must match;
    ``object`` (key label) and ``id`` (``CKA_ID``, raw bytes after decoding) select the key, at least
    one is required; ``type``, if given, must be ``private``. Query attributes: ``module-path``
    (absolute path of the PKCS#11 library), ``pin-value`` (the user PIN) or ``pin-source``
    (``file:PATH`` or an absolute path of a file holding the PIN, same ``0600`` rule as key files,
    one trailing newline stripped). ``pin-value`` is refused unless the caller passes
    ``allow_pin_value=True`` to :func:`load_signer`: a reference given on a command line is readable
    by every local user in ``/proc/<pid>/cmdline``, so commands never allow it (use ``pin-source`` or
    ``FLEETKEYS_PKCS11_PIN``). Any other attribute (including ``module-name``, ``library-*``,
    vendor ``x-*``), a repeated attribute or an empty value is refused, so a typo can never widen
    which key is used. Fallbacks: ``FLEETKEYS_PKCS11_MODULE`` (default
    ``/usr/lib/softhsm/libsofthsm2.so``) and ``FLEETKEYS_PKCS11_PIN``.

    The token must hold exactly one Ed25519 (``CKK_EC_EDWARDS``) private key and one public key
    matching the selection; the public key's ``CKA_EC_PARAMS`` must name edwards25519 and its
    ``CKA_EC_POINT`` must be the DER OCTET STRING ``04 20 || A`` (32 bytes) with ``A`` a canonical
    prime-order point. At load the signer makes and verifies one signature over a random,
    never-published probe, which proves the private key matches the public key; every later
    signature is also verified before it is returned (a faulty HSM signature is never released).

Errors: everything that can go wrong raises :class:`KeyBackendError` whose message says what failed
and where (path, token and key label) and never contains a PIN, a passphrase or key material.

PKCS#11 concurrency model (read this before using a token from several threads or processes):

* python-pkcs11 calls ``C_Initialize(NULL)``, which tells the module the application is
  single-threaded (SoftHSM2 then disables its internal locking). This module therefore serialises
  every PKCS#11 call it makes on one module behind a per-module lock. Signers are safe to share
  between threads (gunicorn ``--threads``); other code in the same process must not call the same
  module through python-pkcs11 directly.
* A PKCS#11 login belongs to the process, not to a session, and closing a logged-in session logs
  every session out. Logins are therefore shared and reference-counted per token here: signers and
  :func:`generate_pkcs11_key` on one token reuse one login, and a later caller with a different PIN
  is refused (the module cannot check a PIN while the token is logged in).
* PKCS#11 state does not survive ``fork()``: load PKCS#11 signers in the process that uses them
  (e.g. in each gunicorn worker, not in a ``--preload`` master). Use after a fork is refused.
* If a session is lost (token reset, module re-initialised) a signer logs in again once and retries.
"""

from __future__ import annotations

import os
import re

from verifier.ed25519 import Signer

from .errors import KeyBackendError
from .files import MAX_KEY_FILE_SIZE, FileSigner, InMemorySigner, generate_key_file, load_key_file
from .pkcs11 import (
    DEFAULT_PKCS11_MODULE,
    PKCS11_MODULE_ENV,
    PKCS11_PIN_ENV,
    Pkcs11Signer,
    Pkcs11Uri,
    check_config_key_ref,
    check_no_pin_value,
    generate_pkcs11_key,
    load_pkcs11_signer,
    parse_pkcs11_uri,
    pkcs11_reinitialize,
    refuse_pin_value,
)
from .privatefile import file_reference_path

__all__ = [
    "DEFAULT_PASSPHRASE_ENV",
    "DEFAULT_PKCS11_MODULE",
    "MAX_KEY_FILE_SIZE",
    "PKCS11_MODULE_ENV",
    "PKCS11_PIN_ENV",
    "FileSigner",
    "InMemorySigner",
    "KeyBackendError",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "Signer",
    "check_config_key_ref",
    "check_no_pin_value",
    "generate_key_file",
    "generate_pkcs11_key",
    "load_key_file",
    "load_signer",
    "parse_pkcs11_uri",
    "pkcs11_reinitialize",
]

#: Environment variable holding the passphrase of an encrypted key file (name only, not a secret).
DEFAULT_PASSPHRASE_ENV = "FLEETKEYS_KEY_PASSPHRASE"  # noqa: S105

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def load_signer(ref: str | os.PathLike[str], *, allow_pin_value: bool = False,
                passphrase_env: str = DEFAULT_PASSPHRASE_ENV) -> Signer:
    """Resolve a key reference (see the module docstring) to a ready :class:`Signer`.

    ``file:PATH`` / bare path → :class:`FileSigner` (passphrase from ``os.environ[passphrase_env]``
    if set and non-empty); ``pkcs11:...`` → :class:`Pkcs11Signer` (logged in, key found, pair
    self-tested). A ``pkcs11:`` reference with ``pin-value`` is refused unless ``allow_pin_value``
    (never for a reference that came from argv). Any other ``scheme:`` prefix is refused (write
    ``file:`` or ``./`` before a relative path that contains a colon). Raises
    :class:`KeyBackendError`; the message never contains the reference's PIN.
    """
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref:
        raise KeyBackendError("key reference: empty")
    if ref.startswith("pkcs11:"):
        uri = parse_pkcs11_uri(ref)
        if not allow_pin_value:
            refuse_pin_value(uri)
        return load_pkcs11_signer(uri)
    if ref.startswith("file:"):
        path = file_reference_path(ref, what="key reference")
    elif _SCHEME.match(ref) and not ref.startswith(("/", ".")):
        scheme = ref.split(":", 1)[0]
        raise KeyBackendError(f"key reference: unsupported scheme '{scheme}:' (use file: or pkcs11:)")
    else:
        path = ref
    value = os.environ.get(passphrase_env) if passphrase_env else None
    passphrase = os.fsencode(value) if value else None
    return load_key_file(path, passphrase=passphrase)
