"""Throttling of code guesses. Pure: no I/O.

One counter per user account counts consecutive failed attempts of every kind (login codes,
enrollment confirmation codes, recovery codes), shared by all of the user's tenants and sessions.
Storage charges an attempt *before* the code is evaluated, atomically with the check below, so a
crash never yields a free guess and parallel requests cannot exceed the allowance. A success
resets the count to zero.

The rules, with the defaults::

    failures <  free_failures (5)       no delay
    failures >= free_failures            wait base_delay (30 s) * 2 ** (failures - free_failures),
                                         at most max_delay (1 h), after the last failure
    failures >= max_failures (100)      locked until an owner unlocks the user (or resets their 2FA)

100 is NIST SP 800-63B's cap on consecutive failures; with the default delays reaching it takes
days of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tenant2fa.clock import later
from tenant2fa.errors import ConfigurationError

__all__ = ["NIST_MAX_FAILURES", "Allowance", "ThrottleRules", "allowance"]

NIST_MAX_FAILURES = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleRules:
    """How consecutive failures slow a user down and when they lock them out."""

    free_failures: int = 5
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)
    max_failures: int = NIST_MAX_FAILURES

    def __post_init__(self) -> None:
        if not 1 <= self.max_failures <= NIST_MAX_FAILURES:
            raise ConfigurationError(
                f"max_failures must be between 1 and {NIST_MAX_FAILURES} (NIST SP 800-63B)"
            )
        if not 0 <= self.free_failures <= self.max_failures:
            raise ConfigurationError("free_failures must be between 0 and max_failures")
        if self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ConfigurationError("need 0 < base_delay <= max_delay")

    def delay_after(self, failures: int) -> timedelta:
        """How long to wait after the ``failures``-th consecutive failure."""
        if failures < self.free_failures:
            return timedelta(0)
        exponent = failures - self.free_failures
        # 2**exponent overflows timedelta long before max_failures; cap the exponent first.
        if exponent >= 32:
            return self.max_delay
        delay: timedelta = self.base_delay * (2**exponent)
        return min(delay, self.max_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowance:
    """Whether a user may make an attempt now, and if not, until when they wait.

    ``retry_at`` is ``None`` while ``allowed``, and also when the user is locked for good (until an
    owner unlocks the user); ``locked_for_good`` tells those apart.
    """

    allowed: bool
    retry_at: datetime | None = None
    locked_for_good: bool = False


def allowance(
    *, failures: int, last_failure_at: datetime | None, now: datetime, rules: ThrottleRules
) -> Allowance:
    """Decide whether an attempt at ``now`` may be evaluated, given the stored counter."""
    if failures >= rules.max_failures:
        return Allowance(allowed=False, locked_for_good=True)
    # Free failures impose no wait, even if the last one was stamped by a clock ahead of ours.
    if failures < rules.free_failures or failures <= 0 or last_failure_at is None:
        return _ALLOWED
    retry_at = later(last_failure_at, rules.delay_after(failures))
    if now < retry_at:
        return Allowance(allowed=False, retry_at=retry_at)
    return _ALLOWED


_ALLOWED = Allowance(allowed=True)
"""The common answer, made once (it is immutable): every login decision asks."""
