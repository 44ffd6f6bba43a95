"""``fleetkeys witness``: run a C2SP tlog-witness and manage its key.

    fleetkeys witness serve  [--config FILE] --name NAME --key REF --data DIR --log ORIGIN=VKEY [--log ...]
                             [--host 127.0.0.1] [--port 8095] [--workers 1] [--threads 4] [--access-log]
    fleetkeys witness keygen --name NAME --out PATH     a new Ed25519 key file (0600); prints its 0x04 vkey
    fleetkeys witness vkey   --name NAME --key REF      prints the 0x04 vkey of an existing key (file or HSM)

``serve`` prints the witness's verifier key (type 0x04, named NAME) before it starts; give that vkey
to the logs' clients (a trust root's ``witnesses``). Options are described in :mod:`witness.config`;
``serve --config FILE`` reads them from a TOML file (:data:`SERVE_SCHEMA`, each ``--log`` a ``[[log]]``
table with ``origin`` and ``vkey``; README, "Configuration files"), and flags given beat it.
Key references never take ``pin-value=`` (a PIN in argv is visible in ``/proc/<pid>/cmdline``): use
``pin-source=`` or ``$FLEETKEYS_PKCS11_PIN``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from keys import KeyBackendError, check_config_key_ref, check_no_pin_value, generate_key_file, load_signer
from serving import configfile
from verifier.errors import VerificationError
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier, is_valid_name

from .config import WitnessConfig, parse_log_options, prepare_data_dir
from .errors import WitnessConfigError, WitnessError

_name_option = click.option("--name", required=True,
                            help="The witness's key name (e.g. witness.example/w1): its cosignature lines and vkey.")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _check_name(name: str) -> None:
    if not is_valid_name(name):
        raise click.BadParameter("a key name is non-empty, with no '+' and no white space", param_hint="--name")


@click.group("witness")
def witness_group() -> None:
    """A C2SP tlog-witness: cosigns log checkpoints proven consistent with what it cosigned before."""




def _check_name_value(name: str) -> None:
    if not is_valid_name(name):
        raise ValueError("a key name is non-empty, with no '+' and no white space")


def _check_log_option(value: str) -> None:
    try:
        parse_log_options([value])
    except WitnessConfigError as exc:
        raise ValueError(str(exc)) from None


#: ``witness serve --config FILE``: its keys are the flags' names; each ``--log`` is a ``[[log]]`` table.
SERVE_SCHEMA = configfile.Schema(
    options=(
        configfile.Option("name", str, "name", check=_check_name_value),
        configfile.Option("key", str, "key_ref", check=check_config_key_ref),
        configfile.Option("data", str, "data_dir"),
        configfile.Option("host", str, "host"),
        configfile.Option("port", int, "port"),
        configfile.Option("workers", int, "workers"),
        configfile.Option("threads", int, "threads"),
        configfile.Option("access-log", bool, "access_log"),
    ),
    tables=(
        configfile.Tables("log", "log_options", (configfile.Option("origin", str), configfile.Option("vkey", str)),
                          to_flag=lambda t: f"{t['origin']}={t['vkey']}", check=_check_log_option),
    ),
    required=("name", "key_ref", "data_dir", "log_options"),
)


@click.command("witness-serve")
@configfile.config_option()
@click.option("--name", default=None,
              help="The witness's key name (e.g. witness.example/w1): its cosignature lines and vkey.")
@click.option("--key", "key_ref", default=None, help="Witness key reference: file:PATH or pkcs11:...")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Data directory (the state, witness.sqlite).")
@click.option("--log", "log_options", multiple=True, metavar="ORIGIN=VKEY",
              help="A log to witness: its origin line and a trusted Ed25519 (type 0x01) vkey; repeatable.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8095, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256), help="Threads per worker.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request to stderr.")
def serve_cmd(config: Path | None, **given: object) -> None:
    """Serve POST /add-checkpoint (and GET / with the witness's vkey) under gunicorn until interrupted.

    --name, --key, --data and at least one --log are required: as flags or in the --config file."""
    options = configfile.merge(config, SERVE_SCHEMA, given)
    serve(options.pop("name"), options.pop("key_ref"), options.pop("data_dir"), options.pop("log_options"), **options)


def serve(name: str, key_ref: str, data_dir: Path, log_options: tuple[str, ...] | list[str], *,
          host: str = "127.0.0.1", port: int = 8095, workers: int = 1, threads: int = 4, access_log: bool = False,
          after_commit: Callable[[], None] | None = None) -> None:
    """What ``fleetkeys witness serve`` does. ``after_commit`` is the test-only fault hook of
    :class:`witness.config.WitnessConfig`; the CLI never sets it (only ``tests/witness/crashing_witness.py`` does)."""
    from .server import WitnessServer

    try:
        config = WitnessConfig(name=name, data_dir=data_dir, logs=parse_log_options(log_options), key_ref=key_ref,
                               after_commit=after_commit)
        prepare_data_dir(data_dir)
        check_no_pin_value(key_ref)
        if not key_ref.startswith("pkcs11:"):
            # A file key is checked here, before forking; a PKCS#11 key is opened in each worker only
            # (its session would not survive the fork), so its errors show in the worker's log.
            click.echo(f"witness vkey: {config.verifier_for(load_signer(key_ref).public_key).vkey}")
        for origin, keys in sorted(config.logs.items()):
            click.echo(f"witnessing {origin}: {', '.join(k.vkey for k in keys)}")
    except (WitnessError, KeyBackendError) as exc:
        _fail(str(exc))
    sys.stdout.flush()
    WitnessServer(config, host=host, port=port, workers=workers, threads=threads, access_log=access_log).run()


@click.command("witness-keygen")
@_name_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Private key file to create (PKCS#8 PEM, mode 0600; never overwritten).")
def keygen_cmd(name: str, out: Path) -> None:
    """Create a new witness key file and print its verifier key (type 0x04, tlog-cosignature v1)."""
    _check_name(name)
    try:
        public_key = generate_key_file(out)
    except (KeyBackendError, VerificationError) as exc:
        _fail(str(exc))
    click.echo(NoteVerifier.from_public_key(name, public_key, ALG_COSIGNATURE_V1).vkey)
    click.echo(f"wrote {out} (mode 0600); public key {public_key.hex()}", err=True)


@click.command("witness-vkey")
@_name_option
@click.option("--key", "key_ref", required=True, help="Witness key reference: file:PATH or pkcs11:...")
def vkey_cmd(name: str, key_ref: str) -> None:
    """Print the verifier key (type 0x04) of an existing witness key."""
    _check_name(name)
    try:
        check_no_pin_value(key_ref)
        public_key = load_signer(key_ref).public_key
    except (KeyBackendError, VerificationError) as exc:
        _fail(str(exc))
    click.echo(NoteVerifier.from_public_key(name, public_key, ALG_COSIGNATURE_V1).vkey)


for _command in (serve_cmd, keygen_cmd, vkey_cmd):
    witness_group.add_command(_command, _command.name.removeprefix("witness-"))

#: For ``fleetkeys.cli``'s ``witness`` group: the names carry a ``witness-`` prefix so that none of
#: them takes the place of another role's top-level short form (``serve``).
COMMANDS = [serve_cmd, keygen_cmd, vkey_cmd]
