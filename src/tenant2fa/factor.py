"""A user's second factor as stored, the snapshot a login decision is made on, and the change
a decision writes.

Pure values (shared by the core, the service and every storage backend): see
:class:`~tenant2fa.storage.Storage` for how they are read and written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tenant2fa.enrollment import EnrollmentState, PendingEnrollment, effective_state

if TYPE_CHECKING:
    from tenant2fa.audit import AuditRecord
    from tenant2fa.notification import Notification
    from tenant2fa.policy import Standing
    from tenant2fa.recovery import RecoveryCodeSet

__all__ = ["FactorCommit", "FactorRecord", "LoginState"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorRecord:
    """Everything stored about one user's second factor (shared by all of their tenants).

    ``secret`` and ``pending.secret`` are keyring ciphertexts bound to the user. ``last_step`` only
    ever grows, across resets too, so no reset or re-enrollment re-opens a used time step.
    """

    user_id: str
    secret: bytes | None = field(default=None, repr=False)
    activated_at: datetime | None = None
    last_step: int = -1
    pending: PendingEnrollment | None = None
    epoch: int = 0
    failures: int = 0
    last_failure_at: datetime | None = None
    recovery_salt: bytes | None = field(default=None, repr=False)
    recovery_codes_left: int = 0
    identity_floor: datetime | None = None
    """Set by a reset or removal of the factor: logins whose identity was checked before it must
    check it again. Only ever grows."""
    revision: int = 0
    """Grows by one with every write of the record (0: never written). A decision made on a
    record is written only if the stored revision is still the one it was made on."""

    def state(self, now: datetime) -> EnrollmentState:
        return effective_state(has_active=self.secret is not None, pending=self.pending, now=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginState:
    """One consistent read of everything a login decision needs (:meth:`Storage.load_login`)."""

    factor: FactorRecord
    tenants: tuple[Standing, ...] = ()
    """Every tenant of the user, in tenant id order, with the user's role (``actor_role`` is
    ``None``)."""
    recovery_digests: tuple[bytes, ...] | None = field(default=None, repr=False)
    """The digests of the user's unused recovery codes in byte order, when asked for (else
    ``None``)."""

    def standing(self, tenant_id: str) -> Standing | None:
        """The user's standing in ``tenant_id``, or ``None`` if they are no member."""
        for standing in self.tenants:
            if standing.policy.tenant_id == tenant_id:
                return standing
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorCommit:
    """One decided change of a user's factor, for :meth:`Storage.commit_factor`.

    ``factor`` is the whole new record; it was decided on the record at ``expected_revision``
    and carries ``revision = expected_revision + 1``. ``use_recovery_code`` is the digest of an
    unused code to mark used at ``at``; ``recovery`` replaces every recovery code. ``audit`` and
    ``notifications`` are stored with the change (the transactional outbox).
    """

    factor: FactorRecord
    expected_revision: int
    at: datetime
    use_recovery_code: bytes | None = field(default=None, repr=False)
    recovery: RecoveryCodeSet | None = field(default=None, repr=False)
    audit: tuple[AuditRecord, ...] = ()
    notifications: tuple[Notification, ...] = ()

    def __post_init__(self) -> None:
        if self.factor.revision != self.expected_revision + 1:
            raise ValueError("a commit's record must carry the expected revision + 1")
