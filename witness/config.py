"""The witness's configuration: its name and key, the logs it witnesses, its data directory.

    fleetkeys witness serve --name witness.example/w1 --key file:/etc/witness/w1.key --data /var/lib/witness \\
        --log log.fleetkeys.example/v1=log.fleetkeys.example/v1+1a2b3c4d+AU...

* ``--name`` is the witness's key name: its cosignature lines read ``— <name> ...`` and its verifier key
  is ``<name>+<key id>+base64(0x04 || public key)`` (c2sp.org/tlog-cosignature: key type 0x04, key id
  ``SHA-256(name || "\\n" || 0x04 || public key)[:4]``). A key name is non-empty, with no ``+`` and no
  white space (c2sp.org/signed-note).
* ``--key`` is a key reference (:func:`keys.load_signer`: ``file:PATH`` or ``pkcs11:...``), an Ed25519
  key used for nothing else.
* Each ``--log ORIGIN=VKEY`` trusts ``VKEY`` (a type 0x01 Ed25519 note verifier key) for the log whose
  checkpoints carry ``ORIGIN`` on their first line. The split is at the last ``=`` (a vkey contains
  none: 33 bytes are 44 base64 characters without padding). Repeat ``--log`` with one origin to trust
  several keys of a log (a key rotation): a checkpoint needs a valid signature by one of them, and
  one failing signature by any of them is refused (c2sp.org/signed-note).
* ``--data DIR`` (created mode 0700) holds ``witness.sqlite`` (:mod:`witness.state`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from keys import Signer
from verifier.checkpoint import Checkpoint, parse_checkpoint_body
from verifier.errors import VerificationError
from verifier.merkle import EMPTY_ROOT
from verifier.note import ALG_COSIGNATURE_V1, ALG_ED25519, NoteVerifier, is_valid_name

from .errors import WitnessConfigError
from .state import STATE_FILE
from .wire import MAX_BODY

#: At most this many logs, and keys per log, per witness.
MAX_LOGS = 1000
MAX_KEYS_PER_LOG = 16


def now_seconds() -> int:
    """The current time as a POSIX timestamp (c2sp.org/tlog-cosignature), in whole seconds."""
    return int(time.time())


def check_origin(origin: str) -> str:
    """An origin as a checkpoint's first line carries it: non-empty, one line, no control characters,
    within :func:`verifier.checkpoint.parse_checkpoint_body`'s bounds (which is what decides)."""
    if not origin or any(ord(c) < 0x20 for c in origin):
        raise WitnessConfigError(f"log origin {origin[:80]!r}: must be one non-empty line without control characters")
    try:
        parsed = parse_checkpoint_body(Checkpoint(origin, 0, EMPTY_ROOT).body()).origin
    except VerificationError as exc:
        raise WitnessConfigError(f"log origin {origin[:80]!r}: {exc}") from None
    if parsed != origin:
        raise WitnessConfigError(f"log origin {origin[:80]!r}: not a valid checkpoint origin line")
    return origin


def parse_log_options(values: Iterable[str]) -> dict[str, tuple[NoteVerifier, ...]]:
    """``["ORIGIN=VKEY", ...]`` → ``{origin: (verifier, ...)}`` (module docstring)."""
    logs: dict[str, list[NoteVerifier]] = {}
    for value in values:
        origin, sep, vkey = value.rpartition("=")
        if not sep or not origin or not vkey:
            raise WitnessConfigError(f"--log {value[:120]!r}: expected ORIGIN=VKEY")
        check_origin(origin)
        try:
            verifier = NoteVerifier.from_vkey(vkey, ALG_ED25519)
        except VerificationError as exc:
            raise WitnessConfigError(f"--log {origin}: {exc}") from None
        keys = logs.setdefault(origin, [])
        if any((k.name, k.key_id) == (verifier.name, verifier.key_id) for k in keys):
            raise WitnessConfigError(f"--log {origin}: key {verifier.name}+{verifier.key_id:08x} given twice")
        keys.append(verifier)
        if len(keys) > MAX_KEYS_PER_LOG:
            raise WitnessConfigError(f"--log {origin}: more than {MAX_KEYS_PER_LOG} keys")
    if not logs:
        raise WitnessConfigError("no log configured: give at least one --log ORIGIN=VKEY")
    if len(logs) > MAX_LOGS:
        raise WitnessConfigError(f"more than {MAX_LOGS} logs")
    return {origin: tuple(keys) for origin, keys in logs.items()}


@dataclass(frozen=True)
class WitnessConfig:
    """Everything :func:`witness.app.create_app` needs; nothing is read from globals.

    ``signer`` overrides ``key_ref`` (tests pass an in-memory key). ``clock`` returns POSIX seconds.
    ``after_commit`` is a **test-only fault hook**, called after a new state is committed and before
    the response is sent (the crash tests kill the process there); ``None`` in production, and no
    option or environment variable sets it.
    """

    name: str
    data_dir: Path
    logs: Mapping[str, tuple[NoteVerifier, ...]]
    key_ref: str | None = None
    signer: Signer | None = field(default=None, repr=False)
    clock: Callable[[], int] = now_seconds
    max_body: int = MAX_BODY
    after_commit: Callable[[], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not is_valid_name(self.name):
            raise WitnessConfigError(f"witness name {self.name!r}: a key name is non-empty, with no '+' and no "
                                     "white space")
        if self.key_ref is None and self.signer is None:
            raise WitnessConfigError("the witness needs a key (--key file:PATH or pkcs11:...)")
        if not self.logs:
            raise WitnessConfigError("no log configured: give at least one --log ORIGIN=VKEY")
        for origin, keys in self.logs.items():
            check_origin(origin)
            if not keys or any(k.alg != ALG_ED25519 for k in keys):
                raise WitnessConfigError(f"log {origin}: needs one or more type 0x01 keys")
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "logs", MappingProxyType({o: tuple(k) for o, k in self.logs.items()}))

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def verifier_for(self, public_key: bytes) -> NoteVerifier:
        """The witness's own verifier key (type 0x04, named ``name``) for ``public_key``; refuses a key
        that one of the configured logs also uses (one key, one purpose)."""
        if any(k.public_key == public_key for keys in self.logs.values() for k in keys):
            raise WitnessConfigError("the witness key is also a configured log key: use a key of its own")
        return NoteVerifier.from_public_key(self.name, public_key, ALG_COSIGNATURE_V1)


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory (mode 0700) if it does not exist."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise WitnessConfigError(f"data directory {data_dir}: cannot create ({exc.strerror})") from None
    if not data_dir.is_dir():
        raise WitnessConfigError(f"data directory {data_dir}: not a directory")


__all__ = ["WitnessConfig", "check_origin", "now_seconds", "parse_log_options", "prepare_data_dir"]
