"""The over-the-air client: fetch, verify with :func:`verifier.update.verify_update`, persist.

This is the only part of :mod:`verifier` that does I/O. It:

* refuses to start without a bootstrap trust root (the one shipped in the app, never modified);
* downloads through :class:`verifier.http.HttpClient`: one deadline per attempt covering connect,
  headers and body, retries with jittered exponential backoff on connection errors, 5xx and 429, a
  hard byte cap on every response (an endless body is cut off and refused), redirects only within
  the distributor's origin and never to a weaker scheme, and server text sanitised before printing;
* follows trust-root rotations published in the log one version at a time, then every epoch after
  the saved one in order (so the ``previous`` chain is checked across the gap);
* persists state atomically: write a temporary file, fsync it, rename it over ``state.json``, fsync
  the directory. A crash at any point leaves either the old or the new state, never a mix;
* works offline from the last verified state until that keyset expires, and says so.

Example::

    from verifier.client import Client
    client = Client("https://keys.example", trust_root=open("root.json", "rb").read(), state_dir="state")
    result = client.refresh()
    for fleet in result.fleets:
        print(fleet.fleet_id, fleet.algorithm, fleet.public_key.hex())
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .atomicfile import write_atomic
from .checkpoint import parse_checkpoint_body
from .errors import EmptyLogError, ExpiredError, FetchError, FormatError, FreezeError
from .http import HttpClient, sanitize
from .keyset import MAX_EPOCH, Fleet, format_time
from .note import b64decode_strict, parse_note
from .tlogproof import parse_tlog_proof
from .trustroot import TrustRoot, load_trust_root
from .update import ClientState, verify_trust_root_update, verify_update

log = logging.getLogger("fleetkeys.client")

STATE_FILE = "state.json"
MAX_JSON_RESPONSE = 1024 * 1024
#: Bound on epochs fetched in one refresh (a client far behind catches up over several refreshes).
MAX_CATCH_UP = 1000


@dataclass(frozen=True)
class RefreshResult:
    fleets: tuple[Fleet, ...]
    epoch: int
    offline: bool
    """True when the distributor was unreachable and the result comes from the saved state."""
    checkpoint_size: int
    epochs_verified: tuple[int, ...]
    message: str


class Client:
    """OTA client for one distributor, one bootstrap trust root and one state directory."""

    def __init__(self, base_url: str, trust_root: bytes | TrustRoot, state_dir: str | os.PathLike, *,
                 http: HttpClient | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        if trust_root is None or trust_root == b"":
            raise ValueError("a bootstrap trust root is required (ship it with the app)")
        self.trust_root = trust_root if isinstance(trust_root, TrustRoot) else load_trust_root(trust_root)
        self.base_url = base_url.rstrip("/")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.http = http or HttpClient(timeout=timeout, retries=retries, backoff=backoff, allowed_origins=[base_url])
        self.clock = clock
        self.state = self._load_state()

    # -- state -----------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load_state(self) -> ClientState:
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            return ClientState()
        state = ClientState.from_bytes(data)  # a corrupt state is an error, never silently reset
        state.trust_root_in_force(self.trust_root)
        return state

    def _save(self, state: ClientState) -> None:
        write_atomic(self.state_path, state.to_bytes())
        self.state = state

    # -- HTTP ------------------------------------------------------------------------------------

    def _get(self, path: str, limit: int, *, allow_404: bool = False) -> bytes | None:
        url = self.base_url + path
        resp = self.http.get(url, limit=limit)
        if resp.status == 404 and allow_404:
            return None
        if resp.status != 200:
            raise FetchError(f"GET {sanitize(url)}: HTTP {resp.status}: {resp.reason()}")
        return resp.body

    def _get_json(self, path: str, *, allow_404: bool = False) -> dict | None:
        body = self._get(path, MAX_JSON_RESPONSE, allow_404=allow_404)
        if body is None:
            return None
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise FormatError(f"GET {path}: response is not JSON") from exc
        if not isinstance(value, dict):
            raise FormatError(f"GET {path}: expected a JSON object")
        return value

    def _consistency(self, state: ClientState, checkpoint: bytes) -> list[bytes]:
        """Fetch the consistency proof from the state's tree size to ``checkpoint``'s (unverified) size."""
        text, _ = parse_note(checkpoint)
        size = parse_checkpoint_body(text).size
        if not state.checkpoint_size or size <= state.checkpoint_size:
            return []  # equal: roots compared; smaller: verify_update refuses it
        obj = self._get_json(f"/api/v1/proof/consistency?from={state.checkpoint_size}&to={size}")
        hashes = obj.get("proof")
        if not isinstance(hashes, list) or len(hashes) > 64 or not all(isinstance(h, str) for h in hashes):
            raise FormatError("consistency proof response: expected a list of at most 64 base64 hashes")
        return [b64decode_strict(h, "consistency proof hash") for h in hashes]

    @staticmethod
    def _entry(obj: dict, field: str) -> tuple[bytes, bytes, bytes]:
        """(entry bytes, tlog-proof bytes, checkpoint bytes embedded in the proof) from an API response."""
        if not isinstance(obj.get(field), str) or not isinstance(obj.get("proof"), str):
            raise FormatError(f"response: expected string fields {field!r} and 'proof'")
        entry = b64decode_strict(obj[field], f"response.{field}")
        try:
            proof = obj["proof"].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FormatError("response.proof: not encodable as UTF-8") from exc
        return entry, proof, parse_tlog_proof(proof).checkpoint

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        """Fetch and verify everything new; persist; return the fleet keys in force.

        Raises a :class:`~verifier.errors.VerificationError` when something does not verify (state
        unchanged), or :class:`FetchError` when offline and no usable saved state exists.
        """
        now = int(self.clock())
        try:
            try:
                return self._refresh_online(now)
            except FreezeError:
                # The log may have grown between our requests (a race, not an attack): start over once
                # from the saved state; a distributor that keeps holding back an epoch fails again.
                return self._refresh_online(now)
        except FetchError as exc:
            return self._offline(now, exc)

    def _next_rotation_index(self, state: ClientState) -> int | None:
        """Log index of the next trust-root version, if the log has one (authenticated when followed)."""
        version = state.trust_root_in_force(self.trust_root).version + 1
        obj = self._get_json(f"/api/v1/trust-roots/{version}", allow_404=True)
        return None if obj is None else parse_tlog_proof(self._entry(obj, "trust_root")[1]).index

    def _follow_rotation(self, state: ClientState, now: int) -> ClientState:
        """Fetch (again, so its checkpoint is the newest) and follow the next trust-root version."""
        version = state.trust_root_in_force(self.trust_root).version + 1
        envelope, proof, checkpoint = self._entry(self._get_json(f"/api/v1/trust-roots/{version}"), "trust_root")
        state = verify_trust_root_update(envelope, proof, checkpoint, trust_root=self.trust_root, state=state,
                                         now=now, consistency=self._consistency(state, checkpoint))
        log.info("followed trust root rotation to version %d", version)
        return state

    def _refresh_online(self, now: int) -> RefreshResult:
        """Catch up epoch by epoch, following trust-root rotations at their place in the log.

        A bundle is verified under the root in force at its position in the log. The last bundle
        verified must be the newest entry of the checkpoint (``require_latest``; only rotations may
        follow it, and those are followed first), so a distributor cannot hold back a newer epoch
        (for example a revocation) while serving a fresh checkpoint.
        """
        state = self.state
        rotation = self._next_rotation_index(state)
        latest = self._get_json("/api/v1/bundles/latest", allow_404=True)
        if latest is None:
            raise EmptyLogError("the distributor's log has no bundle yet")
        epoch = latest.get("epoch")
        if type(epoch) is not int or not 1 <= epoch <= MAX_EPOCH:
            raise FormatError(f"latest bundle response: epoch must be an integer in 1..{MAX_EPOCH}")
        saved = state.epoch
        # Bounded before anything is built: the epoch number is an unauthenticated hint until verified.
        first = saved + 1 if 0 < saved < epoch else epoch
        todo = range(first, min(epoch, first + MAX_CATCH_UP - 1) + 1)
        verified: list[int] = []
        update = None
        for e in todo:
            is_latest = e == epoch
            # The first response is used only when nothing was verified before it in this refresh; otherwise
            # fetch again, so its checkpoint is at least as new as the ones already accepted.
            obj = latest if len(todo) == 1 else self._get_json(f"/api/v1/bundles/{e}")
            index = parse_tlog_proof(self._entry(obj, "bundle")[1]).index
            followed = False
            while rotation is not None and rotation < index:
                state = self._follow_rotation(state, now)
                rotation = self._next_rotation_index(state)
                followed = True
            if followed:  # the response predates the rotation's (newer) checkpoint: fetch it again
                obj = self._get_json(f"/api/v1/bundles/{e}")
            update = self._verify(obj, state, now, require_latest=is_latest and rotation is None)
            state = update.state
            verified.append(update.epoch)
        if todo[-1] == epoch and rotation is not None:
            # Rotations logged after the newest bundle: follow them, then check that bundle is still the
            # newest entry of the (rotation-extended) checkpoint.
            while rotation is not None:
                state = self._follow_rotation(state, now)
                rotation = self._next_rotation_index(state)
            update = self._verify(self._get_json(f"/api/v1/bundles/{epoch}"), state, now, require_latest=True)
            state = update.state
        self._save(state)
        changed = [e for e in verified if e > saved]
        if todo[-1] != epoch:
            message = f"verified epochs {todo[0]}..{todo[-1]} of {epoch}; refresh again to catch up"
        elif changed:
            message = f"verified epoch{'s' if len(changed) > 1 else ''} {', '.join(map(str, changed))}"
        else:
            message = f"epoch {update.epoch} is still current (checkpoint size {update.checkpoint.size})"
        return RefreshResult(update.fleets, update.epoch, False, update.checkpoint.size, tuple(verified), message)

    def _verify(self, obj: dict, state: ClientState, now: int, *, require_latest: bool):
        bundle, proof, checkpoint = self._entry(obj, "bundle")
        return verify_update(bundle, proof, checkpoint, trust_root=self.trust_root, state=state, now=now,
                             consistency=self._consistency(state, checkpoint), require_latest=require_latest)

    def _offline(self, now: int, exc: FetchError) -> RefreshResult:
        state = self.state
        if state.keyset is None:
            raise FetchError(f"distributor unreachable and no verified state saved yet: {exc}") from exc
        keyset = state.saved_keyset
        if now >= keyset.expires_at:
            raise ExpiredError(f"distributor unreachable ({exc}) and the last verified keyset (epoch {keyset.epoch}) "
                               f"expired at {format_time(keyset.expires_at)}: refusing stale keys") from exc
        message = (f"OFFLINE: distributor unreachable ({exc}); using verified epoch {keyset.epoch}, "
                   f"valid until {format_time(keyset.expires_at)}")
        log.warning(message)
        return RefreshResult(keyset.active_fleets(now), keyset.epoch, True, state.checkpoint_size, (), message)

    def fleets(self) -> tuple[Fleet, ...]:
        """The fleet keys from the saved state (no network); empty before the first refresh."""
        if self.state.keyset is None:
            return ()
        keyset = self.state.saved_keyset
        now = int(self.clock())
        if now >= keyset.expires_at:
            raise ExpiredError(f"saved keyset epoch {keyset.epoch} expired at {format_time(keyset.expires_at)}")
        return keyset.active_fleets(now)


__all__ = ["Client", "FetchError", "RefreshResult"]
