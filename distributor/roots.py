"""Which trust root is in force for a tree size, and the witness policy it states.

The trust root in force for the checkpoint of tree size ``S`` is the newest trust-root rotation
logged among entries ``0 .. S-1`` (``trust_roots`` rows with ``idx < S``), unless the distributor
was configured with a newer bootstrap root; with neither, there is none. That is the root a client
holding the log up to ``S`` verifies the checkpoint under (it follows every rotation in the tree
first, bundles/FORMAT.md §7.4), so it is the root whose witness policy a served checkpoint of size
``S`` must meet (:mod:`distributor.freshness`).

The configured bootstrap root is recorded in the database (``meta`` row :data:`BOOTSTRAP_META`:
base64 of its envelope, written by the log's open), so every process over the database — each
worker, replica and ``fleetkeys export`` — applies the same policy to the one served checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass

from verifier.errors import VerificationError
from verifier.note import NoteVerifier
from verifier.trustroot import TrustRoot, parse_envelope, parse_trust_root_body

from .errors import IntegrityError, LogConfigError
from .storage import TrustRootRow, Tx

#: The ``meta`` key holding base64 of the configured bootstrap root's envelope ("" for none).
BOOTSTRAP_META = "bootstrap_trust_root"


@dataclass(frozen=True)
class WitnessPolicy:
    """What a checkpoint must carry: ``threshold`` distinct ``keys`` with cosignatures dated within
    ``max_age`` seconds (the trust root's ``witnesses`` and ``log.max_age``)."""

    keys: tuple[NoteVerifier, ...]
    threshold: int
    max_age: int


NO_WITNESSES = WitnessPolicy((), 0, 0)


class Roots:
    """Parsed trust roots, cached by envelope (logged envelopes were verified when logged). Thread-safe."""

    def __init__(self) -> None:
        self._parsed: dict[bytes, TrustRoot] = {}
        self._lock = threading.Lock()

    def parse(self, envelope: bytes, what: str) -> TrustRoot:
        with self._lock:
            root = self._parsed.get(envelope)
        if root is None:
            try:
                body, _ = parse_envelope(envelope)
                root = parse_trust_root_body(body, envelope)
            except VerificationError as exc:
                raise IntegrityError(f"{what} does not parse: {exc}") from exc
            with self._lock:
                self._parsed[envelope] = root
        return root

    def remember(self, root: TrustRoot) -> None:
        """Cache a root just verified (a rotation being logged)."""
        with self._lock:
            self._parsed[root.envelope] = root

    def bootstrap(self, tx: Tx) -> TrustRoot | None:
        """The bootstrap root recorded in the database (see the module docstring)."""
        value = tx.meta(BOOTSTRAP_META)
        if not value:
            return None
        try:
            envelope = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise IntegrityError(f"meta {BOOTSTRAP_META} is not base64: {exc}") from exc
        return self.parse(envelope, "the recorded bootstrap trust root")

    def in_force(self, tx: Tx, size: int | None = None, bootstrap: TrustRoot | None = None) -> TrustRoot | None:
        """The root in force for tree ``size`` (the whole log if ``None``); ``bootstrap`` defaults to the
        recorded one. A bootstrap root of a logged version with another body is :class:`LogConfigError`."""
        if bootstrap is None:
            bootstrap = self.bootstrap(tx)
        return self.newest(tx.latest_trust_root(size), bootstrap)

    def newest(self, row: TrustRootRow | None, bootstrap: TrustRoot | None) -> TrustRoot | None:
        """The root in force when ``row`` is the newest logged rotation (``None``: none) and ``bootstrap``
        the bootstrap root (the rule of :meth:`in_force`; the log's writer gives the row it derived from
        the entries themselves, not the ``trust_roots`` table)."""
        if row is None:
            return bootstrap
        logged = self.parse(row.envelope, f"logged trust root version {row.version}")
        if bootstrap is None or logged.version > bootstrap.version:
            return logged
        if logged.version == bootstrap.version and logged.body != bootstrap.body:
            raise LogConfigError(f"the configured trust root version {logged.version} differs from the logged one")
        return bootstrap

    def policy(self, tx: Tx, size: int) -> WitnessPolicy:
        """The witness policy a checkpoint of tree ``size`` must meet."""
        return _policy_of(self.in_force(tx, size))

    def policies(self, tx: Tx) -> Callable[[int], WitnessPolicy]:
        """:meth:`policy` for any size, from one read of the bootstrap root and the logged rotations
        (a handful of rows): for a caller that asks about many sizes in one transaction."""
        bootstrap = self.bootstrap(tx)
        rows = sorted(tx.trust_roots(), key=lambda r: r.index)
        indexes = [r.index for r in rows]

        def policy(size: int) -> WitnessPolicy:
            below = bisect.bisect_left(indexes, size)  # rotations logged at indexes < size
            newest = max(rows[:below], key=lambda r: r.version, default=None)
            return _policy_of(self.newest(newest, bootstrap))

        return policy


def _policy_of(root: TrustRoot | None) -> WitnessPolicy:
    if root is None or not root.witnesses.threshold:
        return NO_WITNESSES
    return WitnessPolicy(tuple(root.witnesses.keys), root.witnesses.threshold, root.log.max_age)


def record_bootstrap(tx: Tx, root: TrustRoot | None) -> None:
    """Record the configured bootstrap root (or its absence) for every process (module docstring)."""
    tx.set_meta(BOOTSTRAP_META, "" if root is None else base64.b64encode(root.envelope).decode())


__all__ = ["BOOTSTRAP_META", "NO_WITNESSES", "Roots", "WitnessPolicy", "record_bootstrap"]
