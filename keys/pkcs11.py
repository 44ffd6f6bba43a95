"""Ed25519 keys in PKCS#11 tokens (HSMs): RFC 7512 URIs, logins, signing (see :mod:`keys`)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from verifier.ed25519 import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, check_public_key, verify
from verifier.errors import FormatError, SignatureError

from .errors import KeyBackendError
from .files import message_bytes
from .privatefile import PCT_ESCAPE_BAD, file_reference_path, read_private_file

#: Environment variable naming the PKCS#11 library when the URI has no ``module-path``.
PKCS11_MODULE_ENV = "FLEETKEYS_PKCS11_MODULE"
#: Environment variable holding the user PIN when the URI has neither ``pin-value`` nor ``pin-source``.
PKCS11_PIN_ENV = "FLEETKEYS_PKCS11_PIN"
#: PKCS#11 library used when neither the URI nor the environment names one (Debian's SoftHSM2).
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

#: Upper bound on a PIN file read from disk.
MAX_PIN_FILE_SIZE = 4 * 1024

# DER of the named-curve OID 1.3.101.112 (id-Ed25519 / edwards25519), and the PrintableString form
# "edwards25519" that PKCS#11 3.0 also allows for CKA_EC_PARAMS.
_ED25519_EC_PARAMS_OID = bytes.fromhex("06032b6570")
_ED25519_EC_PARAMS_NAME = b"\x13\x0cedwards25519"
_ED25519_EC_PARAMS = (_ED25519_EC_PARAMS_OID, _ED25519_EC_PARAMS_NAME)
# Prefix of a load-time probe message. It contains a NUL byte and is followed by 32 random bytes, so
# it can never be a statement, countersignature input, checkpoint or signed-note text (docs/DESIGN.md §3
# "one key, one purpose"); the probe signature is verified and discarded, never published.
_PROBE_PREFIX = b"fleetkeys/keys/self-test/v1\x00"




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
    if PCT_ESCAPE_BAD.search(raw):
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


def refuse_pin_value(uri: Pkcs11Uri) -> None:
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
        refuse_pin_value(parse_pkcs11_uri(ref))


def check_config_key_ref(ref: str) -> None:
    """:func:`check_no_pin_value` for a key reference read from a configuration file: raises
    :class:`ValueError` (what ``serving.configfile`` reports at the option's line)."""
    try:
        check_no_pin_value(ref)
    except KeyBackendError as exc:
        raise ValueError(str(exc)) from None



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
        message = message_bytes(message)
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
            path = file_reference_path(source, what="PKCS#11 pin-source")
        elif os.path.isabs(source):
            path = source
        else:
            raise KeyBackendError("PKCS#11 pin-source must be file:PATH or an absolute path")
        data = read_private_file(path, what="PIN file", max_size=MAX_PIN_FILE_SIZE)
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


def load_pkcs11_signer(uri: Pkcs11Uri) -> Pkcs11Signer:
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


__all__ = [
    "DEFAULT_PKCS11_MODULE",
    "PKCS11_MODULE_ENV",
    "PKCS11_PIN_ENV",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "check_no_pin_value",
    "generate_pkcs11_key",
    "load_pkcs11_signer",
    "parse_pkcs11_uri",
    "pkcs11_reinitialize",
    "refuse_pin_value",
]
