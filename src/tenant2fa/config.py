"""Settings of a :class:`tenant2fa.TwoFactor`. Every default is the safe one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from tenant2fa.errors import ConfigurationError, InvalidInput
from tenant2fa.flow import FlowConfig
from tenant2fa.policy import DEFAULT_TOGGLE_ROLES, Role
from tenant2fa.recovery import RecoveryCodeHasher
from tenant2fa.throttle import ThrottleRules
from tenant2fa.totp import TotpSettings, check_label_part

__all__ = ["Config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """How the service behaves.

    - ``issuer``: the name authenticator apps show next to the account (no colon).
    - ``reauth_window``: how recent a password/SSO check must be to enroll or change 2FA (10 min).
    - ``pending_ttl``: how long a begun enrollment may wait for its confirming code (10 min).
    - ``challenge_everywhere``: ask enrolled users for a code in every tenant, not only in those
      that require 2FA.
    - ``toggle_roles``: roles that may switch a tenant's 2FA and reset members (owners only).
    - ``recovery_code_count``: how many one-time codes a user gets on confirming (10).
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

    def __post_init__(self) -> None:
        try:
            check_label_part(self.issuer, "issuer")
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

    @property
    def flow(self) -> FlowConfig:
        return FlowConfig(
            reauth_window=self.reauth_window,
            challenge_everywhere=self.challenge_everywhere,
            throttle=self.throttle,
        )
