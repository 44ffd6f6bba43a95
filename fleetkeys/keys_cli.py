"""``fleetkeys keygen``: create an Ed25519 key file and print its C2SP verifier key."""

from __future__ import annotations

import os
import sys

import click

from keys import DEFAULT_PASSPHRASE_ENV, KeyBackendError, generate_key_file
from verifier.errors import VerificationError
from verifier.note import ALG_COSIGNATURE_V1, ALG_ED25519, NoteVerifier

PASSPHRASE_ENV = DEFAULT_PASSPHRASE_ENV


@click.command("keygen")
@click.option("--name", required=True, help="Key name for the verifier key (e.g. anchor.example.org).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Private key file to create (0600).")
@click.option("--cosigner", is_flag=True, help="Print a type 0x04 (tlog-cosignature v1) vkey, for witness/freshness keys.")
@click.option("--encrypt", is_flag=True,
              help=f"Encrypt the key with the passphrase in ${PASSPHRASE_ENV} (never taken from the command line).")
def keygen_cmd(name: str, out: str, cosigner: bool, encrypt: bool) -> None:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) and print its verifier key."""
    passphrase = None
    if encrypt:
        value = os.environ.get(PASSPHRASE_ENV)
        if not value:
            raise click.UsageError(f"--encrypt needs the passphrase in ${PASSPHRASE_ENV}")
        passphrase = value.encode()
    try:
        public_key = generate_key_file(out, passphrase=passphrase)
        vkey = NoteVerifier.from_public_key(name, public_key, ALG_COSIGNATURE_V1 if cosigner else ALG_ED25519).vkey
    except (KeyBackendError, VerificationError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(vkey)
    click.echo(f"wrote {out} (mode 0600); public key {public_key.hex()}", err=True)


COMMANDS = [keygen_cmd]
