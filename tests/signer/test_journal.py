"""The journal's storage guarantees: append-only, fsync'd, atomic rule check and insert."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import pytest

from signer.journal import Journal
from signer.rules import STATUS_ONLINE, Refusal, SignRequest
from tests.factory import SeedSigner

KEY = SeedSigner("anchor")
D = [hashlib.sha256(bytes([i])).digest() for i in range(4)]


@pytest.fixture
def journal(tmp_path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite")
    j.create_namespace("ns", ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, client="t")
    return j


def _sign(journal: Journal, epoch: int, digest: bytes, now: int = 1000):
    return journal.sign(SignRequest("ns", epoch, digest), KEY.sign, KEY.public_key, now_ms=now, client="t")


def test_commits_are_fsynced_in_wal_mode(journal):
    conn = journal._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize("statement", [
    "UPDATE signatures SET digest = zeroblob(32)",
    "DELETE FROM signatures",
    "UPDATE events SET reason = 'x'",
    "DELETE FROM events",
    "DELETE FROM keys",
    "DELETE FROM namespaces",
    "UPDATE namespaces SET ciphersuite = 2",
])
def test_history_cannot_be_rewritten_even_with_raw_sql(journal, statement):
    journal.register_key(KEY.public_key, 1)
    _sign(journal, 1, D[1])
    conn = sqlite3.connect(journal.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only|only a namespace status"):
        conn.execute(statement)
    conn.close()
    assert journal.entry("ns", 1).digest == D[1]


def test_concurrent_threads_sign_one_digest_per_epoch(journal):
    """Many threads race different digests for each epoch: exactly one wins every epoch."""
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def race(epoch: int, i: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            _sign(journal, epoch, hashlib.sha256(f"{epoch}/{i}".encode()).digest())
            ok = True
        except Refusal as exc:
            assert exc.code == "equivocation"
            ok = False
        with lock:
            results.append((epoch, ok))

    for epoch in range(1, 6):
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=race, args=(epoch, i, barrier)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for epoch in range(1, 6):
        assert sum(ok for e, ok in results if e == epoch) == 1
    assert len([e for e in journal.events(limit=1000) if e.kind == "refused"]) == 15


def test_reopened_journal_keeps_refusing_equivocation(tmp_path, journal):
    _sign(journal, 1, D[1])
    journal.close()
    again = Journal(journal.path)
    with pytest.raises(Refusal, match="equivocation|already signed"):
        _sign(again, 1, D[2], now=5)
    entry, created, _ = _sign(again, 1, D[1], now=9)
    assert not created and entry.timestamp == 1000
