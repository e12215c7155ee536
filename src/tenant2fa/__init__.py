"""tenant2fa: multi-tenant two-factor authentication (TOTP) for Python applications.

Start with :class:`TwoFactor`; see ``docs/integration.md`` for a walk-through. The e-mail notifier
is :class:`tenant2fa.smtp.SMTPNotifier` (imported from its module, so that ``import tenant2fa``
loads no networking code).
"""

from __future__ import annotations

from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord
from tenant2fa.clock import Clock, SystemClock
from tenant2fa.config import Config
from tenant2fa.dispatch import Dispatcher
from tenant2fa.enrollment import EnrollmentEvent, EnrollmentState
from tenant2fa.errors import (
    AlreadyMember,
    ConcurrentChange,
    ConfigurationError,
    Conflict,
    DeliveryError,
    InvalidInput,
    InvalidSession,
    InvalidTransition,
    KeyringError,
    LastOwner,
    NotAMember,
    NotFound,
    PermissionDenied,
    StepUpRequired,
    StorageError,
    Tenant2FAError,
    TenantExists,
    TwoFactorRequired,
    UnknownTenant,
)
from tenant2fa.flow import Step, StepKind
from tenant2fa.keyring import Keyring
from tenant2fa.notify import InMemoryNotifier, Notification, NotificationKind, Notifier
from tenant2fa.outbox import DeliveryRules
from tenant2fa.policy import Membership, Role, TenantPolicy
from tenant2fa.recovery import RecoveryCodeHasher
from tenant2fa.results import (
    EnrollmentResult,
    Provisioning,
    Reason,
    RotationReport,
    UserStatus,
    VerifyResult,
)
from tenant2fa.service import TwoFactor
from tenant2fa.session import LoginSession
from tenant2fa.storage import Storage
from tenant2fa.storage.memory import MemoryStorage
from tenant2fa.templates import MessageTemplate, Templates
from tenant2fa.throttle import ThrottleRules
from tenant2fa.totp import Algorithm, TotpSettings

__version__ = "0.1.0.dev0"

__all__ = [
    "Algorithm",
    "AlreadyMember",
    "AuditKind",
    "AuditQuery",
    "AuditRecord",
    "Clock",
    "ConcurrentChange",
    "Config",
    "ConfigurationError",
    "Conflict",
    "DeliveryError",
    "DeliveryRules",
    "Dispatcher",
    "EnrollmentEvent",
    "EnrollmentResult",
    "EnrollmentState",
    "InMemoryNotifier",
    "InvalidInput",
    "InvalidSession",
    "InvalidTransition",
    "Keyring",
    "KeyringError",
    "LastOwner",
    "LoginSession",
    "Membership",
    "MemoryStorage",
    "MessageTemplate",
    "NotAMember",
    "NotFound",
    "Notification",
    "NotificationKind",
    "Notifier",
    "PermissionDenied",
    "Provisioning",
    "Reason",
    "RecoveryCodeHasher",
    "Role",
    "RotationReport",
    "Step",
    "StepKind",
    "StepUpRequired",
    "Storage",
    "StorageError",
    "SystemClock",
    "Templates",
    "Tenant2FAError",
    "TenantExists",
    "TenantPolicy",
    "ThrottleRules",
    "TotpSettings",
    "TwoFactor",
    "TwoFactorRequired",
    "UnknownTenant",
    "UserStatus",
    "VerifyResult",
    "__version__",
]
