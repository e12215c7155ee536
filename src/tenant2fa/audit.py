"""Audit records: what happened, to whom, by whom, when. Pure values.

Records never carry a secret, a code or a recovery code: ``detail`` holds only short,
non-secret facts such as ``{"old": "off", "new": "on"}`` or ``{"reason": "invalid"}``.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from tenant2fa.clock import require_utc
from tenant2fa.errors import InvalidInput
from tenant2fa.policy import check_identifier

__all__ = ["AuditKind", "AuditQuery", "AuditRecord", "new_audit_record"]


class AuditKind(enum.Enum):
    TENANT_CREATED = "tenant_created"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    ROLE_CHANGED = "role_changed"
    TWO_FACTOR_SWITCHED = "two_factor_switched"
    SESSION_STARTED = "session_started"
    IDENTITY_VERIFIED = "identity_verified"
    ENROLLMENT_BEGUN = "enrollment_begun"
    ENROLLMENT_CONFIRMED = "enrollment_confirmed"
    ENROLLMENT_DEFERRED = "enrollment_deferred"
    CODE_ACCEPTED = "code_accepted"
    CODE_REJECTED = "code_rejected"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODE_REJECTED = "recovery_code_rejected"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    LOCKED_OUT = "locked_out"
    TWO_FACTOR_RESET = "two_factor_reset"
    TWO_FACTOR_REMOVED = "two_factor_removed"
    TWO_FACTOR_UNLOCKED = "two_factor_unlocked"
    KEYS_ROTATED = "keys_rotated"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audited event. ``user_id`` is whom it concerns, ``actor_id`` who did it."""

    record_id: str
    at: datetime
    kind: AuditKind
    tenant_id: str | None
    user_id: str | None
    actor_id: str | None
    detail: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def new_audit_record(
    kind: AuditKind,
    *,
    at: datetime,
    tenant_id: str | None = None,
    user_id: str | None = None,
    actor_id: str | None = None,
    **detail: str,
) -> AuditRecord:
    """A record with a fresh random id."""
    return AuditRecord(
        record_id=secrets.token_hex(16),
        at=at,
        kind=kind,
        tenant_id=tenant_id,
        user_id=user_id,
        actor_id=actor_id,
        detail=MappingProxyType(dict(detail)),
    )


MAX_PAGE_NUMBER = 2**63 - 1
"""The largest ``limit`` and ``offset`` of an :class:`AuditQuery`: the largest LIMIT and OFFSET that
every database takes (a signed 64-bit integer)."""


def _page_number(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_PAGE_NUMBER:
        raise InvalidInput(f"{name} must be between 0 and 2**63 - 1")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Filters for reading the audit log; ``None`` means any. Results are oldest first.

    ``user_id`` matches records about that user and records of actions that user took.

    Raises :class:`~tenant2fa.errors.InvalidInput` for a value no backend could search by: an id
    that is not one (see :func:`~tenant2fa.policy.check_identifier`), ``kinds`` that are not
    :class:`AuditKind` values, a naive ``since`` or ``until``, or a ``limit`` or ``offset`` that is
    not an int from 0 to 2**63 - 1. ``kinds`` may be given as any set, list or tuple; it is kept
    as a frozenset, and ``since`` and ``until`` in UTC.
    """

    tenant_id: str | None = None
    user_id: str | None = None
    kinds: frozenset[AuditKind] | None = None
    since: datetime | None = None
    """Inclusive lower bound on ``at``."""
    until: datetime | None = None
    """Exclusive upper bound on ``at``."""
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.tenant_id is not None:
            check_identifier(self.tenant_id, "tenant_id")
        if self.user_id is not None:
            check_identifier(self.user_id, "user_id")
        kinds: object = self.kinds
        if kinds is not None:
            if not isinstance(kinds, (set, frozenset, list, tuple)) or not all(
                isinstance(kind, AuditKind) for kind in kinds
            ):
                raise InvalidInput("kinds must be a set of AuditKind values, or None")
            object.__setattr__(self, "kinds", frozenset(kinds))
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                object.__setattr__(self, name, require_utc(moment, name))
        _page_number(self.limit, "limit")
        _page_number(self.offset, "offset")

    def matches(self, record: AuditRecord) -> bool:
        return (
            (self.tenant_id is None or record.tenant_id == self.tenant_id)
            and (self.user_id is None or self.user_id in (record.user_id, record.actor_id))
            and (self.kinds is None or record.kind in self.kinds)
            and (self.since is None or record.at >= self.since)
            and (self.until is None or record.at < self.until)
        )
