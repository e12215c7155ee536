"""Extreme and ill-typed inputs into every public call of ``TwoFactor``, on every backend.

Issue 10, item 6 ("Bounded inputs everywhere"): whatever a host passes, and whatever an earlier
call stored, a call returns a result or raises a :class:`~tenant2fa.Tenant2FAError`; never an
OverflowError, TypeError, UnicodeEncodeError, KeyError or a database driver's error, which a web
app turns into a 500. And the service keeps working afterwards: a normal user of the same backend
still signs in with a code.

Why a state machine rather than ``@given`` tests of one call each: the failures that hurt most are
not in the call that takes an extreme value but in the later calls that read what it stored (an
enormous grace period once broke ``login_step`` in every tenant of a member, on every request).
So the machine interleaves the calls that store extreme values (ids of 255 four-byte characters,
activations, pending enrollments and lockouts at the year 1 or at 9999-12-31T23:59:59.999999) with
the calls that read them, moves the clock to the ends of datetime's range and backwards in
between, and shrinks a failure to the shortest sequence of calls that shows it.

Each argument is usually a value the call should accept (the ids, logins, sealed tokens and codes
the service handed out, ids at the 255-character bound), so that calls get past their first check
and store something; one time in three it is extreme, malformed or of the wrong type. No database
fails here, so a StorageError (into which a backend turns whatever its driver raises) is a failure
too: it means a backend choked on a value the service should have refused.

The backends are those of ``any_backend``; each example starts on empty storage. Example counts
are modest: the whole file runs in under a minute. The tests after the machine pin down, one
by one, what it found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from db_backends import any_backend, empty_tables  # noqa: F401 - a fixture
from tenant2fa import (
    AuditKind,
    AuditQuery,
    Config,
    ConfigurationError,
    EnrollmentResult,
    EnrollmentState,
    InMemoryNotifier,
    InvalidInput,
    InvalidSession,
    Keyring,
    LoginSession,
    MemoryStorage,
    Notification,
    NotificationKind,
    Provisioning,
    Reason,
    RecoveryCodeHasher,
    Role,
    RotationReport,
    Step,
    StepKind,
    Storage,
    StorageError,
    Tenant2FAError,
    TwoFactor,
    VerifyResult,
    totp,
)
from tenant2fa.clock import UTC, later, require_utc
from tenant2fa.notify import render
from tenant2fa.outbox import DeliveryRules, OutboxState
from tenant2fa.policy import check_identifier
from tenant2fa.recovery import normalize_recovery_code
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for
from tenant2fa.testing import strategies as t2st

_T = TypeVar("_T")
_S = st.SearchStrategy

START = datetime(2026, 1, 1, tzinfo=UTC)
CANARY_TENANT, CANARY_OWNER, CANARY_USER = "canary-tenant", "canary-owner", "canary-user"
CANARY_IDS = (CANARY_TENANT, CANARY_OWNER, CANARY_USER)
LONG_TENANT, LONG_NAME, LONG_USER = "\u00e9" * 255, "\U0001f600" * 255, "\U0001f600" * 255
CHEAP = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


def mostly(usual: _S[Any], odd: _S[Any]) -> _S[Any]:
    """``usual`` two times in three, else ``odd``; shrinks towards ``usual``.

    (``st.one_of`` would flatten the many branches of ``odd`` in beside ``usual``.)
    """
    return st.sampled_from((usual, usual, odd)).flatmap(lambda chosen: chosen)


def _not_canary(value: object) -> bool:
    return not (isinstance(value, str) and value in CANARY_IDS)


NOT_TEXT: tuple[object, ...] = (None, True, 0, 2**64, 1.5, b"x", ["x"], {"x": 1}, object())
ODD_IDS = t2st.hostile_identifiers().filter(_not_canary)
# Ids every call accepts, at the edges: one character, 255 of one, two and four UTF-8 bytes each.
EDGE_IDS = st.sampled_from(
    ["a", "a" * 255, "\u00e9" * 255, "\U0001f600" * 255, " leading", "colon:id", "\u0130stanbul"]
)
NEW_IDS = st.one_of(t2st.user_ids(), EDGE_IDS).filter(_not_canary)
NAMES = mostly(
    st.sampled_from(["Acme", "A" * 255, "\U0001f600" * 255, "\u00dcn\u00efc\u00f6d\u00e9"]), ODD_IDS
)
METHODS = mostly(
    st.sampled_from(["password", "google", "m" * 64, "\U0001f600" * 64]),
    st.sampled_from(["", "m" * 65, "pass\x00word", "\ud800", "a\nb", *NOT_TEXT]),
)
ROLES = mostly(
    st.sampled_from(Role), st.sampled_from(["owner", "OWNER", None, 0, AuditKind.KEYS_ROTATED])
)
BOOLEANS = mostly(st.booleans(), st.sampled_from([1, 0, "yes", "False", None, 1.0]))
NOT_TIMEDELTAS = st.sampled_from([90, 1.5, "1 day", True, START, START.date()])
GRACE_PERIODS = mostly(
    st.one_of(
        st.none(),
        st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(days=90)]),
        st.timedeltas(timedelta(0), timedelta(days=90)),
    ),
    st.one_of(t2st.extreme_timedeltas(), NOT_TIMEDELTAS),
)
MAX_AGES = mostly(
    st.one_of(
        st.none(),
        st.sampled_from([timedelta(0), timedelta(hours=12), timedelta.max]),
        st.timedeltas(min_value=timedelta(0)),
    ),
    st.one_of(t2st.extreme_timedeltas(), NOT_TIMEDELTAS),
)
ODD_COUNTS = st.one_of(
    st.sampled_from([-1, 2**63, 2**64, -(2**63), True, False, 1.5, float("inf"), "10", None]),
    st.integers(),
)
PAGE_NUMBERS = mostly(st.one_of(st.integers(0, 1000), st.just(2**63 - 1)), ODD_COUNTS)
BATCHES = mostly(st.integers(1, 10_000), st.one_of(st.sampled_from([0, 10_001]), ODD_COUNTS))
AWKWARD_ZONE = timezone(timedelta(hours=14))
AUDIT_TIMES = mostly(
    st.one_of(st.none(), t2st.extreme_datetimes()),
    st.one_of(
        st.datetimes(),  # naive
        # Aware, in a zone where the ends of the range have no UTC equivalent.
        st.sampled_from(
            [datetime.min.replace(tzinfo=AWKWARD_ZONE), datetime.max.replace(tzinfo=AWKWARD_ZONE)]
        ),
        st.sampled_from(["2026-01-01", 0, START.date()]),
    ),
)
AUDIT_KINDS = mostly(
    st.one_of(
        st.none(),
        st.frozensets(st.sampled_from(AuditKind)),
        st.lists(st.sampled_from(AuditKind), max_size=3),
    ),
    st.sampled_from(["code_accepted", frozenset({"code_accepted"}), AuditKind.KEYS_ROTATED, 5]),
)
GARBAGE_TOKENS = st.one_of(
    st.sampled_from(
        ["", "A", "A" * 4096, "A" * 4097, "A" * 100_000, "\ud800", "!!!!", "=", "AQJrMQ"]
    ),
    st.text(max_size=60),
    st.sampled_from(NOT_TEXT),
)
NOT_LOGINS = st.sampled_from([None, "login", b"login", {"user_id": "u1"}, 0, START])


def _tampered(token: str) -> _S[object]:
    return st.one_of(
        st.sampled_from(
            [
                token[:-1],
                token[1:],
                token + "A",
                token + "=",
                token * 2,
                token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1],
                token.upper(),
            ]
        ),
        GARBAGE_TOKENS,
    )


def _forged(login: LoginSession) -> _S[object]:
    """Edited copies of a real login, and things that are no login at all."""
    tags = st.one_of(
        st.sampled_from(["", "k1.", "k1.!!!", "nokey.AAAA", "k1." + "A" * 100_000, "\ud800.AA"]),
        st.sampled_from(NOT_TEXT),
    )
    times = st.one_of(t2st.extreme_datetimes(), st.datetimes(), st.sampled_from(NOT_TEXT))
    edits = st.one_of(
        st.fixed_dictionaries({"tag": tags}),
        st.fixed_dictionaries(
            {
                "second_factor_at": t2st.extreme_datetimes(),
                "second_factor_epoch": st.sampled_from([0, 1, -1, 2**64]),
            }
        ),
        st.fixed_dictionaries({"user_id": ODD_IDS}),
        st.fixed_dictionaries({"session_id": st.sampled_from(NOT_TEXT)}),
        st.fixed_dictionaries({"authenticated_at": times}),
        st.fixed_dictionaries({"identity_verified_at": times}),
        st.fixed_dictionaries({"enrollment_deferred_until": times}),
        st.fixed_dictionaries({"method": METHODS}),
    )
    return st.one_of(edits.map(lambda changes: dataclasses.replace(login, **changes)), NOT_LOGINS)


class ServiceLog(logging.Handler):
    """Collects what the service itself logs at WARNING and above (not the dispatcher's notes
    on a notifier that failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "tenant2fa":
            self.records.append(record)


class RenderingNotifier(InMemoryNotifier):
    """Renders each notification, as a mail notifier would, and remembers any that fails to
    render; while ``down``, refuses them as an unreachable mail server does."""

    def __init__(self) -> None:
        super().__init__()
        self.render_failures: list[str] = []
        self.down = False

    def notify(self, notification: Notification) -> None:
        try:
            render(notification)
        except Exception as exc:  # noqa: BLE001 - reported by the machine's invariant
            self.render_failures.append(f"{notification.kind.value}: {type(exc).__name__}: {exc}")
        if self.down:
            raise ConnectionRefusedError("the mail server is down")
        super().notify(notification)


# -- a fresh, empty storage of the fixture's kind for each example ------------------------------


class Backend:
    """Hands out an empty storage like ``template`` for each example, and a way to dispose of it."""

    def __init__(self, template: Storage, tmp_path: Path) -> None:
        self.template = template
        self.tmp_path = tmp_path
        self._numbers = itertools.count()

    def fresh(self) -> tuple[Storage, Callable[[], None]]:
        n = next(self._numbers)
        if isinstance(self.template, MemoryStorage):
            return MemoryStorage(), lambda: None
        if isinstance(self.template, SQLiteStorage):
            sqlite = SQLiteStorage(self.tmp_path / f"example-{n}.sqlite3")
            return sqlite, sqlite.close
        assert isinstance(self.template, SQLAlchemyStorage)
        if self.template.engine.dialect.name == "sqlite":
            engine = sa.create_engine(f"sqlite:///{self.tmp_path / f'example-{n}.sa.sqlite3'}")
            storage = SQLAlchemyStorage(engine)
            storage.create_schema()
            return storage, engine.dispose
        empty_tables(self.template.engine)
        return SQLAlchemyStorage(self.template.engine), lambda: None


def _enroll(tf: TwoFactor, clock: FakeClock, user_id: str) -> tuple[LoginSession, tuple[str, ...]]:
    clock.advance(seconds=1)
    login = tf.start_session(user_id)
    tf.begin_enrollment(login)
    result = tf.confirm_enrollment(login, pending_code_for(tf, user_id))
    assert result.ok, result.reason
    return result.login, result.recovery_codes


# -- the machine ----------------------------------------------------------------------------------


class ExtremeInputs(RuleBasedStateMachine):
    """Every public call of TwoFactor, with extreme and ill-typed arguments, on one backend.

    Tenants T1 (owner o1, 2FA on; admin u2) and T2 (owner o2), and one whose id, name and owner
    are 255 characters long (the owner in four-byte characters, also a member of T1); u1 is a
    member of T1 and T2, and enrolled. The canary tenant and user are never named by a rule: the
    canary must still sign in at the end, however the rules left the service.
    """

    backend: Backend

    def __init__(self) -> None:
        super().__init__()
        self.storage, self.close = self.backend.fresh()
        self.clock = FakeClock(START)
        self.notifier = RenderingNotifier()
        self.tf = TwoFactor(
            storage=self.storage,
            keyring=Keyring.generate(),
            notifier=self.notifier,
            clock=self.clock,
            config=CHEAP,
        )
        self.log = ServiceLog()
        logging.getLogger("tenant2fa").addHandler(self.log)
        tf = self.tf
        self.owners = {"T1": "o1", "T2": "o2", LONG_TENANT: LONG_USER}
        for tenant, owner in (*self.owners.items(), (CANARY_TENANT, CANARY_OWNER)):
            tf.create_tenant(tenant, name=LONG_NAME, owner_id=owner)
        tf.add_member("T1", "u1", operator="host")
        tf.add_member("T2", "u1", operator="host")
        tf.add_member("T1", "u2", role=Role.ADMIN, operator="host")
        tf.add_member("T1", LONG_USER, operator="host")
        tf.add_member(CANARY_TENANT, CANARY_USER, operator="host")
        tf.set_two_factor("T1", actor_id="o1", enabled=True)
        tf.set_two_factor(CANARY_TENANT, actor_id=CANARY_OWNER, enabled=True)
        login, codes = _enroll(tf, self.clock, "u1")
        _enroll(tf, self.clock, CANARY_USER)
        self.canary_login = tf.start_session(CANARY_USER)
        self.tenants = ["T1", "T2", LONG_TENANT]
        self.users = ["o1", "o2", "u1", "u2", LONG_USER]
        self.logins = [login, tf.start_session("o1"), tf.start_session("u2")]
        self.tokens = [tf.seal_session(login)]
        self.recovery: dict[str, tuple[str, ...]] = {"u1": codes}
        self.keys = itertools.count(2)

    # -- helpers ----------------------------------------------------------------------------

    def call(self, what: str, call: Callable[[], _T]) -> _T | Tenant2FAError:
        """The call's result, or the library error it raised; any other exception fails.

        So does a StorageError, or a verification that failed closed.
        """
        try:
            result = call()
        except StorageError as exc:
            raise AssertionError(
                f"{what} raised StorageError: a backend choked on a value ({exc}; cause: "
                f"{str(exc.__cause__)[:300]})"
            ) from exc
        except Tenant2FAError as exc:
            return exc
        except Exception as exc:
            raise AssertionError(
                f"{what} raised {type(exc).__name__}, not a Tenant2FAError: {str(exc)[:300]}"
            ) from exc
        if isinstance(result, (VerifyResult, EnrollmentResult)):
            assert result.reason is not Reason.UNAVAILABLE, f"{what} failed closed"
        return result

    def tenant_id(self, data: st.DataObject) -> Any:
        return data.draw(mostly(st.sampled_from(self.tenants), ODD_IDS), label="tenant_id")

    def user_id(self, data: st.DataObject, label: str = "user_id") -> Any:
        return data.draw(mostly(st.sampled_from(self.users), ODD_IDS), label=label)

    def login(self, data: st.DataObject) -> Any:
        real = st.sampled_from(self.logins)
        return data.draw(mostly(real, real.flatmap(_forged)), label="login")

    def who(self, data: st.DataObject, tenant_id: object, *, optional: bool) -> dict[str, Any]:
        """``actor_id=`` (usually the tenant's owner) or ``operator=``, or both, or neither."""
        owner = self.owners.get(tenant_id) if isinstance(tenant_id, str) else None
        actors = st.sampled_from([owner] if owner else self.users)
        usual: list[_S[dict[str, Any]]] = [
            st.fixed_dictionaries({"actor_id": actors}),
            st.fixed_dictionaries({"operator": st.just("support:jane")}),
        ]
        if optional:
            usual.append(st.just({}))
        odd: _S[dict[str, Any]] = st.one_of(
            st.fixed_dictionaries({"actor_id": ODD_IDS}),
            st.fixed_dictionaries({"operator": ODD_IDS}),
            st.fixed_dictionaries({"actor_id": actors, "operator": st.just("support:jane")}),
            st.just({}),
        )
        who: dict[str, Any] = data.draw(mostly(st.one_of(usual), odd), label="who")
        return who

    def known_user(self, login: object) -> str | None:
        """The user of a login the service issued (a forged one is no business of the helpers)."""
        if any(login is issued for issued in self.logins):
            assert isinstance(login, LoginSession)
            return login.user_id
        return None

    def keep(self, login: object) -> None:
        if isinstance(login, LoginSession):
            self.logins.append(login)

    def right_code(self, user: str | None, *, pending: bool, offset: int = 0) -> str | None:
        if user is None:
            return None
        try:
            return code_for(self.tf, user, offset=offset, pending=pending)
        except (LookupError, Tenant2FAError):  # nothing enrolled, or a clock before 1970
            return None

    # -- tenants and members ------------------------------------------------------------------

    @rule(data=st.data())
    def create_tenant(self, data: st.DataObject) -> None:
        tenant_id = data.draw(mostly(NEW_IDS, ODD_IDS), label="tenant_id")
        name = data.draw(NAMES, label="name")
        owner = data.draw(
            mostly(st.one_of(st.sampled_from(self.users), NEW_IDS), ODD_IDS), label="owner_id"
        )
        made = self.call(
            "create_tenant", lambda: self.tf.create_tenant(tenant_id, name=name, owner_id=owner)
        )
        if not isinstance(made, Tenant2FAError):
            self.tenants.append(tenant_id)
            self.owners[tenant_id] = owner
            self.users.append(owner)

    @rule(data=st.data())
    def tenant(self, data: st.DataObject) -> None:
        tenant_id = self.tenant_id(data)
        self.call("tenant", lambda: self.tf.tenant(tenant_id))

    @rule(data=st.data())
    def add_member(self, data: st.DataObject) -> None:
        tenant_id = self.tenant_id(data)
        user_id = data.draw(
            mostly(st.one_of(st.sampled_from(self.users), NEW_IDS), ODD_IDS), label="user_id"
        )
        role, who = data.draw(ROLES, label="role"), self.who(data, tenant_id, optional=False)
        added = self.call(
            "add_member", lambda: self.tf.add_member(tenant_id, user_id, role=role, **who)
        )
        if not isinstance(added, Tenant2FAError):
            self.users.append(user_id)

    @rule(data=st.data())
    def remove_member(self, data: st.DataObject) -> None:
        tenant_id, user_id = self.tenant_id(data), self.user_id(data)
        who = self.who(data, tenant_id, optional=False)
        self.call("remove_member", lambda: self.tf.remove_member(tenant_id, user_id, **who))

    @rule(data=st.data())
    def set_role(self, data: st.DataObject) -> None:
        tenant_id, user_id = self.tenant_id(data), self.user_id(data)
        role, who = data.draw(ROLES, label="role"), self.who(data, tenant_id, optional=False)
        self.call("set_role", lambda: self.tf.set_role(tenant_id, user_id, role, **who))

    @rule(data=st.data())
    def members(self, data: st.DataObject) -> None:
        tenant_id = self.tenant_id(data)
        self.call("members", lambda: self.tf.members(tenant_id))

    @rule(data=st.data())
    def set_two_factor(self, data: st.DataObject) -> None:
        tenant_id = self.tenant_id(data)
        actor_id = self.who(data, tenant_id, optional=False).get("actor_id", "o1")
        enabled = data.draw(BOOLEANS, label="enabled")
        grace = data.draw(GRACE_PERIODS, label="grace_period")
        self.call(
            "set_two_factor",
            lambda: self.tf.set_two_factor(
                tenant_id, actor_id=actor_id, enabled=enabled, grace_period=grace
            ),
        )

    # -- logins ----------------------------------------------------------------------------------

    @rule(data=st.data())
    def start_session(self, data: st.DataObject) -> None:
        user_id, method = self.user_id(data), data.draw(METHODS, label="method")
        self.keep(self.call("start_session", lambda: self.tf.start_session(user_id, method=method)))

    @rule(data=st.data())
    def login_step(self, data: st.DataObject) -> None:
        login, tenant_id = self.login(data), self.tenant_id(data)
        step = self.call("login_step", lambda: self.tf.login_step(login, tenant_id))
        assert isinstance(step, (Step, Tenant2FAError))

    @rule(data=st.data())
    def verify_identity(self, data: st.DataObject) -> None:
        login, method = self.login(data), data.draw(METHODS, label="method")
        self.keep(
            self.call("verify_identity", lambda: self.tf.verify_identity(login, method=method))
        )

    @rule(data=st.data())
    def defer_enrollment(self, data: st.DataObject) -> None:
        login, tenant_id = self.login(data), self.tenant_id(data)
        self.keep(self.call("defer_enrollment", lambda: self.tf.defer_enrollment(login, tenant_id)))

    @rule(data=st.data())
    def seal_session(self, data: st.DataObject) -> None:
        login = self.login(data)
        token = self.call("seal_session", lambda: self.tf.seal_session(login))
        if isinstance(token, str):
            self.tokens.append(token)

    @rule(data=st.data())
    def open_session(self, data: st.DataObject) -> None:
        real = st.sampled_from(self.tokens)
        token = data.draw(mostly(real, real.flatmap(_tampered)), label="token")
        user_id = data.draw(
            mostly(st.one_of(st.none(), st.sampled_from(self.users)), ODD_IDS), label="user_id"
        )
        max_age = data.draw(MAX_AGES, label="max_age")
        self.keep(
            self.call(
                "open_session",
                lambda: self.tf.open_session(token, user_id=user_id, max_age=max_age),
            )
        )

    # -- enrollment and verification --------------------------------------------------------------

    @rule(data=st.data())
    def begin_enrollment(self, data: st.DataObject) -> None:
        login = self.login(data)
        account_name = data.draw(mostly(st.none() | EDGE_IDS, ODD_IDS), label="account_name")

        def begin_and_render() -> Provisioning:
            provisioning = self.tf.begin_enrollment(login, account_name=account_name)
            provisioning.qr_svg()
            return provisioning

        self.call("begin_enrollment", begin_and_render)

    @rule(data=st.data())
    def confirm_enrollment(self, data: st.DataObject) -> None:
        login = self.login(data)
        right = self.right_code(self.known_user(login), pending=True)
        usual = st.just(right) if right is not None else t2st.well_formed_codes()
        code = data.draw(mostly(usual, t2st.code_inputs()), label="code")
        result = self.call("confirm_enrollment", lambda: self.tf.confirm_enrollment(login, code))
        if isinstance(result, EnrollmentResult) and result.ok:
            self.keep(result.login)
            self.recovery[result.login.user_id] = result.recovery_codes

    @rule(data=st.data())
    def verify_code(self, data: st.DataObject) -> None:
        login, tenant_id = self.login(data), self.tenant_id(data)
        offset = data.draw(st.integers(-1, 1), label="offset")
        right = self.right_code(self.known_user(login), pending=False, offset=offset)
        usual = st.just(right) if right is not None else t2st.well_formed_codes()
        code = data.draw(mostly(usual, t2st.code_inputs()), label="code")
        result = self.call("verify_code", lambda: self.tf.verify_code(login, tenant_id, code))
        if isinstance(result, VerifyResult):
            self.keep(result.login)

    @rule(data=st.data(), attempts=st.integers(1, 12))
    def wrong_codes(self, data: st.DataObject, attempts: int) -> None:
        """Enough wrong codes to be slowed down, or locked, at whatever time the clock shows."""
        login, tenant_id = self.login(data), self.tenant_id(data)
        for _ in range(attempts):
            self.call("verify_code", lambda: self.tf.verify_code(login, tenant_id, "000000"))

    @rule(data=st.data())
    def use_recovery_code(self, data: st.DataObject) -> None:
        login, tenant_id = self.login(data), self.tenant_id(data)
        user = self.known_user(login)
        known = self.recovery.get(user, ()) if user is not None else ()
        usual = st.sampled_from(known) if known else t2st.recovery_code_inputs()
        odd = st.one_of(t2st.recovery_code_inputs(), t2st.malformed_codes())
        code = data.draw(mostly(usual, odd), label="code")
        result = self.call(
            "use_recovery_code", lambda: self.tf.use_recovery_code(login, tenant_id, code)
        )
        if isinstance(result, VerifyResult):
            self.keep(result.login)

    @rule(data=st.data())
    def regenerate_recovery_codes(self, data: st.DataObject) -> None:
        login = self.login(data)
        result = self.call(
            "regenerate_recovery_codes", lambda: self.tf.regenerate_recovery_codes(login)
        )
        if isinstance(result, tuple):
            new_login, codes = result
            self.keep(new_login)
            self.recovery[new_login.user_id] = codes

    @rule(data=st.data())
    def enroll(self, data: st.DataObject) -> None:
        """The whole enrollment of a member, as a host runs it, at whatever time it is."""
        user_id = data.draw(st.sampled_from(self.users), label="user_id")
        account_name = data.draw(st.sampled_from([None, "short"]), label="account_name")
        login = self.call("start_session", lambda: self.tf.start_session(user_id))
        if not isinstance(login, LoginSession):
            return
        self.keep(login)
        self.call(
            "begin_enrollment",
            lambda: self.tf.begin_enrollment(login, account_name=account_name).qr_svg(),
        )
        code = self.right_code(user_id, pending=True) or "000000"
        result = self.call("confirm_enrollment", lambda: self.tf.confirm_enrollment(login, code))
        if isinstance(result, EnrollmentResult) and result.ok:
            self.keep(result.login)
            self.recovery[user_id] = result.recovery_codes

    # -- resets, unlocks, removal ---------------------------------------------------------------

    @rule(data=st.data())
    def reset_two_factor(self, data: st.DataObject) -> None:
        tenant_id, user_id = self.tenant_id(data), self.user_id(data)
        who = self.who(data, tenant_id, optional=False)
        self.call("reset_two_factor", lambda: self.tf.reset_two_factor(tenant_id, user_id, **who))

    @rule(data=st.data())
    def unlock(self, data: st.DataObject) -> None:
        tenant_id, user_id = self.tenant_id(data), self.user_id(data)
        who = self.who(data, tenant_id, optional=False)
        self.call("unlock", lambda: self.tf.unlock(tenant_id, user_id, **who))

    @rule(data=st.data())
    def remove_two_factor(self, data: st.DataObject) -> None:
        login = self.login(data)
        self.keep(self.call("remove_two_factor", lambda: self.tf.remove_two_factor(login)))

    # -- reading, keys, delivery ------------------------------------------------------------------

    @rule(data=st.data())
    def user_status(self, data: st.DataObject) -> None:
        user_id = self.user_id(data)
        self.call("user_status", lambda: self.tf.user_status(user_id))

    @rule(data=st.data())
    def audit_log(self, data: st.DataObject) -> None:
        filters = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "tenant_id": mostly(st.sampled_from(self.tenants), ODD_IDS),
                    "user_id": mostly(st.sampled_from(self.users), ODD_IDS),
                    "kinds": AUDIT_KINDS,
                    "since": AUDIT_TIMES,
                    "until": AUDIT_TIMES,
                    "limit": PAGE_NUMBERS,
                    "offset": PAGE_NUMBERS,
                },
            ),
            label="filters",
        )
        shape = data.draw(
            st.sampled_from(["query", "keywords", "unknown keyword", {"limit": 1}, "T1", 5]),
            label="passed as",
        )

        def read() -> list[Any]:
            if shape == "query":
                return self.tf.audit_log(AuditQuery(**filters))
            if shape == "keywords":
                return self.tf.audit_log(**filters)
            if shape == "unknown keyword":
                return self.tf.audit_log(**filters, colour="red")
            # Not an AuditQuery at all.
            return self.tf.audit_log(shape)  # type: ignore[arg-type]

        self.call("audit_log", read)

    @rule(data=st.data())
    def rotate_keys(self, data: st.DataObject) -> None:
        batch = data.draw(BATCHES, label="batch")
        after = data.draw(
            mostly(st.one_of(st.none(), st.sampled_from(self.users)), ODD_IDS), label="after"
        )
        callback = data.draw(
            mostly(st.sampled_from(["none", "callable"]), st.sampled_from([5, "progress"])),
            label="progress",
        )
        progress = {"none": None, "callable": lambda report: None}.get(callback, callback)
        report = self.call(
            "rotate_keys",
            lambda: self.tf.rotate_keys(batch=batch, after_user_id=after, progress=progress),
        )
        assert isinstance(report, (RotationReport, Tenant2FAError))

    @rule()
    def add_a_key_to_the_ring(self) -> None:
        self.tf.keyring = self.tf.keyring.with_key(f"k{next(self.keys)}", Keyring.new_key())

    @rule()
    def dispatch(self) -> None:
        self.call("dispatcher", lambda: self.tf.dispatcher().dispatch_all())

    @rule(down=st.booleans())
    def the_mail_server_goes_down_or_comes_back(self, down: bool) -> None:
        self.notifier.down = down

    # -- the clock --------------------------------------------------------------------------------

    @rule(to=t2st.extreme_datetimes())
    def clock_jumps(self, to: datetime) -> None:
        self.clock.set(to)

    @rule(by=t2st.extreme_timedeltas())
    def clock_moves(self, by: timedelta) -> None:
        self.clock.set(later(self.clock.now(), by))

    @rule(to=t2st.utc_datetimes(min_value=START, max_value=START + timedelta(days=2)))
    def clock_comes_back(self, to: datetime) -> None:
        self.clock.set(to)

    # -- the service keeps working -----------------------------------------------------------------

    @invariant()
    def the_canary_gets_a_step_and_every_notification_renders(self) -> None:
        step = self.tf.login_step(self.canary_login, CANARY_TENANT)
        assert isinstance(step, Step)
        assert self.notifier.render_failures == []

    @invariant()
    def the_service_logs_no_failure(self) -> None:
        # No storage fails here, so nothing may go wrong quietly either (inline delivery logs
        # what it cannot do instead of raising it).
        assert [r.getMessage() for r in self.log.records] == []

    def teardown(self) -> None:
        try:
            # Far enough after the set-up for a fresh time step, at a sane time.
            self.clock.set(START + timedelta(days=3))
            tf = self.tf
            login = tf.start_session(CANARY_USER)
            assert tf.login_step(login, CANARY_TENANT).kind is StepKind.CHALLENGE
            result = tf.verify_code(login, CANARY_TENANT, code_for(tf, CANARY_USER))
            assert result.ok, result.reason
            assert tf.login_step(result.login, CANARY_TENANT).kind is StepKind.DONE
            assert tf.audit_log(user_id=CANARY_USER, limit=1000)
        finally:
            logging.getLogger("tenant2fa").removeHandler(self.log)
            self.close()


EXAMPLES = {"memory": 100, "sqlite": 25, "sqlalchemy-sqlite": 20, "postgresql": 20, "mariadb": 20}


def test_every_public_call_answers_extreme_inputs_with_a_result_or_a_library_error(
    any_backend: Storage,  # noqa: F811 - the imported fixture
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    class Machine(ExtremeInputs):
        backend = Backend(any_backend, tmp_path)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES[request.node.callspec.params["any_backend"]],
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.filter_too_much,
            ],
        ),
    )


# -- what the machine found, one by one ----------------------------------------------------------


@dataclasses.dataclass
class World:
    """Tenant A (owner olga, 2FA on); bob, a member, is enrolled and has proven his code."""

    tf: TwoFactor
    clock: FakeClock
    notifier: RenderingNotifier
    bob: LoginSession


def _world(storage: Storage, *, delivery: DeliveryRules | None = None) -> World:
    clock = FakeClock(START)
    notifier = RenderingNotifier()
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        notifier=notifier,
        clock=clock,
        config=CHEAP,
        delivery=delivery,
    )
    tf.create_tenant("A", name="Acme", owner_id="olga")
    tf.add_member("A", "bob", operator="host")
    tf.set_two_factor("A", actor_id="olga", enabled=True)
    bob, _ = _enroll(tf, clock, "bob")
    return World(tf=tf, clock=clock, notifier=notifier, bob=bob)


@pytest.fixture
def world(any_backend: Storage) -> World:  # noqa: F811 - the imported fixture
    return _world(any_backend)


NO_UTC_EQUIVALENT = datetime.min.replace(tzinfo=AWKWARD_ZONE)

BAD_AUDIT_FILTERS: list[tuple[str, object]] = [
    # Before: SQLite raised OverflowError, PostgreSQL and MariaDB a StorageError, memory nothing.
    ("limit", 2**63),
    ("limit", 2**64),
    ("offset", 2**64),
    # Before: memory dropped the newest record, SQLite returned them all, the servers failed.
    ("limit", -1),
    ("offset", -1),
    ("limit", "10"),
    ("limit", 1.5),
    ("limit", True),
    ("offset", None),
    # Before: UnicodeEncodeError on SQLite and PostgreSQL.
    ("tenant_id", "\ud800"),
    ("user_id", "a\udfffb"),
    ("tenant_id", 5),
    ("user_id", "u" * 256),
    # Before: TypeError comparing or subtracting a naive datetime or a str.
    ("since", datetime(2026, 1, 1)),  # noqa: DTZ001 - the naive datetime is the point
    ("until", "2026-01-01"),
    # Before: OverflowError converting it to UTC.
    ("since", NO_UTC_EQUIVALENT),
    # Before: TypeError or AttributeError matching kinds.
    ("kinds", "code_accepted"),
    ("kinds", frozenset({"code_accepted"})),
    ("kinds", AuditKind.CODE_ACCEPTED),
]


@pytest.mark.parametrize(
    ("field", "value"), BAD_AUDIT_FILTERS, ids=[f"{f}={v!r:.20}" for f, v in BAD_AUDIT_FILTERS]
)
def test_audit_filters_no_backend_can_search_by_are_invalid_input(
    world: World, field: str, value: object
) -> None:
    with pytest.raises(InvalidInput, match=field):
        world.tf.audit_log(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=field):
        AuditQuery(**{field: value})  # type: ignore[arg-type]


def test_the_largest_audit_page_numbers_and_any_zone_work_on_every_backend(world: World) -> None:
    tf = world.tf
    everything = tf.audit_log(limit=1000)
    assert tf.audit_log(limit=2**63 - 1) == everything
    assert tf.audit_log(offset=2**63 - 1) == []
    assert tf.audit_log(limit=0) == []
    kinds = [AuditKind.TENANT_CREATED, AuditKind.MEMBER_ADDED]
    assert tf.audit_log(kinds=kinds) == tf.audit_log(kinds=frozenset(kinds))
    assert AuditQuery(kinds=kinds).kinds == frozenset(kinds)  # type: ignore[arg-type]
    at = everything[-1].at.astimezone(AWKWARD_ZONE)
    assert AuditQuery(since=at).since == everything[-1].at
    assert tf.audit_log(since=at)[-1] == everything[-1]


def test_audit_log_refuses_unknown_filters_and_what_is_not_a_query(world: World) -> None:
    with pytest.raises(InvalidInput, match="colour"):
        world.tf.audit_log(colour="red")
    with pytest.raises(InvalidInput, match="AuditQuery"):
        world.tf.audit_log({"limit": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "edit",
    [
        {"tag": None},
        {"tag": 5},
        {"tag": b"k1.AAAA"},
        {"session_id": b"x"},
        {"user_id": object()},
        {"authenticated_at": "2026-01-01"},
    ],
    ids=["tag-none", "tag-int", "tag-bytes", "bytes-field", "object-field", "str-for-a-time"],
)
def test_a_login_value_built_by_hand_with_odd_fields_is_an_invalid_session(
    edit: dict[str, object],
) -> None:
    w = _world(MemoryStorage())
    forged = dataclasses.replace(w.bob, **edit)  # type: ignore[arg-type]
    with pytest.raises(InvalidSession):
        w.tf.login_step(forged, "A")
    with pytest.raises(InvalidSession):
        w.tf.seal_session(forged)


def test_a_login_value_holding_itself_is_an_invalid_session() -> None:
    w = _world(MemoryStorage())
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidSession):
        w.tf.login_step(dataclasses.replace(w.bob, method=loop), "A")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_age": 5},
        {"max_age": "12h"},
        {"max_age": timedelta(seconds=-1)},
        {"user_id": 5},
        {"user_id": "\ud800"},
        {"user_id": ""},
    ],
    ids=[
        "max_age-int",
        "max_age-str",
        "max_age-negative",
        "user-int",
        "user-surrogate",
        "user-empty",
    ],
)
def test_open_session_refuses_an_odd_max_age_or_user_id(kwargs: dict[str, object]) -> None:
    w = _world(MemoryStorage())
    token = w.tf.seal_session(w.bob)
    with pytest.raises(InvalidInput):
        w.tf.open_session(token, **kwargs)  # type: ignore[arg-type]
    assert w.tf.open_session(token, user_id="bob", max_age=timedelta.max) == w.bob


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch": 0},
        {"batch": -1},
        {"batch": 10_001},
        {"batch": 2**64},
        {"batch": "500"},
        {"batch": 1.5},
        {"batch": True},
        {"after_user_id": "\ud800"},
        {"after_user_id": 5},
        {"progress": 5},
    ],
    ids=[
        "batch-0",
        "batch-negative",
        "batch-too-big",
        "batch-2**64",
        "batch-str",
        "batch-float",
        "batch-bool",
        "after-surrogate",
        "after-int",
        "progress-not-callable",
    ],
)
def test_rotate_keys_refuses_odd_arguments_before_rewrapping_anything(
    any_backend: Storage,  # noqa: F811 - the imported fixture
    kwargs: dict[str, object],
) -> None:
    w = _world(any_backend)
    w.tf.keyring = w.tf.keyring.with_key("k2", Keyring.new_key())
    with pytest.raises(InvalidInput):
        w.tf.rotate_keys(**kwargs)  # type: ignore[arg-type]
    secret = w.tf.storage.get_factor("bob").secret
    assert secret is not None
    assert w.tf.keyring.key_id_of(secret) == "k1"
    assert w.tf.rotate_keys(batch=10_000, after_user_id="a", progress=lambda r: None).rewrapped == 1


def test_a_change_at_the_end_of_time_is_made_and_its_notification_kept(world: World) -> None:
    # Every backend claims a notification until ``now + lease``: past datetime.max here. The
    # change is committed by then; it used to come back as an OverflowError.
    world.clock.set(datetime.max.replace(tzinfo=UTC))
    assert world.tf.add_member("A", "carl", operator="host").user_id == "carl"
    assert [m.user_id for m in world.tf.members("A")] == ["bob", "carl", "olga"]
    # The outbox keeps the notice; a dispatcher now gets the backend's overflow as a StorageError
    # (until the backends saturate the lease's end with tenant2fa.clock.later).
    with contextlib.suppress(StorageError):
        world.tf.dispatcher().dispatch()
    kept = world.tf.storage.outbox_items(limit=1000)
    assert ("carl", NotificationKind.MEMBER_ADDED) in {
        (item.notification.user_id, item.notification.kind) for item in kept
    }


def test_a_value_a_database_driver_cannot_take_is_a_storage_error(
    any_backend: Storage,  # noqa: F811 - the imported fixture
) -> None:
    """The backends keep their contract below the service's own checks: what their driver
    refuses (a lone surrogate, an int past 64 bits) comes out as a StorageError, whose message
    does not quote the value."""
    too_far = AuditQuery()
    object.__setattr__(too_far, "limit", 2**64)  # past AuditQuery's own check, as a bug might
    if isinstance(any_backend, MemoryStorage):  # no driver: Python takes any str and int
        assert any_backend.get_factor("\ud800bob").secret is None
        assert any_backend.audit_records(too_far) == []
        return
    for call in (
        lambda: any_backend.get_factor("\ud800bob"),
        lambda: any_backend.audit_records(too_far),
    ):
        with pytest.raises(StorageError) as raised:
            call()
        assert "\ud800" not in str(raised.value)
        assert str(2**64) not in str(raised.value)


class _DownNotifier(InMemoryNotifier):
    def notify(self, notification: Notification) -> None:
        raise ConnectionRefusedError("the mail server is down")


def test_a_delivery_failing_after_the_change_committed_does_not_fail_the_change() -> None:
    # With a lease shorter than the first retry delay, a notification can be claimed just before
    # datetime.max, and its next attempt not scheduled (tenant2fa/dispatch.py adds the delay
    # unsaturated): the OverflowError used to come out of add_member, after the member was added.
    w = _world(MemoryStorage(), delivery=DeliveryRules(lease=timedelta(seconds=1)))
    w.tf.notifier = _DownNotifier()
    w.clock.set(datetime.max.replace(tzinfo=UTC) - timedelta(seconds=10))
    assert w.tf.add_member("A", "carl", operator="host").user_id == "carl"
    assert "carl" in [m.user_id for m in w.tf.members("A")]
    assert [i.state for i in w.tf.storage.outbox_items(limit=1000)][-1] is OutboxState.PENDING


def test_an_account_name_too_long_for_a_qr_code_is_refused_before_anything_is_stored(
    world: World,
) -> None:
    tf, clock = world.tf, world.clock
    tf.add_member("A", LONG_USER, operator="host")
    clock.advance(seconds=1)
    login = tf.start_session(LONG_USER)
    # 255 four-byte characters, percent-encoded: 3,060 bytes of label alone.
    with pytest.raises(InvalidInput, match="QR code"):
        tf.begin_enrollment(login)
    with pytest.raises(InvalidInput, match="QR code"):
        tf.begin_enrollment(world.bob, account_name=LONG_NAME)
    assert tf.user_status(LONG_USER).state is EnrollmentState.NONE
    provisioning = tf.begin_enrollment(login, account_name="emoji@example.com")
    assert provisioning.qr_svg().startswith("<svg")


def test_the_longest_uri_allowed_still_fits_a_qr_code() -> None:
    secret = bytes(range(20))
    short = totp.provisioning_uri(secret, account_name="a", issuer="Onum")
    longest = "a" * (totp.MAX_URI_LENGTH - len(short) + 1)
    uri = totp.provisioning_uri(secret, account_name=longest, issuer="Onum")
    assert len(uri) == totp.MAX_URI_LENGTH
    assert totp.qr_png(uri).startswith(b"\x89PNG")
    with pytest.raises(InvalidInput, match="QR code"):
        totp.provisioning_uri(secret, account_name=longest + "a", issuer="Onum")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reauth_window": 600},
        {"pending_ttl": "10m"},
        {"max_login_age": 3600.0},
        {"max_grace_period": None},
        {"recovery_code_count": "10"},
        {"recovery_code_count": True},
        {"challenge_everywhere": "yes"},
        {"toggle_roles": {"owner"}},
        {"toggle_roles": frozenset({"owner"})},
        {"throttle": None},
        {"issuer": "x" * 1200},
    ],
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_config_refuses_wrong_types_and_an_issuer_too_long_for_a_qr_code(
    kwargs: dict[str, object],
) -> None:
    with pytest.raises(ConfigurationError):
        Config(**kwargs)  # type: ignore[arg-type]


def test_config_keeps_a_set_of_roles_as_a_frozenset() -> None:
    config = Config(toggle_roles={Role.OWNER, Role.ADMIN})  # type: ignore[arg-type]
    assert config.toggle_roles == frozenset({Role.OWNER, Role.ADMIN})
    assert hash(config.toggle_roles)


def test_a_time_with_no_utc_equivalent_is_invalid_input_not_an_overflow() -> None:
    with pytest.raises(InvalidInput, match="range"):
        require_utc(NO_UTC_EQUIVALENT, "since")
    with pytest.raises(InvalidInput, match="range"):
        FakeClock().set(datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))))
    with pytest.raises(InvalidInput, match="str"):
        require_utc("2026-01-01T00:00:00Z", "since")


SURROGATE = "\ud800"
NOT_IDS = frozenset({"start_session(method)", "verify_identity", "begin_enrollment"})


def _surrogate_calls(w: World) -> dict[str, Callable[[], object]]:
    """Every public call, with a lone surrogate in one of its text parameters."""
    tf, bob, s = w.tf, w.bob, SURROGATE
    return {
        "create_tenant(tenant_id)": lambda: tf.create_tenant(s, name="x", owner_id="olga"),
        "create_tenant(name)": lambda: tf.create_tenant("B", name=s, owner_id="olga"),
        "create_tenant(owner_id)": lambda: tf.create_tenant("B", name="x", owner_id=s),
        "tenant": lambda: tf.tenant(s),
        "add_member(tenant_id)": lambda: tf.add_member(s, "carl", operator="host"),
        "add_member(user_id)": lambda: tf.add_member("A", s, operator="host"),
        "add_member(actor_id)": lambda: tf.add_member("A", "carl", actor_id=s),
        "add_member(operator)": lambda: tf.add_member("A", "carl", operator=s),
        "remove_member": lambda: tf.remove_member("A", s, operator="ops"),
        "set_role": lambda: tf.set_role("A", s, Role.ADMIN, actor_id="olga"),
        "members": lambda: tf.members(s),
        "set_two_factor(tenant_id)": lambda: tf.set_two_factor(s, actor_id="olga", enabled=True),
        "set_two_factor(actor_id)": lambda: tf.set_two_factor("A", actor_id=s, enabled=False),
        "start_session(user_id)": lambda: tf.start_session(s),
        "start_session(method)": lambda: tf.start_session("bob", method=s),
        "login_step": lambda: tf.login_step(bob, s),
        "verify_identity": lambda: tf.verify_identity(bob, method=s),
        "defer_enrollment": lambda: tf.defer_enrollment(bob, s),
        "open_session": lambda: tf.open_session(tf.seal_session(bob), user_id=s),
        "begin_enrollment": lambda: tf.begin_enrollment(bob, account_name=s),
        "verify_code": lambda: tf.verify_code(bob, s, "123456"),
        "use_recovery_code": lambda: tf.use_recovery_code(bob, s, "AAAA-AAAA-AAAA-AAAA"),
        "reset_two_factor": lambda: tf.reset_two_factor("A", s, operator="ops"),
        "unlock": lambda: tf.unlock("A", "bob", operator=s),
        "user_status": lambda: tf.user_status(s),
        "audit_log(tenant_id)": lambda: tf.audit_log(tenant_id=s),
        "audit_log(user_id)": lambda: tf.audit_log(user_id=s),
        "rotate_keys": lambda: tf.rotate_keys(after_user_id=s),
    }


def test_a_lone_surrogate_anywhere_is_invalid_input_before_it_reaches_the_database(
    world: World,
) -> None:
    before = world.tf.audit_log(limit=1000)
    for name, call in _surrogate_calls(world).items():
        with pytest.raises(InvalidInput) as refused:
            call()
        # Methods and account names are no ids: they are refused as unprintable.
        why = "control" if name in NOT_IDS else "surrogate"
        assert why in str(refused.value), name
    assert world.tf.audit_log(limit=1000) == before


# -- the strategies draw what they promise ---------------------------------------------------------


@given(t2st.hostile_identifiers())
def test_hostile_identifiers_are_taken_or_refused_as_invalid_input(value: object) -> None:
    with contextlib.suppress(InvalidInput):
        assert check_identifier(value, "user_id") == value


@given(t2st.recovery_code_inputs())
def test_recovery_code_inputs_are_read_as_a_code_or_as_none(value: object) -> None:
    canonical = normalize_recovery_code(value)
    assert canonical is None or len(canonical) == 16


@given(t2st.extreme_datetimes(), t2st.extreme_timedeltas())
def test_extreme_datetimes_are_utc_and_later_saturates_them(
    moment: datetime, delta: timedelta
) -> None:
    assert moment.tzinfo is UTC
    assert later(moment, delta).tzinfo is UTC
