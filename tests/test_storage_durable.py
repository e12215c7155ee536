"""The storage conformance suite on every durable backend.

SQLite through the standard library (a real file), and SQLAlchemy on SQLite, PostgreSQL and
MariaDB (real servers; see db_backends.py for how they are found).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from db_backends import sqlalchemy_server_storage
from tenant2fa.storage import Storage
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing.conformance import StorageConformance


class TestSQLiteFile(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        backend = SQLiteStorage(tmp_path / "conformance.sqlite3")
        yield backend
        backend.close()


class TestSQLiteInMemory(StorageConformance):
    """``":memory:"``: one shared connection, so every thread sees the same database."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        backend = SQLiteStorage(":memory:")
        yield backend
        backend.close()


class TestSQLAlchemyOnSQLite(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'conformance.sqlite3'}")
        backend = SQLAlchemyStorage(engine)
        backend.create_schema()
        yield backend
        engine.dispose()


class TestSQLAlchemyOnPostgreSQL(StorageConformance):
    @pytest.fixture
    def storage(self) -> Storage:
        return sqlalchemy_server_storage("postgresql")


class TestSQLAlchemyOnMariaDB(StorageConformance):
    @pytest.fixture
    def storage(self) -> Storage:
        return sqlalchemy_server_storage("mariadb")
