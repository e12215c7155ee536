"""Shared fixtures: a fake clock, an in-memory notifier, a service, and an enrolled user.

- ``clock``: a :class:`~tenant2fa.testing.FakeClock` at 2026-01-01 00:00 UTC (step-aligned).
- ``notifier``: an :class:`~tenant2fa.InMemoryNotifier` collecting what the service sends.
- ``tf``: a :class:`~tenant2fa.TwoFactor` on :class:`~tenant2fa.MemoryStorage` with a fresh keyring,
  issuer ``"Onum"`` and a cheap recovery-code hasher (fast tests).
- ``enrolled``: tenants ``"A"`` (owner ``"alice"``) and ``"B"`` (owner ``"olga"``, 2FA on), with
  ``"bob"`` a member of both and enrolled. The clock is left at the confirming instant
  (00:00:01), so the current time step is already used: advance the clock before expecting a
  fresh code to pass. :func:`enroll_bob` does the same setup at any instant the clock is set to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tenant2fa import (
    Config,
    InMemoryNotifier,
    Keyring,
    LoginSession,
    MemoryStorage,
    RecoveryCodeHasher,
    TwoFactor,
)
from tenant2fa.testing import FakeClock, pending_code_for

# Detailed assertion messages from the shipped conformance suite (it is not a test module, and
# nothing above imports it).
pytest.register_assert_rewrite("tenant2fa.testing.conformance")
# The same for the browser story that tests/test_browser.py and tests/test_site.py share.
pytest.register_assert_rewrite("browser_story")


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrolled:
    """The outcome of the ``enrolled`` fixture.

    ``login`` is bob's login after confirming (second factor proven); ``recovery_codes`` are the
    codes he was shown once.
    """

    user_id: str
    login: LoginSession
    recovery_codes: tuple[str, ...] = field(repr=False)


@pytest.fixture
def clock() -> FakeClock:
    """A clock at 2026-01-01 00:00:00 UTC that moves only when told to."""
    return FakeClock()


@pytest.fixture
def notifier() -> InMemoryNotifier:
    """Collects every notification the service sends."""
    return InMemoryNotifier()


@pytest.fixture
def tf(clock: FakeClock, notifier: InMemoryNotifier) -> TwoFactor:
    """A service on in-memory storage, with issuer "Onum" and a cheap recovery-code hasher."""
    return TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        notifier=notifier,
        clock=clock,
        config=Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )


def enroll_bob(tf: TwoFactor, clock: FakeClock) -> Enrolled:
    """Set up what the ``enrolled`` fixture describes, starting at ``clock``'s current time.

    For tests that must place the enrollment at a particular instant: set the clock, then call.
    """
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("A", "bob", operator="host")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    # A sign-in must come strictly after the newest 2FA activation to count as fresh.
    clock.advance(seconds=1)
    login = tf.start_session("bob")
    tf.begin_enrollment(login)
    result = tf.confirm_enrollment(login, pending_code_for(tf, "bob"))
    assert result.ok, result.reason
    return Enrolled(user_id="bob", login=result.login, recovery_codes=result.recovery_codes)


@pytest.fixture
def enrolled(tf: TwoFactor, clock: FakeClock) -> Enrolled:
    """Tenants A (owner alice) and B (owner olga, 2FA on); bob in both, enrolled and proven.

    Bob signs in one second after 2FA is switched on, so the clock ends at
    2026-01-01 00:00:01 UTC, inside the time step bob's confirming code used.
    """
    return enroll_bob(tf, clock)
