"""The SQLAlchemy backend where every transaction is SERIALIZABLE, and on CockroachDB's dialect.

CockroachDB runs every transaction at SERIALIZABLE and answers a conflict with a serialization
failure (SQLSTATE 40001) that the client must retry; PostgreSQL does the same at that level. So
the whole conformance suite runs here against PostgreSQL with ``default_transaction_isolation``
set to serializable (for single statements outside BEGIN too), which makes the concurrency tests
meet real serialization failures; the backend must retry them, a bounded number of times.

Every statement the backend runs during the suite is also compiled with the
``sqlalchemy-cockroachdb`` dialect (a compile test: no CockroachDB server runs here), and the
backend must recognise that dialect as one of PostgreSQL's family (it is named ``cockroachdb``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy_cockroachdb.psycopg import CockroachDBDialect_psycopg

from db_backends import empty_tables, server_url
from tenant2fa.storage import Storage
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage, factors, metadata
from tenant2fa.testing.conformance import StorageConformance

_COCKROACH = CockroachDBDialect_psycopg()
_engine: sa.Engine | None = None
_compile_errors: list[str] = []


def _serializable_engine() -> sa.Engine:
    global _engine  # noqa: PLW0603 - one engine (and pool) for the module's tests
    if _engine is None:
        url = sa.make_url(server_url("postgresql"))
        options = f"{url.query.get('options', '')} -cdefault_transaction_isolation=serializable"
        _engine = sa.create_engine(
            url.update_query_dict({"options": options.strip()}), pool_size=10, max_overflow=70
        )

        @sa.event.listens_for(_engine, "before_execute")
        def _compile_for_cockroach(
            _conn: Any,
            element: Any,
            *_args: Any,
        ) -> None:
            if isinstance(element, sa.sql.ClauseElement):
                try:
                    element.compile(dialect=_COCKROACH)
                except sa.exc.SQLAlchemyError as exc:
                    _compile_errors.append(f"{type(exc).__name__}: {exc}")

    return _engine


class TestSQLAlchemyOnPostgreSQLSerializable(StorageConformance):
    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        engine = _serializable_engine()
        with engine.connect() as conn:
            level = conn.exec_driver_sql("SHOW default_transaction_isolation").scalar()
        assert level == "serializable"
        empty_tables(engine)
        _compile_errors.clear()
        yield SQLAlchemyStorage(engine)
        assert _compile_errors == []


def test_the_schema_compiles_for_cockroachdb() -> None:
    statements: list[str] = []

    def collect(sql: Any, *_args: Any, **_kwargs: Any) -> None:
        statements.append(str(sql.compile(dialect=_COCKROACH)))

    metadata.create_all(sa.create_mock_engine("cockroachdb+psycopg://", collect), checkfirst=False)
    assert any(s.lstrip().startswith("CREATE TABLE t2fa_factors") for s in statements)


def test_the_cockroachdb_dialect_is_taken_for_postgresql_not_sqlite() -> None:
    # No server is needed: the engine does not connect until it is used.
    engine = sa.create_engine("cockroachdb+psycopg://root@127.0.0.1:26257/defaultdb")
    storage = SQLAlchemyStorage(engine)
    insert = storage._insert_missing_factor("bob")
    sql = str(insert.compile(dialect=engine.dialect))
    assert "ON CONFLICT" in sql
    assert "OR IGNORE" not in sql
    assert factors.name in sql
