"""docs/storage.md's Alembic recipe, run for real: autogenerate a migration that creates our tables
next to a host app's own, upgrade an empty database with it, and use the result."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

# alembic is in the test extra: a missing install must fail here, not skip.
from alembic import command as alembic_command
from alembic import config as alembic_config

from db_backends import server_url, sqlalchemy_server_storage
from tenant2fa import Keyring, TwoFactor
from tenant2fa.audit import AuditKind, AuditQuery, new_audit_record
from tenant2fa.clock import UTC
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage, metadata

ENV_PY = """
import sqlalchemy as sa
from alembic import context

from tenant2fa.storage.sqlalchemy import alembic_render_item
from tenant2fa.storage.sqlalchemy import metadata as tenant2fa_metadata

host_metadata = sa.MetaData()
sa.Table("users", host_metadata, sa.Column("id", sa.Integer, primary_key=True))

target_metadata = [host_metadata, tenant2fa_metadata]

engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=alembic_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""


def test_alembic_autogenerates_and_applies_our_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    scripts = tmp_path / "migrations"
    ini = tmp_path / "alembic.ini"
    alembic_command.init(alembic_config.Config(str(ini)), str(scripts))
    config = alembic_config.Config(str(ini))
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", url)
    (scripts / "env.py").write_text(ENV_PY, encoding="utf-8")

    alembic_command.revision(config, message="tenant2fa", autogenerate=True)
    (migration,) = (scripts / "versions").glob("*.py")
    text = migration.read_text(encoding="utf-8")
    for table in metadata.tables:
        assert f"'{table}'" in text or f'"{table}"' in text
    alembic_command.upgrade(config, "head")

    engine = sa.create_engine(url)
    names = set(sa.inspect(engine).get_table_names())
    assert set(metadata.tables) | {"users", "alembic_version"} <= names
    storage = SQLAlchemyStorage(engine)
    tf = TwoFactor(storage=storage, keyring=Keyring.generate())
    tf.create_tenant("A", name="A", owner_id="alice")
    assert tf.tenant("A").name == "A"
    engine.dispose()


def test_alembic_autogenerates_the_move_to_the_lean_audit_table(tmp_path: Path) -> None:
    """A database at schema version 4 (PostgreSQL, through the host's own Alembic history):
    autogenerate finds the two audit indexes and the unique constraint version 5 no longer
    keeps, and the upgrade drops them and keeps every record."""
    url = server_url("postgresql")
    scripts = tmp_path / "migrations"
    ini = tmp_path / "alembic.ini"
    alembic_command.init(alembic_config.Config(str(ini)), str(scripts))
    config = alembic_config.Config(str(ini))
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    (scripts / "env.py").write_text(ENV_PY, encoding="utf-8")
    engine = sa.create_engine(url)
    storage = sqlalchemy_server_storage("postgresql")
    record = new_audit_record(AuditKind.CODE_ACCEPTED, at=datetime(2026, 5, 1, tzinfo=UTC))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE INDEX t2fa_audit_by_user ON t2fa_audit (user_id, at)")
            conn.exec_driver_sql("CREATE INDEX t2fa_audit_by_actor ON t2fa_audit (actor_id, at)")
            conn.exec_driver_sql(
                "ALTER TABLE t2fa_audit ADD CONSTRAINT t2fa_audit_record_id_key UNIQUE (record_id)"
            )
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY)")
        storage.append_audit(record)
        alembic_command.stamp(config, "base")
        alembic_command.revision(config, message="tenant2fa 5", autogenerate=True)
        (migration,) = (scripts / "versions").glob("*.py")
        text = migration.read_text(encoding="utf-8")
        assert "drop_index(op.f('t2fa_audit_by_user')" in text
        assert "drop_index(op.f('t2fa_audit_by_actor')" in text
        assert "drop_constraint(op.f('t2fa_audit_record_id_key')" in text
        alembic_command.upgrade(config, "head")
        inspector = sa.inspect(engine)
        indexes = {i["name"] for i in inspector.get_indexes("t2fa_audit")}
        assert indexes == {"t2fa_audit_by_tenant", "t2fa_audit_by_time"}
        assert inspector.get_unique_constraints("t2fa_audit") == []
        assert storage.audit_records(AuditQuery()) == [record]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            conn.exec_driver_sql("DROP TABLE IF EXISTS users")
        engine.dispose()
