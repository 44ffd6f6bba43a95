"""One served checkpoint for all: every worker, replica and exporter serves the bytes stored in the
database, and the freshness time they carry never goes backwards, whatever process answers and
whatever its clock says (distributor.freshness)."""

from __future__ import annotations

import base64
import random
import struct
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from distributor.errors import StorageError
from distributor.export import StaticWriter
from distributor.freshness import Freshness
from distributor.log import Log
from distributor.storage import SCHEMA_VERSION
from tests.distributor.conftest import make_log
from tests.distributor.helpers import TOKEN, ServeProcess, wait_for, world_data_dir
from tests.factory import World
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import verify_cosignatures
from verifier.note import parse_note
from verifier.tlogproof import parse_tlog_proof

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = 1_795_600_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def freshness_time(world: World, note: bytes) -> int:
    """The freshness cosignature's time, read straight off its line (tlog-cosignature/v1: key id[4] ||
    timestamp[8, big-endian] || Ed25519 signature[64]), after checking that the note verifies."""
    open_checkpoint(note, world.log_note.verifier)
    verified = verify_cosignatures(note, [world.freshness_cosigner.verifier], 1, what="freshness")[0].timestamp
    key = world.freshness_cosigner.verifier
    lines = [s for s in parse_note(note)[1] if s.name == key.name and s.key_id == key.key_id]
    assert len(lines) == 1, "exactly one freshness cosignature"
    assert len(lines[0].sig) == 72
    (timestamp,) = struct.unpack(">Q", lines[0].sig[:8])
    assert timestamp == verified
    return timestamp


class CountingSigner:
    """A signer that counts its signatures (how many freshness cosignatures were made)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.public_key = inner.public_key
        self.count = 0
        self._lock = threading.Lock()

    def sign(self, message: bytes) -> bytes:
        with self._lock:
            self.count += 1
        return self.inner.sign(message)


# -- in-process: two logs over one database, clocks apart ----------------------------------------------
def test_two_logs_with_different_clocks_never_serve_an_older_freshness_time(sqlite_db, world):
    """Two Log objects over one SQLite file (as two workers or replicas would be), one clock 100 s
    behind the other; random appends, reads and proofs on either never show a time below one shown."""
    ahead, behind = Clock(BASE + 100), Clock(BASE)
    logs = [make_log(sqlite_db.open(), world, clock=c, freshness_interval=10) for c in (ahead, behind)]
    rng = random.Random(7)
    highest, sizes, appended = 0, 0, 0

    def seen(note: bytes) -> None:
        nonlocal highest, sizes
        ts = freshness_time(world, note)
        size = open_checkpoint(note, world.log_note.verifier).checkpoint.size
        assert ts >= highest, f"freshness time went back from {highest} to {ts}"
        assert size >= sizes
        highest, sizes = ts, size

    for _ in range(300):
        log = rng.choice(logs)
        action = rng.random()
        if action < 0.3:
            step = rng.choice([0, 1, 3, 7, 11])
            ahead.now += step
            behind.now += step + rng.choice([-2, 0, 0, 1])  # drifts, even backwards
        elif action < 0.45:
            log.append_entries([b"entry %d" % appended])
            appended += 1
        elif action < 0.6 and appended:
            seen(log.prove_index(rng.randrange(appended)).checkpoint)
        else:
            seen(log.checkpoint())
        # At any instant both serve the same bytes: there is one served checkpoint.
        if action > 0.9:
            assert logs[0].checkpoint() == logs[1].checkpoint()
    assert highest > BASE + 100, "the freshness time was renewed during the run"
    assert appended > 20
    # The one behind re-signed grown trees with the stored (later) time, never its own.
    with logs[1].storage.read() as tx:
        row = tx.served_checkpoint()
    assert row is not None and row.checkpoint == logs[1].checkpoint() and row.timestamp == highest
    for log in logs:
        log.storage.close()


def test_a_clock_far_behind_serves_the_stored_time_and_does_not_renew(sqlite_db, world):
    ahead, behind = Clock(BASE + 3600), Clock(BASE)
    fresh_signer = CountingSigner(world.freshness)
    a = make_log(sqlite_db.open(), world, clock=ahead)
    b = Log(sqlite_db.open(), origin=world.origin, log_signer=world.log, freshness_signer=fresh_signer,
            trust_root=world.trust_root(), clock=behind)
    stored = freshness_time(world, a.checkpoint())
    assert stored == BASE + 3600
    for _ in range(20):
        assert freshness_time(world, b.checkpoint()) == stored
    assert fresh_signer.count == 0, "a process whose clock is behind must not re-sign an unchanged tree"
    b.append_entries([b"grown by the slow one"])
    assert fresh_signer.count == 1
    assert freshness_time(world, a.checkpoint()) == stored, "max(now, stored): never the slow clock's time"
    behind.now += 3600 + 60  # its clock passed the stored time by the interval: now it renews
    assert freshness_time(world, b.checkpoint()) == BASE + 3660
    assert freshness_time(world, a.checkpoint()) == BASE + 3660
    a.storage.close()
    b.storage.close()


def test_a_due_renewal_is_signed_once_for_all_threads_and_logs(db, world):
    clock = Clock(BASE)
    signers = [CountingSigner(world.freshness) for _ in range(2)]
    logs = [Log(db.open(), origin=world.origin, log_signer=world.log, freshness_signer=s,
                trust_root=world.trust_root(), clock=clock) for s in signers]
    first = logs[0].checkpoint()
    assert sum(s.count for s in signers) == 1  # the one made when the log was created
    clock.now += 60
    barrier = threading.Barrier(16)
    results: list[bytes] = []

    def read(log: Log) -> None:
        barrier.wait()
        results.append(log.checkpoint())

    threads = [threading.Thread(target=read, args=(logs[i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0] != first
    assert freshness_time(world, results[0]) == BASE + 60
    assert sum(s.count for s in signers) == 2, "one renewal, whoever asked first; the others read it"
    for log in logs:
        log.storage.close()


def test_served_checkpoint_survives_restarts_and_migrates_an_old_database(db, world):
    clock = Clock(BASE)
    storage = db.open()
    log = make_log(storage, world, clock=clock)
    log.append_entries([b"a", b"b"])
    served = log.checkpoint()
    storage.close()
    # A restart serves the stored bytes as they are (no new cosignature, no new time).
    storage = db.open()
    clock.now += 5
    assert make_log(storage, world, clock=clock).checkpoint() == served
    storage.close()
    # A database of schema version 1 (before served checkpoints and revocation marks): the first open
    # migrates it.
    db.execute("DROP TABLE served_checkpoint")
    db.execute("DROP TABLE revoked")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    storage = db.open()
    log = make_log(storage, world, clock=clock)
    with storage.read() as tx:
        assert tx.meta("schema") == SCHEMA_VERSION == "4"
        row = tx.served_checkpoint()
    assert row is not None and row.size == 2 and row.timestamp == BASE + 5 and log.checkpoint() == row.checkpoint
    storage.close()
    # A version this code does not know is refused.
    db.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")
    storage = db.open()
    with pytest.raises(StorageError, match="schema version '5'"):
        make_log(storage, world, clock=clock)
    storage.close()


def test_a_damaged_served_row_is_replaced_not_served(sqlite_db, world):
    clock = Clock(BASE)
    storage = sqlite_db.open()
    log = make_log(storage, world, clock=clock)
    good = log.checkpoint()
    forged = good[:-10] + (b"A" if good[-10:-9] != b"A" else b"B") + good[-9:]
    sqlite_db.execute("UPDATE served_checkpoint SET checkpoint = ?", (forged,))
    other = make_log(sqlite_db.open(), world, clock=clock)
    served = other.checkpoint()
    assert served != forged and freshness_time(world, served) == BASE
    other.storage.close()
    storage.close()


def test_the_static_checkpoint_is_the_served_one_and_its_time_is_a_floor(sqlite_db, world, tmp_path):
    clock = Clock(BASE)
    storage = sqlite_db.open()
    log = make_log(storage, world, clock=clock)
    log.append_entries([b"x", b"y"])
    writer = StaticWriter(str(tmp_path / "s"), log_key=world.log_note.verifier,
                          freshness=Freshness(world.origin, world.freshness, clock=clock))
    writer.sync(storage)
    assert (tmp_path / "s" / "checkpoint").read_bytes() == log.checkpoint()
    # A directory showing a later time than the database (written before an upgrade, or by a faster
    # clock): the next sync renews the database's row to at least that time instead of going back.
    later = world.checkpoint([b"x", b"y"], timestamp=BASE + 500)
    assert freshness_time(world, later) == BASE + 500
    (tmp_path / "s" / "checkpoint").write_bytes(later)
    writer.sync(storage)
    file_time = freshness_time(world, (tmp_path / "s" / "checkpoint").read_bytes())
    assert file_time == BASE + 500 and freshness_time(world, log.checkpoint()) == BASE + 500
    assert (tmp_path / "s" / "checkpoint").read_bytes() == log.checkpoint()
    storage.close()


# -- real processes --------------------------------------------------------------------------------
@dataclass
class Observed:
    count: int
    times: list[int]
    sizes: list[int]
    notes: set[bytes]


def _hammer(urls: list[str], world: World, publish: list[bytes], *, min_seconds: float, min_reads: int,
            readers: int = 4) -> Observed:
    """GET /checkpoint from ``readers`` threads at once, each over a new connection every time (so
    any worker of any replica may answer), from a random URL, while another thread publishes
    ``publish`` one by one. Every checkpoint must verify, and a read that starts after another read
    returned must not show an older freshness time or a smaller tree than that one."""
    stop = threading.Event()
    errors: list[str] = []
    lock = threading.Lock()
    latest = [0, 0]  # the highest (time, size) any completed read showed
    times: list[int] = []
    sizes: list[int] = []
    notes: set[bytes] = set()

    def publisher() -> None:
        for i, bundle in enumerate(publish):
            if stop.wait(0.15):
                return
            resp = requests.post(urls[i % len(urls)] + "/api/v1/bundles", data=bundle, headers=AUTH, timeout=30)
            if resp.status_code != 201:
                errors.append(f"publish {i}: {resp.status_code} {resp.text[:200]}")
                return
            cp = resp.json()["checkpoint"].encode()
            if parse_tlog_proof(resp.json()["proof"].encode()).checkpoint != cp:
                errors.append("the publish answer's proof embeds another checkpoint than its own")

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                with lock:
                    before = tuple(latest)
                resp = requests.get(rng.choice(urls) + "/checkpoint", headers={"Connection": "close"}, timeout=10)
                assert resp.status_code == 200, resp.text
                ts = freshness_time(world, resp.content)
                size = open_checkpoint(resp.content, world.log_note.verifier).checkpoint.size
                assert ts >= before[0], f"freshness time went back from {before[0]} to {ts}"
                assert size >= before[1], f"tree size went back from {before[1]} to {size}"
                with lock:
                    latest[0], latest[1] = max(latest[0], ts), max(latest[1], size)
                    times.append(ts)
                    sizes.append(size)
                    notes.add(resp.content)
                # Uneven pauses: the workers do not all see a new head (or a due renewal) at once.
                stop.wait(rng.choice([0, 0.01, 0.05, 0.15]))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(f"{type(exc).__name__}: {exc}")
            stop.set()

    threads = [threading.Thread(target=publisher)] + [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    try:
        wait_for(lambda: stop.is_set() or (time.monotonic() - start >= min_seconds and len(times) >= min_reads
                                           and len(set(times)) >= 3), 90, "enough reads through renewals")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert len(times) >= min_reads and len(set(times)) >= 3, (len(times), sorted(set(times)))
    return Observed(len(times), times, sizes, notes)


def test_gunicorn_workers_serve_one_monotonic_checkpoint(sqlite_db, world, tmp_path):
    """One `fleetkeys serve` with two gunicorn workers and a 2 s freshness interval: ≥ 100 reads over
    new connections for several seconds, through renewals and appends."""
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
            "--workers", "2", "--freshness-interval", "2"]
    with ServeProcess(args, tmp_path / "serve.log") as live:
        seen = _hammer([live.url], world, world.chain(40), min_seconds=7, min_reads=150)
        assert max(seen.sizes) > min(seen.sizes), "the tree grew during the reads"
        # The static copy's checkpoint is the very object the workers serve.
        static = data / "static" / "checkpoint"

        def same() -> bool:
            return static.read_bytes() == requests.get(live.url + "/checkpoint", timeout=5).content

        wait_for(same, what="the static checkpoint to be the served one")
        assert freshness_time(world, static.read_bytes()) >= max(seen.times)
        log = live.log()
    assert log.count("Booting worker") >= 2, log


def test_replicas_over_postgres_serve_one_monotonic_checkpoint(pg_db, world, tmp_path):
    """Two `fleetkeys serve` replicas (two workers each) over one PostgreSQL schema, reads spread
    over both at random, appends alternating between them."""
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--database", pg_db.url_with_schema, "--origin", world.origin, "--trust-root",
            str(data / "trust-root.json"), "--workers", "2", "--freshness-interval", "2", "--no-static"]
    with ServeProcess(args, tmp_path / "a.log") as a, ServeProcess(args, tmp_path / "b.log") as b:
        seen = _hammer([a.url, b.url], world, world.chain(40), min_seconds=7, min_reads=150)
        assert max(seen.sizes) > min(seen.sizes)
        # Whatever replica answers, at one instant it is one object (same bytes, same ETag).
        def agree() -> bool:
            got = [requests.get(u + "/checkpoint", timeout=5) for u in (a.url, b.url, a.url)]
            return got[0].content == got[1].content == got[2].content and \
                got[0].headers["ETag"] == got[1].headers["ETag"]

        wait_for(agree, what="both replicas to serve the same checkpoint")
        proof = requests.get(b.url + "/api/v1/bundles/latest", timeout=5).json()["proof"]
        embedded = parse_tlog_proof(proof.encode()).checkpoint
        assert freshness_time(world, embedded) >= max(seen.times)
        assert base64.b64decode(requests.get(a.url + "/api/v1/bundles/latest", timeout=5).json()["bundle"])
