"""Auditor commands: ``fleetkeys audit`` (replay and verify the whole log) and ``fleetkeys log epochs``.

``fleetkeys audit --trust-root ROOT (--distributor URL | --from-static DIR) [--json] [--now TIME]``
    Reads the signed checkpoint and every C2SP tile of the log, over HTTP (``GET /checkpoint``,
    ``GET /tile/...``) or from a directory holding the same paths (the distributor's exported
    ``static/`` directory, a CDN mirror), and runs :func:`verifier.audit.replay_log`: checkpoint
    signature and freshness, root recomputed from every entry, hash tiles, every bundle's signatures
    under the trust root in force (and the root its keyset names), epochs 1, 2, 3... with an unbroken
    ``previous`` chain, no revoked fleet id or key active again anywhere in the history, trust-root
    rotations. Prints the history (epoch, dates, fleet changes, key fingerprints) and a summary line;
    each problem is printed on stderr on one line starting ``PROBLEM:``.

``fleetkeys log epochs --distributor URL [--limit N] [--json]``
    The distributor's own epoch index (``GET /api/v1/epochs``), newest first. Nothing in it is
    verified: it is a quick look, ``fleetkeys audit`` is the check.

Exit codes: 0 clean; 1 a problem was found, or the log could not be read; 2 usage error.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from verifier.audit import AuditReport, EntryRecord, TileUnavailable, fingerprint, max_fetch_size, replay_log
from verifier.errors import FetchError, SizeLimitError, VerificationError
from verifier.http import HttpClient, sanitize
from verifier.keyset import format_time, parse_time
from verifier.note import MAX_NOTE_SIZE
from verifier.trustroot import load_trust_root

#: Seconds for one whole response (connect, headers and body), per attempt.
_TIMEOUT = 10.0
_MAX_JSON = 1024 * 1024


class ReadError(FetchError):
    """The distributor or the static directory could not be read."""


class HttpSource:
    """Reads the log over HTTP through :class:`verifier.http.HttpClient` (deadline, byte cap per path)."""

    def __init__(self, base_url: str, http: HttpClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or HttpClient(timeout=_TIMEOUT, allowed_origins=[self.base_url])

    def get(self, path: str, limit: int) -> bytes:
        url = f"{self.base_url}/{path}"
        try:
            resp = self.http.get(url, limit=limit)
        except (FetchError, SizeLimitError) as exc:
            raise ReadError(str(exc)) from exc
        if resp.status != 200:
            raise ReadError(f"GET {sanitize(url)}: HTTP {resp.status}: {resp.reason()}")
        return resp.body

    def checkpoint(self) -> bytes:
        return self.get("checkpoint", MAX_NOTE_SIZE)

    def tile(self, path: str) -> bytes:
        try:
            return self.get(path, max_fetch_size(path))
        except ReadError as exc:
            raise TileUnavailable(str(exc)) from exc


class StaticSource:
    """Reads the same paths from a directory (only canonical tile paths, so nothing outside it)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _read(self, rel: str, limit: int) -> bytes:
        path = self.directory / rel
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise ReadError(f"{path}: {exc.strerror or exc}") from exc
        if len(data) > limit:
            raise ReadError(f"{path}: larger than the {limit}-byte cap")
        return data

    def checkpoint(self) -> bytes:
        return self._read("checkpoint", MAX_NOTE_SIZE)

    def tile(self, path: str) -> bytes:
        try:
            return self._read(path, max_fetch_size(path))
        except ReadError as exc:
            raise TileUnavailable(str(exc)) from exc


def _printable(text: object) -> str:
    """``text`` on one line with every non-printable character escaped (nothing from the network may
    drive the terminal)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _fail(message: str) -> NoReturn:
    click.echo(f"FAILED: {_printable(message)}", err=True)
    sys.exit(1)


def _short(digest: bytes | None) -> str:
    return digest.hex()[:16] if digest else "?"


def _entry_lines(e: EntryRecord) -> list[str]:
    if e.kind == "trust-root":
        head = f"#{e.index}  trust root v{e.version if e.version is not None else '?'}"
        if not e.verified:
            return [f"{head}  INVALID: not followed (see problems)"]
        return [f"{head}  body sha256 {_short(e.root_digest)}", *(f"    {c}" for c in e.root_changes)]
    if e.epoch is None:
        return [f"#{e.index}  {e.kind} entry  INVALID: unreadable (see problems)"]
    head = (f"#{e.index}  epoch {e.epoch}  issued {format_time(e.issued_at) if e.issued_at is not None else '?'}  "
            f"expires {format_time(e.expires_at) if e.expires_at is not None else '?'}  "
            f"keyset sha256 {_short(e.keyset_digest)}")
    lines = [head if e.verified else f"{head}  INVALID (contents below NOT verified; see problems)"]
    if e.changes is not None:
        lines.append(f"    changes: {', '.join(e.changes.describe()) or 'none'}")
    for f in e.fleets:
        status = f.status.upper() if f.status == "revoked" else f.status
        lines.append(f"    {f.fleet_id:<24} {f.algorithm:<8} {status:<8} {fingerprint(f.public_key)}  "
                     f"valid {format_time(f.not_before)} .. {format_time(f.not_after)}")
    return lines


def _summary(report: AuditReport) -> str:
    if report.root_verified:
        text = f"{report.size} entries, {len(report.epochs)} epochs, root verified"
    else:
        text = f"{report.size} entries, root NOT verified"
    n = len(report.problems)
    return text + (f", {n} problem{'s' if n != 1 else ''}" if n else "")


def _print_report(report: AuditReport, trust_root_vkey: str, now: int) -> None:
    click.echo(f"log:        {report.origin}")
    if report.root_verified or report.size:
        fresh = (f"freshness cosignature {format_time(report.freshness_time)} ({now - report.freshness_time} s ago)"
                 if report.freshness_time is not None else "no freshness cosignature")
        click.echo(f"checkpoint: size {report.size}, root {base64.b64encode(report.root).decode()}, {fresh}")
    click.echo(f"log key:    {trust_root_vkey} (from your trust root)")
    if report.entries:
        click.echo("")
    for e in report.entries:
        for line in _entry_lines(e):
            click.echo(line)
    click.echo("")
    click.echo(_summary(report))


@click.command("audit")
@click.option("--trust-root", "trust_root", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The bootstrap trust root the log started under (its log key is the root of trust).")
@click.option("--distributor", help="Distributor (or CDN) base URL, e.g. http://127.0.0.1:8080")
@click.option("--from-static", "static_dir", type=click.Path(exists=True, file_okay=False),
              help="Read checkpoint and tiles from this directory instead (a distributor's static/ export).")
@click.option("--now", "now_text", help="Audit as of this time (YYYY-MM-DDTHH:MM:SSZ); default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit_cmd(trust_root: str, distributor: str | None, static_dir: str | None, now_text: str | None,
              as_json: bool) -> None:
    """Replay the whole log and verify every entry ever published."""
    if (distributor is None) == (static_dir is None):
        raise click.UsageError("give exactly one of --distributor and --from-static")
    try:
        now = parse_time(now_text, "--now") if now_text else int(time.time())
    except VerificationError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        root = load_trust_root(Path(trust_root).read_bytes())
    except OSError as exc:
        raise click.UsageError(f"cannot read trust root {trust_root}: {exc.strerror}") from exc
    except VerificationError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    source = HttpSource(distributor) if distributor is not None else StaticSource(static_dir or "")
    try:
        checkpoint = source.checkpoint()
        report = replay_log(source.tile, trust_root=root, checkpoint=checkpoint, now=now)
    except ReadError as exc:
        _fail(f"cannot read the checkpoint: {exc}")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        _print_report(report, root.log.key.vkey, now)
    for problem in report.problems:
        click.echo(f"PROBLEM: {_printable(problem.line)}", err=True)
    sys.exit(0 if report.ok else 1)


@click.group("log")
def log_group() -> None:
    """Look at a distributor's log (unverified listings; `fleetkeys audit` verifies)."""


def _get_json(source: HttpSource, path: str) -> Any:
    try:
        return json.loads(source.get(path, _MAX_JSON))
    except ReadError as exc:
        _fail(str(exc))
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(f"GET {path}: not JSON ({exc})")


@log_group.command("epochs")
@click.option("--distributor", required=True, help="Distributor base URL.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="How many epochs to list, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def epochs_cmd(distributor: str, limit: int, as_json: bool) -> None:
    """List epochs from GET /api/v1/epochs (UNVERIFIED: the distributor's own index)."""
    source = HttpSource(distributor)
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while len(rows) < limit:
        page = min(100, limit - len(rows))
        query = f"api/v1/epochs?limit={page}" + (f"&before={before}" if before is not None else "")
        body = _get_json(source, query)
        if not isinstance(body, dict) or not isinstance(body.get("epochs"), list):
            _fail(f"GET {query}: unexpected response shape")
        rows += body["epochs"]
        before = body.get("next_before")
        if not isinstance(before, int) or not body["epochs"]:
            break
    if as_json:
        click.echo(json.dumps({"verified": False, "epochs": rows[:limit]}, indent=2, sort_keys=True))
        return
    click.echo(f"UNVERIFIED listing from {source.base_url}/api/v1/epochs (the distributor's own index; "
               "run `fleetkeys audit` to verify)")
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
