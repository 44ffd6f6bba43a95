"""``fleetkeys fsck --journal``: a journal written by the signer passes; a missing trigger, a gap, a
broken hash chain, a forged signature or a second signature for a digest are named; exit codes."""

from __future__ import annotations

import hashlib
import re
import sqlite3

import pytest
from click.testing import CliRunner

from fleetkeys.fsck_cli import fsck_cmd
from signer.fsck import TRIGGERS, check_journal
from signer.journal import Journal
from signer.rules import STATUS_ONLINE, SignRequest
from tests.factory import SeedSigner
from verifier.keyset import GENESIS_PREVIOUS

KEY = SeedSigner("anchor")
D = [hashlib.sha256(bytes([i])).digest() for i in range(6)]


@pytest.fixture
def path(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.register_key(KEY.public_key, 1)
    journal.create_namespace("ns", ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, client="t",
                             mode="digest")
    previous = GENESIS_PREVIOUS
    for epoch in range(1, 5):  # the keyset path's previous-hash chain, as the rules keep it
        journal.sign(SignRequest("ns", epoch, D[epoch], previous, 1000 + epoch), KEY.sign, KEY.public_key,
                     now_ms=1000 * epoch, client="t")
        previous = D[epoch]
    journal.close()
    return tmp_path / "journal.sqlite"


def _raw(path, *sql: str) -> None:
    """Tamper as someone with the file would: drop the trigger that stops it, then change the row."""
    conn = sqlite3.connect(path)
    for s in sql:
        conn.execute(s)
    conn.commit()
    conn.close()


def test_a_journal_written_by_the_signer_passes(path):
    report = check_journal(path)
    assert report.ok and report.signatures == 4, report.problems
    result = CliRunner().invoke(fsck_cmd, ["--journal", str(path)])
    assert result.exit_code == 0 and "4 signatures read" in result.output, result.output


@pytest.mark.parametrize(("sql", "match"), [
    (["DROP TRIGGER signatures_no_update"], "the append-only trigger signatures_no_update is missing"),
    (["DROP TRIGGER signatures_no_delete", "DELETE FROM signatures WHERE epoch = 2"],
     "namespace 'ns' epoch 3: epochs 2..2 have no signature"),
    (["DROP TRIGGER signatures_no_update", "UPDATE signatures SET previous = zeroblob(32) WHERE epoch = 3"],
     "namespace 'ns' epoch 3: previous = 0{64} but epoch 2 was signed for digest"),
    (["DROP TRIGGER signatures_no_update", "UPDATE signatures SET signature = zeroblob(64) WHERE epoch = 4"],
     "epoch 4: the signature does not verify"),
    (["DROP TRIGGER signatures_no_update", "UPDATE signatures SET digest = zeroblob(32) WHERE epoch = 4"],
     "the stored statement does not name this row's"),
    (["DROP TRIGGER signatures_no_update", "UPDATE signatures SET timestamp = 1 WHERE epoch = 4"],
     "epoch 4: statement timestamp 1 is not after"),
])
def test_a_damaged_journal_is_named_and_exits_1(path, sql, match):
    _raw(path, *sql)
    report = check_journal(path)
    assert any(re.search(match, str(p)) for p in report.problems), report.problems
    result = CliRunner().invoke(fsck_cmd, ["--journal", str(path)])
    assert result.exit_code == 1, result.output


def test_every_trigger_of_the_schema_is_checked():
    assert {"signatures_no_update", "signatures_no_delete", "events_no_delete", "revoked_no_update"} <= set(TRIGGERS)


def test_a_file_that_is_no_journal_exits_2(tmp_path):
    (tmp_path / "x.sqlite").write_bytes(b"not sqlite at all, just bytes" * 100)
    result = CliRunner().invoke(fsck_cmd, ["--journal", str(tmp_path / "x.sqlite")])
    assert result.exit_code == 2, result.output
