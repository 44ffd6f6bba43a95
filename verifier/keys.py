"""Ed25519 signing-key backends: key files, PKCS#11 tokens (HSMs) and in-memory test keys.

Every private key fleetkeys uses (anchor, countersigner, log, witness, DESIGN.md §3) is an Ed25519
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

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nacl.signing import SigningKey

from .ed25519 import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, check_public_key, verify
from .errors import FormatError, SignatureError

__all__ = [
    "DEFAULT_PASSPHRASE_ENV",
    "DEFAULT_PKCS11_MODULE",
    "PKCS11_MODULE_ENV",
    "PKCS11_PIN_ENV",
    "FileSigner",
    "InMemorySigner",
    "KeyBackendError",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "Signer",
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
#: Environment variable naming the PKCS#11 library when the URI has no ``module-path``.
PKCS11_MODULE_ENV = "FLEETKEYS_PKCS11_MODULE"
#: Environment variable holding the user PIN when the URI has neither ``pin-value`` nor ``pin-source``.
PKCS11_PIN_ENV = "FLEETKEYS_PKCS11_PIN"
#: PKCS#11 library used when neither the URI nor the environment names one (Debian's SoftHSM2).
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

#: Upper bound on a key file or PIN file read from disk (a PKCS#8 Ed25519 PEM is < 300 bytes).
MAX_KEY_FILE_SIZE = 64 * 1024
MAX_PIN_FILE_SIZE = 4 * 1024

# DER of the named-curve OID 1.3.101.112 (id-Ed25519 / edwards25519), and the PrintableString form
# "edwards25519" that PKCS#11 3.0 also allows for CKA_EC_PARAMS.
_ED25519_EC_PARAMS_OID = bytes.fromhex("06032b6570")
_ED25519_EC_PARAMS_NAME = b"\x13\x0cedwards25519"
_ED25519_EC_PARAMS = (_ED25519_EC_PARAMS_OID, _ED25519_EC_PARAMS_NAME)
# Prefix of a load-time probe message. It contains a NUL byte and is followed by 32 random bytes, so
# it can never be a statement, countersignature input, checkpoint or signed-note text (DESIGN.md §3
# "one key, one purpose"); the probe signature is verified and discarded, never published.
_PROBE_PREFIX = b"fleetkeys/keys/self-test/v1\x00"


class KeyBackendError(Exception):
    """A key could not be created, loaded or used.

    The message names what failed (file path, token and key label, PKCS#11 error name) and never
    contains a PIN, a passphrase or private key material.
    """


@runtime_checkable
class Signer(Protocol):
    """An Ed25519 private key, wherever it lives.

    ``public_key`` is the raw 32-byte RFC 8032 public key, a canonical prime-order point.
    ``sign(message)`` returns the 64-byte pure Ed25519 signature (no prehash, no context) over
    exactly ``message``; it is safe to call from several threads at once and raises
    :class:`KeyBackendError` if the backend fails.
    """

    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


def _message_bytes(message: Any) -> bytes:
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError(f"sign() takes bytes, not {type(message).__name__}")
    return bytes(message)


# --------------------------------------------------------------------------------------------------
# In-memory and file keys


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
        return self._signing_key.sign(_message_bytes(message)).signature

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


def _open_private_file(path: str, *, what: str, max_size: int) -> bytes:
    """Read a secret file that only its owner may access; refuse anything else.

    The mode is checked on the opened descriptor (no race between check and read). Refused: not a
    regular file, any group/other permission bit set, larger than ``max_size``.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # never hang on a FIFO; regular files ignore it
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyBackendError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise KeyBackendError(f"{what} {path}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyBackendError(f"{what} {path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyBackendError(
                f"{what} {path}: permissions {mode:04o} are too open; it must not be accessible by "
                f"group or others (chmod 600 {path})")
        if st.st_size > max_size:
            raise KeyBackendError(f"{what} {path}: {st.st_size} bytes is larger than {max_size}")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > max_size:
                raise KeyBackendError(f"{what} {path}: larger than {max_size} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise KeyBackendError(f"{what} {path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)


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
    data = _open_private_file(path_str, what="key file", max_size=MAX_KEY_FILE_SIZE)
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
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path_str, flags, 0o600)
    except FileExistsError:
        raise KeyBackendError(f"key file {path_str}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise KeyBackendError(f"key file {path_str}: cannot create ({exc.strerror})") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(pem)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path_str)
        raise KeyBackendError(f"key file {path_str}: cannot write ({exc.strerror})") from None
    _fsync_dir(os.path.dirname(os.path.abspath(path_str)))
    return check_public_key(public_key)


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# --------------------------------------------------------------------------------------------------
# Key references


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_PCT_OK = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _file_uri_path(value: str, *, what: str) -> str:
    """``file:PATH`` → PATH (literal); ``file:///p`` / ``file://localhost/p`` → percent-decoded /p."""
    rest = value[len("file:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        if not rest.startswith("/"):
            raise KeyBackendError(f"{what}: file URI must name a local absolute path (file:///path)")
        if _PCT_OK.search(rest):
            raise KeyBackendError(f"{what}: malformed percent-escape in file URI")
        rest = urllib.parse.unquote(rest, errors="strict")
    if not rest:
        raise KeyBackendError(f"{what}: empty file path")
    return rest


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed RFC 7512 ``pkcs11:`` key reference (see the module docstring for the grammar).

    String values are percent-decoded UTF-8; ``id`` is raw bytes. ``pin_value`` is hidden from
    ``repr()``. ``None`` means "not given".
    """

    token: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    slot_id: int | None = None
    object: str | None = None
    id: bytes | None = None
    module_path: str | None = None
    pin_value: str | None = field(default=None, repr=False)
    pin_source: str | None = None

    def describe(self) -> str:
        """A log-safe description (no PIN): ``pkcs11:token=...;object=...``."""
        parts = []
        for name, value in (("token", self.token), ("serial", self.serial),
                            ("manufacturer", self.manufacturer), ("model", self.model),
                            ("slot-id", self.slot_id), ("object", self.object)):
            if value is not None:
                parts.append(f"{name}={value}")
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        return "pkcs11:" + ";".join(parts)


_PATH_ATTRS = {"token", "serial", "manufacturer", "model", "slot-id", "object", "id", "type"}
_QUERY_ATTRS = {"module-path", "pin-value", "pin-source"}


def _pct_decode(raw: str, *, name: str) -> bytes:
    if _PCT_OK.search(raw):
        raise KeyBackendError(f"PKCS#11 URI: malformed percent-escape in attribute '{name}'")
    return urllib.parse.unquote_to_bytes(raw)


def parse_pkcs11_uri(ref: str) -> Pkcs11Uri:
    """Parse an RFC 7512 ``pkcs11:`` URI into a :class:`Pkcs11Uri`, strictly.

    Raises :class:`KeyBackendError` (without echoing the URI, which may carry a PIN) on: a missing
    ``pkcs11:`` prefix, an attribute without ``=``, an unknown, repeated or empty attribute, a
    malformed ``%XX`` escape, a value that is not UTF-8 (except ``id``), a non-decimal ``slot-id``,
    a ``type`` other than ``private``, both ``pin-value`` and ``pin-source``, a relative
    ``module-path``, or no token attribute / no key attribute.
    """
    if not ref.startswith("pkcs11:"):
        raise KeyBackendError("PKCS#11 URI must start with 'pkcs11:'")
    body = ref[len("pkcs11:"):]
    path_part, _, query_part = body.partition("?")
    values: dict[str, bytes] = {}

    def collect(part: str, sep: str, allowed: set[str], kind: str) -> None:
        if not part:
            return
        for item in part.split(sep):
            name, eq, raw = item.partition("=")
            if not eq:
                raise KeyBackendError(f"PKCS#11 URI: {kind} attribute '{name}' has no '=value'")
            if name not in allowed:
                raise KeyBackendError(f"PKCS#11 URI: unsupported {kind} attribute '{name}'")
            if name in values:
                raise KeyBackendError(f"PKCS#11 URI: attribute '{name}' given more than once")
            value = _pct_decode(raw, name=name)
            if not value:
                raise KeyBackendError(f"PKCS#11 URI: attribute '{name}' is empty")
            values[name] = value

    collect(path_part, ";", _PATH_ATTRS, "path")
    collect(query_part, "&", _QUERY_ATTRS, "query")

    def text(name: str) -> str | None:
        if name not in values:
            return None
        try:
            return values[name].decode("utf-8")
        except UnicodeDecodeError:
            raise KeyBackendError(f"PKCS#11 URI: attribute '{name}' is not UTF-8") from None

    kind = text("type")
    if kind is not None and kind != "private":
        raise KeyBackendError(f"PKCS#11 URI: type={kind} given, but a signing key must be type=private")
    slot_text = text("slot-id")
    slot_id = None
    if slot_text is not None:
        if not slot_text.isascii() or not slot_text.isdigit():
            raise KeyBackendError("PKCS#11 URI: slot-id must be a decimal number")
        slot_id = int(slot_text)
    uri = Pkcs11Uri(
        token=text("token"), serial=text("serial"), manufacturer=text("manufacturer"),
        model=text("model"), slot_id=slot_id, object=text("object"), id=values.get("id"),
        module_path=text("module-path"), pin_value=text("pin-value"), pin_source=text("pin-source"))
    if uri.pin_value is not None and uri.pin_source is not None:
        raise KeyBackendError("PKCS#11 URI: give pin-value or pin-source, not both")
    if uri.module_path is not None and not os.path.isabs(uri.module_path):
        raise KeyBackendError("PKCS#11 URI: module-path must be an absolute path")
    if (uri.token, uri.serial, uri.manufacturer, uri.model, uri.slot_id) == (None,) * 5:
        raise KeyBackendError("PKCS#11 URI: no token selected (give token=LABEL or serial=...)")
    if uri.object is None and uri.id is None:
        raise KeyBackendError("PKCS#11 URI: no key selected (give object=LABEL or id=...)")
    return uri


def _refuse_pin_value(uri: Pkcs11Uri) -> None:
    if uri.pin_value is not None:
        raise KeyBackendError(
            f"PKCS#11 key {uri.describe()}: pin-value= in a key reference is refused (a PIN on a command line "
            f"is visible to every local user in /proc/<pid>/cmdline); give pin-source=file:PATH (a 0600 file "
            f"holding the PIN) or set {PKCS11_PIN_ENV}")


def check_no_pin_value(ref: str) -> None:
    """Raise :class:`KeyBackendError` if ``ref`` is a ``pkcs11:`` reference carrying ``pin-value``.

    Also raises for a malformed ``pkcs11:`` reference; other references pass. Loads nothing.
    """
    if ref.startswith("pkcs11:"):
        _refuse_pin_value(parse_pkcs11_uri(ref))


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
            _refuse_pin_value(uri)
        return _load_pkcs11_signer(uri)
    if ref.startswith("file:"):
        path = _file_uri_path(ref, what="key reference")
    elif _SCHEME.match(ref) and not ref.startswith(("/", ".")):
        scheme = ref.split(":", 1)[0]
        raise KeyBackendError(f"key reference: unsupported scheme '{scheme}:' (use file: or pkcs11:)")
    else:
        path = ref
    value = os.environ.get(passphrase_env) if passphrase_env else None
    passphrase = os.fsencode(value) if value else None
    return load_key_file(path, passphrase=passphrase)


# --------------------------------------------------------------------------------------------------
# PKCS#11


def _import_pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise KeyBackendError(
            "PKCS#11 keys need python-pkcs11, which is not installed (pip install 'fleetkeys[pkcs11]')"
        ) from None
    return pkcs11


_PROCESS_PIN_KEY = secrets.token_bytes(32)


def _pin_mac(pin: str) -> bytes:
    return hmac.new(_PROCESS_PIN_KEY, pin.encode("utf-8"), hashlib.sha256).digest()


class _Login:
    """The process's login to one token (PKCS#11 logins are per application, not per session).

    All fields are guarded by the owning :class:`_Module` lock. ``session`` is the R/O user session
    that holds the login (``None`` while logged out); ``epoch`` changes whenever it is replaced, so
    users re-find their object handles.
    """

    def __init__(self, key: tuple[bytes, str], token: Any, pin_mac: bytes) -> None:
        self.key = key
        self.token = token
        self.pin_mac = pin_mac
        self.session: Any = None
        self.users = 0
        self.epoch = 0


class _Module:
    """One loaded PKCS#11 library: its lock and its token logins (see the module docstring)."""

    def __init__(self, path: str, load_name: str) -> None:
        self.path = path  # realpath: the identity of the library file
        self.load_name = load_name  # the spelling first given, used to load it
        self.lock = threading.RLock()
        self.logins: dict[tuple[bytes, str], _Login] = {}
        self.pid = os.getpid()

    def check_process(self) -> None:
        if os.getpid() != self.pid:
            raise KeyBackendError(
                f"PKCS#11 module {self.path} was loaded in process {self.pid} before a fork; load "
                "PKCS#11 signers in the process that uses them (not in a pre-forking master)")

    def lib(self) -> Any:
        """The initialised python-pkcs11 library object (caller holds ``self.lock``)."""
        self.check_process()
        pkcs11 = _import_pkcs11()
        # python-pkcs11 caches libraries by the path string it was given; a second spelling of the
        # same file (symlink, realpath) would make it call C_Initialize twice and fail. Reuse a
        # library already loaded under any spelling, else load it under the spelling we were given.
        name = self.load_name
        for loaded in list(getattr(pkcs11, "_loaded", {})):
            if os.path.realpath(loaded) == self.path:
                name = loaded
                break
        try:
            return pkcs11.lib(name)
        except pkcs11.PKCS11Error as exc:
            raise KeyBackendError(
                f"PKCS#11 module {self.path}: cannot load or initialise ({_exc_name(exc)})") from None


_MODULES: dict[str, _Module] = {}
_MODULES_LOCK = threading.Lock()


def _module_path(module: str | None) -> str:
    path = module or os.environ.get(PKCS11_MODULE_ENV) or DEFAULT_PKCS11_MODULE
    if not os.path.isabs(path):
        raise KeyBackendError(f"PKCS#11 module path must be absolute: {path}")
    if not os.path.isfile(path):
        raise KeyBackendError(f"PKCS#11 module {path}: no such file")
    return path


def _module(path: str) -> _Module:
    """The process-wide state of the library at ``path`` (one per file, whatever the spelling)."""
    real = os.path.realpath(path)
    with _MODULES_LOCK:
        mod = _MODULES.get(real)
        if mod is None:
            mod = _MODULES[real] = _Module(real, path)
    mod.check_process()
    return mod


def _exc_name(exc: BaseException) -> str:
    detail = str(exc).strip()
    # python-pkcs11 messages carry no secrets (error names, search templates); keep them short.
    return f"{type(exc).__name__}: {detail[:200]}" if detail else type(exc).__name__


def _find_tokens(lib: Any, uri: Pkcs11Uri) -> Iterator[Any]:
    pkcs11 = _import_pkcs11()
    for slot in lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except (pkcs11.TokenNotPresent, pkcs11.TokenNotRecognised):
            continue
        if uri.token is not None and token.label != uri.token:
            continue
        if uri.serial is not None and token.serial.decode("utf-8", "replace") != uri.serial:
            continue
        if uri.manufacturer is not None and token.manufacturer_id != uri.manufacturer:
            continue
        if uri.model is not None and token.model != uri.model:
            continue
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        yield token


def _find_token(lib: Any, uri: Pkcs11Uri, *, serial: bytes | None = None) -> Any:
    """The one token matching ``uri`` (and ``serial`` if given); KeyBackendError otherwise."""
    pkcs11 = _import_pkcs11()
    what = uri.describe().split(";object=")[0].split(";id=")[0]
    try:
        tokens = [t for t in _find_tokens(lib, uri) if serial is None or t.serial == serial]
    except pkcs11.PKCS11Error as exc:
        raise KeyBackendError(f"{what}: cannot list tokens ({_exc_name(exc)})") from None
    if not tokens:
        raise KeyBackendError(f"{what}: no such token in PKCS#11 module {getattr(lib, 'so', '?')}")
    if len(tokens) > 1:
        raise KeyBackendError(f"{what}: {len(tokens)} tokens match; add serial= to the URI")
    return tokens[0]


def _login_open_session(mod: _Module, login: _Login, pin: str) -> None:
    """Open the login session of ``login`` with ``pin`` (caller holds ``mod.lock``)."""
    pkcs11 = _import_pkcs11()
    label = login.key[1]
    try:
        login.session = login.token.open(user_pin=pin)
    except pkcs11.PinIncorrect:
        raise KeyBackendError(f"PKCS#11 login to token '{label}' failed: incorrect PIN") from None
    except pkcs11.PinLocked:
        raise KeyBackendError(f"PKCS#11 login to token '{label}' failed: the PIN is locked") from None
    except (pkcs11.PinExpired, pkcs11.PinInvalid, pkcs11.PinLenRange) as exc:
        raise KeyBackendError(
            f"PKCS#11 login to token '{label}' failed: PIN rejected ({type(exc).__name__})") from None
    except pkcs11.UserAlreadyLoggedIn:
        raise KeyBackendError(
            f"PKCS#11 login to token '{label}' failed: the token is already logged in by other code "
            "in this process, so the PIN cannot be checked") from None
    except pkcs11.PKCS11Error as exc:
        raise KeyBackendError(f"PKCS#11 login to token '{label}' failed ({_exc_name(exc)})") from None
    login.epoch += 1


def _login_acquire(mod: _Module, token: Any, pin: str) -> _Login:
    """Share (or create) the process's login to ``token`` (caller holds ``mod.lock``)."""
    key = (bytes(token.serial), str(token.label))
    mac = _pin_mac(pin)
    login = mod.logins.get(key)
    if login is not None:
        if not hmac.compare_digest(login.pin_mac, mac):
            raise KeyBackendError(
                f"PKCS#11 token '{key[1]}' is already logged in in this process with a different PIN")
        if login.session is None:
            login.token = token
            _login_open_session(mod, login, pin)
        login.users += 1
        return login
    login = _Login(key, token, mac)
    _login_open_session(mod, login, pin)
    login.users = 1
    mod.logins[key] = login
    return login


def _login_release(mod: _Module, login: _Login) -> None:
    """Drop one user of ``login``; log out when the last one goes (caller holds ``mod.lock``)."""
    login.users -= 1
    if login.users > 0:
        return
    if mod.logins.get(login.key) is login:
        del mod.logins[login.key]
    session, login.session = login.session, None
    if session is not None:
        # C_Logout + C_CloseSession; the session may already be gone, then there is nothing to release.
        with contextlib.suppress(Exception):
            session.close()


def _login_reopen(mod: _Module, login: _Login, uri: Pkcs11Uri, pin: str) -> None:
    """Replace a lost login session: find the token again (by serial) and log in again."""
    session, login.session = login.session, None
    if session is not None:
        with contextlib.suppress(Exception):  # a lost session cannot be closed; that is expected
            session.close()
    lib = mod.lib()
    login.token = _find_token(lib, uri, serial=login.key[0])
    _login_open_session(mod, login, pin)


def _unwrap_ec_point(value: bytes, *, what: str) -> bytes:
    """CKA_EC_POINT of an Ed25519 key: exactly DER OCTET STRING ``04 20 || 32 bytes``."""
    if len(value) != 2 + PUBLIC_KEY_SIZE or value[0] != 0x04 or value[1] != PUBLIC_KEY_SIZE:
        raise KeyBackendError(
            f"{what}: CKA_EC_POINT is not a DER OCTET STRING of 32 bytes (found {len(value)} bytes "
            f"starting {value[:2].hex()})")
    try:
        return check_public_key(bytes(value[2:]))
    except FormatError as exc:
        raise KeyBackendError(f"{what}: {exc}") from None


def _key_template(uri: Pkcs11Uri, object_class: Any) -> dict[Any, Any]:
    pkcs11 = _import_pkcs11()
    template: dict[Any, Any] = {pkcs11.Attribute.CLASS: object_class}
    if uri.object is not None:
        template[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        template[pkcs11.Attribute.ID] = uri.id
    return template


def _find_keypair(session: Any, uri: Pkcs11Uri, *, what: str) -> tuple[Any, bytes]:
    """Find the private key and the raw public key selected by ``uri`` in ``session``."""
    pkcs11 = _import_pkcs11()
    attr, key_type = pkcs11.Attribute, pkcs11.KeyType
    privs = list(session.get_objects(_key_template(uri, pkcs11.ObjectClass.PRIVATE_KEY)))
    if not privs:
        raise KeyBackendError(f"{what}: no such private key on the token")
    if len(privs) > 1:
        raise KeyBackendError(f"{what}: {len(privs)} private keys match; make the selection unique (id=)")
    priv = privs[0]
    if priv.key_type != key_type.EC_EDWARDS:
        raise KeyBackendError(f"{what}: not an Ed25519 key (key type {priv.key_type.name})")
    pubs = list(session.get_objects(_key_template(uri, pkcs11.ObjectClass.PUBLIC_KEY)))
    pubs = [p for p in pubs if p.key_type == key_type.EC_EDWARDS]
    if len(pubs) > 1:
        priv_id = priv[attr.ID]
        if priv_id:
            pubs = [p for p in pubs if p[attr.ID] == priv_id]
    if not pubs:
        raise KeyBackendError(f"{what}: the token has no matching Ed25519 public key object")
    if len(pubs) > 1:
        raise KeyBackendError(f"{what}: {len(pubs)} public keys match; make the selection unique (id=)")
    params = bytes(pubs[0][attr.EC_PARAMS])
    if params not in _ED25519_EC_PARAMS:
        raise KeyBackendError(f"{what}: CKA_EC_PARAMS {params.hex()} is not edwards25519")
    return priv, _unwrap_ec_point(bytes(pubs[0][attr.EC_POINT]), what=what)


class Pkcs11Signer:
    """An Ed25519 private key inside a PKCS#11 token, used through ``CKM_EDDSA`` (pure Ed25519).

    Made by :func:`load_signer` with a ``pkcs11:`` reference. Thread-safe (see the module docstring
    for the locking and login model). Every signature is verified against ``public_key`` before it
    is returned. ``close()`` (or ``with``) releases this signer's share of the token login; a closed
    signer refuses to sign. The PIN is kept in memory to log in again if the session is lost.
    """

    def __init__(self, *, mod: _Module, uri: Pkcs11Uri, pin: str) -> None:
        self._mod = mod
        self._uri = uri
        self._pin = pin
        #: Log-safe description of the key (the URI without PIN or module).
        self.description: str = uri.describe()
        self._closed = False
        pkcs11 = _import_pkcs11()
        with mod.lock:
            lib = mod.lib()
            token = _find_token(lib, uri)
            self._login = _login_acquire(mod, token, pin)
            try:
                try:
                    self._key, public_key = _find_keypair(self._login.session, uri, what=self.description)
                except pkcs11.PKCS11Error:
                    # A login session lost behind our back (module re-initialised): log in again once.
                    _login_reopen(mod, self._login, uri, pin)
                    self._key, public_key = _find_keypair(self._login.session, uri, what=self.description)
            except pkcs11.PKCS11Error as exc:
                _login_release(mod, self._login)
                raise KeyBackendError(f"{self.description}: cannot read the key ({_exc_name(exc)})") from None
            except BaseException:
                _login_release(mod, self._login)
                raise
            self._key_epoch = self._login.epoch
        #: Raw 32-byte Ed25519 public key (from the token's public key object).
        self.public_key: bytes = public_key
        try:
            probe = _PROBE_PREFIX + secrets.token_bytes(32)
            self.sign(probe)  # verifies the signature, i.e. that the private key matches
        except BaseException:
            self.close()
            raise

    def _sign_locked(self, message: bytes) -> bytes:
        pkcs11 = _import_pkcs11()
        login = self._login
        if login.session is None:
            raise pkcs11.SessionClosed()
        if self._key_epoch != login.epoch:
            self._key, public_key = _find_keypair(login.session, self._uri, what=self.description)
            if public_key != self.public_key:
                raise KeyBackendError(f"{self.description}: the key on the token has changed")
            self._key_epoch = login.epoch
        return bytes(self._key.sign(message, mechanism=pkcs11.Mechanism.EDDSA))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte pure Ed25519 signature over ``message`` made by the token.

        On a PKCS#11 failure the signer logs in again once and retries; if that fails too, or the
        token returns a signature that does not verify, raises :class:`KeyBackendError`.
        """
        message = _message_bytes(message)
        pkcs11 = _import_pkcs11()
        mod = self._mod
        with mod.lock:
            mod.check_process()
            if self._closed:
                raise KeyBackendError(f"{self.description}: signer is closed")
            try:
                signature = self._sign_locked(message)
            except pkcs11.PKCS11Error:
                try:
                    _login_reopen(mod, self._login, self._uri, self._pin)
                    signature = self._sign_locked(message)
                except pkcs11.PKCS11Error as exc:
                    raise KeyBackendError(f"{self.description}: signing failed ({_exc_name(exc)})") from None
        if len(signature) != SIGNATURE_SIZE:
            raise KeyBackendError(
                f"{self.description}: token returned a {len(signature)}-byte signature, expected 64")
        try:
            verify(self.public_key, message, signature, what="HSM signature")
        except SignatureError:
            raise KeyBackendError(
                f"{self.description}: the token returned a signature that does not verify under its "
                "public key (wrong key pair or faulty device); signature discarded") from None
        return signature

    def close(self) -> None:
        """Release this signer's share of the token login (logs out when it is the last user)."""
        with self._mod.lock:
            if self._closed:
                return
            self._closed = True
            if os.getpid() == self._mod.pid:
                _login_release(self._mod, self._login)

    def __enter__(self) -> Pkcs11Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Pkcs11Signer {self.description} public_key={self.public_key.hex()}>"


def _resolve_pin(uri: Pkcs11Uri) -> str:
    if uri.pin_value is not None:
        return uri.pin_value
    if uri.pin_source is not None:
        source = uri.pin_source
        if source.startswith("file:"):
            path = _file_uri_path(source, what="PKCS#11 pin-source")
        elif os.path.isabs(source):
            path = source
        else:
            raise KeyBackendError("PKCS#11 pin-source must be file:PATH or an absolute path")
        data = _open_private_file(path, what="PIN file", max_size=MAX_PIN_FILE_SIZE)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        try:
            pin = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyBackendError(f"PIN file {path}: not UTF-8") from None
        if not pin:
            raise KeyBackendError(f"PIN file {path}: empty")
        return pin
    pin = os.environ.get(PKCS11_PIN_ENV)
    if not pin:
        raise KeyBackendError(
            f"PKCS#11 key {uri.describe()}: no PIN (give pin-source= in the URI or set {PKCS11_PIN_ENV})")
    return pin


def _load_pkcs11_signer(uri: Pkcs11Uri) -> Pkcs11Signer:
    _import_pkcs11()
    mod = _module(_module_path(uri.module_path))
    return Pkcs11Signer(mod=mod, uri=uri, pin=_resolve_pin(uri))


def generate_pkcs11_key(*, module: str, token: str, pin: str, label: str) -> bytes:
    """Create a persistent Ed25519 key pair labelled ``label`` on token ``token``; return the public key.

    Preconditions: ``module`` is the absolute path of a PKCS#11 library supporting
    ``CKM_EC_EDWARDS_KEY_PAIR_GEN``; exactly one token has label ``token`` and ``pin`` is its user
    PIN; no object labelled ``label`` exists on it (refused otherwise, never overwritten). The pair
    is a token object (``CKA_TOKEN``), the private half ``CKA_PRIVATE``, ``CKA_SENSITIVE``, not
    ``CKA_EXTRACTABLE``, usable only to sign; both halves share a random 16-byte ``CKA_ID`` and the
    label, and ``CKA_EC_PARAMS`` is the edwards25519 OID. Load it with
    ``load_signer("pkcs11:token=TOKEN;object=LABEL?...")``. Raises :class:`KeyBackendError`.
    """
    pkcs11 = _import_pkcs11()
    if not label:
        raise KeyBackendError("PKCS#11 key label must not be empty")
    mod = _module(_module_path(module))
    uri = Pkcs11Uri(token=token, object=label)
    what = uri.describe()
    with mod.lock:
        tok = _find_token(mod.lib(), uri)
        login = _login_acquire(mod, tok, pin)
        try:
            existing = list(login.session.get_objects({pkcs11.Attribute.LABEL: label}))
            if existing:
                raise KeyBackendError(f"{what}: an object with this label already exists; refusing to "
                                      "create another")
            rw = tok.open(rw=True)  # shares the login; closing it does not log out
            try:
                pub, _priv = rw.generate_keypair(
                    pkcs11.KeyType.EC_EDWARDS,
                    store=True,
                    label=label,
                    id=secrets.token_bytes(16),
                    mechanism=pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    capabilities=pkcs11.MechanismFlag.SIGN | pkcs11.MechanismFlag.VERIFY,
                    public_template={
                        pkcs11.Attribute.EC_PARAMS: _ED25519_EC_PARAMS_OID,
                        pkcs11.Attribute.TOKEN: True,
                        pkcs11.Attribute.PRIVATE: False,
                    },
                    private_template={
                        pkcs11.Attribute.TOKEN: True,
                        pkcs11.Attribute.PRIVATE: True,
                        pkcs11.Attribute.SENSITIVE: True,
                        pkcs11.Attribute.EXTRACTABLE: False,
                    },
                )
                point = bytes(pub[pkcs11.Attribute.EC_POINT])
            finally:
                rw.close()
        except pkcs11.PKCS11Error as exc:
            raise KeyBackendError(f"{what}: key generation failed ({_exc_name(exc)})") from None
        finally:
            _login_release(mod, login)
    return _unwrap_ec_point(point, what=what)


def pkcs11_reinitialize(module: str | None = None) -> None:
    """Finalise and re-initialise a PKCS#11 module in this process (test support).

    SoftHSM2 reads ``SOFTHSM2_CONF`` and scans its token directory only in ``C_Initialize``, so a
    token created after the module was loaded (e.g. by ``softhsm2-util``), or a new configuration,
    is visible only after this. All sessions and logins of the module in this process are lost;
    existing signers log in again on their next use if their token is still visible. Loads the
    module if it was not loaded. ``module`` defaults as in :func:`load_signer`.
    """
    mod = _module(_module_path(module))
    pkcs11 = _import_pkcs11()
    with mod.lock:
        lib = mod.lib()
        try:
            lib.reinitialize()
        except pkcs11.PKCS11Error as exc:
            raise KeyBackendError(
                f"PKCS#11 module {mod.path}: re-initialisation failed ({_exc_name(exc)})") from None
        for login in mod.logins.values():
            login.session = None  # handles died with C_Finalize; reopened on next use
