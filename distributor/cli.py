"""``fleetkeys serve`` and ``fleetkeys export``.

``fleetkeys serve [--config FILE] [--data DIR] [--database URL] [--host H] [--port P] [--workers N] ...``
    First start in an empty data directory creates ``log.key`` and ``freshness.key`` (mode 0600,
    unless ``--log-key``/``--freshness-key`` name existing keys), ``publish.token`` and, with the
    default SQLite database, ``log.db`` and ``static/``; it prints the origin and both verifier keys
    (put them in the trust root). Every start checks, before any worker serves a request, that the
    keys, origin and trust root belong to this log and that the stored tree matches the latest signed
    checkpoint; otherwise it prints why and exits with status 1. ``--config FILE`` reads the options
    from a TOML file (:data:`SERVE_SCHEMA`, each ``--witness`` a ``[[witness]]`` table with ``url`` and
    ``vkey``; README, "Configuration files"); flags given (or ``$FLEETKEYS_DATA``) beat it.

``fleetkeys export --database URL --out DIR [--follow] [--no-entry-objects]``
    Writes the static C2SP files of a log (normally a PostgreSQL log served by several replicas) into
    DIR, incrementally and idempotently (entry objects ``entry/<N>`` included unless
    ``--no-entry-objects``, and the trust-root objects ``trust-root/<version>``); ``--follow`` keeps
    polling. Its checkpoint file is the database's served checkpoint, which it renews (in the
    database, under the writer lock, like every replica) when it is older than the freshness
    interval: so it needs the log's freshness key (``--freshness-key`` or ``--data``) and a database
    user that may write (it also migrates an older schema before checking the log).

Both take ``--no-entry-objects`` (:data:`ENTRY_OBJECTS_HELP`): no ``entry/<N>`` files in the static
directory; clients then read entries from the entry bundles.

Stopping: ``serve`` stops on SIGTERM as :mod:`distributor.server` describes (in-flight requests get
8 s, the process is gone within 10 s; a second SIGTERM or SIGINT stops at once); a SIGTERM or SIGINT
before it serves (during its start-up check) stops it at once with ``Error: stopped by SIGTERM before
serving``. ``export --follow`` on SIGTERM or SIGINT finishes the sync in progress and exits 0 with
``export stopped on SIGTERM: ...``, within :data:`EXPORT_STOP_BOUND` seconds: a sync still running
then, or a second SIGTERM or SIGINT, ends it at once (exit 1; every file is written atomically and the
next export resumes from the checkpoint file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import click

from keys import check_config_key_ref
from serving import configfile
from verifier.atomicfile import create_exclusive

from .config import DEFAULT_ORIGIN, Config

DEFAULT_DATA = "fleetkeys-data"
ENTRY_OBJECTS_HELP = ("Do not write the per-entry objects entry/<N> (bundles/FORMAT.md §9.6) to the static directory; "
                      "clients then read entries from the entry bundles. With them on (the default) every entry is one "
                      "more fsync'd file: bulk appends are about 25x slower.")
#: Seconds ``export --follow`` gives the sync in progress after SIGTERM or SIGINT before it exits anyway.
EXPORT_STOP_BOUND = 10.0


def _stop_before_serving(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT before gunicorn takes over its signals: unwind (half-made files are removed)."""
    raise click.ClickException(f"stopped by {signal.Signals(signum).name} before serving")


class _StopRequest:
    """SIGTERM or SIGINT sets :attr:`event` (and :attr:`name`); a second one, or ``bound`` seconds
    without the process exiting, exits it at once.

    The signals only wake a watcher thread through :func:`signal.set_wakeup_fd` (written by the C-level
    handler even while the main thread is inside a long fsync or database call); the Python-level
    handlers do nothing, so nothing runs re-entrantly in the main thread.
    """

    def __init__(self, bound: float) -> None:
        self.bound = bound
        self.event = threading.Event()
        self.name: str | None = None
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(write_fd)
        threading.Thread(target=self._watch, name="fleetkeys-export-signals", daemon=True).start()

    @staticmethod
    def _say(line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            click.echo(line)
            sys.stdout.flush()

    def _watch(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._read_fd], [], [], timeout)[0]:
                self._say(f"export stopped: the sync in progress did not finish within {self.bound:g} s of "
                          f"{self.name}; exiting anyway (every file is written atomically: the next export "
                          "resumes from the checkpoint)")
                os._exit(1)
            for signum in os.read(self._read_fd, 64):
                if signum not in (signal.SIGTERM, signal.SIGINT):
                    continue
                name = signal.Signals(signum).name
                if self.name is not None:
                    self._say(f"export stopped at once on a second {name} (every file is written atomically: "
                              "the next export resumes from the checkpoint)")
                    os._exit(1)
                self.name, deadline = name, time.monotonic() + self.bound
                self._say(f"{name}: finishing the sync in progress, then stopping (at most {self.bound:g} s; "
                          "a second SIGTERM or SIGINT stops at once)")
                self.event.set()


def _ensure_key(ref: str | None, default_path: str, created: list[str], what: str) -> str:
    if ref is not None:
        return ref
    if not os.path.exists(default_path):
        from keys import generate_key_file

        generate_key_file(default_path)
        created.append(f"created {what} {default_path}")
    return default_path


def _stored_origin(database: str, schema: str | None) -> str | None:
    from .storage import open_storage

    with open_storage(database, schema=schema) as storage:
        if not storage.has_schema():
            return None
        with storage.read() as tx:
            return tx.meta("origin")


def _preflight(cfg: Config, origin_given: bool, created: list[str], listen: str) -> Config:
    """Create or open the log, run the full start-up self-check and print what is being served."""
    from keys import KeyBackendError
    from verifier.errors import VerificationError

    from .app import Service
    from .errors import DistributorError

    if not origin_given:
        cfg = replace(cfg, origin=_stored_origin(cfg.database, cfg.schema) or DEFAULT_ORIGIN)
    try:
        service = Service(cfg)
    except (DistributorError, ValueError, OSError, VerificationError, KeyBackendError) as exc:
        raise click.ClickException(f"refusing to start: {exc}") from exc
    try:
        head = service.log.head()  # opening the log ran the full start-up check (Log._open)
        info = service.log.info()
    except DistributorError as exc:
        raise click.ClickException(f"refusing to start: {exc}") from exc
    finally:
        service.close()
    for line in created:
        click.echo(line)
    version = info["trust_root_version"]
    click.echo(f"origin: {info['origin']}")
    click.echo(f"log vkey: {info['log_vkey']}")
    click.echo(f"freshness vkey: {info['freshness_vkey']}")
    click.echo(f"database: {service.storage.description} (tree size {head.size})")
    click.echo(f"static files: {cfg.static_dir or 'off (use fleetkeys export)'}")
    click.echo(f"publish token: {cfg.token_file}")
    click.echo(f"trust root: version {version}" if version is not None else
               "trust root: none (publishing is refused until --trust-root is given)")
    click.echo(f"listening: {listen}", nl=True)
    return cfg


def _run_isolated(fn: Any) -> Any:
    """Run ``fn()`` in a forked child and return its result (a string) or exit with its status.

    The start-up check loads keys (possibly PKCS#11) and opens the database; doing it in a child
    keeps the gunicorn master free of both, so every worker can load its own after the fork.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 1
        try:
            os.write(write_fd, fn().encode())
            code = 0
        except click.ClickException as exc:
            exc.show()
        except Exception as exc:  # any other failure still must not start the server
            click.echo(f"Error: refusing to start: {type(exc).__name__}: {exc}", err=True)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    chunks = []
    try:
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    except BaseException:  # stopped (SIGTERM, Ctrl-C) during the check: the child goes too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # it only ran crash-safe transactions and atomic writes
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(code if code > 0 else 1)
    return b"".join(chunks).decode()




def _check_witness_option(value: str) -> None:
    from .errors import LogConfigError
    from .witnessing import parse_witness_option

    try:
        parse_witness_option(value)
    except LogConfigError as exc:
        raise ValueError(str(exc)) from None


#: ``serve --config FILE``: its keys are the flags' names; each ``--witness`` is a ``[[witness]]`` table.
SERVE_SCHEMA = configfile.Schema(
    options=(
        configfile.Option("data", str, "data_dir"),
        configfile.Option("database", str, "database"),
        configfile.Option("schema", str, "schema"),
        configfile.Option("host", str, "host"),
        configfile.Option("port", int, "port"),
        configfile.Option("workers", int, "workers"),
        configfile.Option("threads", int, "threads"),
        configfile.Option("origin", str, "origin"),
        configfile.Option("log-key", str, "log_key", check=check_config_key_ref),
        configfile.Option("freshness-key", str, "freshness_key", check=check_config_key_ref),
        configfile.Option("trust-root", str, "trust_root_file"),
        configfile.Option("token-file", str, "token_file"),
        configfile.Option("static-dir", str, "static_dir"),
        configfile.Option("static", bool, "static"),
        configfile.Option("entry-objects", bool, "entry_objects"),
        configfile.Option("freshness-interval", float, "freshness_interval"),
        configfile.Option("witness-timeout", float, "witness_timeout"),
        configfile.Option("access-log", bool, "access_log"),
    ),
    tables=(
        configfile.Tables("witness", "witnesses", (configfile.Option("url", str), configfile.Option("vkey", str)),
                          to_flag=lambda t: f"{t['url']}={t['vkey']}", check=_check_witness_option),
    ),
)


@click.command("serve")
@configfile.config_option()
@click.option("--data", "data_dir", default=DEFAULT_DATA, show_default=True, envvar="FLEETKEYS_DATA",
              type=click.Path(file_okay=False), help="Data directory: keys, token, SQLite database, static files.")
@click.option("--database", default=None, help="sqlite:///PATH or postgresql://... [default: sqlite:///DATA/log.db]")
@click.option("--schema", default=None, help="PostgreSQL schema of the log tables.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64), help="Threads per worker.")
@click.option("--origin", default=None, help=f"Log origin (first start; default {DEFAULT_ORIGIN}, later: as stored).")
@click.option("--log-key", default=None, help="Log key reference (file: or pkcs11:) [default: DATA/log.key].")
@click.option("--freshness-key", default=None, help="Freshness key reference [default: DATA/freshness.key].")
@click.option("--trust-root", "trust_root_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Bootstrap trust root; without it, publishing is refused.")
@click.option("--token-file", default=None, help="Publish bearer token file [default: DATA/publish.token].")
@click.option("--static-dir", default=None, help="Where to write static tiles [default: DATA/static with SQLite].")
@click.option("--static/--no-static", default=True, show_default=True, help="Write static files (--no-static: none).")
@click.option("--entry-objects/--no-entry-objects", default=True, show_default=True, help=ENTRY_OBJECTS_HELP)
@click.option("--freshness-interval", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds between freshness cosignatures.")
@click.option("--witness", "witnesses", multiple=True, metavar="URL=VKEY",
              help="A witness to ask for cosignatures (repeatable): its base URL and cosignature vkey.")
@click.option("--witness-timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds one exchange with one witness may take.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request to stdout.")
def serve_cmd(config: Any, **given: Any) -> None:
    """Serve the log: checkpoint, tiles, publish and read API (gunicorn)."""
    _serve(**configfile.merge(config, SERVE_SCHEMA, given))


def _serve(data_dir: str, database: str | None, schema: str | None, host: str, port: int, workers: int,
           threads: int, origin: str | None, log_key: str | None, freshness_key: str | None,
           trust_root_file: str | None, token_file: str | None, static_dir: str | None, static: bool,
           entry_objects: bool, freshness_interval: float, witnesses: tuple[str, ...], witness_timeout: float,
           access_log: bool) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):  # until gunicorn installs its own (distributor.server)
        signal.signal(sig, _stop_before_serving)
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    created: list[str] = []
    try:
        log_key = _ensure_key(log_key, os.path.join(data_dir, "log.key"), created, "log key")
        freshness_key = _ensure_key(freshness_key, os.path.join(data_dir, "freshness.key"), created, "freshness key")
    except Exception as exc:
        raise click.ClickException(f"refusing to start: {exc}") from exc
    token_file = os.path.abspath(token_file or os.path.join(data_dir, "publish.token"))
    if not os.path.exists(token_file):
        create_exclusive(token_file, (secrets.token_urlsafe(32) + "\n").encode())
        created.append(f"created publish token {token_file}")
    is_sqlite = database is None or not database.startswith(("postgres://", "postgresql://"))
    database = database or f"sqlite:///{os.path.join(data_dir, 'log.db')}"
    if not static:
        static_dir = None
    elif static_dir is None and is_sqlite:
        static_dir = os.path.join(data_dir, "static")
    cfg = Config(database=database, schema=schema, origin=origin or DEFAULT_ORIGIN, log_key=log_key,
                 freshness_key=freshness_key, trust_root_file=trust_root_file, token_file=token_file,
                 static_dir=os.path.abspath(static_dir) if static_dir else None,
                 export_entry_objects=entry_objects, freshness_interval=freshness_interval,
                 witnesses=tuple(witnesses), witness_timeout=witness_timeout)
    listen = f"http://{host}:{port} ({workers} workers x {threads} threads)"
    origin_final = _run_isolated(lambda: _preflight(cfg, origin is not None, created, listen).origin)
    from .server import serve

    serve(replace(cfg, origin=origin_final), host=host, port=port, workers=workers, threads=threads,
          access_log=access_log)


@click.command("export")
@click.option("--database", required=True, help="postgresql://... or sqlite:///PATH of the log.")
@click.option("--schema", default=None, help="PostgreSQL schema of the log tables.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Static directory to write.")
@click.option("--follow", is_flag=True, help="Keep exporting new entries and renewing the freshness cosignature.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between polls with --follow.")
@click.option("--freshness-key", default=None, help="The log's freshness key reference [default: DATA/freshness.key].")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False), help="Data directory with the keys.")
@click.option("--freshness-interval", default=60.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--no-entry-objects", is_flag=True, help=ENTRY_OBJECTS_HELP)
def export_cmd(database: str, schema: str | None, out_dir: str, follow: bool, interval: float,
               freshness_key: str | None, data_dir: str | None, freshness_interval: float,
               no_entry_objects: bool) -> None:
    """Write the log's checkpoint, tiles, entry bundles, entry and trust-root objects as static files."""
    from keys import KeyBackendError, load_signer
    from verifier.errors import VerificationError
    from verifier.note import NoteVerifier

    from .errors import DistributorError, StorageError
    from .export import StaticWriter
    from .freshness import Freshness
    from .log import check_integrity
    from .storage import open_storage

    if freshness_key is None:
        if data_dir is None:
            raise click.UsageError("give --freshness-key REF or --data DIR (the checkpoint needs a freshness cosignature)")
        freshness_key = os.path.join(data_dir, "freshness.key")
    stop = _StopRequest(EXPORT_STOP_BOUND) if follow else None
    try:
        storage = open_storage(database, schema=schema)
        if not storage.has_schema():
            raise click.ClickException(f"{storage.description} holds no fleetkeys log")
        with storage.read() as tx:
            origin, log_vkey, freshness_vkey = tx.meta("origin"), tx.meta("log_vkey"), tx.meta("freshness_vkey")
        if origin is None or log_vkey is None:
            raise click.ClickException(f"{storage.description} holds no fleetkeys log")
        freshness = Freshness(origin, load_signer(freshness_key), interval=freshness_interval)
        if freshness.vkey != freshness_vkey:
            raise click.ClickException(f"{freshness_key} is not the freshness key of {origin!r} "
                                       f"({freshness.vkey} != {freshness_vkey})")
        log_key = NoteVerifier.from_vkey(log_vkey)
        storage.migrate()  # an older schema gets its new tables (and revocation marks) before the check
        check_integrity(storage, log_key)
        writer = StaticWriter(out_dir, log_key=log_key, freshness=freshness, entry_objects=not no_entry_objects)
        size = writer.sync(storage)
    except (DistributorError, OSError, KeyBackendError, VerificationError) as exc:
        raise click.ClickException(f"export failed: {exc}") from exc
    click.echo(f"exported {origin} size {size} to {os.path.abspath(out_dir)}")
    if not follow:
        storage.close()
        return
    assert stop is not None
    try:
        while not stop.event.wait(interval):
            try:
                new_size = writer.sync(storage)
            except StorageError as exc:
                click.echo(f"database unavailable, retrying: {exc}", err=True)
                continue
            except DistributorError as exc:
                raise click.ClickException(f"export stopped: {exc}") from exc
            if new_size != size:
                click.echo(f"exported size {new_size}")
                size = new_size
    finally:
        storage.close()
    click.echo(f"export stopped on {stop.name}: {origin} size {size} exported to {os.path.abspath(out_dir)}")


COMMANDS = [serve_cmd, export_cmd]

__all__ = ["COMMANDS", "export_cmd", "serve_cmd"]


# -- fleetkeys distributor recover (distributor.recover) -----------------------------------------------------------
@click.command("recover")
@click.option("--data", "data_dir", default=DEFAULT_DATA, show_default=True, envvar="FLEETKEYS_DATA",
              type=click.Path(file_okay=False), help="Data directory: keys and the SQLite database.")
@click.option("--database", default=None, help="sqlite:///PATH or postgresql://... [default: sqlite:///DATA/log.db]")
@click.option("--schema", default=None, help="PostgreSQL schema of the log tables.")
@click.option("--log-key", default=None, help="Log key reference (file: or pkcs11:) [default: DATA/log.key].")
@click.option("--freshness-key", default=None, help="Freshness key reference [default: DATA/freshness.key].")
@click.option("--from-static", "static_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="The log's static export directory (serve's DATA/static or export's --out).")
@click.option("--from", "mirror", default=None, metavar="URL", help="Base URL of a mirror of the log (tlog-tiles).")
def recover_cmd(data_dir: str, database: str | None, schema: str | None, log_key: str | None,
                freshness_key: str | None, static_dir: str | None, mirror: str | None) -> None:
    """Bring back the entries a database restored from an older backup lacks, from the export or a mirror.

    Only entries that give exactly the copy's checkpoint (verified under the log key) are appended, in
    one transaction under the log's rules; a fork or a damaged copy is refused and nothing is written.
    Run it with the distributor stopped, then start it (`serve` refuses a database behind its export).
    """
    from keys import KeyBackendError, load_signer
    from verifier.errors import VerificationError

    from .errors import DistributorError
    from .log import Log
    from .recover import directory_source, recover, url_source
    from .roots import Roots
    from .storage import open_storage

    if (static_dir is None) == (mirror is None):
        raise click.UsageError("give exactly one of --from-static DIR or --from URL")
    data_dir = os.path.abspath(data_dir)
    database = database or f"sqlite:///{os.path.join(data_dir, 'log.db')}"
    where = os.path.abspath(static_dir) if static_dir is not None else str(mirror)
    try:
        storage = open_storage(database, schema=schema)
        try:
            if not storage.has_schema():
                raise click.ClickException(f"{storage.description} holds no fleetkeys log")
            with storage.read() as tx:
                origin = tx.meta("origin")
                bootstrap = Roots().bootstrap(tx) if origin is not None else None  # kept as recorded
            if origin is None:
                raise click.ClickException(f"{storage.description} holds no fleetkeys log")
            log = Log(storage, origin=origin, recovering=True, trust_root=bootstrap,
                      log_signer=load_signer(log_key or os.path.join(data_dir, "log.key")),
                      freshness_signer=load_signer(freshness_key or os.path.join(data_dir, "freshness.key")))
            fetch = directory_source(static_dir) if static_dir is not None else url_source(str(mirror))
            done = recover(log, fetch, where=where)
        finally:
            storage.close()
    except (DistributorError, OSError, KeyBackendError, VerificationError) as exc:
        raise click.ClickException(f"not recovered: {exc}") from exc
    if done.count:
        click.echo(f"recovered entries {done.start}..{done.size - 1} from {where}: {origin} is at size {done.size} "
                   f"with root {done.root.hex()}, as {where} signed; run fleetkeys fsck, then start it")
    else:
        click.echo(f"nothing to recover: {origin} (size {done.size}) already holds the tree of {where}")


COMMANDS.append(recover_cmd)
__all__ += ["recover_cmd"]
