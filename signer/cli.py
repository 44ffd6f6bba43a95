"""``fleetkeys signer``: set up and run the anchor signer.

    fleetkeys signer init  --data DIR [--namespace NS ...] [--ciphersuite 1|2] [--key REF] [--key-name NAME]
    fleetkeys signer serve --data DIR [--key REF] [--host 127.0.0.1] [--port 8090] [--workers 1] [--threads 4]
    fleetkeys signer token --data DIR --name NAME (--namespace NS ... | --admin)

``init`` and the first ``serve`` create DIR, ``DIR/signer.json``, an admin and a write token in
``DIR/tokens/*.token`` (mode 0600; tokens are never printed or taken from argv) and, when no
``--key`` is given, the anchor key ``DIR/anchor.key``. ``serve`` never creates namespaces: use
``init --namespace`` or ``POST /namespaces`` with the admin token.

Test-only fault hook: with ``FLEETKEYS_SIGNER_CRASH_AFTER_COMMIT=1`` in its environment, ``serve``
SIGKILLs itself (master and worker) right after committing a new signature to the journal and before
answering. It exists only so tests can prove a crash there loses nothing; never set it otherwise.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from verifier.keys import KeyBackendError, load_signer
from verifier.note import NoteVerifier

from .config import ConfigError, add_token, default_key_ref, init_data_dir, load_config, now_ms
from .journal import Journal, JournalError
from .rules import STATUS_ONLINE, Refusal
from .wire import check_namespace_name

CRASH_ENV = "FLEETKEYS_SIGNER_CRASH_AFTER_COMMIT"

_data_option = click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                            help="Signer data directory (configuration, journal, default key).")
_key_option = click.option("--key", "key_ref", default=None,
                           help="Anchor key reference: file:PATH or pkcs11:... (default file:DATA/anchor.key).")
_key_name_option = click.option("--key-name", default="anchor", show_default=True,
                                help="Key name used when printing the anchor's C2SP verifier key.")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _describe_key(public_key: bytes, key_name: str) -> None:
    click.echo(f"anchor public key: {public_key.hex()} (key_id {public_key[-1]})")
    click.echo(f"anchor vkey:       {NoteVerifier.from_public_key(key_name, public_key).vkey}")


def _prepare(data_dir: Path, key_ref: str | None) -> None:
    result = init_data_dir(data_dir, key_ref)
    if result.created_config:
        click.echo(f"created {data_dir / 'signer.json'}")
    for path in result.token_files:
        click.echo(f"wrote token {path} (mode 0600)")
    if result.generated_key is not None:
        click.echo(f"generated anchor key {data_dir / 'anchor.key'} (mode 0600)")


@click.group("signer")
def signer_group() -> None:
    """The anchor signer (third party): Plexi-compatible signing service with a journal."""


@signer_group.command("init")
@_data_option
@click.option("--namespace", "namespaces", multiple=True, help="Create this namespace (Online); repeatable.")
@click.option("--ciphersuite", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="Ciphersuite of the namespaces created: 1 protobuf, 2 bincode.")
@_key_option
@_key_name_option
def init_cmd(data_dir: Path, namespaces: tuple[str, ...], ciphersuite: str, key_ref: str | None,
             key_name: str) -> None:
    """Create the data directory, tokens, key and namespaces (idempotent, non-interactive)."""
    try:
        for ns in namespaces:
            check_namespace_name(ns)
    except Refusal as exc:
        raise click.BadParameter(exc.reason, param_hint="--namespace") from None
    try:
        _prepare(data_dir, key_ref)
        signer = load_signer(key_ref or default_key_ref(data_dir))
        _describe_key(signer.public_key, key_name)
        journal = Journal(data_dir / "journal.sqlite")
        for ns in namespaces:
            _, created = journal.create_namespace(ns, ciphersuite=int(ciphersuite), status=STATUS_ONLINE,
                                                  log_directory=None, now_ms=now_ms(), client="init")
            click.echo(f"namespace {ns}: {'created' if created else 'exists'} (ciphersuite {ciphersuite})")
        journal.close()
    except (ConfigError, KeyBackendError, JournalError, OSError) as exc:
        _fail(str(exc))
    except Refusal as exc:
        _fail(exc.reason)


@signer_group.command("token")
@_data_option
@click.option("--name", required=True, help="Token name (file DATA/tokens/NAME.token).")
@click.option("--namespace", "namespaces", multiple=True, help="Namespace the write token may sign in ('*': all).")
@click.option("--admin", is_flag=True, help="Make an admin token instead of a write token.")
def token_cmd(data_dir: Path, name: str, namespaces: tuple[str, ...], admin: bool) -> None:
    """Add a bearer token (written to a 0600 file, its hash to signer.json). Restart the signer after."""
    if admin == bool(namespaces):
        raise click.UsageError("give either --admin or at least one --namespace")
    try:
        path = add_token(data_dir, name, "admin" if admin else "write", namespaces)
    except (ConfigError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"wrote token {path} (mode 0600); restart the signer to use it")


@signer_group.command("serve")
@_data_option
@_key_option
@_key_name_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256), help="Threads per worker.")
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
def serve_cmd(data_dir: Path, key_ref: str | None, key_name: str, host: str, port: int, workers: int, threads: int,
              access_log: bool) -> None:
    """Serve the signer API under gunicorn until interrupted."""
    from .server import SignerServer

    try:
        _prepare(data_dir, key_ref)
        ref = key_ref or default_key_ref(data_dir)
        if not ref.startswith("pkcs11:"):
            # A file key is checked here, before forking; a PKCS#11 key is opened in each worker only
            # (its session would not survive the fork), so its errors show in the worker's log.
            _describe_key(load_signer(ref).public_key, key_name)
        overrides = {}
        if os.environ.get(CRASH_ENV) == "1":
            master = os.getpid()

            def crash() -> None:  # test-only: see the module docstring
                os.kill(master, signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

            overrides["after_commit"] = crash
            click.echo(f"WARNING: {CRASH_ENV}=1: test-only crash hook armed", err=True)
        config = load_config(data_dir, ref, **overrides)
    except (ConfigError, KeyBackendError, OSError) as exc:
        _fail(str(exc))
    sys.stdout.flush()
    SignerServer(config, host=host, port=port, workers=workers, threads=threads, access_log=access_log).run()


COMMANDS = [signer_group]
