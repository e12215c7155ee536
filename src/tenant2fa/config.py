"""Settings of a :class:`tenant2fa.TwoFactor`. Every default is the safe one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from tenant2fa.errors import ConfigurationError, InvalidInput
from tenant2fa.flow import FlowConfig
from tenant2fa.policy import DEFAULT_TOGGLE_ROLES, MAX_GRACE_PERIOD, Role
from tenant2fa.recovery import RecoveryCodeHasher
from tenant2fa.throttle import ThrottleRules
from tenant2fa.totp import SECRET_BYTES, TotpSettings, check_label_part, provisioning_uri

__all__ = ["Config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """How the service behaves.

    - ``issuer``: the name authenticator apps show next to the account (no colon).
    - ``reauth_window``: how recent a password/SSO check must be to enroll or change 2FA (10 min).
    - ``pending_ttl``: how long a begun enrollment may wait for its confirming code (10 min).
    - ``challenge_everywhere``: ask enrolled users for a code in every tenant, not only in those
      that require 2FA.
    - ``toggle_roles``: roles that may switch a tenant's 2FA, and reset or unlock members
      (owners only). Who may act on whom is :data:`tenant2fa.policy.MEMBER_RULES`.
    - ``recovery_code_count``: how many one-time codes a user gets on confirming (10).
    - ``max_login_age``: how long a login's identity check lasts (12 hours, NIST SP 800-63B's
      bound for AAL2 sessions); an older login gets VERIFY_IDENTITY everywhere until the host
      re-checks the password or SSO sign-in. ``None`` turns it off.
    - ``max_grace_period``: the longest grace period an owner may give (90 days).
    - ``audit_sessions``: record every sign-in (``start_session``) in the audit log, one write
      per sign-in. ``False`` makes a sign-in write nothing (a host that logs its sign-ins itself);
      every 2FA event is audited either way.
    """

    issuer: str = "tenant2fa"
    totp: TotpSettings = TotpSettings()
    throttle: ThrottleRules = ThrottleRules()
    reauth_window: timedelta = timedelta(minutes=10)
    pending_ttl: timedelta = timedelta(minutes=10)
    challenge_everywhere: bool = False
    toggle_roles: frozenset[Role] = DEFAULT_TOGGLE_ROLES
    recovery_code_count: int = 10
    recovery_hasher: RecoveryCodeHasher = field(default_factory=RecoveryCodeHasher)
    max_login_age: timedelta | None = timedelta(hours=12)
    max_grace_period: timedelta = MAX_GRACE_PERIOD
    audit_sessions: bool = True

    def __post_init__(self) -> None:
        self._check_types()
        try:
            check_label_part(self.issuer, "issuer")
            # The issuer appears twice in every otpauth:// URI: it must leave room for a name.
            provisioning_uri(
                bytes(SECRET_BYTES), account_name="a", issuer=self.issuer, settings=self.totp
            )
        except InvalidInput as exc:
            raise ConfigurationError(str(exc)) from None
        if not timedelta(seconds=30) <= self.reauth_window <= timedelta(hours=24):
            raise ConfigurationError("reauth_window must be between 30 seconds and 24 hours")
        if not timedelta(minutes=1) <= self.pending_ttl <= timedelta(hours=24):
            raise ConfigurationError("pending_ttl must be between 1 minute and 24 hours")
        if not self.toggle_roles:
            raise ConfigurationError("toggle_roles must name at least one role")
        if not 1 <= self.recovery_code_count <= 100:
            raise ConfigurationError("recovery_code_count must be between 1 and 100")
        if self.max_login_age is not None and not (
            self.reauth_window <= self.max_login_age <= timedelta(days=366)
        ):
            raise ConfigurationError(
                "max_login_age must be None or between reauth_window and 366 days"
            )
        if not timedelta(0) <= self.max_grace_period <= timedelta(days=3650):
            raise ConfigurationError("max_grace_period must be between 0 and 3650 days")

    def _check_types(self) -> None:
        # Checked first, so that a wrong type gets a ConfigurationError, not a TypeError from a
        # comparison below. A set of roles is kept as a frozenset, so that the Config hashes.
        expected: tuple[tuple[str, type | tuple[type, ...]], ...] = (
            ("totp", TotpSettings),
            ("throttle", ThrottleRules),
            ("reauth_window", timedelta),
            ("pending_ttl", timedelta),
            ("challenge_everywhere", bool),
            ("toggle_roles", (frozenset, set)),
            ("recovery_code_count", int),
            ("recovery_hasher", RecoveryCodeHasher),
            ("max_login_age", (timedelta, type(None))),
            ("max_grace_period", timedelta),
            ("audit_sessions", bool),
        )
        for name, kind in expected:
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigurationError(f"{name} has the wrong type: {type(value).__name__}")
        if not all(isinstance(role, Role) for role in self.toggle_roles):
            raise ConfigurationError("toggle_roles must be a set of tenant2fa.Role values")
        object.__setattr__(self, "toggle_roles", frozenset(self.toggle_roles))

    @property
    def flow(self) -> FlowConfig:
        return FlowConfig(
            reauth_window=self.reauth_window,
            challenge_everywhere=self.challenge_everywhere,
            throttle=self.throttle,
            max_login_age=self.max_login_age,
        )
