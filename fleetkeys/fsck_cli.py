"""``fleetkeys fsck``: check a distributor database (and its static export) or a signer journal offline.

``fleetkeys fsck (--data DIR | --database URL [--schema S]) [--static DIR] [--journal PATH]``

The log checks are :mod:`distributor.fsck`, the journal checks :mod:`signer.fsck` (roles import no
other role, so this command wires both). It only reads. Exit status:

* ``0``: everything checked is consistent;
* ``1``: an inconsistency: each is printed (the entry index first when it concerns one), at most
  ``--max-problems``, then how many more there were;
* ``2``: something could not be read (no such database or file, not a fleetkeys log or journal, the
  database unreachable).

A progress bar (``rich``) is drawn on standard error only when it is a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from distributor.errors import DistributorError, IntegrityError
from distributor.fsck import DEFAULT_MAX_PROBLEMS, Progress, Report, fsck_log
from distributor.storage import open_storage
from signer.errors import SignerError
from signer.fsck import JournalReport, check_journal
from verifier.errors import VerificationError

EXIT_OK, EXIT_INCONSISTENT, EXIT_UNREADABLE = 0, 1, 2


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar("checking entries", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
             console=None) as bar:
        task = bar.add_task("entries", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def _print_log(report: Report, static: str | None) -> None:
    click.echo(f"{report.description}: tree size {report.size}, {report.entries} entries read")
    if static is not None:
        click.echo(f"{static}: exported size {report.exported}")
    _print_problems(report.problems, report.count)


def _print_journal(report: JournalReport) -> None:
    click.echo(f"journal {report.path}: {report.signatures} signatures read")
    _print_problems(report.problems, report.count)


def _print_problems(problems, count: int) -> None:
    for problem in problems:
        click.echo(f"  problem: {problem}")
    if count > len(problems):
        click.echo(f"  ... and {count - len(problems)} more problem(s)")
    click.echo("  ok" if count == 0 else f"  {count} problem(s)")


@click.command("fsck")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="A distributor data directory (its log.db).")
@click.option("--database", default=None, help="sqlite:///PATH or postgresql://... (instead of --data).")
@click.option("--schema", default=None, help="PostgreSQL schema of the log tables.")
@click.option("--static", "static_dir", default=None, type=click.Path(file_okay=False),
              help="Also check this static export against the database.")
@click.option("--journal", default=None, type=click.Path(dir_okay=False),
              help="Also (or only) check this anchor signer journal (journal.sqlite).")
@click.option("--max-problems", default=DEFAULT_MAX_PROBLEMS, show_default=True, type=click.IntRange(1, 100000),
              help="List at most this many problems of each kind of store.")
def fsck_cmd(data_dir: str | None, database: str | None, schema: str | None, static_dir: str | None,
             journal: str | None, max_problems: int) -> None:
    """Check a log database (every tile, entry, derived table, signature, checkpoint), its static
    export and a signer journal, offline. Exit 0 consistent, 1 inconsistent, 2 could not read."""
    if data_dir is not None and database is not None:
        raise click.UsageError("give --data or --database, not both")
    if data_dir is not None:
        database = f"sqlite:///{os.path.abspath(os.path.join(data_dir, 'log.db'))}"
        if not os.path.isfile(database[len("sqlite:///"):]):
            click.echo(f"Error: {data_dir} holds no log.db", err=True)
            sys.exit(EXIT_UNREADABLE)
    if database is None and journal is None:
        raise click.UsageError("give --data DIR, --database URL or --journal PATH")
    if static_dir is not None and database is None:
        raise click.UsageError("--static needs the database it was exported from (--data or --database)")
    status = EXIT_OK
    if database is not None:
        try:
            with open_storage(database, schema=schema) as storage, \
                    _progress_bar(sys.stderr.isatty()) as progress:
                report = fsck_log(storage, static_dir=static_dir, cap=max_problems, progress=progress)
        except IntegrityError as exc:  # nothing left to compare against: the head itself is wrong
            click.echo(f"{database}: {exc}\n  1 problem(s)")
            sys.exit(EXIT_INCONSISTENT)
        except (DistributorError, VerificationError, OSError) as exc:
            click.echo(f"Error: cannot check the log: {exc}", err=True)
            sys.exit(EXIT_UNREADABLE)
        _print_log(report, static_dir)
        if not report.ok:
            status = EXIT_INCONSISTENT
    if journal is not None:
        try:
            checked = check_journal(journal, cap=max_problems)
        except (SignerError, OSError) as exc:
            click.echo(f"Error: cannot check the journal: {exc}", err=True)
            sys.exit(EXIT_UNREADABLE)
        _print_journal(checked)
        if not checked.ok:
            status = EXIT_INCONSISTENT
    sys.exit(status)


COMMANDS = [fsck_cmd]

__all__ = ["COMMANDS", "EXIT_INCONSISTENT", "EXIT_OK", "EXIT_UNREADABLE", "fsck_cmd"]
