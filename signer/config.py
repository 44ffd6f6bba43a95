"""The signer's data directory, configuration file and bearer tokens.

Layout of ``--data DIR`` (created on first start or by ``fleetkeys signer init``)::

    DIR/                   mode 0700
      signer.json          configuration (below), mode 0600
      journal.sqlite       the journal (signer.journal), with its -wal and -shm files
      anchor.key           the anchor key when no --key is given (PKCS#8 PEM, 0600), made on first start
      tokens/admin.token   the generated admin token, mode 0600 (written once, never printed)
      tokens/write.token   the generated write token (all namespaces), mode 0600

``signer.json`` holds no secret: tokens are stored as SHA-256 hashes (tokens are 256-bit random
strings, so a plain hash is enough) and compared with :func:`hmac.compare_digest`::

    {"tokens": [{"name": "admin", "role": "admin", "sha256": "<hex>"},
                {"name": "write", "namespaces": ["*"], "role": "write", "sha256": "<hex>"}],
     "version": 1}

``role`` is ``admin`` (create and disable namespaces) or ``write`` (ask for signatures in the listed
``namespaces``; ``"*"`` means all). Tokens are read at start; restart the signer after editing.
Namespaces themselves live in the journal, because their status changes atomically with signing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keys import Signer, generate_key_file
from verifier.atomicfile import create_exclusive, write_atomic

from .errors import SignerConfigError

CONFIG_FILE = "signer.json"
DEFAULT_KEY_FILE = "anchor.key"
TOKENS_DIR = "tokens"
MAX_BODY = 64 * 1024
MAX_CONFIG_SIZE = 1024 * 1024
ROLES = ("admin", "write")


@dataclass(frozen=True)
class Token:
    """A bearer token as configured: its name, role, namespaces and SHA-256 (never the token)."""

    name: str
    role: str
    sha256: bytes
    namespaces: tuple[str, ...] = ()

    def allows(self, namespace: str) -> bool:
        return self.role == "write" and ("*" in self.namespaces or namespace in self.namespaces)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"name": self.name, "role": self.role, "sha256": self.sha256.hex()}
        if self.role == "write":
            obj["namespaces"] = list(self.namespaces)
        return obj


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def authenticate(tokens: tuple[Token, ...], authorization: str | None) -> Token | None:
    """The configured token an ``Authorization: Bearer <token>`` header presents, or None.

    Every configured hash is compared (in constant time) whatever matches, so timing tells nothing
    about which token or how much of it matched.
    """
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    presented = token_hash(value.strip())
    found = None
    for token in tokens:
        if hmac.compare_digest(token.sha256, presented):
            found = token
    return found


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class SignerConfig:
    """Everything :func:`signer.app.create_app` needs; nothing is read from globals.

    ``signer`` overrides ``key_ref`` (tests pass an in-memory key). ``clock`` returns milliseconds.
    ``after_commit`` is a **test-only fault hook**, called after a new signature is committed and
    before the response is sent (the crash tests kill the process there); ``None`` in production.
    """

    data_dir: Path
    key_ref: str
    tokens: tuple[Token, ...]
    clock: Callable[[], int] = now_ms
    max_body: int = MAX_BODY
    signer: Signer | None = None
    after_commit: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite"



def _replace_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with a 0600 file (:func:`verifier.atomicfile.write_atomic`)."""
    write_atomic(path, data, mode=0o600)


def read_tokens(data_dir: Path) -> tuple[Token, ...]:
    """Parse ``signer.json`` strictly (schema in the module docstring)."""
    path = data_dir / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SignerConfigError(f"{path}: no such file (run `fleetkeys signer init --data {data_dir}`)") from None
    if len(raw) > MAX_CONFIG_SIZE:
        raise SignerConfigError(f"{path}: larger than {MAX_CONFIG_SIZE} bytes")
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise SignerConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("version") != 1 or not isinstance(obj.get("tokens"), list):
        raise SignerConfigError(f'{path}: expected {{"version": 1, "tokens": [...]}}')
    tokens = []
    for i, t in enumerate(obj["tokens"]):
        what = f"{path}: tokens[{i}]"
        if not isinstance(t, dict) or t.get("role") not in ROLES or not isinstance(t.get("name"), str):
            raise SignerConfigError(f"{what}: needs a name and a role (admin or write)")
        try:
            digest = bytes.fromhex(t.get("sha256", ""))
        except (TypeError, ValueError):
            digest = b""
        if len(digest) != 32:
            raise SignerConfigError(f"{what}: sha256 must be 64 hex digits")
        namespaces = t.get("namespaces", [])
        if t["role"] == "write" and (not isinstance(namespaces, list) or not namespaces
                                     or not all(isinstance(n, str) and n for n in namespaces)):
            raise SignerConfigError(f"{what}: a write token needs a non-empty list of namespaces (or [\"*\"])")
        unknown = set(t) - {"name", "role", "sha256", "namespaces"}
        if unknown:
            raise SignerConfigError(f"{what}: unknown field(s) {sorted(unknown)}")
        tokens.append(Token(t["name"], t["role"], digest, tuple(namespaces) if t["role"] == "write" else ()))
    if len({t.sha256 for t in tokens}) != len(tokens):
        raise SignerConfigError(f"{path}: the same token is listed twice")
    return tuple(tokens)


def write_tokens(data_dir: Path, tokens: tuple[Token, ...]) -> None:
    doc = {"tokens": [t.to_json() for t in tokens], "version": 1}
    _replace_private(data_dir / CONFIG_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def add_token(data_dir: Path, name: str, role: str, namespaces: tuple[str, ...] = ()) -> Path:
    """Generate a token, store its hash in ``signer.json``, write it to ``tokens/<name>.token`` (0600).

    Returns the token file's path. Refuses an existing name or token file (never overwrites).
    """
    if role not in ROLES:
        raise SignerConfigError(f"token role must be admin or write, not {role!r}")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise SignerConfigError(f"token name {name!r}: use letters, digits, - and _")
    if role == "write" and not namespaces:
        raise SignerConfigError("a write token needs at least one namespace (or '*')")
    tokens = read_tokens(data_dir) if (data_dir / CONFIG_FILE).exists() else ()
    if any(t.name == name for t in tokens):
        raise SignerConfigError(f"a token named {name!r} already exists in {data_dir / CONFIG_FILE}")
    token_dir = data_dir / TOKENS_DIR
    token_dir.mkdir(mode=0o700, exist_ok=True)
    path = token_dir / f"{name}.token"
    value = secrets.token_urlsafe(32)
    try:
        create_exclusive(path, (value + "\n").encode())
    except FileExistsError:
        raise SignerConfigError(f"{path} already exists; refusing to overwrite it") from None
    write_tokens(data_dir, (*tokens, Token(name, role, token_hash(value), tuple(namespaces))))
    return path


@dataclass(frozen=True)
class InitResult:
    """What :func:`init_data_dir` created (paths), for the command to print."""

    created_config: bool
    token_files: tuple[Path, ...]
    generated_key: bytes | None


def default_key_ref(data_dir: Path) -> str:
    return f"file:{data_dir / DEFAULT_KEY_FILE}"


def init_data_dir(data_dir: Path, key_ref: str | None = None) -> InitResult:
    """Create the data directory, its configuration and tokens, and the default key, where missing.

    Idempotent: existing files are kept. The key file is generated only for the default reference
    (``file:DIR/anchor.key``); an explicitly given reference must already exist.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    token_files: list[Path] = []
    created = False
    if not (data_dir / CONFIG_FILE).exists():
        created = True
        token_files.append(add_token(data_dir, "admin", "admin"))
        token_files.append(add_token(data_dir, "write", "write", ("*",)))
    generated = None
    key_path = data_dir / DEFAULT_KEY_FILE
    if key_ref in (None, default_key_ref(data_dir)) and not key_path.exists():
        generated = generate_key_file(key_path)
    return InitResult(created, tuple(token_files), generated)


def load_config(data_dir: Path, key_ref: str | None = None, **overrides: Any) -> SignerConfig:
    """Read ``DIR/signer.json`` into a :class:`SignerConfig` (``key_ref`` defaults to DIR/anchor.key)."""
    data_dir = Path(data_dir)
    return SignerConfig(data_dir=data_dir, key_ref=key_ref or default_key_ref(data_dir),
                        tokens=read_tokens(data_dir), **overrides)


__all__ = [
    "InitResult",
    "MAX_BODY",
    "SignerConfig",
    "Token",
    "add_token",
    "authenticate",
    "default_key_ref",
    "init_data_dir",
    "load_config",
    "now_ms",
    "read_tokens",
]
