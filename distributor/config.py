"""Distributor configuration: what ``create_app(config)`` and ``fleetkeys serve`` take.

Keys (a mapping with these lower-case keys, or a :class:`Config`):

``database`` (required)
    ``sqlite:///PATH`` or ``postgresql://...`` (see :func:`distributor.storage.open_storage`).
``schema``
    PostgreSQL schema for the tables (else the URL's ``search_path``).
``origin``
    The log's origin line and log key name (default ``fleetkeys.local/log``).
``log_key`` / ``log_signer``
    The log key: a key reference for ``keys.load_signer`` (``file:``/path or ``pkcs11:``), or
    a ready signer object (tests). Exactly one is required.
``freshness_key`` / ``freshness_signer``
    The freshness cosigning key, likewise.
``trust_root`` / ``trust_root_file``
    The bootstrap trust root (bytes of the envelope, or a file). Without one, publishing is refused.
``token`` / ``token_file``
    The publish bearer token (or a file holding it). Without one, publishing is refused.
``static_dir``
    Write the C2SP static files there as entries are appended (``None``: off).
``export_entry_objects``
    Also write the per-entry objects ``entry/<N>`` there (default true; bundles/FORMAT.md §9.6).
    Each is one more fsync'd file per entry: bulk appends are about 25 times slower with them on.
    Without them clients read entries from the entry bundles (a C2SP-only directory).
``freshness_interval``
    Seconds between freshness cosignatures (default 60); also the interval at which witnesses are
    asked to renew their cosignatures.
``witnesses``
    The witnesses to ask (:mod:`distributor.witnessing`): ``URL=VKEY`` strings or
    :class:`~distributor.witnessing.WitnessEndpoint` objects (default none). When the trust root in
    force requires witnesses, at least its threshold of them must be among these.
``witness_timeout``
    Seconds one exchange with one witness may take (default 5).
``max_body``
    Largest accepted request body in bytes (default 1 MiB).
``clock``
    POSIX-seconds clock (tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_ORIGIN = "fleetkeys.local/log"
MAX_BODY = 1 << 20


@dataclass
class Config:
    database: str
    schema: str | None = None
    origin: str = DEFAULT_ORIGIN
    log_key: str | None = None
    log_signer: Any = None
    freshness_key: str | None = None
    freshness_signer: Any = None
    trust_root: bytes | None = None
    trust_root_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    static_dir: str | None = None
    export_entry_objects: bool = True
    freshness_interval: float = 60.0
    witnesses: tuple[Any, ...] = ()
    witness_timeout: float = 5.0
    max_body: int = MAX_BODY
    clock: Callable[[], float] = time.time

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | Config) -> Config:
        """Build from a mapping; unknown keys are refused (a typo never silently drops a setting)."""
        if isinstance(config, Config):
            return config
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown distributor configuration keys: {', '.join(unknown)}")
        if "database" not in config:
            raise ValueError("distributor configuration needs 'database'")
        return cls(**dict(config))


__all__ = ["Config", "DEFAULT_ORIGIN", "MAX_BODY"]
