"""A hypothesis state machine drives the public ``TwoFactor`` API against a simple model.

Two tenants and four users in varied roles; the rules are what hosts and users do (toggle 2FA,
sign in, re-verify identity, enroll, type right, replayed, wrong and junk codes, use recovery codes,
reset, unlock, remove a factor; add and remove members, change their roles) and what clocks do
(move forward a little or a lot, step back). The model is written from DESIGN.md, knows only what
a user and their phone would know (the provisioning key, the codes shown, the recovery codes
handed out), keeps its own copy of who may do what to whom, and never calls the library's
decision functions.

Invariants checked after every step (DESIGN.md "Invariants"):

- a tenant's policy changes only by its owner, each change leaves exactly one audit record, and a
  refused toggle leaves none;
- every (session, tenant) gets the step the model expects, and never DONE in a tenant requiring 2FA
  unless that session proved a code, a recovery code or a confirmation since the user's last reset;
- no authenticator becomes active without a confirm carrying a code of its own pending secret;
- a (user, time step) pair is accepted at most once, and a recovery code works at most once
  (accepted codes and spent recovery codes are submitted again, and must be refused);
- a host action moves a session's step only along ``tenant2fa.flow.LOGIN_TRANSITIONS``;
- no actor without authority over every tenant of the user that requires 2FA changes the user's
  factor (resets and unlocks), and no other change to a factor happens than the ones the model
  allowed (the audit log is compared with the model's list);
- a tenant always keeps an owner, a removed member gets NotAMember at once, and a login older
  than the user's last reset (or than MAX_LOGIN_AGE) must verify the user's identity again.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tenant2fa import (
    AlreadyMember,
    AuditKind,
    Config,
    EnrollmentState,
    InMemoryNotifier,
    InvalidSession,
    InvalidTransition,
    Keyring,
    LastOwner,
    LoginSession,
    MemoryStorage,
    NotAMember,
    NotificationKind,
    PermissionDenied,
    Reason,
    RecoveryCodeHasher,
    Role,
    StepKind,
    StepUpRequired,
    ThrottleRules,
    TwoFactor,
    TwoFactorRequired,
    totp,
)
from tenant2fa.flow import LOGIN_TRANSITIONS, LoginEvent
from tenant2fa.recovery import ALPHABET as RECOVERY_ALPHABET
from tenant2fa.testing import FakeClock, secret_of
from tenant2fa.testing import strategies as t2st

INITIAL_MEMBERS: dict[str, dict[str, Role]] = {
    "T1": {"o1": Role.OWNER, "u1": Role.MEMBER, "u2": Role.ADMIN, "o2": Role.MEMBER},
    "T2": {"o2": Role.OWNER, "u1": Role.ADMIN},
}
TENANTS = sorted(INITIAL_MEMBERS)
USERS = ("u1", "u2", "o1", "o2")
ACTORS = (*USERS, "stranger")
THROTTLE = ThrottleRules(
    free_failures=2,
    base_delay=timedelta(seconds=30),
    max_delay=timedelta(minutes=10),
    max_failures=6,
)
PERIOD = 30
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
REAUTH = timedelta(minutes=10)
MAX_LOGIN_AGE = timedelta(hours=6)
OPERATOR = "support:jane"
PENDING_TTL = timedelta(minutes=10)
MAX_SESSIONS = 8
TRACKED_NOTICES = (
    NotificationKind.TWO_FACTOR_ENABLED,
    NotificationKind.TWO_FACTOR_RESET,
    NotificationKind.TWO_FACTOR_REMOVED,
    NotificationKind.TWO_FACTOR_UNLOCKED,
    NotificationKind.RECOVERY_CODE_USED,
    NotificationKind.MEMBER_ADDED,
    NotificationKind.MEMBER_REMOVED,
    NotificationKind.ROLE_CHANGED,
    NotificationKind.OWNERS_CHANGED,
)
FACTOR_CHANGES = frozenset({AuditKind.TWO_FACTOR_RESET, AuditKind.TWO_FACTOR_UNLOCKED})
# DESIGN.md 14 and docs/security.md, written out again: the roles of the members each role may
# act on (owners on all, admins on admins and members, members on nobody), and only owners may
# reset or unlock (Config.toggle_roles), with authority in every tenant that requires 2FA.
ACTS_ON = {
    Role.OWNER: {Role.OWNER, Role.ADMIN, Role.MEMBER},
    Role.ADMIN: {Role.ADMIN, Role.MEMBER},
    Role.MEMBER: set(),
}


@dataclass(kw_only=True)
class Pending:
    secret: bytes
    expires_at: datetime


@dataclass(kw_only=True)
class UserModel:
    """What the model knows of a user: their phone, their recovery sheet, their counters."""

    secret: bytes | None = None
    pending: Pending | None = None
    old_secrets: list[bytes] = field(default_factory=list)
    """Superseded pending secrets and removed authenticators (another tab, an old phone)."""
    generation: int = 0
    """Bumped by every confirm, reset and removal: older proofs stop counting."""
    last_step: int = -1
    accepted_steps: set[int] = field(default_factory=set)
    accepted_codes: list[str] = field(default_factory=list)
    failures: int = 0
    last_failure_at: datetime | None = None
    recovery_unused: set[str] = field(default_factory=set)
    recovery_spent: list[str] = field(default_factory=list)
    notices: Counter[NotificationKind] = field(default_factory=Counter)
    floor: datetime | None = None
    """Logins whose identity was checked before this must check it again (a reset, a removal)."""


@dataclass(kw_only=True)
class SessionModel:
    login: LoginSession
    user: str
    identity_at: datetime
    proof_generation: int | None = None
    proof_at: datetime | None = None


def _canonical(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


class TwoFactorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.notifier = InMemoryNotifier()
        self.tf = TwoFactor(
            storage=MemoryStorage(),
            keyring=Keyring.generate(),
            notifier=self.notifier,
            clock=self.clock,
            config=Config(
                recovery_hasher=RecoveryCodeHasher(n=2**4),
                throttle=THROTTLE,
                reauth_window=REAUTH,
                pending_ttl=PENDING_TTL,
                max_login_age=MAX_LOGIN_AGE,
            ),
        )
        self.users = {u: UserModel() for u in USERS}
        for tenant, members in INITIAL_MEMBERS.items():
            owner = next(u for u, r in members.items() if r is Role.OWNER)
            self.tf.create_tenant(tenant, name=f"Tenant {tenant}", owner_id=owner)
            for user, role in members.items():
                if user != owner:
                    self.tf.add_member(tenant, user, role=role, operator="host")
                    self.users[user].notices[NotificationKind.MEMBER_ADDED] += 1
        self.members = {t: dict(m) for t, m in INITIAL_MEMBERS.items()}
        self.now = self.clock.now()
        self.required = dict.fromkeys(INITIAL_MEMBERS, False)
        self.activated_at: dict[str, datetime | None] = dict.fromkeys(INITIAL_MEMBERS)
        self.switches = dict.fromkeys(INITIAL_MEMBERS, 0)
        self.sessions: list[SessionModel] = []
        self.factor_changes: list[tuple[AuditKind, str, str]] = []
        """(kind, user, actor) of every reset and unlock the model allowed, in order."""

    # -- the model ---------------------------------------------------------------------------

    def tenants_of(self, user: str) -> list[str]:
        return sorted(t for t, members in self.members.items() if user in members)

    def identity_current(self, s: SessionModel) -> bool:
        """Issue 10: a login kept too long, or older than the user's last reset, is stale."""
        floor = self.users[s.user].floor
        if floor is not None and s.identity_at < floor:
            return False
        return self.now - s.identity_at <= MAX_LOGIN_AGE

    def identity_fresh(self, s: SessionModel) -> bool:
        """DESIGN.md 7: checked after the newest activation that applies, and recently."""
        activations = [self.activated_at[t] for t in self.tenants_of(s.user) if self.required[t]]
        newest = max((a for a in activations if a is not None), default=None)
        if newest is not None and s.identity_at <= newest:
            return False
        floor = self.users[s.user].floor
        if floor is not None and s.identity_at < floor:
            return False
        return timedelta(0) <= self.now - s.identity_at <= REAUTH

    def may_change_factor(self, actor: str, tenant: str, user: str) -> bool:
        """DESIGN.md 12: an owner of this tenant and of every tenant of the user requiring 2FA
        (the user's role there within what an owner acts on), never oneself."""
        if actor == user:
            return False
        relying = [t for t in self.tenants_of(user) if self.required[t] or t == tenant]
        return all(
            self.members[t].get(actor) is Role.OWNER
            and self.members[t][user] in ACTS_ON[Role.OWNER]
            for t in relying
        )

    def last_owner(self, tenant: str, user: str) -> bool:
        owners = [u for u, r in self.members[tenant].items() if r is Role.OWNER]
        return owners == [user]

    def wait_until(self, user: str) -> tuple[bool, datetime | None]:
        """DESIGN.md 11 with THROTTLE: (may attempt now, until when to wait)."""
        u = self.users[user]
        if u.failures >= THROTTLE.max_failures:
            return False, None
        if u.failures < THROTTLE.free_failures or u.last_failure_at is None:
            return True, None
        wait = min(
            THROTTLE.base_delay * 2 ** (u.failures - THROTTLE.free_failures), THROTTLE.max_delay
        )
        until = u.last_failure_at + wait
        return (True, None) if self.now >= until else (False, until)

    def charge(self, user: str) -> bool:
        """An attempt is counted before it is evaluated, unless the user must wait."""
        if not self.wait_until(user)[0]:
            return False
        u = self.users[user]
        u.failures += 1
        u.last_failure_at = self.now
        return True

    def succeed(self, user: str) -> None:
        u = self.users[user]
        u.failures = 0
        u.last_failure_at = None

    def live_pending(self, user: str) -> Pending | None:
        pending = self.users[user].pending
        return pending if pending is not None and self.now < pending.expires_at else None

    def state(self, user: str) -> EnrollmentState:
        u = self.users[user]
        if u.secret is not None:
            return EnrollmentState.REPLACING if self.live_pending(user) else EnrollmentState.ACTIVE
        return EnrollmentState.PENDING if self.live_pending(user) else EnrollmentState.NONE

    def proven(self, s: SessionModel) -> bool:
        """A second factor proven in this session, since the user's last change of it, and not
        longer ago than MAX_LOGIN_AGE."""
        if s.proof_generation != self.users[s.user].generation or s.proof_at is None:
            return False
        return self.now - s.proof_at <= MAX_LOGIN_AGE

    def time_step(self) -> int:
        return (self.now - EPOCH) // timedelta(seconds=PERIOD)

    def matching_step(self, secret: bytes, code: str) -> int | None:
        """The newest time step within ±1 of now whose code (on a phone) is ``code``."""
        now_step = self.time_step()
        found = None
        for step in (now_step - 1, now_step, now_step + 1):
            if totp.code_at(secret, step) == code:
                found = step
        return found

    def expected_kind(self, s: SessionModel, tenant: str) -> StepKind:
        u = self.users[s.user]
        if not self.identity_current(s):
            return StepKind.VERIFY_IDENTITY
        may_try = self.wait_until(s.user)[0]
        if u.secret is not None:  # enrolled: a code once per session where required
            if not self.required[tenant] or self.proven(s):
                return StepKind.DONE
            return StepKind.CHALLENGE if may_try else StepKind.LOCKED
        if not any(self.required[t] for t in self.tenants_of(s.user)):
            return StepKind.DONE
        if not self.identity_fresh(s):
            return StepKind.VERIFY_IDENTITY
        return StepKind.ENROLL if may_try else StepKind.LOCKED

    def remove_factor(self, user: str, notice: NotificationKind, floor: datetime) -> None:
        u = self.users[user]
        u.floor = floor if u.floor is None else max(u.floor, floor)
        if u.secret is not None:
            u.old_secrets.append(u.secret)
        if u.pending is not None:
            u.old_secrets.append(u.pending.secret)
        u.secret = None
        u.pending = None
        u.generation += 1
        u.recovery_spent.extend(sorted(u.recovery_unused))
        u.recovery_unused = set()
        u.notices[notice] += 1
        self.succeed(user)

    # -- helpers -----------------------------------------------------------------------------

    def refused_as_stale(self, s: SessionModel, call: Callable[..., object], *args: object) -> bool:
        """If the session is stale (too old, or older than a reset), ``call`` must refuse it
        with VERIFY_IDENTITY: True then, after checking that."""
        if self.identity_current(s):
            return False
        with pytest.raises(StepUpRequired) as raised:
            call(s.login, *args)
        assert raised.value.step is StepKind.VERIFY_IDENTITY
        return True

    def session(self, pick: int) -> SessionModel:
        return self.sessions[pick % len(self.sessions)]

    def kinds(self, s: SessionModel) -> dict[str, StepKind]:
        return {t: self.tf.login_step(s.login, t).kind for t in self.tenants_of(s.user)}

    def switch_records(self, tenant: str) -> int:
        return len(
            self.tf.audit_log(
                tenant_id=tenant, kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}), limit=10_000
            )
        )

    @staticmethod
    def check_moves(
        before: dict[str, StepKind], event: LoginEvent | None, after: dict[str, StepKind]
    ) -> None:
        """Each tenant's step stays, or moves along LOGIN_TRANSITIONS for ``event``."""
        for tenant, old in before.items():
            new = after[tenant]
            if new is old:
                continue
            assert event is not None, f"{tenant}: {old.name} -> {new.name} with no event"
            allowed = LOGIN_TRANSITIONS.get((old, event), frozenset())
            assert new in allowed, f"{tenant}: {old.name} --{event.name}--> {new.name}"
            note(f"move: {old.name} --{event.name}--> {new.name}")

    # -- a starting point: some tenants on, everyone signed in, some users enrolled ----------

    @initialize(
        required=st.sampled_from([{"T1"}, {"T2"}, {"T1", "T2"}, set()]),
        enrolled=st.sets(st.sampled_from(USERS), min_size=1, max_size=len(USERS) - 1),
        sign_in_again=st.booleans(),
    )
    def open_for_business(
        self, required: set[str], enrolled: set[str], sign_in_again: bool
    ) -> None:
        """Reach the interesting states quickly; every call goes through the rules' checks."""
        for tenant in sorted(required):
            owner = next(u for u, r in self.members[tenant].items() if r is Role.OWNER)
            self.toggle(tenant=tenant, actor=owner, on=True)
        self.clock_moves(move=timedelta(seconds=1))
        for user in USERS:
            self.start_session(user=user, method="password")
        for pick, user in enumerate(USERS):
            if user in enrolled:
                self.begin_enrollment(pick=pick)
                self.confirm_enrollment(
                    pick=pick, which="pending", offset=0, wrong="000000", junk=None
                )
                assert self.users[user].secret is not None
        self.clock_moves(move=timedelta(seconds=PERIOD))
        if sign_in_again:  # second logins: enrolled users have proven nothing in them yet
            for user in sorted(enrolled):
                self.start_session(user=user, method="google")

    # -- tenants -----------------------------------------------------------------------------

    @rule(tenant=st.sampled_from(TENANTS), actor=st.sampled_from(ACTORS), on=st.booleans())
    def toggle(self, tenant: str, actor: str, on: bool) -> None:
        policy_before = self.tf.tenant(tenant)
        records_before = self.switch_records(tenant)
        if self.members[tenant].get(actor) is not Role.OWNER:
            with pytest.raises(PermissionDenied):
                self.tf.set_two_factor(tenant, actor_id=actor, enabled=on)
            assert self.tf.tenant(tenant) == policy_before
            assert self.switch_records(tenant) == records_before
            return
        policy = self.tf.set_two_factor(tenant, actor_id=actor, enabled=on)
        changed = self.required[tenant] != on
        if changed:
            self.required[tenant] = on
            self.switches[tenant] += 1
            if on:
                self.activated_at[tenant] = self.now
        assert policy.two_factor_required is on
        assert self.switch_records(tenant) == records_before + changed

    # -- sessions ----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), method=st.sampled_from(["password", "google", "microsoft"]))
    def start_session(self, user: str, method: str) -> None:
        login = self.tf.start_session(user, method=method)
        assert login.second_factor_at is None
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(0)
        self.sessions.append(SessionModel(login=login, user=user, identity_at=self.now))

    @rule(pick=st.integers(min_value=0), method=st.sampled_from(["password", "google"]))
    def verify_identity(self, pick: int, method: str) -> None:
        s = self.session(pick)
        before = self.kinds(s)
        s.login = self.tf.verify_identity(s.login, method=method)
        # A check made after a reset never counts as older than it, even by a clock behind.
        floor = self.users[s.user].floor
        s.identity_at = self.now if floor is None else max(self.now, floor)
        self.check_moves(before, LoginEvent.IDENTITY_VERIFIED, self.kinds(s))

    @rule(pick=st.integers(min_value=0))
    def edited_or_foreign_sessions_are_refused(self, pick: int) -> None:
        s = self.session(pick)
        # Claim a proof of another epoch, or a fresher identity check, than the service issued.
        forged = dataclasses.replace(
            s.login,
            second_factor_at=self.now,
            second_factor_epoch=(s.login.second_factor_epoch or 0) + 1,
        )
        fresher = dataclasses.replace(
            s.login, identity_verified_at=s.login.identity_verified_at + timedelta(seconds=1)
        )
        other = next(u for u in USERS if u != s.user)
        foreign = dataclasses.replace(s.login, user_id=other)
        for bad in (forged, fresher, foreign):
            with pytest.raises(InvalidSession):
                self.tf.login_step(bad, TENANTS[pick % len(TENANTS)])
            with pytest.raises(InvalidSession):
                self.tf.verify_code(bad, TENANTS[pick % len(TENANTS)], "123456")

    # -- enrollment --------------------------------------------------------------------------

    @rule(pick=st.integers(min_value=0))
    def begin_enrollment(self, pick: int) -> None:
        s = self.session(pick)
        u = self.users[s.user]
        before = self.kinds(s)
        if not self.identity_fresh(s):
            with pytest.raises(StepUpRequired) as raised:
                self.tf.begin_enrollment(s.login)
            assert raised.value.step is StepKind.VERIFY_IDENTITY
        elif u.secret is not None and not self.proven(s):
            with pytest.raises(StepUpRequired) as raised:
                self.tf.begin_enrollment(s.login)
            assert raised.value.step is StepKind.CHALLENGE
        else:
            provisioning = self.tf.begin_enrollment(s.login)
            if u.pending is not None:
                u.old_secrets.append(u.pending.secret)
            u.pending = Pending(
                secret=totp.decode_secret(provisioning.manual_key),
                expires_at=self.now + PENDING_TTL,
            )
            assert provisioning.expires_at == u.pending.expires_at
            assert f"secret={provisioning.manual_key.replace(' ', '')}" in provisioning.uri
        self.check_moves(before, None, self.kinds(s))

    def code_for(self, user: str, which: str, offset: int, wrong: str) -> str:
        """A code as the user would type it: from the active or pending secret (``offset`` steps
        away), from an old secret, a replay of an accepted code, or ``wrong``."""
        u = self.users[user]
        secret = {
            "active": u.secret,
            "pending": u.pending.secret if u.pending else None,
            "old": u.old_secrets[-1] if u.old_secrets else None,
        }.get(which)
        if which == "replay" and u.accepted_codes:
            return u.accepted_codes[offset % len(u.accepted_codes)]
        if secret is None:
            return wrong
        return totp.code_at(secret, self.time_step() + offset)

    @rule(
        pick=st.integers(min_value=0),
        which=st.sampled_from(["pending", "pending", "active", "old", "replay", "wrong", "junk"]),
        offset=st.sampled_from([0, 0, 0, -1, 1, -2, 2]),
        wrong=t2st.well_formed_codes(),
        junk=t2st.malformed_codes(),
    )
    def confirm_enrollment(
        self, pick: int, which: str, offset: int, wrong: str, junk: object
    ) -> None:
        s = self.session(pick)
        u = self.users[s.user]
        code: object = junk if which == "junk" else self.code_for(s.user, which, offset, wrong)
        before = self.kinds(s)
        if which != "junk" and self.refused_as_stale(s, self.tf.confirm_enrollment, code):
            return
        pending = self.live_pending(s.user)
        replacing = which != "junk" and pending is not None and u.secret is not None
        if replacing and not self.proven(s):
            # Replacing an authenticator needs this login to have proven the current one.
            with pytest.raises(StepUpRequired):
                self.tf.confirm_enrollment(s.login, code)
            self.check_moves(before, None, self.kinds(s))
            return
        result = self.tf.confirm_enrollment(s.login, code)
        note(f"confirm_enrollment: {which} -> {result.reason.name}")

        event: LoginEvent | None = None
        if which == "junk":
            assert result.reason is Reason.MALFORMED
        elif pending is None:
            assert result.reason is Reason.NOT_PENDING
        elif not self.charge(s.user):
            assert result.reason is Reason.LOCKED
            assert result.retry_at == self.wait_until(s.user)[1]
        else:
            assert isinstance(code, str)
            step = self.matching_step(pending.secret, _canonical(code))
            if step is None or step <= u.last_step:
                assert result.reason is Reason.INVALID, which
                event = LoginEvent.TOO_MANY_FAILURES
            else:
                # The only way an authenticator becomes active: a code of its own pending secret.
                assert result.ok, (which, result.reason)
                self.activated(s, pending, step, _canonical(code), result.recovery_codes)
                s.login = result.login
                event = LoginEvent.ENROLLMENT_CONFIRMED
        if not result.ok:
            assert result.login == s.login
            assert result.recovery_codes == ()
        self.check_moves(before, event, self.kinds(s))

    def activated(
        self, s: SessionModel, pending: Pending, step: int, code: str, codes: tuple[str, ...]
    ) -> None:
        """The model's side of a confirmed enrollment: the pending secret becomes the one."""
        u = self.users[s.user]
        assert step not in u.accepted_steps
        if u.secret is not None:
            u.old_secrets.append(u.secret)
        u.secret = pending.secret
        u.pending = None
        u.generation += 1
        u.last_step = step
        u.accepted_steps.add(step)
        u.accepted_codes.append(code)
        u.recovery_spent.extend(sorted(u.recovery_unused))
        u.recovery_unused = {_canonical(c) for c in codes}
        assert len(u.recovery_unused) == 10
        u.notices[NotificationKind.TWO_FACTOR_ENABLED] += 1
        self.succeed(s.user)
        s.proof_generation = u.generation
        s.proof_at = self.now

    @rule(pick=st.integers(min_value=0))
    def enroll_in_one_go(self, pick: int) -> None:
        """The enrollment page used straight through: begin, scan, type the code."""
        self.begin_enrollment(pick=pick)
        self.confirm_enrollment(pick=pick, which="pending", offset=0, wrong="000000", junk=None)

    # -- codes -------------------------------------------------------------------------------

    @rule(
        pick=st.integers(min_value=0),
        tenant_pick=st.integers(min_value=0, max_value=3),
        which=st.sampled_from(
            ["active", "active", "active", "active", "replay", "pending", "old", "wrong", "junk"]
        ),
        offset=st.sampled_from([0, 0, 0, -1, 1, -2, 2]),
        wrong=t2st.well_formed_codes(),
        junk=t2st.malformed_codes(),
    )
    def verify_code(
        self, pick: int, tenant_pick: int, which: str, offset: int, wrong: str, junk: object
    ) -> None:
        s = self.session(pick)
        u = self.users[s.user]
        tenants = self.tenants_of(s.user)
        if not tenants:
            return
        tenant = tenants[tenant_pick % len(tenants)]
        code: object = junk if which == "junk" else self.code_for(s.user, which, offset, wrong)
        before = self.kinds(s)
        if which != "junk" and self.refused_as_stale(s, self.tf.verify_code, tenant, code):
            return
        result = self.tf.verify_code(s.login, tenant, code)
        note(f"verify_code: {which} -> {result.reason.name}")

        event: LoginEvent | None = None
        if which == "junk":
            assert result.reason is Reason.MALFORMED
        elif u.secret is None:
            # Nothing to guess: refused, and not counted (no one can lock out a new user).
            assert result.reason is Reason.INVALID
        elif not self.charge(s.user):
            assert result.reason is Reason.LOCKED
            assert result.retry_at == self.wait_until(s.user)[1]
        else:
            assert isinstance(code, str)
            step = self.matching_step(u.secret, _canonical(code))
            if step is None or step <= u.last_step:
                # Replays of accepted codes land here: their steps are not newer than the last.
                assert result.reason is Reason.INVALID, which
                event = LoginEvent.TOO_MANY_FAILURES
            else:
                assert result.ok, (which, result.reason)
                # A (user, time step) pair is accepted at most once.
                assert step not in u.accepted_steps
                u.last_step = step
                u.accepted_steps.add(step)
                u.accepted_codes.append(_canonical(code))
                self.succeed(s.user)
                s.proof_generation = u.generation
                s.proof_at = self.now
                s.login = result.login
                event = LoginEvent.CODE_ACCEPTED
        if not result.ok:
            assert result.login == s.login
        self.check_moves(before, event, self.kinds(s))

    @rule(
        pick=st.integers(min_value=0),
        tenant_pick=st.integers(min_value=0, max_value=3),
        which=st.sampled_from(["unused", "unused", "unused_typed", "spent", "unknown", "junk"]),
        index=st.integers(min_value=0),
        unknown=st.text(RECOVERY_ALPHABET, min_size=16, max_size=16),
        junk=st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=20).filter(lambda t: len(_canonical(t)) != 16),
            st.just("ÄÄÄÄ-ÄÄÄÄ-ÄÄÄÄ-ÄÄÄÄ"),
            st.just("UUUU-UUUU-UUUU-UUUU"),  # U is not in Crockford's alphabet
        ),
    )
    def use_recovery_code(
        self,
        pick: int,
        tenant_pick: int,
        which: str,
        index: int,
        unknown: str,
        junk: object,
    ) -> None:
        s = self.session(pick)
        u = self.users[s.user]
        tenants = self.tenants_of(s.user)
        if not tenants:
            return
        tenant = tenants[tenant_pick % len(tenants)]
        unused = sorted(u.recovery_unused)
        code: object = unknown
        if which.startswith("unused") and unused:
            code = unused[index % len(unused)]
            if which == "unused_typed":  # typed by hand: lower case, grouped with spaces
                code = " ".join(code[i : i + 4] for i in range(0, 16, 4)).lower()
        elif which == "spent" and u.recovery_spent:
            code = u.recovery_spent[index % len(u.recovery_spent)]
        elif which == "junk":
            code = junk
        before = self.kinds(s)
        if which != "junk" and self.refused_as_stale(s, self.tf.use_recovery_code, tenant, code):
            return
        result = self.tf.use_recovery_code(s.login, tenant, code)
        note(f"use_recovery_code: {which} -> {result.reason.name}")

        event: LoginEvent | None = None
        if which == "junk":
            assert result.reason is Reason.MALFORMED
        elif u.secret is None:
            assert result.reason is Reason.INVALID  # nothing to guess, not counted
        elif not self.charge(s.user):
            assert result.reason is Reason.LOCKED
        else:
            assert isinstance(code, str)
            canonical = _canonical(code)
            if canonical not in u.recovery_unused:
                # A recovery code works at most once, and only for the set handed out last.
                assert result.reason is Reason.INVALID, which
                event = LoginEvent.TOO_MANY_FAILURES
            else:
                assert result.ok, (which, result.reason)
                u.recovery_unused.discard(canonical)
                u.recovery_spent.append(canonical)
                assert result.recovery_codes_left == len(u.recovery_unused)
                u.notices[NotificationKind.RECOVERY_CODE_USED] += 1
                self.succeed(s.user)
                s.proof_generation = u.generation
                s.proof_at = self.now
                s.login = result.login
                event = LoginEvent.RECOVERY_CODE_ACCEPTED
        self.check_moves(before, event, self.kinds(s))

    # -- reset and removal -------------------------------------------------------------------

    def factor_change_refusal(self, tenant: str, actor: str, member: str) -> type[Exception] | None:
        """What resetting or unlocking ``member`` through ``tenant`` by ``actor`` must raise."""
        if actor == OPERATOR:
            return None if member in self.members[tenant] else NotAMember
        if self.members[tenant].get(actor) is not Role.OWNER:
            return PermissionDenied
        if member not in self.members[tenant]:
            return NotAMember
        if not self.may_change_factor(actor, tenant, member):
            return PermissionDenied
        return None

    @staticmethod
    def acting(actor: str) -> dict[str, str]:
        return {"operator": OPERATOR} if actor == OPERATOR else {"actor_id": actor}

    @rule(
        tenant=st.sampled_from(TENANTS),
        actor=st.sampled_from((*ACTORS, "o1", "o2", OPERATOR)),  # owners a little more often
        member=st.sampled_from(USERS),
    )
    def owner_resets_a_member(self, tenant: str, actor: str, member: str) -> None:
        refusal = self.factor_change_refusal(tenant, actor, member)
        if refusal is not None:
            with pytest.raises(refusal):
                self.tf.reset_two_factor(tenant, member, **self.acting(actor))
        elif self.state(member) is EnrollmentState.NONE and self.users[member].failures == 0:
            with pytest.raises(InvalidTransition):
                self.tf.reset_two_factor(tenant, member, **self.acting(actor))
        else:
            self.tf.reset_two_factor(tenant, member, **self.acting(actor))
            self.remove_factor(member, NotificationKind.TWO_FACTOR_RESET, floor=self.now)
            self.factor_changes.append((AuditKind.TWO_FACTOR_RESET, member, actor))

    @rule(
        tenant=st.sampled_from(TENANTS),
        actor=st.sampled_from((*ACTORS, "o1", "o2", OPERATOR)),
        member=st.sampled_from(USERS),
    )
    def owner_unlocks_a_member(self, tenant: str, actor: str, member: str) -> None:
        refusal = self.factor_change_refusal(tenant, actor, member)
        if refusal is not None:
            with pytest.raises(refusal):
                self.tf.unlock(tenant, member, **self.acting(actor))
            return
        mine = [s for s in self.sessions if s.user == member]
        before = [self.kinds(s) for s in mine]
        unlocked = self.tf.unlock(tenant, member, **self.acting(actor))
        assert unlocked is (self.users[member].failures > 0)
        if unlocked:
            self.succeed(member)
            self.users[member].notices[NotificationKind.TWO_FACTOR_UNLOCKED] += 1
            self.factor_changes.append((AuditKind.TWO_FACTOR_UNLOCKED, member, actor))
        for s, kinds in zip(mine, before, strict=True):
            self.check_moves(kinds, LoginEvent.UNLOCKED, self.kinds(s))

    # -- membership --------------------------------------------------------------------------

    def tell_owners(
        self, tenant: str, member: str, role: Role | None, previous: Role | None
    ) -> None:
        """When ``member`` becomes or stops being an owner, every other owner is told."""
        if Role.OWNER not in (role, previous):
            return
        for user, held in self.members[tenant].items():
            if held is Role.OWNER and user != member and user in self.users:
                self.users[user].notices[NotificationKind.OWNERS_CHANGED] += 1

    def member_refusal(
        self, tenant: str, actor: str, member: str, targets: list[Role]
    ) -> type[Exception] | None:
        """What removing ``member`` (or changing their role) by ``actor`` must raise, before
        the last-owner rule: ``targets`` are the roles acted on (the old and the new one)."""
        if actor == OPERATOR:
            return None if member in self.members[tenant] else NotAMember
        acting = self.members[tenant].get(actor)
        if acting is None:
            return PermissionDenied
        if member not in self.members[tenant]:
            return NotAMember
        if not all(role in ACTS_ON[acting] for role in targets):
            return PermissionDenied
        return None

    @rule(
        tenant=st.sampled_from(TENANTS),
        actor=st.sampled_from((*ACTORS, OPERATOR)),
        member=st.sampled_from((*USERS, "newcomer")),
        role=st.sampled_from(Role),
    )
    def add_a_member(self, tenant: str, actor: str, member: str, role: Role) -> None:
        acting = self.members[tenant].get(actor)
        if actor != OPERATOR and (acting is None or role not in ACTS_ON[acting]):
            with pytest.raises(PermissionDenied):
                self.tf.add_member(tenant, member, role=role, **self.acting(actor))
        elif member in self.members[tenant]:
            with pytest.raises(AlreadyMember):
                self.tf.add_member(tenant, member, role=role, **self.acting(actor))
        elif member in self.users:  # "newcomer" only probes the rules: the model tracks USERS
            self.tf.add_member(tenant, member, role=role, **self.acting(actor))
            self.tell_owners(tenant, member, role, None)
            self.members[tenant][member] = role
            self.users[member].notices[NotificationKind.MEMBER_ADDED] += 1

    @rule(
        tenant=st.sampled_from(TENANTS),
        actor=st.sampled_from((*ACTORS, OPERATOR, "o1", "o2")),
        member=st.sampled_from(USERS),
        leaves=st.booleans(),
    )
    def remove_a_member(self, tenant: str, actor: str, member: str, leaves: bool) -> None:
        actor = member if leaves else actor
        role = self.members[tenant].get(member)
        refusal = self.member_refusal(tenant, actor, member, [] if role is None else [role])
        if actor == member and refusal is PermissionDenied and role is not None:
            refusal = None  # anyone may leave
        if refusal is None and self.last_owner(tenant, member):
            refusal = LastOwner
        if refusal is not None:
            with pytest.raises(refusal):
                self.tf.remove_member(tenant, member, **self.acting(actor))
            return
        self.tf.remove_member(tenant, member, **self.acting(actor))
        self.tell_owners(tenant, member, None, role)
        del self.members[tenant][member]
        self.users[member].notices[NotificationKind.MEMBER_REMOVED] += 1
        for s in self.sessions:
            if s.user == member:  # no longer bound by, nor reachable through, the tenant
                with pytest.raises(NotAMember):
                    self.tf.login_step(s.login, tenant)

    @rule(
        tenant=st.sampled_from(TENANTS),
        actor=st.sampled_from((*ACTORS, OPERATOR, "o1", "o2")),
        member=st.sampled_from(USERS),
        role=st.sampled_from(Role),
    )
    def change_a_role(self, tenant: str, actor: str, member: str, role: Role) -> None:
        old = self.members[tenant].get(member)
        refusal = self.member_refusal(tenant, actor, member, [] if old is None else [old, role])
        demoting = old is not role and role is not Role.OWNER
        if refusal is None and demoting and self.last_owner(tenant, member):
            refusal = LastOwner
        if refusal is not None:
            with pytest.raises(refusal):
                self.tf.set_role(tenant, member, role, **self.acting(actor))
            return
        assert old is not None
        membership = self.tf.set_role(tenant, member, role, **self.acting(actor))
        assert membership.role is role
        if old is role:
            return
        self.users[member].notices[NotificationKind.ROLE_CHANGED] += 1
        self.tell_owners(tenant, member, role, old)
        self.members[tenant][member] = role

    @rule(pick=st.integers(min_value=0))
    def user_removes_their_own(self, pick: int) -> None:
        s = self.session(pick)
        if any(self.required[t] for t in self.tenants_of(s.user)):
            with pytest.raises(TwoFactorRequired):
                self.tf.remove_two_factor(s.login)
        elif not self.identity_fresh(s):
            with pytest.raises(StepUpRequired):
                self.tf.remove_two_factor(s.login)
        elif self.state(s.user) is EnrollmentState.NONE:
            with pytest.raises(InvalidTransition):
                self.tf.remove_two_factor(s.login)
        elif self.users[s.user].secret is not None and not self.proven(s):
            with pytest.raises(StepUpRequired):
                self.tf.remove_two_factor(s.login)
        else:
            s.login = self.tf.remove_two_factor(s.login)
            assert s.login.second_factor_at is None
            # Other logins checked before this one's identity check must check it again.
            self.remove_factor(s.user, NotificationKind.TWO_FACTOR_REMOVED, floor=s.identity_at)
            s.proof_generation = None

    # -- time --------------------------------------------------------------------------------

    @rule(move=t2st.clock_moves())
    def clock_moves(self, move: timedelta) -> None:
        self.now = self.clock.advance(move)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def policies_change_only_by_owners_with_one_audit_record_each(self) -> None:
        for tenant in TENANTS:
            policy = self.tf.tenant(tenant)
            assert policy.two_factor_required is self.required[tenant]
            assert policy.version == self.switches[tenant]
            assert self.switch_records(tenant) == self.switches[tenant]
            if self.required[tenant]:
                assert policy.activated_at == self.activated_at[tenant]

    @invariant()
    def no_factor_changes_without_authority_over_every_requiring_tenant(self) -> None:
        """Each reset and unlock the audit log shows is one the model allowed: by the operator,
        or by an actor the model found to own every tenant relying on the user's factor."""
        records = self.tf.audit_log(kinds=FACTOR_CHANGES, limit=10_000)
        # Sorted: the log is in time order, and the clock may step back between two of them.
        changes = sorted((r.kind.value, r.user_id or "", r.actor_id or "") for r in records)
        assert changes == sorted((k.value, u, a) for k, u, a in self.factor_changes)

    @invariant()
    def tenants_keep_an_owner_and_memberships_match_the_model(self) -> None:
        for tenant in TENANTS:
            members = {m.user_id: m.role for m in self.tf.members(tenant)}
            assert members == self.members[tenant]
            assert Role.OWNER in members.values()

    @invariant()
    def every_session_is_at_the_step_the_model_expects(self) -> None:
        for s in self.sessions:
            for tenant in TENANTS:
                if tenant not in self.members or s.user not in self.members[tenant]:
                    with pytest.raises(NotAMember):
                        self.tf.login_step(s.login, tenant)
            for tenant in self.tenants_of(s.user):
                kind = self.tf.login_step(s.login, tenant).kind
                note(f"login_step: {kind.name}")
                if kind is StepKind.DONE and self.required[tenant]:
                    assert self.proven(s), f"{s.user} reached DONE in {tenant} without a proof"
                assert kind is self.expected_kind(s, tenant), (s.user, tenant)

    @invariant()
    def authenticators_and_counters_match_the_model(self) -> None:
        for user, u in self.users.items():
            status = self.tf.user_status(user)
            assert status.state is self.state(user), user
            assert status.failures == u.failures
            assert status.recovery_codes_left == len(u.recovery_unused)
            assert status.locked is not self.wait_until(user)[0]
            if u.secret is None:
                with pytest.raises(LookupError):
                    secret_of(self.tf, user)
            else:
                assert secret_of(self.tf, user) == u.secret

    @invariant()
    def users_are_told_about_every_change_to_their_second_factor(self) -> None:
        for user, u in self.users.items():
            sent = Counter(
                n.kind for n in self.notifier.for_user(user) if n.kind in TRACKED_NOTICES
            )
            assert sent == u.notices, user


def test_two_factor_service_keeps_its_invariants_under_any_sequence_of_calls() -> None:
    run_state_machine_as_test(
        TwoFactorMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
