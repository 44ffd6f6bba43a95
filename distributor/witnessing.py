"""Asking witnesses to cosign: the distributor as a client of c2sp.org/tlog-witness@v1.0.0.

Each configured witness (``--witness URL=VKEY``: the witness's base URL and its type-0x04 cosignature
vkey) is sent ``POST <URL>/add-checkpoint`` with the log-signed checkpoint of the head, the old size
(the size it last cosigned) and the consistency proof from there (:mod:`verifier.tlogwitness`):

* whenever the head grew past the newest size the witness cosigned (an append of this process wakes
  the loop at once; appends of other processes are seen within ``period`` seconds, 0.1 s);
* at the freshness interval when nothing grew: re-cosigning the same checkpoint with a new timestamp
  is how a witness renews its vouching for freshness (the spec's "same size, same root" request);
* **200**: the body's cosignature line for the witness's key is verified over the checkpoint
  (tlog-cosignature/v1) and stored (``witness_cosignatures``) in one write transaction that also
  re-chooses the served checkpoint (:meth:`distributor.log.Log.add_cosignature`): once the trust
  root's threshold of witnesses cosigned a size, that size is what every worker, replica and the
  static export serve;
* **409** (``text/x.tlog.size``): the witness knows another size; the request is made again at once
  from that size with a proof from it. A size larger than this log's head, or the same size as the
  request's old size (same size, another root), means the witness has seen another tree from this
  origin — a fork or a log restored from an old backup — and is logged as an error every time;
* anything else, a timeout (``timeout`` seconds for the whole exchange) or an unreachable witness:
  logged, asked again after a back-off that doubles from 1 s up to the freshness interval. A slow or
  dead witness never holds up publishing (appends never wait for witnesses) nor the other witnesses
  (each is asked in its own thread, one request in flight per witness).

**One asker.** Every process of every replica runs a :class:`Witnessing` loop, but only the holder
of the database lease (``meta`` row :data:`LEASE_META`: an owner token and an expiry, taken and
renewed in a write transaction, valid ``LEASE_SECONDS``) asks; when it dies another takes over
within that time. Witnesses would serialise duplicate requests anyway (a stale old size answers
409), so the lease only saves them work.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from verifier.cosignature import verify_cosignatures
from verifier.errors import FetchError, VerificationError
from verifier.http import HttpClient, sanitize
from verifier.keyset import CLOCK_SKEW
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier, parse_note
from verifier.tlogwitness import SIZE_CONTENT_TYPE, encode_add_checkpoint, parse_size_body

from .errors import DistributorError, LogConfigError, WitnessAnswerError
from .storage import CosignatureRow

log = logging.getLogger("fleetkeys.distributor.witnessing")

#: The ``meta`` row naming the process that asks the witnesses: ``<token> <expiry, POSIX seconds>``.
LEASE_META = "witness_lease"
LEASE_SECONDS = 15
#: Bytes of a witness's answer read: a few cosignature lines (a 200) or a size (a 409).
MAX_ANSWER = 8192
#: 409 answers followed in one exchange (each names the size to retry from).
MAX_CONFLICTS = 2
_FIRST_BACKOFF = 1.0


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness this distributor asks: its base ``url`` and its cosignature ``key`` (type 0x04)."""

    url: str
    key: NoteVerifier

    @property
    def add_checkpoint_url(self) -> str:
        return self.url.rstrip("/") + "/add-checkpoint"


def parse_witness_option(value: str) -> WitnessEndpoint:
    """``URL=VKEY`` (``--witness``): an ``http(s)://`` base URL without query or fragment, then the
    witness's cosignature vkey (``fleetkeys witness vkey`` prints it). :class:`LogConfigError` otherwise."""
    url, sep, vkey = value.partition("=")
    if not sep or not url or not vkey:
        raise LogConfigError(f"--witness {value!r}: expected URL=VKEY")
    if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
        raise LogConfigError(f"--witness {url!r}: expected an http:// or https:// base URL without query or fragment")
    if "@" in url.split("//", 1)[1].split("/", 1)[0]:  # a URL is logged with every failure: no credentials
        raise LogConfigError("--witness: a witness URL may not carry credentials (user:password@)")
    try:
        return WitnessEndpoint(url, NoteVerifier.from_vkey(vkey, ALG_COSIGNATURE_V1))
    except VerificationError as exc:
        raise LogConfigError(f"--witness {url}: {exc}") from exc


def check_endpoints(endpoints: Sequence[WitnessEndpoint]) -> None:
    """Each witness key is configured once (thresholds count distinct keys)."""
    seen: set[bytes] = set()
    for ep in endpoints:
        if ep.key.public_key in seen:
            raise LogConfigError(f"--witness {ep.url}: the key {ep.key.vkey} is configured twice")
        seen.add(ep.key.public_key)


def cosignature_line(answer: bytes, signed: bytes, key: NoteVerifier) -> tuple[bytes, int]:
    """The line of a 200 answer (signature lines, c2sp.org/tlog-witness) by ``key`` that verifies over
    the log-signed checkpoint ``signed``, and its timestamp. :class:`WitnessAnswerError` otherwise."""
    if not answer.endswith(b"\n"):
        raise WitnessAnswerError("the answer is not newline-terminated signature lines")
    body, _ = parse_note(signed)
    for line in answer.splitlines(keepends=True):
        try:
            _, sigs = parse_note(body + b"\n" + line)
        except VerificationError as exc:
            raise WitnessAnswerError(f"the answer holds a line that is not a signature line: {exc}") from None
        if sigs[0].name != key.name or sigs[0].key_id != key.key_id:
            continue  # another key of the witness (the spec allows several lines)
        try:
            found = verify_cosignatures(signed + line, [key], 1, what="witness")[0]
        except VerificationError as exc:
            raise WitnessAnswerError(f"its cosignature does not verify: {exc}") from None
        return line, found.timestamp
    raise WitnessAnswerError(f"the answer holds no cosignature line by {key.name}")


@dataclass(frozen=True)
class WitnessLag:
    """How far one witness is behind (``Witnessing.lag``, the ``/metrics`` gauges): ``name`` of its key,
    ``behind`` entries of the head it has not cosigned (the head's size when it never cosigned), ``age``
    seconds since the timestamp of its newest stored cosignature (``None``: it never cosigned)."""

    name: str
    vkey: str
    behind: int
    age: float | None


@dataclass
class _Status:
    known: int | None = None  # the size the witness said it holds (a 409), until the next success
    failures: int = 0
    next_attempt: float = 0.0  # monotonic
    in_flight: bool = False
    last_error: str | None = None


class Witnessing:
    """The loop asking ``endpoints`` to cosign ``log``'s checkpoints (see the module docstring).

    ``interval``: the renewal interval of a cosignature (the log's freshness interval); ``timeout``:
    seconds for one exchange with one witness; ``period``: how often the head is looked at.
    """

    def __init__(self, log_: Any, endpoints: Sequence[WitnessEndpoint], *, interval: float, timeout: float = 5.0,
                 period: float = 0.1, http: HttpClient | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        check_endpoints(endpoints)
        if timeout <= 0 or interval <= 0 or period <= 0:
            raise ValueError("witness timeout, interval and period must be positive")
        self.log = log_
        self.endpoints = tuple(endpoints)
        self.interval = interval
        self.timeout = timeout
        self.period = period
        self.http = http or HttpClient(timeout=timeout, retries=0, user_agent="fleetkeys-distributor")
        self.clock = clock
        self.monotonic = monotonic
        self._status = {ep.key.vkey: _Status() for ep in self.endpoints}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._token = secrets.token_hex(8)
        self._lease_until = 0.0
        self._next_lease_try = 0.0
        #: Called with the endpoint and ``True``/``False`` after each exchange's outcome (metrics).
        self.on_exchange: Callable[[WitnessEndpoint, bool], None] | None = None

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.endpoints or self._thread is not None:
            return
        self._pool = ThreadPoolExecutor(max_workers=len(self.endpoints), thread_name_prefix="fleetkeys-witness")
        self.log.add_listener(lambda size: self._wake.set())
        self._thread = threading.Thread(target=self._run, name="fleetkeys-witnessing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._leader():
                    self.round()
            except Exception:
                log.exception("asking the witnesses failed; trying again")
            self._wake.wait(self.period)
            self._wake.clear()

    def _leader(self) -> bool:
        """Hold (take or renew) the database lease; renewed when half of it is left."""
        mono = self.monotonic()  # the local deadlines: a wall clock stepping back must not extend them
        if mono < self._lease_until - LEASE_SECONDS / 2:
            return True
        if mono < self._next_lease_try:  # another process holds it: look again a few seconds later
            return False
        now = self.clock()  # the expiry in the database is wall-clock time, shared by every process
        with self.log.storage.write() as tx:
            owner, _, until = (tx.meta(LEASE_META) or "").partition(" ")
            if owner and owner != self._token and until.isdigit() and int(until) > now:
                self._lease_until = 0.0
                self._next_lease_try = mono + LEASE_SECONDS / 3
                return False
            tx.set_meta(LEASE_META, f"{self._token} {int(now) + LEASE_SECONDS}")
        self._lease_until = mono + LEASE_SECONDS
        return True

    # -- one round ----------------------------------------------------------------------------------
    def due(self) -> list[WitnessEndpoint]:
        """The witnesses to ask now: behind the head, or their newest cosignature is ``interval`` old."""
        head = self.log.head().size
        stored = self.log.cosignature_sizes()
        now, mono = self.clock(), self.monotonic()
        out = []
        with self._lock:
            for ep in self.endpoints:
                st = self._status[ep.key.vkey]
                if st.in_flight or mono < st.next_attempt:
                    continue
                size, ts = stored.get(ep.key.vkey, (-1, 0))
                if size < head or now - ts >= self.interval or ts > now + CLOCK_SKEW:
                    out.append(ep)
        return out

    def round(self) -> None:
        """Ask every due witness, each in its own thread (returns without waiting for them)."""
        assert self._pool is not None
        for ep in self.due():
            with self._lock:
                self._status[ep.key.vkey].in_flight = True
            self._pool.submit(self._ask_guarded, ep)

    def _ask_guarded(self, ep: WitnessEndpoint) -> None:
        try:
            self.ask(ep)
        except Exception:
            log.exception("asking witness %s failed", ep.url)
        finally:
            with self._lock:
                self._status[ep.key.vkey].in_flight = False
            self._wake.set()  # an append may have come while this exchange was in flight

    def ask(self, ep: WitnessEndpoint) -> CosignatureRow | None:
        """One exchange with ``ep`` (following at most :data:`MAX_CONFLICTS` 409s). Returns the stored
        cosignature, or ``None`` after recording the failure and scheduling the next attempt."""
        st = self._status[ep.key.vkey]
        stored = self.log.cosignature_sizes().get(ep.key.vkey)
        old = st.known if st.known is not None else (stored[0] if stored else 0)
        try:
            for _ in range(MAX_CONFLICTS + 1):
                size, signed, proof = self.log.witness_request(old)
                resp = self.http.request("POST", ep.add_checkpoint_url, limit=MAX_ANSWER, retry=False,
                                         body=encode_add_checkpoint(old, proof, signed))
                if resp.status == 200:
                    line, timestamp = cosignature_line(resp.body, signed, ep.key)
                    if timestamp > self.clock() + CLOCK_SKEW:
                        # Never stored: the newest time wins per size, so it would shadow every honest
                        # renewal, and no client counts it until real time catches up.
                        raise WitnessAnswerError(f"its cosignature is dated {timestamp - int(self.clock())} s in "
                                                 "the future (check the witness's clock)")
                    row = CosignatureRow(ep.key.vkey, size, timestamp, line)
                    served, moved = self.log.add_cosignature(row, signed)
                    if self.clock() - timestamp > CLOCK_SKEW:
                        log.warning("witness %s dated its cosignature %d s in the past: check its clock",
                                    ep.url, int(self.clock()) - timestamp)
                    with self._lock:
                        st.known, st.failures, st.next_attempt, st.last_error = None, 0, 0.0, None
                    if moved:
                        log.info("witness %s cosigned size %d; serving size %d", ep.url, size, served.size)
                    if self.on_exchange is not None:
                        self.on_exchange(ep, True)
                    return row
                if resp.status == 409:
                    if resp.headers.get("content-type", "").split(";")[0].strip() != SIZE_CONTENT_TYPE:
                        raise WitnessAnswerError(f"409 without Content-Type {SIZE_CONTENT_TYPE}")
                    try:
                        known = parse_size_body(resp.body)
                    except VerificationError as exc:
                        raise WitnessAnswerError(f"409 body: {exc}") from None
                    if known > size or known == old:
                        raise WitnessAnswerError(
                            f"the witness holds a checkpoint of size {known} that this log (size {size}) cannot "
                            "prove consistent: it has seen another tree for this origin (a fork, or this log was "
                            "restored from an older backup: stop it and run `fleetkeys distributor recover`, see "
                            "the README's restore drill)")
                    with self._lock:
                        st.known = known
                    old = known
                    continue
                raise WitnessAnswerError(f"HTTP {resp.status}: {resp.reason()}")
            raise WitnessAnswerError(f"more than {MAX_CONFLICTS} size conflicts in a row")
        except (FetchError, VerificationError, DistributorError) as exc:
            self._failed(ep, st, exc)
            return None

    def _failed(self, ep: WitnessEndpoint, st: _Status, exc: Exception) -> None:
        with self._lock:
            st.failures += 1
            delay = min(self.interval, _FIRST_BACKOFF * 2 ** (st.failures - 1))
            st.next_attempt = self.monotonic() + delay
            st.last_error = sanitize(str(exc))
        if self.on_exchange is not None:
            self.on_exchange(ep, False)
        level = logging.ERROR if "another tree" in str(exc) else logging.WARNING
        log.log(level, "witness %s: %s (asking again in %.0f s)", ep.url, st.last_error, delay)

    def lag(self) -> list[WitnessLag]:
        """Per configured witness, read from the database (the same in every process and replica)."""
        head = self.log.head().size
        stored = self.log.cosignature_sizes()
        now = self.clock()
        out = []
        for ep in self.endpoints:
            size, ts = stored.get(ep.key.vkey, (None, None))
            out.append(WitnessLag(ep.key.name, ep.key.vkey, head - (size or 0),
                                  None if ts is None else now - ts))
        return out

    def status(self) -> list[dict[str, Any]]:
        """Per witness: its vkey, URL, newest stored cosignature (size, time) and the last error."""
        stored = self.log.cosignature_sizes()
        with self._lock:
            return [{"vkey": ep.key.vkey, "url": ep.url, "size": stored.get(ep.key.vkey, (None, None))[0],
                     "timestamp": stored.get(ep.key.vkey, (None, None))[1],
                     "last_error": self._status[ep.key.vkey].last_error} for ep in self.endpoints]


__all__ = [
    "LEASE_META",
    "WitnessEndpoint",
    "WitnessLag",
    "Witnessing",
    "check_endpoints",
    "cosignature_line",
    "parse_witness_option",
]
