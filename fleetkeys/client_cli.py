"""Client-side commands: ``verify`` (online), ``verify-bundle`` (offline files), ``trust-root``.

Exit codes: 0 verified; 1 a check failed (one line naming the check and why) or the distributor
could not be reached with no usable saved state; 2 usage errors (click).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from verifier.bundle import verify_bundle
from verifier.client import Client
from verifier.errors import EmptyLogError, FetchError, VerificationError
from verifier.fetch import DirectoryFetcher
from verifier.http import sanitize
from verifier.keyset import Fleet, format_time, parse_time
from verifier.note import NoteVerifier
from verifier.signatures import KeyGroup
from verifier.trustroot import LogConfig, encode_envelope, encode_trust_root_body, load_trust_root
from verifier.update import ClientState, verify_update


def _fail(exc: Exception) -> None:
    click.echo(f"FAILED: {type(exc).__name__}: {sanitize(str(exc), 1000)}", err=True)
    sys.exit(1)


def _print_fleets(fleets: tuple[Fleet, ...], as_json: bool, header: dict) -> None:
    if as_json:
        click.echo(json.dumps({**header, "fleets": [f.to_json() for f in fleets]}, indent=2, sort_keys=True))
        return
    for key, value in header.items():
        click.echo(f"{key}: {value}")
    if not fleets:
        click.echo("no active fleet keys")
    for f in fleets:
        d = f.to_json()
        click.echo(f"  {d['fleet_id']:<20} {d['algorithm']:<8} {d['status']:<8} {d['public_key']}  "
                   f"(valid {d['not_before']} .. {d['not_after']})")


def _read_root(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read trust root {path}: {exc.strerror}") from exc


@click.command("verify")
@click.option("--trust-root", "trust_root", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Bootstrap trust root (JSON envelope) shipped with the app.")
@click.option("--distributor", "mirrors", multiple=True, metavar="URL",
              help="Base URL of the log's static files: the distributor, a CDN or any static mirror (repeat for "
                   "failover, tried in order).")
@click.option("--static", "static_dir", type=click.Path(exists=True, file_okay=False),
              help="Read the log from a static export directory instead of over HTTP.")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False), help="State directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(trust_root: str, mirrors: tuple[str, ...], static_dir: str | None, state_dir: str,
               as_json: bool) -> None:
    """Fetch, verify and print the fleet keys in force, exactly as an app would.

    Reads only the log's static files (checkpoint, entries, tiles): no dynamic API is needed.
    """
    if bool(mirrors) == bool(static_dir):
        raise click.UsageError("give --distributor URL (one or more) or --static DIR")
    try:
        fetcher = DirectoryFetcher(static_dir) if static_dir else None
        client = Client(list(mirrors) or None, _read_root(trust_root), state_dir, fetcher=fetcher)
        result = client.refresh()
    except (VerificationError, FetchError, EmptyLogError) as exc:
        _fail(exc)
    _print_fleets(result.fleets, as_json, {"epoch": result.epoch, "checkpoint_size": result.checkpoint_size,
                                           "offline": result.offline, "status": result.message})


@click.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--trust-root", "trust_root", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--proof", type=click.Path(exists=True, dir_okay=False), help="c2sp.org/tlog-proof@v1 file.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Signed checkpoint file (default: the one inside --proof).")
@click.option("--now", "now_text", help="Verify as of this time (YYYY-MM-DDTHH:MM:SSZ); default: now.")
@click.option("--json", "as_json", is_flag=True)
def verify_bundle_cmd(bundle: str, trust_root: str, proof: str | None, checkpoint: str | None,
                      now_text: str | None, as_json: bool) -> None:
    """Verify a bundle file offline; with --proof also its log inclusion and checkpoint."""
    try:
        now = parse_time(now_text, "--now") if now_text else int(time.time())
        root = load_trust_root(_read_root(trust_root))
        data = Path(bundle).read_bytes()
        if proof is None:
            if checkpoint:
                raise click.UsageError("--checkpoint needs --proof")
            verified = verify_bundle(data, root)
            keyset = verified.keyset
            if now >= keyset.expires_at:
                raise VerificationError(f"keyset expired at {format_time(keyset.expires_at)}")
            _print_fleets(keyset.active_fleets(now), as_json,
                          {"epoch": keyset.epoch, "status": "signatures and digest verified; log inclusion NOT checked "
                                                            "(give --proof)"})
            return
        from verifier.tlogproof import parse_tlog_proof

        proof_bytes = Path(proof).read_bytes()
        cp_bytes = Path(checkpoint).read_bytes() if checkpoint else parse_tlog_proof(proof_bytes).checkpoint
        update = verify_update(data, proof_bytes, cp_bytes, trust_root=root, state=ClientState(), now=now)
    except VerificationError as exc:
        _fail(exc)
    _print_fleets(update.fleets, as_json, {"epoch": update.epoch, "index": update.index,
                                           "checkpoint_size": update.checkpoint.size,
                                           "status": "signatures, digest, checkpoint and inclusion verified"})


@click.group("trust-root")
def trust_root_group() -> None:
    """Create and inspect trust roots."""


@trust_root_group.command("create")
@click.option("--namespace", required=True)
@click.option("--anchor", "anchors", multiple=True, required=True, help="Anchor vkey (repeat for several).")
@click.option("--anchor-threshold", default=1, show_default=True)
@click.option("--countersigner", "countersigners", multiple=True, required=True, help="Countersigner vkey.")
@click.option("--countersigner-threshold", default=1, show_default=True)
@click.option("--log-vkey", required=True, help="The distributor's log vkey (its name is the origin).")
@click.option("--freshness-vkey", required=True, help="The distributor's freshness cosigner vkey (type 0x04).")
@click.option("--max-age", default=3600, show_default=True, help="Oldest acceptable freshness cosignature (s).")
@click.option("--witness", "witnesses", multiple=True, help="Witness cosigner vkey (type 0x04).")
@click.option("--witness-threshold", default=0, show_default=True)
@click.option("--version", "version", default=1, show_default=True)
@click.option("--expires", required=True, help="Expiry, YYYY-MM-DDTHH:MM:SSZ.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def trust_root_create(namespace, anchors, anchor_threshold, countersigners, countersigner_threshold, log_vkey,
                      freshness_vkey, max_age, witnesses, witness_threshold, version, expires, out) -> None:
    """Write an (unsigned, bootstrap) trust root envelope."""
    try:
        log_key = NoteVerifier.from_vkey(log_vkey)
        body = encode_trust_root_body(
            version=version, namespace=namespace,
            anchors=KeyGroup(tuple(NoteVerifier.from_vkey(v) for v in anchors), anchor_threshold),
            countersigners=KeyGroup(tuple(NoteVerifier.from_vkey(v) for v in countersigners), countersigner_threshold),
            log=LogConfig(log_key.name, log_key, NoteVerifier.from_vkey(freshness_vkey), max_age),
            witnesses=KeyGroup(tuple(NoteVerifier.from_vkey(v) for v in witnesses), witness_threshold),
            expires_at=parse_time(expires, "--expires"))
    except VerificationError as exc:
        _fail(exc)
    Path(out).write_bytes(encode_envelope(body))
    click.echo(f"wrote trust root v{version} for {namespace} to {out}")


@trust_root_group.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def trust_root_show(path: str) -> None:
    """Print a trust root in readable form (after checking it parses)."""
    try:
        root = load_trust_root(Path(path).read_bytes())
    except VerificationError as exc:
        _fail(exc)
    click.echo(json.dumps(json.loads(root.body), indent=2, sort_keys=True))


COMMANDS = [verify_cmd, verify_bundle_cmd, trust_root_group]

