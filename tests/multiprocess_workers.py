"""Code that runs in worker processes of tests/test_multiprocess.py (importable by spawn)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tenant2fa import Config, Keyring, RecoveryCodeHasher, Role, Tenant2FAError, TwoFactor
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock

_services: dict[tuple[str, str, str], TwoFactor] = {}

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


def service(kind: str, where: str, key: str, now: str) -> TwoFactor:
    """A TwoFactor on the shared database, one per process and database, at the fixed ``now``.

    Only the newest one is kept: the connections of an earlier test's one are closed, so that
    16 workers running test after test stay within the servers' connection limits (PostgreSQL
    allows 100 by default).
    """
    cached = _services.get((kind, where, key))
    if cached is None:
        _close_services()
        storage: Any = SQLiteStorage(where) if kind == "sqlite" else SQLAlchemyStorage(where)
        cached = TwoFactor(
            storage=storage,
            keyring=Keyring.from_strings([key]),
            clock=FakeClock(),
            config=CONFIG,
        )
        _services[(kind, where, key)] = cached
    clock = cached.clock
    assert isinstance(clock, FakeClock)
    clock.set(datetime.fromisoformat(now))
    return cached


def _close_services() -> None:
    for tf in _services.values():
        if isinstance(tf.storage, SQLiteStorage):
            tf.storage.close()
        elif isinstance(tf.storage, SQLAlchemyStorage):
            tf.storage.engine.dispose()
    _services.clear()


def attempt(
    kind: str,
    where: str,
    key: str,
    now: str,
    sealed_login: str,
    action: str,
    codes: list[str],
    barrier: Any,
) -> list[str]:
    """Wait for every worker, then submit ``codes`` one after another; returns the reasons."""
    tf = service(kind, where, key, now)
    login = tf.open_session(sealed_login)
    barrier.wait(timeout=60)
    reasons = []
    for code in codes:
        if action == "verify":
            result = tf.verify_code(login, "B", code)
        else:
            result = tf.use_recovery_code(login, "B", code)
        reasons.append(result.reason.value)
    return reasons


def act_on_owner(
    kind: str,
    where: str,
    key: str,
    now: str,
    tenant_id: str,
    actor_id: str,
    target_id: str,
    action: str,
    barrier: Any,
) -> str:
    """Wait for every worker, then have owner ``actor_id`` remove owner ``target_id`` from the
    tenant (``action == "remove"``) or make them an admin (``"demote"``), through the service.

    Returns ``"ok"``, or the name of the error the service raised.
    """
    try:
        tf = service(kind, where, key, now)
        tf.members(tenant_id)  # the connection is open before the race starts
    except BaseException:
        barrier.abort()  # the other workers fail now instead of waiting for this one
        raise
    barrier.wait(timeout=60)
    try:
        if action == "remove":
            tf.remove_member(tenant_id, target_id, actor_id=actor_id)
        else:
            tf.set_role(tenant_id, target_id, Role.ADMIN, actor_id=actor_id)
    except Tenant2FAError as exc:
        return type(exc).__name__
    return "ok"
