"""Storage: the :class:`Storage` protocol of atomic domain operations, and its backends.

- :class:`tenant2fa.storage.memory.MemoryStorage`: in-process, thread-safe; for tests, demos and
  single-process apps (state is lost on restart, which resets replay and throttle state).
- :class:`tenant2fa.storage.sqlite.SQLiteStorage`: the embedded default, standard library only.
- :class:`tenant2fa.storage.sqlalchemy.SQLAlchemyStorage`: PostgreSQL, MariaDB/MySQL, SQLite.
"""

from __future__ import annotations

from tenant2fa.storage.base import (
    FactorCommit,
    FactorRecord,
    LoginState,
    SealedSecrets,
    Storage,
)

__all__ = [
    "FactorCommit",
    "FactorRecord",
    "LoginState",
    "SealedSecrets",
    "Storage",
    "open_storage",
]


def open_storage(location: str) -> Storage:
    """A backend for ``location``: a SQLAlchemy URL (``postgresql+psycopg://...``,
    ``mysql+pymysql://...``), ``sqlite:///path`` or a plain file path (both: the stdlib SQLite
    backend), or ``memory:`` (in-process, for tests). Imports the backend only when needed."""
    if location == "memory:":
        from tenant2fa.storage.memory import MemoryStorage  # noqa: PLC0415

        return MemoryStorage()
    scheme, sep, rest = location.partition("://")
    if not sep or scheme == "sqlite":
        from tenant2fa.storage.sqlite import SQLiteStorage  # noqa: PLC0415

        return SQLiteStorage(rest[1:] if sep else location)
    from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage  # noqa: PLC0415

    return SQLAlchemyStorage(location)
