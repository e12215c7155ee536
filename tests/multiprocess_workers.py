"""Code that runs in worker processes of tests/test_multiprocess.py (importable by spawn)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tenant2fa import Config, Keyring, RecoveryCodeHasher, TwoFactor
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock

_services: dict[tuple[str, str, str], TwoFactor] = {}

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


def service(kind: str, where: str, key: str, now: str) -> TwoFactor:
    """A TwoFactor on the shared database, one per process and database, at the fixed ``now``."""
    cached = _services.get((kind, where, key))
    if cached is None:
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
