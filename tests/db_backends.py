"""Durable backends for tests: a SQLite file, and SQLAlchemy on PostgreSQL, MariaDB and SQLite.

PostgreSQL and MariaDB tests run against real servers. Their URLs come from
``TENANT2FA_TEST_POSTGRES_URL`` and ``TENANT2FA_TEST_MYSQL_URL``; without those variables the local
defaults below are tried, and a server that does not answer makes its tests skip with a one-line
reason. When a variable is set (as CI does), an unreachable server fails the tests instead.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage, metadata
from tenant2fa.storage.sqlite import SQLiteStorage

DEFAULT_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
ENV_VARS = {
    "postgresql": "TENANT2FA_TEST_POSTGRES_URL",
    "mariadb": "TENANT2FA_TEST_MYSQL_URL",
}
SERVER_KINDS = ("postgresql", "mariadb")

_engines: dict[str, sa.Engine] = {}
_urls: dict[str, str] = {}

# Each test run works in a namespace of its own (a PostgreSQL schema, a MariaDB database), so two
# runs on one machine (a developer's and CI's, say) never see each other's rows.
_NAMESPACE = f"t2fa_test_{os.getpid()}"


def server_url(kind: str) -> str:
    """The URL of a real database server for tests, or skip if none is configured or answers."""
    if kind in _urls:
        return _urls[kind]
    configured = os.environ.get(ENV_VARS[kind])
    base = sa.make_url(configured or DEFAULT_URLS[kind])
    admin = sa.create_engine(base, pool_pre_ping=True)
    try:
        with admin.begin() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {_NAMESPACE} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {_NAMESPACE}")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {_NAMESPACE}")
                conn.exec_driver_sql(f"CREATE DATABASE {_NAMESPACE}")
    except sa.exc.OperationalError as exc:
        if configured:
            pytest.fail(f"{ENV_VARS[kind]} is set but {kind} does not answer: {exc.orig}")
        pytest.skip(f"{kind} not reachable at {base}; set {ENV_VARS[kind]} to test it")
    finally:
        admin.dispose()
    if kind == "postgresql":
        url = base.update_query_dict({"options": f"-csearch_path={_NAMESPACE}"})
    else:
        url = base.set(database=_NAMESPACE)
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=70)
    SQLAlchemyStorage(engine).create_schema()
    _engines[kind] = engine
    _urls[kind] = url.render_as_string(hide_password=False)
    atexit.register(_drop_namespace, kind, base)
    return _urls[kind]


def _drop_namespace(kind: str, base: sa.URL) -> None:
    _engines[kind].dispose()
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            what = "SCHEMA" if kind == "postgresql" else "DATABASE"
            tail = " CASCADE" if kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP {what} IF EXISTS {_NAMESPACE}{tail}")
    finally:
        admin.dispose()


def server_engine(kind: str) -> sa.Engine:
    server_url(kind)
    return _engines[kind]


@contextmanager
def empty_server_engine(kind: str) -> Iterator[sa.Engine]:
    """An engine on a namespace of its own with no tables at all, dropped afterwards: for tests
    that build an older schema, which the shared namespace must never be left with."""
    server_url(kind)  # skips, or fails, as every test of this server does
    base = sa.make_url(os.environ.get(ENV_VARS[kind]) or DEFAULT_URLS[kind])
    namespace = f"{_NAMESPACE}_empty"
    what, tail = ("SCHEMA", " CASCADE") if kind == "postgresql" else ("DATABASE", "")
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP {what} IF EXISTS {namespace}{tail}")
            conn.exec_driver_sql(f"CREATE {what} {namespace}")
        if kind == "postgresql":
            url = base.update_query_dict({"options": f"-csearch_path={namespace}"})
        else:
            url = base.set(database=namespace)
        engine = sa.create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP {what} IF EXISTS {namespace}{tail}")
        admin.dispose()


def empty_tables(engine: sa.Engine) -> None:
    """Delete every row of our tables but the schema version (children first)."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "t2fa_meta":
                conn.execute(table.delete())


def sqlalchemy_server_storage(kind: str) -> SQLAlchemyStorage:
    engine = server_engine(kind)
    empty_tables(engine)
    return SQLAlchemyStorage(engine)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "tenant2fa.sqlite3"


@pytest.fixture(params=["memory", "sqlite", "sqlalchemy-sqlite", *SERVER_KINDS])
def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Every backend, fresh and empty: for tests that must hold on all of them."""
    kind: str = request.param
    if kind == "memory":
        from tenant2fa.storage.memory import MemoryStorage

        yield MemoryStorage()
    elif kind == "sqlite":
        storage = SQLiteStorage(tmp_path / "t.sqlite3")
        yield storage
        storage.close()
    elif kind == "sqlalchemy-sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'sa.sqlite3'}")
        sa_storage = SQLAlchemyStorage(engine)
        sa_storage.create_schema()
        yield sa_storage
        engine.dispose()
    else:
        yield sqlalchemy_server_storage(kind)
