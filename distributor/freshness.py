"""The log's freshness cosignature: a timestamped tlog-cosignature/v1 by the log's own freshness key.

The freshness key (vkey type 0x04, named ``<origin>/freshness``) is separate from the log key and is
used for nothing else. Every checkpoint the log serves carries its cosignature with the current time,
renewed every ``interval`` seconds even when nothing was appended, so a client can tell "nothing new"
from "someone is replaying an old checkpoint to me" (freeze attack). The log-signed checkpoint in the
database never carries it; it is added when a checkpoint leaves the process.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable

from verifier.cosignature import CosignatureSigner, add_cosignatures
from verifier.errors import VerificationError
from verifier.note import parse_note


def freshness_key_name(origin: str) -> str:
    return origin + "/freshness"


class Freshness:
    """Adds the freshness cosignature, cached per process for ``interval`` seconds per checkpoint."""

    def __init__(self, origin: str, signer, *, interval: float = 60, clock: Callable[[], float] = time.time) -> None:
        if interval <= 0:
            raise ValueError("freshness interval must be positive")
        self.cosigner = CosignatureSigner(freshness_key_name(origin), signer)
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[bytes, int, bytes] | None = None  # (signed checkpoint, timestamp, cosigned)

    @property
    def vkey(self) -> str:
        return self.cosigner.verifier.vkey

    def cosign(self, signed_checkpoint: bytes) -> bytes:
        """The checkpoint with a freshness cosignature no older than ``interval`` seconds."""
        now = int(self._clock())
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == signed_checkpoint and 0 <= now - cached[1] < self.interval:
                return cached[2]
        body, _ = parse_note(signed_checkpoint)
        out = add_cosignatures(signed_checkpoint, [self.cosigner.cosign(body, now)])
        with self._lock:
            self._cached = (signed_checkpoint, now, out)
        return out

    def timestamp(self, note: bytes) -> int | None:
        """The time of this key's cosignature on ``note`` (not verified), or ``None``."""
        try:
            _, sigs = parse_note(note)
        except VerificationError:
            return None
        verifier = self.cosigner.verifier
        for s in sigs:
            if s.name == verifier.name and s.key_id == verifier.key_id and len(s.sig) == 72:
                return struct.unpack(">Q", s.sig[:8])[0]
        return None

    def is_due(self, note: bytes) -> bool:
        """Whether ``note`` lacks a freshness cosignature younger than ``interval``."""
        ts = self.timestamp(note)
        return ts is None or not 0 <= int(self._clock()) - ts < self.interval


__all__ = ["Freshness", "freshness_key_name"]
