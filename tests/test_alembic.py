"""docs/storage.md's Alembic recipe, run for real: autogenerate a migration that creates our tables
next to a host app's own, upgrade an empty database with it, and use the result."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

# alembic is in the test extra: a missing install must fail here, not skip.
from alembic import command as alembic_command
from alembic import config as alembic_config

from tenant2fa import Keyring, TwoFactor
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
