"""What a login costs the database, counted: statements and transactions on SQLite, protocol
round trips on PostgreSQL. These are deterministic, so they are tests (times are benchmarks:
benchmarks/run.py), and they fail if an operation grows.

- The stdlib SQLite backend: ``login_step`` is one statement and no transaction (one statement is
  a snapshot by itself); ``verify_code`` that statement plus one write transaction, for a right
  code, a wrong one and the wrong one that locks the user out alike; ``start_session`` one write
  transaction.
- PostgreSQL through SQLAlchemy (counted by a TCP proxy between them): ``login_step`` one round
  trip, ``verify_code`` two (the read; the write as one statement, outside BEGIN and COMMIT),
  ``start_session`` one. No connection is pinged before use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from db_backends import server_url, sqlalchemy_server_storage
from tcp_proxy import TcpProxy
from tenant2fa import Config, Keyring, TwoFactor
from tenant2fa.audit import AuditKind
from tenant2fa.results import Reason
from tenant2fa.session import LoginSession
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for
from tenant2fa.throttle import ThrottleRules

# Three free failures, then a wait: the third wrong code carries the lockout notice.
CONFIG = Config(throttle=ThrottleRules(free_failures=3))


def _service(storage: Any) -> TwoFactor:
    return TwoFactor(storage=storage, keyring=Keyring.generate(), clock=FakeClock(), config=CONFIG)


def _enrolled(tf: TwoFactor) -> LoginSession:
    """Bob, enrolled in tenant B that requires 2FA; a fresh login of his."""
    clock = tf.clock
    assert isinstance(clock, FakeClock)
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    tf.add_member("B", "bob", operator="host")
    clock.advance(seconds=1)
    login = tf.start_session("bob")
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, "bob")).ok
    clock.advance(seconds=30)
    return tf.start_session("bob")


@dataclass
class _Work:
    """The statements one operation ran on SQLite, split into reads outside a transaction and
    transactions."""

    loose: list[str] = field(default_factory=list)
    transactions: list[list[str]] = field(default_factory=list)
    _open: list[str] | None = None
    _last: str = ""

    def trace(self, sql: str) -> None:
        # SQLite reports a trigger's program (the factor row's revision trigger, whose
        # condition our writes never meet) as the statement that fired it, once more.
        if sql == self._last:
            return
        self._last = sql
        word = sql.lstrip().split(None, 1)[0].upper()
        if word == "BEGIN":
            self._open = [sql]
        elif self._open is not None:
            self._open.append(sql)
            if word in ("COMMIT", "ROLLBACK"):
                self.transactions.append(self._open)
                self._open = None
        else:
            self.loose.append(sql)

    def writes(self) -> list[list[str]]:
        return [t for t in self.transactions if "IMMEDIATE" in t[0].upper()]


def _on_sqlite(storage: SQLiteStorage, operation: Any) -> _Work:
    work = _Work()
    storage.set_trace_callback(work.trace)
    try:
        operation()
    finally:
        storage.set_trace_callback(None)
    return work


def test_a_login_on_sqlite_is_one_read_and_one_write_transaction(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "rt.sqlite3")
    tf = _service(storage)
    login = _enrolled(tf)
    clock = tf.clock
    assert isinstance(clock, FakeClock)

    step = _on_sqlite(storage, lambda: tf.login_step(login, "B"))
    assert len(step.loose) == 1, step
    assert step.transactions == []

    started = _on_sqlite(storage, lambda: tf.start_session("bob"))
    assert started.loose == []
    assert len(started.transactions) == len(started.writes()) == 1

    code = code_for(tf, "bob")
    right = _on_sqlite(storage, lambda: tf.verify_code(login, "B", code))
    wrong: list[_Work] = []
    for _ in range(3):
        clock.advance(seconds=1)
        wrong.append(_on_sqlite(storage, lambda: tf.verify_code(login, "B", "000000")))
    assert tf.user_status("bob").locked  # the third wrong code locked him out
    for work in (right, *wrong):
        assert len(work.loose) == 1, work
        assert len(work.transactions) == len(work.writes()) == 1, work
    # The write that locks him out holds the failure, both audit records and the notice.
    (lockout,) = wrong[-1].transactions
    assert [sql.split(None, 3)[:3] for sql in lockout[1:-1]] == [
        ["UPDATE", "t2fa_factors", "SET"],
        ["INSERT", "INTO", "t2fa_audit"],
        ["INSERT", "INTO", "t2fa_audit"],
        ["INSERT", "OR", "IGNORE"],
    ]
    # A locked user's attempt is one read and writes nothing.
    refused = _on_sqlite(storage, lambda: tf.verify_code(login, "B", "000000"))
    assert (len(refused.loose), refused.transactions) == (1, [])
    storage.close()


def test_a_login_on_postgresql_is_two_round_trips() -> None:
    url = sa.make_url(server_url("postgresql"))
    sqlalchemy_server_storage("postgresql")  # empty tables (skips without a server)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 0))
    engine = sa.create_engine(url.set(host="127.0.0.1", port=proxy.port))
    try:
        tf = _service(SQLAlchemyStorage(engine))
        login = _enrolled(tf)
        clock = tf.clock
        assert isinstance(clock, FakeClock)

        def round_trips(operation: Any) -> int:
            proxy.round_trips = 0
            operation()
            return proxy.round_trips

        def story() -> list[int]:
            """Bob's login step, a new session, a right code, three wrong ones (the third locks
            him out), and a refused one; the round trips of each. Then an owner unlocks him."""
            counts = [
                round_trips(lambda: tf.login_step(login, "B")),
                round_trips(lambda: tf.start_session("bob")),
            ]
            clock.advance(seconds=30)
            code = code_for(tf, "bob")  # reads the secret: not part of what is counted
            counts.append(round_trips(lambda: tf.verify_code(login, "B", code)))
            for _ in range(3):
                clock.advance(seconds=1)
                counts.append(round_trips(lambda: tf.verify_code(login, "B", "000000")))
            assert tf.user_status("bob").locked
            result = tf.verify_code(login, "B", "000000")
            assert result.reason is Reason.LOCKED
            assert tf.unlock("B", "bob", actor_id="olga")
            return counts

        # psycopg prepares a statement on the server the fifth time it runs it (one more round
        # trip, once): count once every statement is past that.
        for _ in range(6):
            story()
        assert story() == [1, 1, 2, 2, 2, 2]
    finally:
        engine.dispose()
        proxy.close()


@pytest.mark.parametrize("kind", ["postgresql"])
def test_no_connection_is_pinged_before_use(kind: str) -> None:
    storage = SQLAlchemyStorage(server_url(kind))
    assert not storage.engine.pool._pre_ping
    storage.engine.dispose()


def test_a_sign_in_writes_nothing_when_the_host_turns_its_audit_off(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "quiet.sqlite3")
    quiet = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        clock=FakeClock(),
        config=dataclasses.replace(CONFIG, audit_sessions=False),
    )
    quiet.create_tenant("B", name="Tenant B", owner_id="olga")
    started = _on_sqlite(storage, lambda: quiet.start_session("bob"))
    assert (started.loose, started.transactions) == ([], [])
    kinds = frozenset({AuditKind.SESSION_STARTED})
    assert quiet.audit_log(kinds=kinds) == []
    # The default audits it, in its one write.
    loud = _service(storage)
    loud.start_session("bob")
    assert [r.user_id for r in loud.audit_log(kinds=kinds)] == ["bob"]
    storage.close()


def test_a_write_whose_reply_is_lost_is_not_decided_again_on_postgresql() -> None:
    """The write commits, then the connection drops before its answer arrives: the backend
    runs it again, finds the revision moved by its own write, and must answer that it landed,
    not make the operation decide again (a right code would be called a replay, and an
    enrollment activated with recovery codes nobody was shown)."""
    import psycopg

    url = server_url("postgresql")
    sqlalchemy_server_storage("postgresql")  # empty tables (skips without a server)
    engine = sa.create_engine(url)
    storage = SQLAlchemyStorage(engine)
    tf = _service(storage)
    clock = tf.clock
    assert isinstance(clock, FakeClock)
    armed = {"statement": False, "commit": False}

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _drop_after_statement(_c: Any, cursor: Any, sql: str, *_a: Any) -> None:
        if armed["statement"] and sql.startswith("WITH t2fa_written"):
            armed["statement"] = False
            cursor.connection.close()  # autocommit: it has committed; the answer is lost
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    real_commit = engine.dialect.do_commit

    def _drop_after_commit(dbapi_connection: Any) -> None:
        real_commit(dbapi_connection)
        if armed["commit"]:
            armed["commit"] = False
            dbapi_connection.dbapi_connection.close()  # the pool's wrapper: close the real one
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    engine.dialect.do_commit = _drop_after_commit  # type: ignore[method-assign]
    try:
        tf.create_tenant("B", name="Tenant B", owner_id="olga")
        tf.add_member("B", "bob", operator="host")
        clock.advance(seconds=1)
        login = tf.start_session("bob")
        tf.begin_enrollment(login)
        armed["commit"] = True  # an enrollment writes in a transaction: lose COMMIT's answer
        confirmed = tf.confirm_enrollment(login, pending_code_for(tf, "bob"))
        assert confirmed.ok
        assert len(confirmed.recovery_codes) == tf.config.recovery_code_count
        assert not armed["commit"]

        clock.advance(seconds=60)
        fresh = tf.start_session("bob")
        code = code_for(tf, "bob")
        armed["statement"] = True  # a code is one statement: lose its answer
        assert tf.verify_code(fresh, "B", code).ok
        assert not armed["statement"]
        assert tf.user_status("bob").failures == 0
        reasons = [r.detail.get("reason") for r in tf.audit_log(user_id="bob")]
        assert "replayed" not in reasons
        assert not tf.verify_code(fresh, "B", code).ok  # and it is still used once only
    finally:
        engine.dispose()
