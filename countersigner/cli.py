"""``fleetkeys countersign`` and ``fleetkeys publish`` (the operator's side).

    fleetkeys publish KEYSET.json --signer URL --countersign-key REF
                      (--trust-root FILE | --anchor-key HEX_OR_VKEY ...)
                      [--distributor URL] [--out BUNDLE] [--signer-token-file F] [--token-file F]
                      [--digest-only]
    fleetkeys countersign --keyset KEYSET.json --response ANCHOR.json --key REF
                          (--trust-root FILE | --anchor-key HEX_OR_VKEY ...) [--out BUNDLE]

Tokens never come from argv: the signer's write token from ``--signer-token-file`` or
``$FLEETKEYS_SIGNER_TOKEN``, the distributor's publish token from ``--token-file`` or
``$FLEETKEYS_PUBLISH_TOKEN`` (token files must be mode 0600). Exit codes: 0 done; 1 refused or
failed (the reason on stderr); 2 usage error. Key references never take ``pin-value=`` (argv is
readable in ``/proc/<pid>/cmdline``): use ``pin-source=`` or ``$FLEETKEYS_PKCS11_PIN``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from keys import KeyBackendError, load_signer
from verifier.bundle import verify_bundle
from verifier.errors import VerificationError
from verifier.keyset import canonicalize_keyset, format_time, parse_keyset
from verifier.note import NoteVerifier
from verifier.trustroot import load_trust_root

from .countersign import ExpectedStatement, build_bundle, countersign, verify_anchor_signatures
from .publish import (
    PUBLISH_TOKEN_ENV,
    SIGNER_TOKEN_ENV,
    PublishError,
    PublishRequest,
    derived_trust_root,
    parse_anchor_response,
    parse_json_body,
    publish,
    read_token,
    write_atomically,
)

_FAILURES = (PublishError, VerificationError, KeyBackendError, OSError)


def _refused(what: str, exc: BaseException) -> None:
    reason = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc)
    click.echo(f"{what} refused: {reason}", err=True)
    sys.exit(1)


def _parse_anchor_key(value: str) -> bytes:
    try:
        if len(value) == 64:
            return bytes.fromhex(value)
        return NoteVerifier.from_vkey(value).public_key
    except (ValueError, VerificationError) as exc:
        raise click.BadParameter(f"expected 64 hex digits or a C2SP vkey ({exc})", param_hint="--anchor-key") from None


@click.command("publish")
@click.argument("keyset_path", metavar="KEYSET.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--signer", "signer_url", required=True, help="Anchor signer base URL.")
@click.option("--countersign-key", required=True, help="Operator key reference: file:PATH or pkcs11:...")
@click.option("--trust-root", "trust_root_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Trust root (envelope) the bundle must verify against, as clients will. The keyset names it: "
                   "a keyset file without a trust_root field gets it inserted, one with it must name this root.")
@click.option("--anchor-key", "anchor_keys", multiple=True,
              help="Instead of --trust-root: a trusted anchor key (hex or vkey); repeatable. The signer's "
                   "advertised keys are never trusted by themselves. The keyset must then carry its trust_root "
                   "name itself (with --trust-root, publish inserts it when the file has none).")
@click.option("--distributor", "distributor_url", help="Distributor base URL: check the chain, then post the bundle.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle (default KEYSET.bundle.json beside the keyset).")
@click.option("--signer-token-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File with the signer write token (default ${SIGNER_TOKEN_ENV}).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File with the distributor publish token (default ${PUBLISH_TOKEN_ENV}).")
@click.option("--digest-only", is_flag=True,
              help="Use Plexi's digest-only endpoint (for a Plexi auditor, or a digest-mode namespace of our "
                   "signer) instead of /api/v1/sign-keyset.")
def publish_cmd(keyset_path: Path, signer_url: str, countersign_key: str, trust_root_path: Path | None,
                anchor_keys: tuple[str, ...], distributor_url: str | None, out: Path | None,
                signer_token_file: Path | None, token_file: Path | None, digest_only: bool) -> None:
    """Validate KEYSET.json, get it anchor-signed, countersign, verify, write and post the bundle."""
    if (trust_root_path is None) == (not anchor_keys):
        raise click.UsageError("give either --trust-root or at least one --anchor-key (which anchor the bundle "
                               "must be signed by is the operator's choice, not the signer's)")
    keys = tuple(_parse_anchor_key(k) for k in anchor_keys)
    try:
        signer_token = read_token(signer_token_file, SIGNER_TOKEN_ENV)
        publish_token = read_token(token_file, PUBLISH_TOKEN_ENV) if distributor_url else None
    except (PublishError, OSError) as exc:
        _refused("publish", exc)
    if not signer_token:
        raise click.UsageError(f"no signer token: give --signer-token-file or set {SIGNER_TOKEN_ENV}")
    if distributor_url and not publish_token:
        raise click.UsageError(f"no publish token for the distributor: give --token-file or set {PUBLISH_TOKEN_ENV}")
    if out is None:
        stem = keyset_path.name[:-5] if keyset_path.name.endswith(".json") else keyset_path.name
        out = keyset_path.with_name(stem + ".bundle.json")
    req = PublishRequest(keyset_path=keyset_path, signer_url=signer_url, countersign_key=countersign_key,
                         signer_token=signer_token, out=out, trust_root_path=trust_root_path,
                         distributor_url=distributor_url, publish_token=publish_token, digest_only=digest_only,
                         anchor_keys=keys)
    started = time.monotonic()
    try:
        result = publish(req, progress=lambda line: click.echo(line))
    except _FAILURES as exc:
        _refused("publish", exc)
    st = result.statement
    click.echo("")
    click.echo(f"published {st.namespace} epoch {st.epoch} in {time.monotonic() - started:.2f}s")
    click.echo(f"  keyset digest   {st.digest.hex()} ({len(result.keyset.fleets)} fleet(s), expires "
               f"{format_time(result.keyset.expires_at)})")
    click.echo(f"  anchor          {result.anchor_key.hex()} at {format_time(st.timestamp // 1000)}")
    click.echo(f"  countersigner   {result.countersigner_key.hex()}")
    click.echo(f"  bundle          {result.out} ({len(result.bundle)} bytes)")
    if result.log_entry is not None:
        checkpoint = str(result.log_entry.get("checkpoint", "")).split("\n")
        size = checkpoint[1] if len(checkpoint) > 1 else "?"
        click.echo(f"  log             index {result.log_entry.get('index')}, checkpoint size {size}")


@click.command("countersign")
@click.option("--keyset", "keyset_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The keyset that was sent to the anchor (hand-written JSON is canonicalised).")
@click.option("--response", "response_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The anchor's signature response (Plexi JSON).")
@click.option("--key", "key_ref", required=True, help="Operator key reference: file:PATH or pkcs11:...")
@click.option("--trust-root", "trust_root_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Take the trusted anchor keys (and threshold) from this trust root.")
@click.option("--anchor-key", "anchor_keys", multiple=True, help="A trusted anchor key (hex or vkey); repeatable.")
@click.option("--out", default="-", show_default=True, help="Where to write the bundle ('-': stdout).")
def countersign_cmd(keyset_path: Path, response_path: Path, key_ref: str, trust_root_path: Path | None,
                    anchor_keys: tuple[str, ...], out: str) -> None:
    """Check the anchor signature over exactly the requested statement, countersign, emit the bundle."""
    if (trust_root_path is None) == (not anchor_keys):
        raise click.UsageError("give either --trust-root or at least one --anchor-key")
    keys = [_parse_anchor_key(k) for k in anchor_keys]
    try:
        keyset = canonicalize_keyset(keyset_path.read_bytes())
        expected = ExpectedStatement.for_keyset(keyset)
        anchor = parse_anchor_response(parse_json_body(response_path.read_bytes(), "anchor response"))
        signer = load_signer(key_ref)
        now = int(time.time())
        if trust_root_path is not None:
            trust_root = load_trust_root(trust_root_path.read_bytes())
        else:
            trust_root = derived_trust_root(expected.namespace, keys, signer.public_key, now,
                                            parse_keyset(keyset).trust_root)
        csig = countersign(anchor.statement, anchor.signature, expected=expected, anchor_keys=trust_root.anchors,
                           signer=signer, keyset=keyset, key_ids=[anchor.key_id])
        anchors = verify_anchor_signatures(anchor.statement, [anchor.signature], trust_root.anchors, [anchor.key_id])
        bundle = build_bundle(anchor.statement, keyset, anchors, [(signer.public_key, csig)])
        verify_bundle(bundle, trust_root)
        if out == "-":
            sys.stdout.buffer.write(bundle + b"\n")
            sys.stdout.flush()
        else:
            write_atomically(Path(out), bundle)
    except _FAILURES as exc:
        _refused("countersign", exc)
    click.echo(f"countersigned {expected.namespace} epoch {expected.epoch} (digest {expected.digest.hex()})"
               + ("" if out == "-" else f"; bundle written to {out}"), err=True)


COMMANDS = [countersign_cmd, publish_cmd]
