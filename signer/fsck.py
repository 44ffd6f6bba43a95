"""Offline check of the anchor signer's journal (``fleetkeys fsck --journal PATH``); reads only.

The journal is opened read-only (SQLite ``mode=ro``), so a running signer is never disturbed. Checks,
each inconsistency a :class:`JournalProblem` naming the namespace and epoch:

1. SQLite's ``PRAGMA integrity_check``; the schema version is the one this signer writes;
2. every append-only trigger of :mod:`signer.journal` is present (without them rows could be changed);
3. per namespace, one signature per epoch (the primary key) and epochs 1, 2, ... without a gap; one
   epoch per digest; the hash chain: each keyset-path signature's ``previous`` is the digest signed
   for the epoch before (:data:`verifier.keyset.GENESIS_PREVIOUS` for epoch 1);
4. each signature: its statement parses and names the row's namespace, epoch, digest, ciphersuite and
   timestamp; the Ed25519 signature verifies under the row's public key, a key the ``keys`` table
   lists; its ``signed`` event exists and names the same namespace, epoch and digest;
5. statement timestamps strictly increase across the whole journal, in signing (event) order;
6. every revocation mark belongs to a namespace and an epoch that was signed.

Rows are read a page at a time, so memory does not grow with the journal.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from verifier import ed25519
from verifier.errors import VerificationError
from verifier.keyset import GENESIS_PREVIOUS
from verifier.statement import parse_statement

from .errors import JournalError
from .journal import _SCHEMA, SCHEMA_VERSION

#: Every trigger the journal's schema creates (the append-only rules).
TRIGGERS = tuple(re.findall(r"CREATE TRIGGER IF NOT EXISTS (\w+)", _SCHEMA))
_PAGE = 512


@dataclass(frozen=True)
class JournalProblem:
    """One inconsistency of the journal (``namespace``/``epoch`` when it concerns one signature)."""

    message: str
    namespace: str | None = None
    epoch: int | None = None

    def __str__(self) -> str:
        if self.namespace is None:
            return self.message
        return f"namespace {self.namespace!r} epoch {self.epoch}: {self.message}"


@dataclass
class JournalReport:
    """What the check found: ``signatures`` read, the problems (at most ``cap`` kept, ``count`` all)."""

    path: str
    cap: int
    signatures: int = 0
    problems: list[JournalProblem] = field(default_factory=list)
    count: int = 0

    def add(self, message: str, namespace: str | None = None, epoch: int | None = None) -> None:
        self.count += 1
        if len(self.problems) < self.cap:
            self.problems.append(JournalProblem(message, namespace, epoch))

    @property
    def ok(self) -> bool:
        return self.count == 0


def check_journal(path: str | Path, *, cap: int = 50) -> JournalReport:
    """Run the checks of the module docstring; :class:`JournalError` if the file cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise JournalError(f"journal {path}: no such file")
    report = JournalReport(str(path), cap)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot open ({exc})") from None
    try:
        conn.execute("BEGIN")  # one snapshot for the whole check
        _check(conn, report)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot read ({exc})") from None
    finally:
        conn.close()
    return report


def _check(conn: sqlite3.Connection, report: JournalReport) -> None:
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        report.add(f"SQLite integrity_check: {'; '.join(result[:5])}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "signatures" not in tables or "meta" not in tables:
        raise JournalError(f"journal {report.path}: not a signer journal (no signatures table)")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None or row[0] != str(SCHEMA_VERSION):
        report.add(f"schema version {row[0] if row else None!r}, this signer writes {SCHEMA_VERSION}")
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    for name in TRIGGERS:
        if name not in present:
            report.add(f"the append-only trigger {name} is missing: rows it protects could have been changed")
    keys = {bytes(r[0]) for r in conn.execute("SELECT public_key FROM keys")}
    _check_signatures(conn, report, keys)
    _check_timestamps(conn, report)
    for ns, mark, epoch in conn.execute("SELECT r.namespace, r.mark, r.epoch FROM revoked r LEFT JOIN signatures s "
                                        "ON s.namespace = r.namespace AND s.epoch = r.epoch WHERE s.epoch IS NULL "
                                        "ORDER BY r.namespace, r.mark"):
        report.add(f"the revocation mark {mark!r} names epoch {epoch}, which was never signed", ns, epoch)


def _check_signatures(conn: sqlite3.Connection, report: JournalReport, keys: set[bytes]) -> None:
    """Steps 3 and 4, one namespace after the other, in epoch order."""
    namespaces = [r[0] for r in conn.execute("SELECT DISTINCT namespace FROM signatures ORDER BY namespace")]
    for ns in namespaces:
        last_epoch, last_digest = 0, GENESIS_PREVIOUS
        after = 0
        while rows := conn.execute(
                "SELECT s.epoch, s.digest, s.previous, s.ciphersuite, s.timestamp, s.statement, s.signature, "
                "s.public_key, e.kind, e.namespace, e.epoch, e.digest FROM signatures s LEFT JOIN events e "
                "ON e.id = s.event_id WHERE s.namespace = ? AND s.epoch > ? ORDER BY s.epoch LIMIT ?",
                (ns, after, _PAGE)).fetchall():
            for (epoch, digest, previous, suite, ts, statement, signature, key, kind, e_ns, e_epoch,
                 e_digest) in rows:
                report.signatures += 1
                digest, statement, signature, key = bytes(digest), bytes(statement), bytes(signature), bytes(key)
                if epoch != last_epoch + 1:
                    report.add(f"epochs {last_epoch + 1}..{epoch - 1} have no signature (a gap in the journal)",
                               ns, epoch)
                elif previous is not None and bytes(previous) != last_digest:
                    report.add(f"previous = {bytes(previous).hex()} but epoch {last_epoch} was signed for digest "
                               f"{last_digest.hex()} (the hash chain is broken)", ns, epoch)
                last_epoch, last_digest = epoch, digest
                try:
                    st = parse_statement(statement)
                except VerificationError as exc:
                    report.add(f"the stored statement does not parse: {exc}", ns, epoch)
                else:
                    if (st.namespace, st.epoch, st.digest, st.ciphersuite, st.timestamp) != (ns, epoch, digest, suite,
                                                                                             ts):
                        report.add("the stored statement does not name this row's namespace, epoch, digest, "
                                   "ciphersuite and timestamp", ns, epoch)
                try:
                    ed25519.verify(key, statement, signature, what="anchor signature")
                except VerificationError as exc:
                    report.add(f"the signature does not verify under its public key: {exc}", ns, epoch)
                if key not in keys:
                    report.add(f"signed by key {key.hex()}, which the keys table does not list", ns, epoch)
                if kind != "signed" or (e_ns, e_epoch, None if e_digest is None else bytes(e_digest)) != (ns, epoch,
                                                                                                        digest):
                    report.add("its 'signed' event is missing or names another signature", ns, epoch)
            after = rows[-1][0]
    for ns, digest, n in conn.execute("SELECT namespace, digest, COUNT(*) FROM signatures GROUP BY namespace, digest "
                                      "HAVING COUNT(*) > 1"):
        report.add(f"digest {bytes(digest).hex()} was signed for {n} epochs", ns)


def _check_timestamps(conn: sqlite3.Connection, report: JournalReport) -> None:
    """Step 5: statement timestamps strictly increase in signing order."""
    last, after = None, 0
    while rows := conn.execute("SELECT event_id, timestamp, namespace, epoch FROM signatures WHERE event_id > ? "
                               "ORDER BY event_id LIMIT ?", (after, _PAGE)).fetchall():
        for event_id, ts, ns, epoch in rows:
            if last is not None and ts <= last:
                report.add(f"statement timestamp {ts} is not after the previous signature's {last}", ns, epoch)
            last, after = ts, event_id


__all__ = ["TRIGGERS", "JournalProblem", "JournalReport", "check_journal"]
