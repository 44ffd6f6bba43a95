"""``fleetkeys signer``: set up and run the anchor signer.

    fleetkeys signer init  --data DIR [--namespace NS ...] [--ciphersuite 1|2] [--mode keyset|digest]
                           [--key REF] [--key-name NAME]
    fleetkeys signer serve [--config FILE] --data DIR [--key REF] [--host 127.0.0.1] [--port 8090] [--workers 1]
                           [--threads 4] [--access-log]
    fleetkeys signer token --data DIR --name NAME (--namespace NS ... | --admin)

``init`` and the first ``serve`` create DIR, ``DIR/signer.json``, an admin and a write token in
``DIR/tokens/*.token`` (mode 0600; tokens are never printed or taken from argv) and, when no
``--key`` is given, the anchor key ``DIR/anchor.key``. ``serve`` never creates namespaces: use
``init --namespace`` or ``POST /namespaces`` with the admin token. Namespaces are created in
``keyset`` mode (signed only through ``POST /api/v1/sign-keyset``) unless ``--mode digest`` asks for
pure Plexi compatibility (the digest-only path, where the signer cannot check the chain).

``serve --config FILE`` reads its options from a TOML file (:data:`SERVE_SCHEMA`; README,
"Configuration files"); flags given on the command line beat it. The tokens stay in ``DIR/signer.json``
(hashes, written by ``init`` and ``token``, never by hand): the file only names DIR.

Key references given here never take ``pin-value=`` (a PIN in argv is visible in
``/proc/<pid>/cmdline``): use ``pin-source=`` or ``$FLEETKEYS_PKCS11_PIN``.

``serve`` stops on SIGTERM as :mod:`signer.server` describes (in-flight requests get 8 s, the process
is gone within 10 s; a second SIGTERM or SIGINT stops at once); a SIGTERM or SIGINT before it serves
stops it at once with ``Error: stopped by SIGTERM before serving``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from keys import KeyBackendError, check_config_key_ref, check_no_pin_value, load_signer
from serving import configfile
from verifier.note import NoteVerifier

from .config import add_token, default_key_ref, init_data_dir, load_config, now_ms
from .errors import JournalError, Refusal, SignerConfigError
from .journal import Journal
from .rules import MODE_KEYSET, MODES, STATUS_ONLINE
from .wire import check_namespace_name

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
@click.option("--mode", type=click.Choice(list(MODES)), default=MODE_KEYSET, show_default=True,
              help="Mode of the namespaces created: keyset (only POST /api/v1/sign-keyset, which checks the "
                   "chain) or digest (also Plexi's digest-only path, for pure Plexi compatibility).")
@_key_option
@_key_name_option
def init_cmd(data_dir: Path, namespaces: tuple[str, ...], ciphersuite: str, mode: str, key_ref: str | None,
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
                                                  log_directory=None, now_ms=now_ms(), client="init", mode=mode)
            click.echo(f"namespace {ns}: {'created' if created else 'exists'} (ciphersuite {ciphersuite}, "
                       f"mode {mode})")
        journal.close()
    except (SignerConfigError, KeyBackendError, JournalError, OSError) as exc:
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
    except (SignerConfigError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"wrote token {path} (mode 0600); restart the signer to use it")




#: ``serve --config FILE``: its keys are the flags' names (serving.configfile).
SERVE_SCHEMA = configfile.Schema(
    options=(
        configfile.Option("data", str, "data_dir"),
        configfile.Option("key", str, "key_ref", check=check_config_key_ref),
        configfile.Option("key-name", str, "key_name"),
        configfile.Option("host", str, "host"),
        configfile.Option("port", int, "port"),
        configfile.Option("workers", int, "workers"),
        configfile.Option("threads", int, "threads"),
        configfile.Option("access-log", bool, "access_log"),
        configfile.Option("metrics-port", int, "metrics_port"),
        configfile.Option("metrics-host", str, "metrics_host"),
    ),
    required=("data_dir",),
)


@signer_group.command("serve")
@configfile.config_option()
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Signer data directory (configuration, journal, default key). Required: here or in --config.")
@_key_option
@_key_name_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256), help="Threads per worker.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request to stderr.")
@click.option("--metrics-port", default=None, type=click.IntRange(1, 65535),
              help="Serve /metrics, /healthz and /readyz on this second port (not on the API port).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of the metrics listener (keep it private: loopback or a monitoring network).")
def serve_cmd(config: Path | None, **given: object) -> None:
    """Serve the signer API under gunicorn until interrupted."""
    options = configfile.merge(config, SERVE_SCHEMA, given)
    serve(options.pop("data_dir"), options.pop("key_ref"), **options)


def _stop_before_serving(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT before gunicorn takes over its signals: unwind (half-made files are removed)."""
    raise click.ClickException(f"stopped by {signal.Signals(signum).name} before serving")


def serve(data_dir: Path, key_ref: str | None, *, key_name: str = "anchor", host: str = "127.0.0.1", port: int = 8090,
          workers: int = 1, threads: int = 4, access_log: bool = False, metrics_port: int | None = None,
          metrics_host: str = "127.0.0.1", after_commit: Callable[[], None] | None = None) -> None:
    """What ``fleetkeys signer serve`` does. ``after_commit`` is the test-only fault hook of
    :class:`signer.config.SignerConfig`; the CLI never sets it (only ``tests/signer/crashing_signer.py`` does)."""
    from .server import SignerServer

    for sig in (signal.SIGTERM, signal.SIGINT):  # until gunicorn installs its own (signer.server)
        signal.signal(sig, _stop_before_serving)
    try:
        _prepare(data_dir, key_ref)
        ref = key_ref or default_key_ref(data_dir)
        if ref.startswith("pkcs11:"):
            # Parsed here so a PIN in argv is refused before forking (parse_pkcs11_uri reads no PIN).
            check_no_pin_value(ref)
        else:
            # A file key is checked here, before forking; a PKCS#11 key is opened in each worker only
            # (its session would not survive the fork), so its errors show in the worker's log.
            _describe_key(load_signer(ref).public_key, key_name)
        config = load_config(data_dir, ref, after_commit=after_commit)
    except (SignerConfigError, KeyBackendError, OSError) as exc:
        _fail(str(exc))
    sys.stdout.flush()
    SignerServer(config, host=host, port=port, workers=workers, threads=threads, access_log=access_log,
                 metrics_port=metrics_port, metrics_host=metrics_host).run()


COMMANDS = [signer_group]

__all__ = ["COMMANDS", "SERVE_SCHEMA", "serve", "signer_group"]
