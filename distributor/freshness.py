"""The log's freshness cosignature and the one served checkpoint that carries it.

The freshness key (vkey type 0x04, named ``<origin>/freshness``) is separate from the log key and is
used for nothing else. Every checkpoint the log serves carries its cosignature (tlog-cosignature/v1:
an 8-byte big-endian timestamp and an Ed25519 signature) renewed every ``interval`` seconds even
when nothing was appended, so a client can tell "nothing new" from "someone is replaying an old
checkpoint to me" (freeze attack). The log-signed checkpoint in ``head`` never carries it.

**One served checkpoint for all.** A client may talk to any worker of any replica, or to the static
copy, one request after another, and refuses a freshness time older than one it already saw. So the
served checkpoint is not made per process: it is one row of the database (``served_checkpoint``:
the exact bytes, the tree size they are for, the cosignature's time) and every worker, replica and
exporter serves exactly those bytes (:class:`ServedCheckpoint`):

* it is *current* for a head when it is for that head's size and log-signed checkpoint, and its time
  is less than ``interval`` seconds before this process's clock (a time ahead of the clock counts
  as current: this replica's clock is behind the one that signed it);
* otherwise a process renews it: it takes the storage's write transaction (the exclusive one appends
  use, so every thread, process and replica, on SQLite and on PostgreSQL, is serialised), re-reads
  the row and re-signs only if it is still not current, then commits; everyone else reads the row;
* an append writes the new served checkpoint in its own write transaction (the tree grew), so a
  reader always finds one for the head it reads;
* **time never goes backwards**: a new cosignature is dated ``max(now, stored)``, ``stored`` being
  the time of the row it replaces (and ``max(now, stored, floor)`` where a caller knows a time that
  was already served, e.g. the static directory's checkpoint). A replica whose clock is behind
  therefore re-signs a grown tree with the stored time, never an earlier one, and does not renew
  by age until its own clock has passed the stored time by ``interval``. The price: a clock that ran
  ahead drags the served time ahead with it until real time catches up, and clients refuse a time
  more than 300 s in the future, so keep the clocks of all replicas and exporters synchronised.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from verifier.cosignature import CosignatureSigner, add_cosignatures, verify_cosignatures, witnessed_time
from verifier.errors import VerificationError
from verifier.keyset import CLOCK_SKEW
from verifier.note import NoteVerifier, parse_note
from verifier.signatures import KeyGroup

from .errors import IntegrityError, StorageError
from .roots import Roots, WitnessPolicy
from .storage import CosignatureRow, Head, ServedRow, Storage, Tx

log = logging.getLogger("fleetkeys.distributor.freshness")

T = TypeVar("T")

#: Read attempts before giving up on finding the served checkpoint current (each failed one renews).
_ATTEMPTS = 5
#: How far in the future a client accepts a freshness time (verifier.cosignature.check_fresh).
_CLIENT_FUTURE_SLACK = CLOCK_SKEW


def freshness_key_name(origin: str) -> str:
    return origin + "/freshness"


class Freshness:
    """The freshness cosigner with its renewal ``interval`` (seconds) and ``clock`` (POSIX seconds)."""

    def __init__(self, origin: str, signer, *, interval: float = 60, clock: Callable[[], float] = time.time) -> None:
        if interval <= 0:
            raise ValueError("freshness interval must be positive")
        self.cosigner = CosignatureSigner(freshness_key_name(origin), signer)
        self.interval = interval
        self.clock = clock

    @property
    def vkey(self) -> str:
        return self.cosigner.verifier.vkey

    def now(self) -> int:
        return int(self.clock())

    def cosign(self, signed_checkpoint: bytes, timestamp: int) -> bytes:
        """The log-signed checkpoint with this key's cosignature dated ``timestamp`` appended."""
        body, _ = parse_note(signed_checkpoint)
        return add_cosignatures(signed_checkpoint, [self.cosigner.cosign(body, timestamp)])

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

    def verified_timestamp(self, note: bytes) -> int | None:
        """The time of this key's cosignature on ``note`` if it verifies, else ``None``."""
        try:
            return verify_cosignatures(note, [self.cosigner.verifier], 1, what="freshness")[0].timestamp
        except VerificationError:
            return None

    def is_due(self, timestamp: int) -> bool:
        """Whether a cosignature dated ``timestamp`` is ``interval`` or more seconds old by this clock.

        A timestamp ahead of this clock is not due (another process with a faster clock signed it).
        """
        return self.now() - timestamp >= self.interval


class ServedCheckpoint:
    """The one served checkpoint of a log in ``storage`` (see the module docstring). Thread-safe.

    ``roots`` tells the witness policy in force for a tree size (:class:`distributor.roots.Roots`);
    ``advance=False`` (the exporter) renews the served checkpoint and refreshes its witness
    cosignatures but never moves it to another size: only a process that knows the log's
    configuration (the distributor) decides what becomes visible.
    """

    def __init__(self, storage: Storage, freshness: Freshness, roots: Roots | None = None, *,
                 advance: bool = True) -> None:
        self.storage = storage
        self.freshness = freshness
        self.roots = roots or Roots()
        self.advance = advance
        self._lock = threading.Lock()
        self._primed = False  # a write transaction ran here (so the schema and the table exist)
        self._verified: bytes | None = None  # the last row bytes whose cosignature verified
        self._built_on: tuple[bytes, bytes] | None = None  # (row, head) found consistent by is_current
        self._good_lines: dict[tuple[bytes, bytes], int] = {}  # (checkpoint, line) -> verified timestamp

    # -- deciding ---------------------------------------------------------------------------------
    def is_current(self, tx: Tx, row: ServedRow | None, head: Head | None, floor: int = 0) -> bool:
        """Whether ``row`` may be served now for the log whose head is ``head`` (and is dated at least
        ``floor``): it is built on the log-signed checkpoint of its size, which is the head's or one
        awaiting witnesses, and its freshness cosignature is not due."""
        if row is None or head is None or row.size > head.size:
            return False
        if (row.checkpoint, head.checkpoint) != self._built_on:  # once per served row and head, not per read
            base = head.checkpoint if row.size == head.size else tx.checkpoint_at(row.size)
            if base is None or not row.checkpoint.startswith(base):
                return False
            if row.size < head.size and self.advance and not self.roots.policy(tx, head.size).threshold:
                return False  # nothing to wait for (e.g. a rotation switched witnesses off): serve the head
            self._built_on = (row.checkpoint, head.checkpoint)
        if row.timestamp < floor or self.freshness.is_due(row.timestamp):
            return False
        if row.checkpoint != self._verified:
            if self.freshness.verified_timestamp(row.checkpoint) != row.timestamp:
                log.error("the stored served checkpoint for size %d does not carry a valid freshness cosignature "
                          "dated %d: renewing it", row.size, row.timestamp)
                return False
            self._verified = row.checkpoint
            ahead = row.timestamp - self.freshness.now()
            if ahead > _CLIENT_FUTURE_SLACK:  # once per new row: clients refuse it until their clocks catch up
                log.warning("the served checkpoint is dated %d s ahead of this clock (clients refuse more than "
                            "%d s): check the clocks of every replica and exporter", ahead, _CLIENT_FUTURE_SLACK)
        return True

    def _verified_lines(self, signed: bytes, rows: list[CosignatureRow]) -> list[CosignatureRow]:
        """The stored cosignatures on ``signed`` that verify (each was checked before it was stored;
        a damaged row is logged and left out, never served)."""
        out = []
        for row in rows:
            try:
                key = NoteVerifier.from_vkey(row.witness)
                if self._good_lines.get((signed, row.line)) != row.timestamp:
                    found = verify_cosignatures(signed + row.line, [key], 1, what="stored witness")[0].timestamp
                    if found != row.timestamp:
                        raise IntegrityError(f"dated {found}, stored as {row.timestamp}")
                    if len(self._good_lines) > 4096:
                        self._good_lines.clear()
                    self._good_lines[(signed, row.line)] = row.timestamp
            except (VerificationError, IntegrityError) as exc:
                log.error("the stored cosignature of witness %s for size %d does not verify (%s): not served",
                          row.witness, row.size, exc)
                continue
            out.append(row)
        return out

    @staticmethod
    def meets(policy: WitnessPolicy, note: bytes, now: int) -> bool:
        """Whether a client accepts ``note``'s witness cosignatures now: the clients' own rule,
        :func:`verifier.cosignature.witnessed_time`, under ``policy`` (always, with no witnesses required)."""
        if not policy.threshold:
            return True
        try:
            witnessed_time(note, KeyGroup(policy.keys, policy.threshold), now, policy.max_age)
        except VerificationError:
            return False
        return True

    def _select(self, tx: Tx, head: Head, old: ServedRow | None) -> tuple[int, bytes, list[bytes]]:
        """The tree size to serve, its log-signed checkpoint and the witness lines to put on it.

        The largest kept size, not below the one served, whose cosignatures meet the witness policy in
        force for it; when none does, the size already served (a new log: the head). An exporter
        (``advance=False``) keeps the size served.
        """
        floor_size = old.size if old is not None and old.size <= head.size else None
        now = self.freshness.now()
        candidates = [] if floor_size is None else tx.checkpoint_sizes(floor_size)
        if head.size not in candidates:
            candidates.append(head.size)
        by_size: dict[int, list[CosignatureRow]] = {}
        for row in tx.cosignatures(floor_size or 0):
            by_size.setdefault(row.size, []).append(row)

        def build(size: int, *, required: bool) -> tuple[int, bytes, list[bytes]] | None:
            signed = head.checkpoint if size == head.size else tx.checkpoint_at(size)
            if signed is None:
                return None
            lines = [row.line for row in self._verified_lines(signed, by_size.get(size, []))]
            if required and not self.meets(policy(size), signed + b"".join(lines), now):
                return None
            return size, signed, lines

        policy = self.roots.policies(tx)  # one read; kept sizes may be many while witnesses are down
        if self.advance:
            for size in sorted(candidates, reverse=True):
                # Only the head, a size some witness cosigned, or one needing no witness can qualify.
                if size == head.size or size in by_size or not policy(size).threshold:
                    found = build(size, required=True)
                    if found is not None:
                        return found
        found = build(head.size if floor_size is None else floor_size, required=False)
        if found is None:
            raise IntegrityError(f"the log-signed checkpoint of the served size {floor_size} is not kept")
        return found

    # -- writing (inside the storage's write transaction) ------------------------------------------
    def issue(self, tx: Tx, head: Head, floor: int = 0) -> ServedRow:
        """Choose what to serve for ``head`` (:meth:`_select`), cosign it and store it as the served checkpoint.

        Must run inside ``storage.write()``: the stored time it never goes below is read in the same
        transaction. The new time is ``max(now, stored time, floor)``.
        """
        old = tx.served_checkpoint()
        stored = 0
        if old is not None:
            if old.checkpoint == self._verified or self.freshness.verified_timestamp(old.checkpoint) == old.timestamp:
                stored = old.timestamp
            else:  # a damaged row's time is not evidence of anything served
                log.error("replacing a served checkpoint whose freshness cosignature does not verify")
        size, signed, lines = self._select(tx, head, old)
        timestamp = max(self.freshness.now(), stored, floor)
        body, _ = parse_note(signed)
        served = signed + b"".join(lines) + self.freshness.cosigner.cosign(body, timestamp).line
        if not served.startswith(signed):
            raise IntegrityError("the cosigned checkpoint does not extend the log-signed one")
        row = ServedRow(size, timestamp, served)
        tx.set_served_checkpoint(row)
        if old is not None and size > old.size:
            tx.prune_below(size)
        self._verified = served
        return row

    def renew(self, floor: int = 0) -> ServedRow:
        """Make the served checkpoint current for the head, under the storage's write lock.

        Re-reads the row inside the write transaction and re-signs only if it is still not current
        (another thread, worker or replica may have renewed it while this one waited for the lock).
        """
        with self._lock, self.storage.write() as tx:
            head = tx.head()
            if head is None:
                raise StorageError(f"{self.storage.description} holds no log")
            row = self.ensure(tx, head, floor)
        self.schema_ready()
        return row

    def ensure(self, tx: Tx, head: Head, floor: int = 0) -> ServedRow:
        """Inside a write transaction: the stored served checkpoint if current for ``head``, else a new one."""
        row = tx.served_checkpoint()
        if row is None or not self.is_current(tx, row, head, floor):
            row = self.issue(tx, head, floor)
        return row

    def schema_ready(self) -> None:
        """Note that a write transaction committed here (the table exists): reads may go first."""
        self._primed = True

    # -- reading ----------------------------------------------------------------------------------
    def read(self, fn: Callable[[Tx, Head, ServedRow], T], floor: int = 0) -> T:
        """``fn(tx, visible, served)`` inside one read transaction whose served checkpoint is current.

        ``visible`` is the tree clients see: the served checkpoint's size and its log-signed
        checkpoint (the head itself unless entries await witness cosignatures). When the stored one
        is not current (older than the interval, or the first read of this process), it is renewed
        (:meth:`renew`) and the read is run again.
        """
        for _ in range(_ATTEMPTS):
            if self._primed:
                with self.storage.read() as tx:
                    head, row = tx.head(), tx.served_checkpoint()
                    if row is not None and self.is_current(tx, row, head, floor):
                        assert head is not None
                        return fn(tx, visible_head(tx, head, row), row)
            self.renew(floor)
        raise StorageError(f"{self.storage.description}: the served checkpoint did not stay current for "
                           f"{_ATTEMPTS} reads in a row")

    def get(self, floor: int = 0) -> ServedRow:
        """The served checkpoint (current for the head at the time of the read)."""
        return self.read(lambda tx, head, row: row, floor)


def visible_head(tx: Tx, head: Head, row: ServedRow | None) -> Head:
    """The tree clients see: the served checkpoint's size with its log-signed checkpoint (``head`` when
    nothing is served yet or the served row is for the head). Precondition: ``row`` was checked
    (:meth:`ServedCheckpoint.is_current`) or written in this transaction."""
    if row is None or row.size == head.size:
        return head
    signed = tx.checkpoint_at(row.size)
    if signed is None or row.size > head.size:
        raise IntegrityError(f"the served checkpoint is for size {row.size}, which the log does not keep "
                             f"(head {head.size})")
    return Head(row.size, signed)


__all__ = ["Freshness", "ServedCheckpoint", "freshness_key_name", "visible_head"]
