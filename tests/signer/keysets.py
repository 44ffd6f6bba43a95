"""Keysets dated around the real clock (the publish pipeline checks dates against it)."""

from __future__ import annotations

import hashlib
import json
import time

from tests.factory import fleet_key
from verifier.keyset import GENESIS_PREVIOUS, Fleet, TrustRootRef, encode_keyset

DAY = 86400


def make_keyset(namespace: str, epoch: int, previous: bytes | None = None, *, fleets: int = 2,
                now: int | None = None, label: str = "", trust_root: TrustRootRef | None = None) -> bytes:
    """Canonical keyset bytes: ``fleets`` x25519 fleets valid for a year, expiring in 30 days, naming
    ``trust_root`` (none by default: the signer does not look at the name)."""
    now = int(time.time()) if now is None else now
    items = [Fleet(f"fleet-{i}", "x25519", fleet_key(f"{label}{i}"), now - DAY, now + 365 * DAY, "active")
             for i in range(1, fleets + 1)]
    return encode_keyset(epoch=epoch, namespace=namespace, issued_at=now - 60, expires_at=now + 30 * DAY,
                         previous=previous if previous is not None else GENESIS_PREVIOUS,
                         fleets=items, trust_root=trust_root)


def chain(namespace: str, n: int, **kwargs) -> list[bytes]:
    """Keysets for epochs 1..n, each naming the previous one's digest."""
    out, prev = [], None
    for epoch in range(1, n + 1):
        ks = make_keyset(namespace, epoch, prev, **kwargs)
        prev = hashlib.sha256(ks).digest()
        out.append(ks)
    return out


def hand_written(keyset: bytes, *, without_root: bool = False) -> bytes:
    """The same keyset as an operator would write it: indented, keys in another order (``without_root``:
    and without its ``trust_root`` field, which ``publish --trust-root`` inserts)."""
    obj = json.loads(keyset)
    if without_root:
        del obj["trust_root"]
    return (json.dumps(dict(reversed(list(obj.items()))), indent=2) + "\n").encode()
