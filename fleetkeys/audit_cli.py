"""Auditor commands: ``fleetkeys audit ...`` (verify, list, show, diff, monitor, journal, auditor) and
``fleetkeys log epochs``.

Every ``audit`` command but ``auditor`` reads the log through the client's reader
(:class:`verifier.fetch.HttpFetcher` over ``--distributor URL`` mirrors, or
:class:`verifier.fetch.DirectoryFetcher` over ``--from-static DIR``) and checks it with
:func:`verifier.audit.replay_log` against ``--trust-root`` (the bootstrap root the log started under):

``audit verify [--state FILE] [--json] [--jobs N]``  (the bare ``fleetkeys audit --trust-root …`` too)
    Every entry: prints the history as it is verified, one summary line at the end; each problem is a
    ``PROBLEM:`` line on stderr as it is found. ``--state`` verifies only what is new since the saved
    state (consistency with it included) and saves the new one. ``--json``: JSON lines (FORMAT.md §15.2).
``audit list [--limit N] [--before EPOCH] [--json]``
    The newest epochs (before EPOCH), each line verified by a replay of the whole log: time, digest,
    fleets added, removed, revoked.
``audit show EPOCH [--json]``
    That epoch's keyset, which trusted anchor and countersigner keys signed it, and its inclusion proof
    computed from hash tiles and checked against the signed checkpoint.
``audit diff A B [--json]``
    Fleets and keys added, removed, re-keyed and status changes from epoch A to epoch B.
``audit monitor [--interval S] [--state FILE] [--exec CMD] [--once]``
    Follows the log: one JSON object per line per event (FORMAT.md §15.2); stops on SIGTERM/SIGINT.
``audit journal --signer URL``
    Cross-checks the anchor signer's public journal with the log (FORMAT.md §15.4).
``audit auditor (--url URL | --responses DIR) --namespace NS --keys KEYS.json [--max-age S]``
    Checks a Plexi-style auditor's signature responses against pinned keys
    (:mod:`verifier.plexi_auditor`).

``fleetkeys log epochs --distributor URL`` (also ``distributor log epochs``) lists the distributor's
own epoch index (``GET /api/v1/epochs``): one request, no trust root, nothing verified. It stays as
the operator's quick look; ``audit list`` is the auditor's verified listing.

Exit codes: 0 clean; 1 a problem was found (or, except for ``monitor``, the log could not be read);
2 usage error; ``monitor`` only: 3 the log could not be read (and no problem was found).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from verifier.atomicfile import write_atomic
from verifier.audit import (
    AuditResult,
    AuditSummary,
    EntryRecord,
    Problem,
    default_jobs,
    fingerprint,
    keyset_changes,
    replay_log,
)
from verifier.auditstate import AuditState
from verifier.bundle import countersignature_message, parse_bundle
from verifier.client import LogReader
from verifier.errors import FetchError, SizeLimitError, VerificationError
from verifier.fetch import DirectoryFetcher, Fetcher, HttpFetcher
from verifier.http import HttpClient, sanitize
from verifier.keyset import Fleet, Keyset, format_time, parse_time
from verifier.merkle import inclusion_proof, leaf_hash, verify_inclusion
from verifier.plexi_auditor import (
    AuditorKey,
    SignatureResponse,
    check_sequence,
    parse_auditor_keys,
    parse_response,
    verify_response,
)
from verifier.signatures import verify_threshold
from verifier.statement import parse_statement
from verifier.trustroot import load_trust_root

#: Seconds for one whole response (connect, headers and body), per attempt.
_TIMEOUT = 10.0
_MAX_JSON = 1024 * 1024
EXIT_PROBLEM = 1
EXIT_FETCH = 3


def _printable(text: object) -> str:
    """``text`` on one line with every non-printable character escaped (nothing from the network may
    drive the terminal)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"FAILED: {_printable(message)}", err=True)
    sys.exit(code)


def _short(digest: bytes | None) -> str:
    return digest.hex()[:16] if digest else "?"


def _problem_line(problem: Problem) -> None:
    click.echo(f"PROBLEM: {_printable(problem.line)}", err=True)


# -- the log source and the trust root, shared by the log commands -----------------------------------------


class _Log:
    """What every log command needs: the fetcher, the bootstrap trust root, the clock, the worker count."""

    def __init__(self, trust_root: str, distributor: tuple[str, ...], static_dir: str | None, now_text: str | None,
                 jobs: int | None) -> None:
        if bool(distributor) == (static_dir is not None):
            raise click.UsageError("give --distributor URL (repeatable: mirrors) or --from-static DIR, not both")
        try:
            self.now_fixed = parse_time(now_text, "--now") if now_text else None
        except VerificationError as exc:
            raise click.UsageError(str(exc)) from exc
        try:
            self.root = load_trust_root(Path(trust_root).read_bytes())
        except OSError as exc:
            raise click.UsageError(f"cannot read trust root {trust_root}: {exc.strerror}") from exc
        except VerificationError as exc:
            _fail(f"{type(exc).__name__}: {exc}")
        self.fetcher: Fetcher = (HttpFetcher(list(distributor), timeout=_TIMEOUT) if distributor
                                 else DirectoryFetcher(static_dir or ""))
        self.jobs = default_jobs() if jobs is None else jobs

    def now(self) -> int:
        return self.now_fixed if self.now_fixed is not None else int(time.time())

    def replay(self, **kwargs: Any) -> AuditResult:
        """:func:`replay_log`; a log that cannot be read is one ``FAILED:`` line and exit 1."""
        try:
            return replay_log(self.fetcher, trust_root=self.root, now=self.now(), jobs=self.jobs, **kwargs)
        except FetchError as exc:
            _fail(f"cannot read the log: {sanitize(str(exc), 500)}")
        except VerificationError as exc:  # a saved state of another log
            _fail(f"{type(exc).__name__}: {exc}")


def _log_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--trust-root", "trust_root", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="The bootstrap trust root the log started under (its log key is the root of trust)."),
        click.option("--distributor", multiple=True,
                     help="Distributor, CDN or static mirror base URL (repeat for mirrors, tried in order)."),
        click.option("--from-static", "static_dir", type=click.Path(exists=True, file_okay=False),
                     help="Read checkpoint and tiles from this directory instead (a distributor's static/ export)."),
        click.option("--now", "now_text", help="Audit as of this time (YYYY-MM-DDTHH:MM:SSZ); default: now."),
        click.option("--jobs", type=click.IntRange(1, 64), default=None,
                     help="Worker processes for the signature checks (default: the CPUs available)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _open_log(kwargs: dict[str, Any]) -> _Log:
    return _Log(kwargs.pop("trust_root"), kwargs.pop("distributor"), kwargs.pop("static_dir"), kwargs.pop("now_text"),
                kwargs.pop("jobs"))


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A ``rich`` progress bar on stderr when it is a terminal; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("entries", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _load_state(path: str | None) -> AuditState | None:
    if path is None or not os.path.exists(path):
        return None
    try:
        return AuditState.from_bytes(Path(path).read_bytes())
    except OSError as exc:
        _fail(f"cannot read the audit state {path}: {exc.strerror}")
    except VerificationError as exc:
        _fail(f"audit state {path} is corrupt ({exc}); move it away to audit from the start")


def _save_state(path: str | None, state: AuditState | None) -> None:
    if path is not None and state is not None:
        write_atomic(path, state.to_bytes())


def _summary_text(s: AuditSummary) -> str:
    new = f" ({s.entries_checked} new since the saved state)" if s.start_size else ""
    if s.root_verified:
        text = f"{s.size} entries{new}, {s.epochs} epochs, root verified"
    elif s.stopped:
        text = f"{s.size} entries, stopped after {s.start_size + s.entries_checked} (verified up to there)"
    else:
        text = f"{s.size} entries, root NOT verified"
    if s.problems:
        first = s.first_problem
        where = "" if first is None else (" (first: log)" if first.index is None else f" (first at entry {first.index})")
        text += f", {s.problems} problem{'s' if s.problems != 1 else ''}{where}"
    return text


def _earlier(state: AuditState | None) -> None:
    if state is not None and state.problems:
        fp = state.first_problem
        first = "" if fp is None else f"; the first: {Problem(fp.index, fp.error, fp.message).line}"
        _problem_line(Problem(None, "EarlierProblems", f"earlier runs with this state found {state.problems} "
                                                       f"problem(s){first}"))


# -- verify ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _time(seconds: int) -> str:
    """:func:`format_time`, cached: a long history repeats the same validity times in every epoch."""
    return format_time(seconds)


def _entry_lines(e: EntryRecord) -> list[str]:
    if e.kind == "trust-root":
        head = f"#{e.index}  trust root v{e.version if e.version is not None else '?'}"
        if not e.verified:
            return [f"{head}  INVALID: not followed (see problems)"]
        return [f"{head}  body sha256 {_short(e.root_digest)}", *(f"    {c}" for c in e.root_changes)]
    if e.epoch is None:
        return [f"#{e.index}  {e.kind} entry  INVALID: unreadable (see problems)"]
    head = (f"#{e.index}  epoch {e.epoch}  issued {_time(e.issued_at) if e.issued_at is not None else '?'}  "
            f"expires {_time(e.expires_at) if e.expires_at is not None else '?'}  "
            f"keyset sha256 {_short(e.keyset_digest)}")
    lines = [head if e.verified else f"{head}  INVALID (contents below NOT verified; see problems)"]
    if e.changes is not None:
        lines.append(f"    changes: {', '.join(e.changes.describe()) or 'none'}")
    for f in e.fleets:
        status = f.status.upper() if f.status == "revoked" else f.status
        lines.append(f"    {f.fleet_id:<24} {f.algorithm:<8} {status:<8} {fingerprint(f.public_key)}  "
                     f"valid {_time(f.not_before)} .. {_time(f.not_after)}")
    return lines


def _jsonl(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def run_verify(log: _Log, state_path: str | None, as_json: bool, progress: bool) -> None:
    state = _load_state(state_path)
    _earlier(state)
    out = sys.stdout
    if as_json:
        def on_entry(e: EntryRecord) -> None:
            _jsonl({"type": "entry", **e.to_json()})

        def on_problem(p: Problem) -> None:
            _problem_line(p)
            _jsonl({"type": "problem", **p.to_json()})
    else:
        click.echo(f"log:        {log.root.log.origin}")
        click.echo(f"log key:    {log.root.log.key.vkey} (from your trust root)")
        if state is not None:
            click.echo(f"state:      {state_path}: {state.size} entries audited before")
        click.echo("")

        def on_entry(e: EntryRecord) -> None:
            out.write("\n".join(_entry_lines(e)) + "\n")

        on_problem = _problem_line
    with _progress(progress and not as_json) as bar:
        result = log.replay(state=state, on_entry=on_entry, on_problem=on_problem, on_progress=bar)
    s = result.summary
    _save_state(state_path, result.state)
    if as_json:
        _jsonl({"type": "summary", **s.to_json()})
    else:
        if s.root_verified or s.size:
            fresh = (f"checkpoint time {format_time(s.freshness_time)} ({log.now() - s.freshness_time} s ago)"
                     if s.freshness_time is not None else "no valid checkpoint time")
            click.echo(f"\ncheckpoint: size {s.size}, root {s.root.hex()}, {fresh}")
        click.echo("")
        click.echo(_summary_text(s))
    sys.exit(0 if s.ok else EXIT_PROBLEM)


_VERIFY_HELP = "Replay the log and verify every entry ever published (or, with --state, every new one)."


@click.command("verify", help=_VERIFY_HELP)
@_log_options
@click.option("--state", "state_path", type=click.Path(dir_okay=False),
              help="Audit state file: verify only what is new since it (consistency included), then save it.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one per entry and problem, then a summary.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="A progress bar on stderr (only when it is a terminal).")
def verify_cmd(state_path: str | None, as_json: bool, progress: bool, **kwargs: Any) -> None:
    run_verify(_open_log(kwargs), state_path, as_json, progress)


# -- list, show, diff ----------------------------------------------------------------------------------------


def _fleet_ids(fleets: tuple[Fleet, ...]) -> str:
    return ", ".join(f.fleet_id for f in fleets) or "-"


def _report_problems(summary: AuditSummary) -> int:
    """Exit status for a listing command: 1 when the replay found a problem (already on stderr)."""
    return 0 if summary.problems == 0 and (summary.root_verified or summary.stopped) else EXIT_PROBLEM


@click.command("list")
@_log_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="How many epochs to list, newest first.")
@click.option("--before", type=click.IntRange(1), help="Only epochs before this one.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def list_cmd(limit: int, before: int | None, as_json: bool, **kwargs: Any) -> None:
    """List epochs, newest first, each verified (a replay of the whole log)."""
    log = _open_log(kwargs)
    rows: deque[dict[str, Any]] = deque(maxlen=limit)

    def on_entry(e: EntryRecord) -> None:
        if e.kind == "bundle" and e.verified and e.changes is not None and (before is None or (e.epoch or 0) < before):
            c = e.changes
            rows.append({"epoch": e.epoch, "index": e.index, "issued_at": format_time(e.issued_at or 0),
                         "expires_at": format_time(e.expires_at or 0), "keyset_digest": (e.keyset_digest or b"").hex(),
                         "fleets": [f.fleet_id for f in e.fleets], "added": [f.fleet_id for f in c.added],
                         "removed": [f.fleet_id for f in c.removed], "revoked": list(c.revoked),
                         "rekeyed": list(c.rekeyed), "trust_root_version": e.trust_root_version})

    result = log.replay(on_entry=on_entry, on_problem=_problem_line, until_epoch=before - 1 if before else None)
    listed = list(reversed(rows))
    if as_json:
        click.echo(json.dumps({"verified": result.summary.ok, "epochs": listed,
                               "summary": result.summary.to_json()}, indent=2, sort_keys=True))
    else:
        click.echo(f"VERIFIED listing of {log.root.log.origin} (every epoch replayed and checked)")
        if not listed:
            click.echo("no epochs" + (f" before {before}" if before else ""))
        for r in listed:
            click.echo(_printable(
                f"epoch {r['epoch']:<6} index {r['index']:<6} issued {r['issued_at']}  keyset sha256 "
                f"{r['keyset_digest'][:16]}  +{','.join(r['added']) or '-'}  -{','.join(r['removed']) or '-'}  "
                f"revoked {','.join(r['revoked']) or '-'}  ({len(r['fleets'])} fleets)"))
        click.echo(_summary_text(result.summary))
    sys.exit(_report_problems(result.summary))


def _find_epochs(log: _Log, epochs: set[int]) -> tuple[dict[int, EntryRecord], AuditResult]:
    """Replay up to the largest of ``epochs``; the adopted record of each one found."""
    found: dict[int, EntryRecord] = {}

    def on_entry(e: EntryRecord) -> None:
        if e.kind == "bundle" and e.verified and e.changes is not None and e.epoch in epochs:
            found.setdefault(e.epoch, e)

    result = log.replay(on_entry=on_entry, on_problem=_problem_line, until_epoch=max(epochs))
    missing = sorted(epochs - set(found))
    if missing:
        last = result.summary.last_epoch
        _fail(f"epoch {missing[0]} is not in the log as a verified epoch (the last verified epoch is "
              f"{last if last is not None else 'none'})")
    return found, result


def _fleet_json(f: Fleet) -> dict[str, Any]:
    return {**f.to_json(), "fingerprint": fingerprint(f.public_key)}


@click.command("show")
@click.argument("epoch", type=click.IntRange(1))
@_log_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show_cmd(epoch: int, as_json: bool, **kwargs: Any) -> None:
    """Show one epoch: its keyset, who signed it, and its inclusion proof (all verified)."""
    log = _open_log(kwargs)
    found, result = _find_epochs(log, {epoch})
    record, signed, root = found[epoch], result.checkpoint, result.trust_root
    assert signed is not None and root is not None and record.keyset is not None
    cp = signed.checkpoint
    reader = LogReader(log.fetcher, cp.size)
    try:
        entry = reader.entry(record.index)
        if leaf_hash(entry) != record.leaf_hash:
            raise VerificationError("the entry read again is not the one the replay verified")
        proof = inclusion_proof(record.index, cp.size, reader.nodes)
        verify_inclusion(record.index, cp.size, leaf_hash(entry), proof, cp.root)
        bundle = parse_bundle(entry)
        anchors = verify_threshold(bundle.statement, bundle.signatures, root.anchors, "anchor", "bundle")
        counters = verify_threshold(countersignature_message(bundle.statement, bundle.anchor_signatures),
                                    bundle.signatures, root.countersigners, "countersigner", "bundle")
    except FetchError as exc:
        _fail(f"cannot read the log: {sanitize(str(exc), 500)}")
    except VerificationError as exc:
        _fail(f"epoch {epoch} (entry {record.index}): {type(exc).__name__}: {exc}")
    statement = parse_statement(bundle.statement)
    keyset = record.keyset
    out = {
        "epoch": epoch, "index": record.index, "keyset_digest": keyset.digest.hex(),
        "issued_at": format_time(keyset.issued_at), "expires_at": format_time(keyset.expires_at),
        "previous": keyset.previous.hex(), "namespace": keyset.namespace,
        "trust_root": {"in_force": root.version,
                       "named": keyset.trust_root.to_json() if keyset.trust_root is not None else None},
        "statement": {"ciphersuite": statement.ciphersuite, "timestamp_ms": statement.timestamp},
        "signed_by": {"anchors": [k.vkey for k in anchors], "countersigners": [k.vkey for k in counters]},
        "fleets": [_fleet_json(f) for f in keyset.fleets],
        "inclusion": {"index": record.index, "tree_size": cp.size, "root": cp.root.hex(),
                      "leaf_hash": record.leaf_hash.hex(), "proof": [h.hex() for h in proof], "verified": True},
        "keyset": json.loads(keyset.raw),
    }
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
    else:
        lines = [f"epoch {epoch}  (log entry {record.index}, namespace {keyset.namespace})",
                 f"issued {out['issued_at']}  expires {out['expires_at']}",
                 f"keyset sha256 {out['keyset_digest']}",
                 f"previous      {out['previous']}",
                 f"trust root    v{root.version} in force"
                 + (f", keyset names v{keyset.trust_root.version} ({keyset.trust_root.sha256.hex()[:16]}…)"
                    if keyset.trust_root else ", keyset names none"),
                 f"statement     ciphersuite {statement.ciphersuite}, signed at {statement.timestamp} ms",
                 *(f"anchor        {v} (signature verified)" for v in out["signed_by"]["anchors"]),
                 *(f"countersigner {v} (signature verified)" for v in out["signed_by"]["countersigners"]),
                 "fleets:"]
        for f in keyset.fleets:
            lines.append(f"    {f.fleet_id:<24} {f.algorithm:<8} {f.status:<8} {fingerprint(f.public_key)}  "
                         f"valid {format_time(f.not_before)} .. {format_time(f.not_after)}")
            lines.append(f"        public key {_fleet_json(f)['public_key']}")
        lines.append(f"inclusion: entry {record.index} in the tree of size {cp.size}, root {cp.root.hex()}, "
                     f"{len(proof)} proof hash(es), verified against the signed checkpoint")
        lines += [f"    {h.hex()}" for h in proof]
        for line in lines:
            click.echo(_printable(line))
    sys.exit(_report_problems(result.summary))


def _diff_json(a: Keyset, b: Keyset) -> dict[str, Any]:
    c = keyset_changes(a, b)
    old = {f.fleet_id: f for f in a.fleets}
    new = {f.fleet_id: f for f in b.fleets}
    return {"from": a.epoch, "to": b.epoch,
            "added": [_fleet_json(f) for f in c.added], "removed": [_fleet_json(f) for f in c.removed],
            "status": [{"fleet_id": s.fleet_id, "from": s.old, "to": s.new} for s in c.status],
            "rekeyed": [{"fleet_id": fid, "from": _fleet_json(old[fid]), "to": _fleet_json(new[fid])}
                        for fid in c.rekeyed]}


@click.command("diff")
@click.argument("epoch_a", type=click.IntRange(1))
@click.argument("epoch_b", type=click.IntRange(1))
@_log_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def diff_cmd(epoch_a: int, epoch_b: int, as_json: bool, **kwargs: Any) -> None:
    """What changed from epoch A to epoch B: fleets and keys added, removed, re-keyed, status changes."""
    log = _open_log(kwargs)
    found, result = _find_epochs(log, {epoch_a, epoch_b})
    a, b = found[epoch_a].keyset, found[epoch_b].keyset
    assert a is not None and b is not None
    diff = _diff_json(a, b)
    if as_json:
        click.echo(json.dumps({**diff, "verified": True}, indent=2, sort_keys=True))
    else:
        rows = [("change", "fleet", "algorithm", "status", "key")]
        rows += [("added", f["fleet_id"], f["algorithm"], f["status"], f["fingerprint"]) for f in diff["added"]]
        rows += [("removed", f["fleet_id"], f["algorithm"], f["status"], f["fingerprint"]) for f in diff["removed"]]
        rows += [("status", s["fleet_id"], new_fleet.algorithm, f"{s['from']} -> {s['to']}",
                  fingerprint(new_fleet.public_key))
                 for s in diff["status"] for new_fleet in [b.fleet(s["fleet_id"])] if new_fleet is not None]
        rows += [("rekeyed", r["fleet_id"], f"{r['from']['algorithm']} -> {r['to']['algorithm']}", r["to"]["status"],
                  f"{r['from']['fingerprint']} -> {r['to']['fingerprint']}") for r in diff["rekeyed"]]
        click.echo(f"epoch {epoch_a} -> epoch {epoch_b} (both verified)")
        if len(rows) == 1:
            click.echo("no changes")
        else:
            widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
            for r in rows:
                click.echo(_printable("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False))
                                      + "  " + str(r[4])))
    sys.exit(_report_problems(result.summary))


# -- monitor ---------------------------------------------------------------------------------------------


class _Monitor:
    """Polls the log and writes one JSON line per event (FORMAT.md §15.2); bounded memory."""

    def __init__(self, log: _Log, state_path: str | None, command: str | None) -> None:
        self.log = log
        self.state_path = state_path
        self.command = shlex.split(command) if command else None
        self.state = _load_state(state_path)
        self.problems = 0
        self.fetch_failed = False
        self.last_fatal: str | None = None
        self.last_bundle_epoch: int | None = None
        self.stop = threading.Event()

    def event(self, kind: str, **fields: Any) -> None:
        obj = {"event": kind, "log": self.log.root.log.origin, "time": format_time(self.log.now()), **fields}
        line = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        click.echo(line)
        sys.stdout.flush()
        if self.command:
            try:
                subprocess.run(self.command, input=line + "\n", text=True, timeout=60, check=True,
                               env={**os.environ, "FLEETKEYS_EVENT": kind}, stdout=sys.stderr)
            except (OSError, subprocess.SubprocessError) as exc:
                click.echo(f"WARNING: --exec command failed for a {kind} event: {_printable(exc)}", err=True)

    def on_problem(self, p: Problem) -> None:
        if p.fatal:
            if p.line == self.last_fatal:
                return  # the same broken tree head again: said once
            self.last_fatal = p.line
        self.problems += 1
        self.event("problem", **p.to_json(), hidden_rotation=p.error == "TrustRootError" and p.index is not None)

    def on_entry(self, e: EntryRecord) -> None:
        if e.kind == "trust-root":
            if e.verified:
                self.event("trust-root-rotation", index=e.index, version=e.version, after_epoch=self.last_bundle_epoch,
                           root_digest=e.root_digest.hex() if e.root_digest else None, changes=list(e.root_changes))
            return
        if e.verified and e.changes is not None:
            self.last_bundle_epoch = e.epoch
            self.event("epoch", **{k: v for k, v in e.to_json().items() if k not in ("kind", "verified")})

    def poll(self, first: bool) -> None:
        baseline = first and self.state is None
        try:
            result = replay_log(self.log.fetcher, trust_root=self.log.root, now=self.log.now(), jobs=self.log.jobs,
                                state=self.state, on_entry=None if baseline else self.on_entry,
                                on_problem=self.on_problem, should_stop=self.stop.is_set)
        except FetchError as exc:
            self.fetch_failed = True
            self.event("fetch-error", message=sanitize(str(exc), 500))
            return
        except VerificationError as exc:
            self.on_problem(Problem(None, type(exc).__name__, str(exc), fatal=True))
            return
        self.fetch_failed = False
        s = result.summary
        before = self.state.size if self.state is not None else 0
        if result.state is not None:
            if result.state.keyset_index is not None:
                self.last_bundle_epoch = s.last_epoch
            self.state = result.state
            _save_state(self.state_path, self.state)
        if baseline:
            self.event("start", size=s.size, root=s.root.hex(), epoch=s.last_epoch, epochs=s.epochs,
                       trust_root_version=s.trust_root_version, problems=s.problems)
        elif result.state is not None and result.state.size != before:
            self.event("checkpoint", size=result.state.size, previous_size=before, root=result.state.root.hex(),
                       epoch=s.last_epoch)

    def run(self, interval: float, once: bool) -> int:
        def stop(signum: int, frame: Any) -> None:
            self.stop.set()

        old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self.state is not None and self.state.problems:
                self.problems += self.state.problems
                fp = self.state.first_problem
                self.event("problem", index=fp.index if fp else None, error="EarlierProblems", fatal=False,
                           message=f"earlier runs with this state found {self.state.problems} problem(s)",
                           hidden_rotation=False)
            first = True
            while not self.stop.is_set():
                self.poll(first)
                first = False
                if once or self.stop.wait(interval):
                    break
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        self.event("stop", reason="once" if once and not self.stop.is_set() else "signal", problems=self.problems,
                   size=self.state.size if self.state is not None else None)
        if self.problems:
            return EXIT_PROBLEM
        return EXIT_FETCH if self.fetch_failed else 0


@click.command("monitor")
@_log_options
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(0.1, 86400),
              help="Seconds between two polls of the checkpoint.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False),
              help="Audit state file: start from it (events for everything newer), save it after each poll.")
@click.option("--exec", "command",
              help="Run this command for each event, the event's JSON line on its stdin, $FLEETKEYS_EVENT its kind.")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron): 0 clean, 1 problem, 3 could not fetch.")
def monitor_cmd(interval: float, state_path: str | None, command: str | None, once: bool, **kwargs: Any) -> None:
    """Follow the log: verify each new checkpoint's entries, one JSON line per event; stop with SIGTERM/SIGINT."""
    log = _open_log(kwargs)
    if log.now_fixed is not None and not once:
        raise click.UsageError("--now is only for --once")
    sys.exit(_Monitor(log, state_path, command).run(interval, once))


# -- journal ---------------------------------------------------------------------------------------------


def _get_json(http: HttpClient, url: str) -> Any:
    try:
        resp = http.get(url, limit=_MAX_JSON)
    except (FetchError, SizeLimitError) as exc:
        _fail(f"GET {sanitize(url)}: {exc}")
    if resp.status == 404:
        return None
    if resp.status != 200:
        _fail(f"GET {sanitize(url)}: HTTP {resp.status}: {resp.reason()}")
    try:
        return json.loads(resp.body)
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(f"GET {sanitize(url)}: not JSON ({exc})")


def _journal_pages(http: HttpClient, base: str, namespace: str) -> Iterator[dict[str, Any]]:
    from urllib.parse import quote

    before = None
    while True:
        url = f"{base}/api/v1/journal?namespace={quote(namespace, safe='')}&limit=1000" + (
            f"&before={before}" if before is not None else "")
        body = _get_json(http, url)
        if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
            _fail(f"GET {sanitize(url)}: not a journal page")
        yield from (e for e in body["entries"] if isinstance(e, dict))
        before = body.get("next_before")
        if type(before) is not int or not body["entries"]:
            return


@click.command("journal")
@_log_options
@click.option("--signer", "signers", required=True, multiple=True,
              help="Anchor signer base URL (repeat: one journal per anchor).")
@click.option("--grace", default=600, show_default=True, type=click.IntRange(0),
              help="Seconds a signed epoch newer than the log's newest may still be on its way to the log.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def journal_cmd(signers: tuple[str, ...], grace: int, as_json: bool, **kwargs: Any) -> None:
    """Cross-check the anchor signer's journal with the log: both ways, signatures first."""
    log = _open_log(kwargs)
    logged: dict[int, tuple[bytes, int]] = {}
    anchor_keys: dict[bytes, AuditorKey] = {k.public_key: AuditorKey(k.public_key) for k in log.root.anchors.keys}

    def on_entry(e: EntryRecord) -> None:
        if e.kind == "trust-root" and e.new_root is not None:
            anchor_keys.update({k.public_key: AuditorKey(k.public_key) for k in e.new_root.anchors.keys})
        elif e.kind == "bundle" and e.verified and e.changes is not None and e.epoch is not None:
            logged[e.epoch] = (e.keyset_digest or b"", e.index)

    problems: list[Problem] = []

    def problem(p: Problem) -> None:
        problems.append(p)
        _problem_line(p)

    result = log.replay(on_entry=on_entry, on_problem=problem)  # the log first: what it holds was signed before
    newest_logged = max(logged) if logged else 0
    http = HttpClient(timeout=_TIMEOUT)
    now_ms = log.now() * 1000
    findings: list[dict[str, Any]] = []
    keys = tuple(anchor_keys.values())
    ns = log.root.namespace
    for base in (s.rstrip("/") for s in signers):
        journal: dict[int, SignatureResponse] = {}
        key_ids: set[int] = set()
        bad = 0
        for event in _journal_pages(http, base, ns):
            if event.get("kind") != "signed" or "signature" not in event:
                continue
            try:
                resp = parse_response(event["signature"])
                key = verify_response(resp, keys, namespace=ns)
            except VerificationError as exc:
                bad += 1
                problem(Problem(None, type(exc).__name__, f"{base} journal event {event.get('id')!r}: its signature "
                                f"does not verify under the trust root's anchor keys, so it is ignored: {exc}"))
                continue
            key_ids.add(key.key_id)
            other = journal.get(resp.epoch)
            if other is not None and other.digest != resp.digest:
                problem(Problem(None, "RollbackError", f"{base} journal: the anchor signed epoch {resp.epoch} twice, "
                                f"digests {other.digest.hex()} and {resp.digest.hex()} (equivocation)"))
            journal.setdefault(resp.epoch, resp)
        pending = []
        for epoch, resp in sorted(journal.items()):
            if epoch in logged:
                if logged[epoch][0] != resp.digest:
                    problem(Problem(logged[epoch][1], "RollbackError",
                                    f"{base} journal: the anchor signed epoch {epoch} with digest {resp.digest.hex()}, "
                                    f"but the log holds {logged[epoch][0].hex()} for it (a fork)"))
            elif epoch > newest_logged and resp.timestamp >= now_ms - grace * 1000:
                pending.append(epoch)
            else:
                problem(Problem(None, "ForkError" if epoch <= newest_logged else "WithheldError",
                                f"{base} journal: the anchor validly signed epoch {epoch} (digest {resp.digest.hex()}, "
                                f"at {resp.timestamp} ms) but the log has no such bundle: a hidden fork or a "
                                "withheld bundle"))
        for epoch, (_, index) in sorted(logged.items()):
            if epoch not in journal:
                problem(Problem(index, "MissingError", f"logged epoch {epoch} is not in the journal of {base}, "
                                                       "although its anchor signature verified"))
        findings.append({"signer": base, "signed_epochs": len(journal), "invalid_entries": bad,
                         "pending": pending, "key_ids": sorted(key_ids)})
        if not as_json:
            click.echo(_printable(f"{base}: {len(journal)} signed epochs in the journal, {bad} invalid, "
                                  f"{len(pending)} pending (signed within {grace} s, not yet logged)"))
    s = result.summary
    if as_json:
        click.echo(json.dumps({"log": s.to_json(), "journals": findings, "problems": [p.to_json() for p in problems],
                               "ok": not problems and s.ok}, indent=2, sort_keys=True))
    else:
        click.echo(f"log: {len(logged)} verified epochs; " + _summary_text(s))
        click.echo("journal and log agree" if not problems else f"{len(problems)} problem(s)")
    sys.exit(0 if not problems and s.ok else EXIT_PROBLEM)


# -- auditor ---------------------------------------------------------------------------------------------


def _responses_from_dir(directory: Path) -> list[tuple[str, Any]]:
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = path.read_bytes()
            if len(data) > _MAX_JSON:
                raise ValueError(f"larger than {_MAX_JSON} bytes")
            value = json.loads(data)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            out.append((path.name, exc))
            continue
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            out.append((f"{path.name}[{i}]" if isinstance(value, list) else path.name, item))
    return out


def _responses_from_url(http: HttpClient, base: str, namespace: str, start: int) -> list[tuple[str, Any]]:
    from urllib.parse import quote

    ns = quote(namespace, safe="")
    info = _get_json(http, f"{base}/namespaces/{ns}")
    if info is None:
        _fail(f"{base}: namespace {namespace!r} is unknown to the auditor")
    out = []
    epoch = start
    hint = info.get("last_verified_epoch") if isinstance(info, dict) else None
    last = hint if type(hint) is int else start - 1
    while True:  # up to the namespace's last epoch, and on until the auditor says 404
        body = _get_json(http, f"{base}/namespaces/{ns}/audits/{epoch}")
        if body is None:
            if epoch <= last:
                out.append((f"epoch {epoch}", FetchError(f"the auditor has no response for epoch {epoch}, though its "
                                                         f"namespace record says it audited up to {last}")))
                epoch += 1
                continue
            return out
        out.append((f"epoch {epoch}", body))
        epoch += 1


@click.command("auditor")
@click.option("--url", help="The auditor's base URL (GET /namespaces/<ns>/audits/<epoch>).")
@click.option("--responses", "responses_dir", type=click.Path(exists=True, file_okay=False),
              help="A directory of saved signature responses (*.json: one object or a list each).")
@click.option("--namespace", required=True, help="The namespace the responses must be for.")
@click.option("--keys", "keys_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Pinned auditor keys, in the shape of the auditor's GET /info.")
@click.option("--max-age", type=click.IntRange(1), help="The newest response must be at most this many seconds old.")
@click.option("--start-epoch", type=click.IntRange(1), help="The first epoch expected (default: the first found; "
              "1 with --url).")
@click.option("--now", "now_text", help="Check as of this time (YYYY-MM-DDTHH:MM:SSZ); default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def auditor_cmd(url: str | None, responses_dir: str | None, namespace: str, keys_file: str, max_age: int | None,
                start_epoch: int | None, now_text: str | None, as_json: bool) -> None:
    """Check a Plexi-style auditor's signature responses against pinned keys."""
    if (url is None) == (responses_dir is None):
        raise click.UsageError("give exactly one of --url and --responses")
    try:
        now = parse_time(now_text, "--now") if now_text else int(time.time())
        keys = parse_auditor_keys(Path(keys_file).read_bytes())
    except OSError as exc:
        raise click.UsageError(f"cannot read {keys_file}: {exc.strerror}") from exc
    except VerificationError as exc:
        raise click.UsageError(f"{keys_file}: {exc}") from exc
    if url is not None:
        raw = _responses_from_url(HttpClient(timeout=_TIMEOUT), url.rstrip("/"), namespace, start_epoch or 1)
        start_epoch = start_epoch or 1
    else:
        raw = _responses_from_dir(Path(responses_dir or ""))
    problems: list[dict[str, Any]] = []
    good: list[SignatureResponse] = []
    rows = []

    def problem(where: str, epoch: int | None, error: str, message: str) -> None:
        problems.append({"where": where, "epoch": epoch, "error": error, "message": message})
        click.echo(f"PROBLEM: {_printable(where)}: {error}: {_printable(' '.join(message.split()))}", err=True)

    for where, value in raw:
        if isinstance(value, Exception):
            problem(where, None, type(value).__name__, str(value))
            continue
        try:
            resp = parse_response(value)
            asked = int(where.split()[1]) if url is not None else None
            key = verify_response(resp, keys, namespace=namespace, epoch=asked)
        except VerificationError as exc:
            problem(where, None, type(exc).__name__, str(exc))
            continue
        good.append(resp)
        rows.append({"where": where, "epoch": resp.epoch, "timestamp": resp.timestamp, "digest": resp.digest.hex(),
                     "key": key.public_key.hex(), "ciphersuite": resp.ciphersuite})
    for p in check_sequence(good, now_ms=now * 1000, max_age=max_age, start_epoch=start_epoch):
        problem(f"epoch {p.epoch}" if p.epoch is not None else "responses", p.epoch, p.error, p.message)
    if as_json:
        click.echo(json.dumps({"namespace": namespace, "verified": sorted(rows, key=lambda r: r["epoch"]),
                               "problems": problems, "ok": not problems and bool(rows)}, indent=2, sort_keys=True))
    else:
        for r in sorted(rows, key=lambda r: r["epoch"]):
            click.echo(_printable(f"epoch {r['epoch']:<6} signed {r['timestamp']} ms  digest {r['digest'][:16]}  "
                                  f"ciphersuite {r['ciphersuite']}  key {r['key'][:16]}…  signature verified"))
        n = len(problems)
        click.echo(f"{len(rows)} auditor response(s) verified for {namespace}"
                   + (f", {n} problem{'s' if n != 1 else ''}" if n else ""))
    if not rows and not problems:
        _fail("no auditor responses found")
    sys.exit(EXIT_PROBLEM if problems else 0)


# -- the group, and the bare form --------------------------------------------------------------------------


class _AuditGroup(click.Group):
    """``fleetkeys audit SUBCOMMAND ...``; ``fleetkeys audit --trust-root ...`` (no subcommand) is ``verify``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["verify", *args]
        return super().parse_args(ctx, args)


@click.group("audit", cls=_AuditGroup)
def audit_cmd() -> None:
    """Audit the log: verify it all, list, show and diff epochs, monitor it, cross-check the signer's journal,
    check a Plexi-style auditor. `fleetkeys audit --trust-root ...` alone is `audit verify`."""


for _command in (verify_cmd, list_cmd, show_cmd, diff_cmd, monitor_cmd, journal_cmd, auditor_cmd):
    audit_cmd.add_command(_command)


# -- fleetkeys log epochs (unverified) -------------------------------------------------------------------


@click.group("log")
def log_group() -> None:
    """Look at a distributor's log (unverified listings; `fleetkeys audit list` verifies)."""


@log_group.command("epochs")
@click.option("--distributor", required=True, help="Distributor base URL.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="How many epochs to list, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def epochs_cmd(distributor: str, limit: int, as_json: bool) -> None:
    """List epochs from GET /api/v1/epochs (UNVERIFIED: the distributor's own index)."""
    base = distributor.rstrip("/")
    http = HttpClient(timeout=_TIMEOUT, allowed_origins=[base])
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while len(rows) < limit:
        page = min(100, limit - len(rows))
        query = f"api/v1/epochs?limit={page}" + (f"&before={before}" if before is not None else "")
        body = _get_json(http, f"{base}/{query}")
        if not isinstance(body, dict) or not isinstance(body.get("epochs"), list):
            _fail(f"GET {query}: unexpected response shape")
        rows += body["epochs"]
        before = body.get("next_before")
        if not isinstance(before, int) or not body["epochs"]:
            break
    if as_json:
        click.echo(json.dumps({"verified": False, "epochs": rows[:limit]}, indent=2, sort_keys=True))
        return
    click.echo(f"UNVERIFIED listing from {base}/api/v1/epochs (the distributor's own index; "
               "run `fleetkeys audit list` to verify)")
    if not rows:
        click.echo("no epochs logged yet")
    for row in rows[:limit]:
        if not isinstance(row, dict):
            _fail("GET /api/v1/epochs: unexpected entry shape")
        ids = row.get("fleet_ids")
        fleets = ", ".join(str(f) for f in ids) if isinstance(ids, list) and ids else "(none)"
        click.echo(_printable(f"epoch {row.get('epoch')!s:<6} index {row.get('index')!s:<6} "
                              f"issued {row.get('issued_at')}  expires {row.get('expires_at')}  "
                              f"keyset sha256 {str(row.get('digest'))[:16]}  fleets: {fleets}"))


COMMANDS = [audit_cmd, log_group]
