"""Test helpers for tenant2fa and for applications that embed it.

- :class:`FakeClock`: a clock that moves only when told to.
- :func:`code_for`: the code a user's authenticator shows now (reads the secret from storage).
- :mod:`tenant2fa.testing.conformance`: the storage conformance suite; subclass
  :class:`~tenant2fa.testing.conformance.StorageConformance` with a ``storage`` fixture.
- :mod:`tenant2fa.testing.strategies`: hypothesis strategies (needs the ``testing`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenant2fa import totp
from tenant2fa.testing.clock import FakeClock

if TYPE_CHECKING:
    from datetime import datetime

    from tenant2fa.service import TwoFactor

__all__ = ["FakeClock", "code_for", "pending_code_for", "secret_of"]


def secret_of(tf: TwoFactor, user_id: str, *, pending: bool = False) -> bytes:
    """The user's active (or pending) TOTP secret, decrypted. Tests only."""
    factor = tf.storage.get_factor(user_id)
    blob = factor.pending.secret if pending and factor.pending else factor.secret
    if blob is None:
        raise LookupError(f"user {user_id!r} has no {'pending' if pending else 'active'} secret")
    return tf.keyring.decrypt(blob, purpose="totp-secret", context=user_id)


def code_for(
    tf: TwoFactor,
    user_id: str,
    *,
    at: datetime | None = None,
    offset: int = 0,
    pending: bool = False,
) -> str:
    """The code the user's authenticator shows at ``at`` (default: the service clock's now),
    ``offset`` time steps away."""
    now = at or tf.clock.now()
    step = totp.time_step(now, tf.config.totp.period) + offset
    return totp.code_at(secret_of(tf, user_id, pending=pending), step, tf.config.totp)


def pending_code_for(tf: TwoFactor, user_id: str, *, offset: int = 0) -> str:
    """The code of the user's pending (not yet confirmed) secret now."""
    return code_for(tf, user_id, offset=offset, pending=True)
