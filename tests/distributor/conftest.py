"""Fixtures for the distributor tests: both storage backends, logs over them, fixed-seed worlds.

PostgreSQL tests use the server on 127.0.0.1:5432 (database ``test``; override with
``FLEETKEYS_TEST_PG``), each test in a fresh schema dropped afterwards. If the server is not reachable
they are skipped, except when ``CI`` is set: then they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from distributor.log import Log
from distributor.storage import Storage, open_storage
from tests.factory import World

PG_URL = os.environ.get("FLEETKEYS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, Any] = {}


def postgres_or_skip() -> None:
    """Skip (or, under CI, fail) when the PostgreSQL test server is unreachable."""
    if "error" not in _pg_state:
        try:
            import psycopg

            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_state["error"] = None
        except Exception as exc:  # any failure to reach the server
            _pg_state["error"] = f"{type(exc).__name__}: {exc}"
    if _pg_state["error"] is not None:
        message = f"PostgreSQL at {PG_URL} is not reachable: {_pg_state['error']}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Database:
    """A database for one test: ``url`` (+ ``schema`` for PostgreSQL); :meth:`open` gives a Storage."""

    kind: str
    url: str
    schema: str | None = None

    def open(self) -> Storage:
        return open_storage(self.url, schema=self.schema)

    @property
    def url_with_schema(self) -> str:
        """A URL that selects the schema by itself (for subprocesses and the CLI)."""
        if self.schema is None:
            return self.url
        return f"{self.url}?options=-csearch_path%3D{self.schema}"

    def execute(self, sql: str, params: tuple = ()) -> None:
        """Run raw SQL against the test's tables (used to tamper with the database)."""
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url[len("sqlite:///"):])
            conn.execute(sql, params)
            conn.commit()
            conn.close()
        else:
            import psycopg

            with psycopg.connect(self.url_with_schema, autocommit=True) as conn:
                conn.execute(sql.replace("?", "%s"), params)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> Iterator[Database]:
    """Each test using it runs once on SQLite and once on PostgreSQL (own schema)."""
    yield from _database(request.param, tmp_path)


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[Database]:
    yield from _database("sqlite", tmp_path)


@pytest.fixture
def pg_db(tmp_path) -> Iterator[Database]:
    yield from _database("postgres", tmp_path)


def _database(kind: str, tmp_path) -> Iterator[Database]:
    if kind == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path}/log.db")
        return
    postgres_or_skip()
    import psycopg

    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Database("postgres", PG_URL, schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def world() -> World:
    return World()


def make_log(storage: Storage, world: World, *, trust_root: bool = True, **kwargs: Any) -> Log:
    return Log(storage, origin=world.origin, log_signer=world.log, freshness_signer=world.freshness,
               trust_root=world.trust_root() if trust_root else None, **kwargs)


@pytest.fixture
def storage(db: Database) -> Iterator[Storage]:
    s = db.open()
    yield s
    s.close()


@pytest.fixture
def log(storage: Storage, world: World) -> Log:
    return make_log(storage, world)
