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

# The schema of a version-1 journal (before namespace modes and signatures.issued_at), verbatim.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    public_key BLOB PRIMARY KEY CHECK (length(public_key) = 32),
    not_before INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY,
    ciphersuite INTEGER NOT NULL CHECK (ciphersuite IN (1, 2)),
    status TEXT NOT NULL CHECK (status IN ('Online', 'Initialization', 'Disabled')),
    log_directory TEXT,
    created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('signed', 'refused', 'namespace-created', 'namespace-status')),
    namespace TEXT NOT NULL,
    epoch INTEGER,
    digest BLOB,
    previous BLOB,
    client TEXT,
    reason TEXT);
CREATE TABLE IF NOT EXISTS signatures (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    epoch INTEGER NOT NULL CHECK (epoch >= 1),
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    previous BLOB CHECK (previous IS NULL OR length(previous) = 32),
    ciphersuite INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    statement BLOB NOT NULL,
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    public_key BLOB NOT NULL CHECK (length(public_key) = 32),
    event_id INTEGER NOT NULL REFERENCES events(id),
    PRIMARY KEY (namespace, epoch),
    UNIQUE (namespace, digest));
CREATE INDEX IF NOT EXISTS events_by_namespace ON events(namespace, id);
CREATE TRIGGER IF NOT EXISTS signatures_no_update BEFORE UPDATE ON signatures
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: signatures cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS signatures_no_delete BEFORE DELETE ON signatures
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: signatures cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: events cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: events cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS keys_no_change BEFORE UPDATE ON keys
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: keys cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS keys_no_delete BEFORE DELETE ON keys
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: keys cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS namespaces_no_delete BEFORE DELETE ON namespaces
    BEGIN SELECT RAISE(ABORT, 'journal is append-only: namespaces cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS namespaces_status_only BEFORE UPDATE ON namespaces
    WHEN NEW.name IS NOT OLD.name OR NEW.ciphersuite IS NOT OLD.ciphersuite
      OR NEW.log_directory IS NOT OLD.log_directory OR NEW.created_at IS NOT OLD.created_at
    BEGIN SELECT RAISE(ABORT, 'only a namespace status can change'); END;
"""

D = [hashlib.sha256(bytes([i])).digest() for i in range(4)]


@pytest.fixture
def journal(tmp_path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite")
    j.create_namespace("ns", ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, client="t",
                       mode="digest")
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
    "UPDATE namespaces SET mode = 'keyset'",
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


def test_version_1_journal_is_migrated_and_its_namespaces_become_keyset_namespaces(tmp_path):
    """A journal written before modes existed must not leave its namespaces open to the digest-only path."""
    path = tmp_path / "journal.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema', '1')")
    conn.execute("INSERT INTO namespaces VALUES ('old.ns', 1, 'Online', NULL, 1)")
    conn.execute("INSERT INTO events(time, kind, namespace) VALUES (1, 'namespace-created', 'old.ns')")
    conn.close()

    journal = Journal(path)
    ns = journal.namespace("old.ns")
    assert ns is not None and ns.mode == "keyset"
    with pytest.raises(Refusal) as info:
        journal.sign(SignRequest("old.ns", 1, D[1]), KEY.sign, KEY.public_key, now_ms=5, client="t")
    assert info.value.code == "keyset-required"
    entry, created, _ = journal.sign(SignRequest("old.ns", 1, D[1], previous=bytes(32), issued_at=100), KEY.sign,
                                     KEY.public_key, now_ms=6, client="t")
    assert created and journal.entry("old.ns", 1).issued_at == 100
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "3"  # through 2, to the current
    with pytest.raises(sqlite3.IntegrityError, match="only a namespace status"):
        raw.execute("UPDATE namespaces SET mode = 'digest'")
    raw.close()
    journal.close()
    assert Journal(path).namespace("old.ns").mode == "keyset"  # reopening a migrated journal is a no-op
