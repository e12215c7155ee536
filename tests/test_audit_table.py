"""The audit table (schema version 5): lean, since every login appends to it.

What it keeps is what ``audit_log``'s queries use, shown here by the query plans SQLite chooses:
the integer key (the rowid, without AUTOINCREMENT), an index by tenant and one by time. Record
ids are kept but not indexed, nor are users and actors. A file at version 4 has its rows moved
into the lean table; a database the SQLAlchemy backend made at version 4 loses the indexes and
the unique constraint that version 5 no longer keeps when ``create_schema()`` runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from db_backends import empty_server_engine
from tenant2fa.audit import AuditKind, AuditQuery, new_audit_record
from tenant2fa.clock import UTC
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage, meta
from tenant2fa.storage.sqlite import _MIGRATIONS, SCHEMA_VERSION, SQLiteStorage

T0 = datetime(2026, 5, 1, tzinfo=UTC)
LEAN_INDEXES = {"t2fa_audit_by_tenant", "t2fa_audit_by_time"}


def _indexes(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA index_list(t2fa_audit)")}


def _plan(storage: SQLiteStorage, query: AuditQuery) -> list[str]:
    """SQLite's plan for the statement ``audit_records(query)`` runs."""
    executed: list[str] = []
    storage.set_trace_callback(executed.append)
    storage.audit_records(query)
    storage.set_trace_callback(None)
    (select,) = [sql for sql in executed if sql.lstrip().upper().startswith("SELECT")]
    with closing(sqlite3.connect(storage.path)) as conn:
        return [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + select)]


@pytest.fixture
def big_log(tmp_path: Path) -> Iterator[SQLiteStorage]:
    """A log of 20,000 records over 50 tenants and 1,000 users."""
    storage = SQLiteStorage(tmp_path / "log.sqlite3")
    storage.schema_version()
    with closing(sqlite3.connect(storage.path)) as conn, conn:
        conn.executemany(
            "INSERT INTO t2fa_audit (record_id, at, kind, tenant_id, user_id, actor_id, detail) "
            "VALUES (?, ?, 'code_accepted', ?, ?, NULL, '{}')",
            [(f"r{i}", i, f"t{i % 50}", f"u{i % 1000}") for i in range(20_000)],
        )
        conn.execute("ANALYZE")
    yield storage
    storage.close()


def test_a_new_file_keeps_only_the_lean_indexes(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "new.sqlite3")
    assert storage.schema_version() == SCHEMA_VERSION == 5
    with closing(sqlite3.connect(storage.path)) as conn:
        assert _indexes(conn) == LEAN_INDEXES
        create = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 't2fa_audit'"
        ).fetchone()[0]
    assert "AUTOINCREMENT" not in create.upper()
    assert "UNIQUE" not in create.upper()
    storage.close()


def test_a_tenants_log_is_read_through_its_index_in_order(big_log: SQLiteStorage) -> None:
    plan = _plan(big_log, AuditQuery(tenant_id="t7", limit=100))
    assert any("t2fa_audit_by_tenant" in step for step in plan), plan
    assert not any(step.strip() == "SCAN t2fa_audit" for step in plan), plan
    since = T0 - timedelta(days=1)
    plan = _plan(big_log, AuditQuery(tenant_id="t7", since=since, kinds=frozenset(AuditKind)))
    assert any("t2fa_audit_by_tenant" in step for step in plan), plan


def test_the_whole_log_is_read_by_time_through_its_index(big_log: SQLiteStorage) -> None:
    for query in (AuditQuery(limit=100), AuditQuery(since=T0, until=T0 + timedelta(hours=1))):
        plan = _plan(big_log, query)
        assert any("t2fa_audit_by_time" in step for step in plan), plan
        assert not any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan


def test_a_version_4_file_has_its_log_moved_into_the_lean_table(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE t2fa_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statements in _MIGRATIONS[:4]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("INSERT INTO t2fa_meta VALUES ('schema_version', '4')")
        # Rows as version 4 left them: AUTOINCREMENT keys with a gap, times out of key order.
        conn.executemany(
            "INSERT INTO t2fa_audit (seq, record_id, at, kind, tenant_id, user_id, actor_id, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (3, "r3", 2_000, "member_added", "acme", "bob", "olga", '{"role": "member"}'),
                (7, "r7", 1_000, "code_accepted", "acme", "bob", None, "{}"),
                (9, "r9", 3_000, "locked_out", None, "ann", None, '{"failures": "5"}'),
            ],
        )
        assert _indexes(conn) >= {"t2fa_audit_by_user", "t2fa_audit_by_actor"}
    storage = SQLiteStorage(path)
    assert storage.schema_version() == 5
    records = storage.audit_records(AuditQuery())
    assert [r.record_id for r in records] == ["r7", "r3", "r9"]
    assert dict(records[1].detail) == {"role": "member"}
    assert [r.record_id for r in storage.audit_records(AuditQuery(user_id="olga"))] == ["r3"]
    with closing(sqlite3.connect(path)) as conn:
        assert _indexes(conn) == LEAN_INDEXES
        assert conn.execute("SELECT seq FROM t2fa_audit ORDER BY seq").fetchall() == [
            (3,),
            (7,),
            (9,),
        ]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_sequence")}
        assert "t2fa_audit" not in names
        assert [r[2] for r in conn.execute("PRAGMA index_info(t2fa_memberships_by_role)")] == [
            "tenant_id",
            "role",
            "user_id",
        ]
    # New records come after the moved ones, in the same order as before.
    late = new_audit_record(AuditKind.CODE_ACCEPTED, at=datetime(1970, 1, 1, tzinfo=UTC))
    storage.append_audit(late)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT max(seq), record_id FROM t2fa_audit").fetchone() == (
            10,
            late.record_id,
        )
    storage.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_create_schema_drops_what_version_5_no_longer_keeps(kind: str) -> None:
    with empty_server_engine(kind) as engine:
        storage = SQLAlchemyStorage(engine)
        storage.create_schema()
        # What version 4 made: indexes by user and by actor, unique record ids.
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE INDEX t2fa_audit_by_user ON t2fa_audit (user_id, at)")
            conn.exec_driver_sql("CREATE INDEX t2fa_audit_by_actor ON t2fa_audit (actor_id, at)")
            conn.exec_driver_sql(
                "ALTER TABLE t2fa_audit ADD CONSTRAINT t2fa_audit_record_id_key UNIQUE (record_id)"
            )
            conn.execute(meta.update().values(value="4"))
        record = new_audit_record(AuditKind.CODE_ACCEPTED, at=T0, user_id="bob")
        storage.append_audit(record)
        storage.create_schema()
        inspector = sa.inspect(engine)
        assert {i["name"] for i in inspector.get_indexes("t2fa_audit")} == LEAN_INDEXES
        assert inspector.get_unique_constraints("t2fa_audit") == []
        assert storage.schema_version() == 5
        assert storage.audit_records(AuditQuery()) == [record]


def test_a_factor_row_written_by_an_older_release_still_moves_its_revision(
    tmp_path: Path,
) -> None:
    """An older process writing the file during a rolling restart (it knows no revision): its
    update moves the revision all the same, so a decision made before it is refused."""
    storage = SQLiteStorage(tmp_path / "rolling.sqlite3")
    assert storage.schema_version() == 5
    with closing(sqlite3.connect(storage.path)) as conn, conn:
        conn.execute("INSERT INTO t2fa_factors (user_id, revision) VALUES ('bob', 1)")
    before = storage.get_factor("bob")
    with closing(sqlite3.connect(storage.path)) as conn, conn:
        # What the release before version 4 ran to accept a code.
        conn.execute(
            "UPDATE t2fa_factors SET last_step = 99, failures = 0 WHERE user_id = 'bob' "
            "AND epoch = 0 AND last_step < 99"
        )
    after = storage.get_factor("bob")
    assert (after.last_step, after.revision) == (99, before.revision + 1)
    storage.close()
