"""The exceptions tenant2fa raises.

Expected outcomes (a wrong code, a replayed code, a locked user) are *results*, never exceptions:
see :class:`tenant2fa.VerifyResult`. Exceptions are for programming errors, refused authority and
broken infrastructure. Every one derives from :class:`Tenant2FAError`, and no message ever carries a
secret, a code or a recovery code::

    Tenant2FAError
    ├── ConfigurationError          bad settings or keys given to the library
    ├── InvalidInput                a value the host passed is not acceptable (ValueError too)
    ├── NotFound                    (LookupError too)
    │   ├── UnknownTenant
    │   └── NotAMember
    ├── Conflict
    │   ├── TenantExists
    │   ├── AlreadyMember
    │   ├── LastOwner               the change would leave a tenant without an owner
    │   └── ConcurrentChange        what a decision rested on changed before it was written
    ├── PermissionDenied            the actor may not do this (e.g. a non-owner toggling 2FA)
    │   └── TwoFactorRequired       a tenant of the user requires 2FA, so it may not be removed
    ├── StepUpRequired              the login must first pass the named step
    ├── InvalidTransition           an enrollment move the state machine does not allow
    ├── InvalidSession              a forged, edited or foreign login-session value
    ├── KeyringError                a ciphertext cannot be opened (unknown key, tampered, wrong user)
    ├── StorageError                the backend failed; the operation did not happen
    └── DeliveryError               a notification could not be handed to the mail server
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenant2fa.enrollment import EnrollmentEvent, EnrollmentState
    from tenant2fa.flow import StepKind

__all__ = [
    "AlreadyMember",
    "ConcurrentChange",
    "ConfigurationError",
    "Conflict",
    "DeliveryError",
    "InvalidInput",
    "InvalidSession",
    "InvalidTransition",
    "KeyringError",
    "LastOwner",
    "NotAMember",
    "NotFound",
    "PermissionDenied",
    "StepUpRequired",
    "StorageError",
    "Tenant2FAError",
    "TenantExists",
    "TwoFactorRequired",
    "UnknownTenant",
]


class Tenant2FAError(Exception):
    """Base class of every exception raised by tenant2fa."""


class ConfigurationError(Tenant2FAError):
    """The library was configured with values it cannot work with."""


class InvalidInput(Tenant2FAError, ValueError):
    """A value passed by the host is malformed (an empty id, a colon in an issuer name...)."""


class NotFound(Tenant2FAError, LookupError):
    """Something the call refers to does not exist."""


class UnknownTenant(NotFound):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}")
        self.tenant_id = tenant_id


class NotAMember(NotFound):
    def __init__(self, tenant_id: str, user_id: str) -> None:
        super().__init__(f"user {user_id!r} is not a member of tenant {tenant_id!r}")
        self.tenant_id = tenant_id
        self.user_id = user_id


class Conflict(Tenant2FAError):
    """The call would create something that already exists."""


class TenantExists(Conflict):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} already exists")
        self.tenant_id = tenant_id


class AlreadyMember(Conflict):
    def __init__(self, tenant_id: str, user_id: str) -> None:
        super().__init__(f"user {user_id!r} is already a member of tenant {tenant_id!r}")
        self.tenant_id = tenant_id
        self.user_id = user_id


class LastOwner(Conflict):
    """Removing or demoting this member would leave the tenant without an owner. Nothing changed."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} must keep at least one owner")
        self.tenant_id = tenant_id


class ConcurrentChange(Conflict):
    """Something the decision rested on (a role, a membership, a tenant's policy) changed between
    reading it and writing the outcome. Nothing was written; the call may be made again."""


class PermissionDenied(Tenant2FAError):
    """The actor is not allowed to do this. Nothing was changed."""


class TwoFactorRequired(PermissionDenied):
    """The user may not remove their 2FA while one of their tenants requires it."""


class StepUpRequired(Tenant2FAError):
    """The login session must first pass ``step`` (e.g. a fresh identity check)."""

    def __init__(self, step: StepKind, message: str) -> None:
        super().__init__(message)
        self.step = step


class InvalidTransition(Tenant2FAError):
    """The enrollment state machine does not allow ``event`` in ``state``. Nothing was changed."""

    def __init__(self, state: EnrollmentState, event: EnrollmentEvent) -> None:
        super().__init__(f"enrollment event {event.name} is not allowed in state {state.name}")
        self.state = state
        self.event = event


class InvalidSession(Tenant2FAError):
    """A login-session value was forged, edited, sealed with an unknown key or is for another user."""


class KeyringError(Tenant2FAError):
    """A ciphertext could not be opened: unknown key id, tampering, or bound to another user."""


class StorageError(Tenant2FAError):
    """The storage backend failed. The operation either did not happen or is safe to retry."""


class DeliveryError(Tenant2FAError):
    """A notification could not be delivered (the mail server refused it, was unreachable, or
    did not answer in time). The change it reports stands, and the notification may be sent
    again."""
