"""Tenant policy: roles, memberships, who may do what to whom, and the two-factor toggle. Pure.

A tenant's policy is one small value. Switching 2FA on or off produces a new value with a bumped
``version`` and, when switching on, a new ``activated_at``; it never touches users, who are
evaluated lazily at their next login (see :mod:`tenant2fa.flow`).

Who may do what to whom is one table, :data:`MEMBER_RULES`: for an actor's role and an
:class:`Action`, the roles of the members it may act on. Owners may act on everyone; admins on
admins and members (so an admin can neither create nor remove an owner, nor reset one); members
on nobody. On top of the table:

- switching 2FA, resetting and unlocking also need a role in ``Config.toggle_roles`` (owners);
- nobody resets or unlocks their own second factor through a tenant (that would be a way
  around the lock); anyone may leave a tenant, and demote themselves, within the table;
- a user's enrollment is shared by all their tenants, so resetting or unlocking it needs that
  authority in *every* tenant of the user that requires 2FA (:func:`check_factor_authority`);
- a tenant keeps at least one owner (storage enforces it atomically: :class:`~tenant2fa.errors.LastOwner`).

The host application (or a person operating it) acts outside the table: its calls name an
``operator`` instead of an ``actor_id`` and are audited under the operator's name.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING

from tenant2fa.clock import later
from tenant2fa.errors import InvalidInput, NotAMember, PermissionDenied

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "DEFAULT_TOGGLE_ROLES",
    "MEMBER_RULES",
    "OPERATOR",
    "SELF",
    "Action",
    "Actor",
    "Membership",
    "Role",
    "Standing",
    "TenantPolicy",
    "check_factor_authority",
    "check_grace_period",
    "check_identifier",
    "check_may_toggle",
    "check_member_action",
    "switch_two_factor",
]

MAX_IDENTIFIER_LENGTH = 255
MAX_GRACE_PERIOD = timedelta(days=90)
"""The default cap on a tenant's grace period (``Config.max_grace_period``)."""


class Role(enum.Enum):
    """A member's role in a tenant."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


DEFAULT_TOGGLE_ROLES: frozenset[Role] = frozenset({Role.OWNER})

OPERATOR = "operator"
"""The ``actor_role`` recorded for the host application or its operators."""
SELF = "self"
"""The ``actor_role`` recorded when users act on themselves (leaving a tenant, say)."""


class Action(enum.Enum):
    """What one member may do to another (or to the tenant), as :data:`MEMBER_RULES` rules it."""

    ADD_MEMBER = "add_member"
    REMOVE_MEMBER = "remove_member"
    CHANGE_ROLE = "change_role"
    RESET_TWO_FACTOR = "reset_two_factor"
    UNLOCK = "unlock"


_EVERYONE = frozenset(Role)
_BELOW_OWNER = frozenset({Role.ADMIN, Role.MEMBER})

MEMBER_RULES: Mapping[tuple[Role, Action], frozenset[Role]] = MappingProxyType(
    {
        (Role.OWNER, Action.ADD_MEMBER): _EVERYONE,
        (Role.ADMIN, Action.ADD_MEMBER): _BELOW_OWNER,
        (Role.OWNER, Action.REMOVE_MEMBER): _EVERYONE,
        (Role.ADMIN, Action.REMOVE_MEMBER): _BELOW_OWNER,
        (Role.OWNER, Action.CHANGE_ROLE): _EVERYONE,
        (Role.ADMIN, Action.CHANGE_ROLE): _BELOW_OWNER,
        (Role.OWNER, Action.RESET_TWO_FACTOR): _EVERYONE,
        (Role.ADMIN, Action.RESET_TWO_FACTOR): _BELOW_OWNER,
        (Role.OWNER, Action.UNLOCK): _EVERYONE,
        (Role.ADMIN, Action.UNLOCK): _BELOW_OWNER,
    }
)
"""``(actor's role, action) -> roles of the members it may act on``; no entry: not at all.

Switching a tenant's 2FA is not in the table: it acts on the tenant, and the roles that may do it
are ``Config.toggle_roles`` (owners).

For :attr:`Action.CHANGE_ROLE` both the member's current role and the new one must be in the
set (an admin cannot make an owner). For :attr:`Action.ADD_MEMBER` it is the new member's role.
:attr:`Action.RESET_TWO_FACTOR` and :attr:`Action.UNLOCK` also need the actor's role to be in
``Config.toggle_roles`` (:data:`GATED_ACTIONS`), the roles that may switch 2FA (owners).
"""

GATED_ACTIONS = frozenset({Action.RESET_TWO_FACTOR, Action.UNLOCK})
"""Actions that need a role in ``Config.toggle_roles`` besides the table."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who does something: a member of the tenant (``user_id``) or the host/operator.

    Exactly one of ``user_id`` and ``operator`` is set. An operator acts outside tenant roles;
    its name (``"support:jane"``, ``"cli:root"``) is what the audit log records.
    """

    user_id: str | None = None
    operator: str | None = None

    @classmethod
    def of(cls, actor_id: object, operator: object) -> Actor:
        """The actor of a call given ``actor_id=`` or ``operator=`` (exactly one)."""
        if (actor_id is None) == (operator is None):
            raise InvalidInput(
                "name who does it: actor_id= (a member of the tenant) or operator= (the host "
                "application or its operator), not both"
            )
        if operator is not None:
            return cls(operator=check_identifier(operator, "operator"))
        return cls(user_id=check_identifier(actor_id, "actor_id"))

    @property
    def audit_id(self) -> str:
        """The name the audit log records (the member's user id or the operator's name)."""
        return self.user_id if self.user_id is not None else str(self.operator)


def check_identifier(value: object, name: str) -> str:
    """Return ``value`` if it is a usable tenant or user id; raise :class:`InvalidInput` otherwise.

    Ids are opaque strings chosen by the host: 1 to 255 characters, no control characters, and
    no lone surrogates (``"\ud800"``, say, from a decoding with ``surrogateescape``), which no
    database can store as UTF-8.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidInput(f"{name} must be 1 to {MAX_IDENTIFIER_LENGTH} characters long")
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise InvalidInput(f"{name} must not contain lone surrogates: they have no UTF-8 form")
    if not value.isprintable():
        raise InvalidInput(f"{name} must not contain control characters")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """A user's membership of a tenant, with its role."""

    tenant_id: str
    user_id: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantPolicy:
    """A tenant and its authentication policy.

    ``activated_at`` is the time 2FA was last switched on (it stays set after switching off, and is
    only meaningful while ``two_factor_required``). ``grace_period``, when set, lets users postpone
    enrolling until ``activated_at + grace_period``. ``version`` grows by one on every change and
    makes concurrent toggles safe (compare-and-set in storage).
    """

    tenant_id: str
    name: str
    two_factor_required: bool = False
    activated_at: datetime | None = None
    grace_period: timedelta | None = None
    version: int = 0

    def enrollment_deadline(self) -> datetime | None:
        """When users of this tenant must have enrolled; ``None`` if 2FA is off."""
        if not self.two_factor_required or self.activated_at is None:
            return None
        return later(self.activated_at, self.grace_period or timedelta(0))


def check_may_toggle(membership: Membership | None, allowed_roles: Iterable[Role]) -> None:
    """Raise :class:`PermissionDenied` unless ``membership`` has one of ``allowed_roles``."""
    if membership is None or membership.role not in frozenset(allowed_roles):
        raise PermissionDenied("only a tenant owner may change its two-factor authentication")


def _allowed(
    action: Action, actor_role: Role | None, target_role: Role, gated_roles: frozenset[Role]
) -> bool:
    if actor_role is None or (action in GATED_ACTIONS and actor_role not in gated_roles):
        return False
    return target_role in MEMBER_RULES.get((actor_role, action), frozenset())


_WHAT: Mapping[Action, str] = MappingProxyType(
    {
        Action.ADD_MEMBER: "add members",
        Action.REMOVE_MEMBER: "remove members",
        Action.CHANGE_ROLE: "change roles",
        Action.RESET_TWO_FACTOR: "reset two-factor authentication",
        Action.UNLOCK: "unlock members",
    }
)
_VERB: Mapping[Action, str] = MappingProxyType(
    {
        Action.ADD_MEMBER: "add",
        Action.REMOVE_MEMBER: "remove",
        Action.CHANGE_ROLE: "change the role of",
        Action.RESET_TWO_FACTOR: "reset",
        Action.UNLOCK: "unlock",
    }
)


def check_member_action(
    action: Action,
    *,
    actor: Membership | None,
    target: Membership,
    new_role: Role | None = None,
    gated_roles: frozenset[Role] = DEFAULT_TOGGLE_ROLES,
) -> None:
    """Raise :class:`PermissionDenied` unless member ``actor`` may do ``action`` to ``target``
    in their tenant, per :data:`MEMBER_RULES` (``actor`` ``None``: not a member of it).

    ``target`` is the member acted on (for ADD_MEMBER, the membership to be created);
    ``new_role`` the role CHANGE_ROLE gives. A member may always leave a tenant (REMOVE_MEMBER
    on themselves); nobody may reset or unlock their own factor.
    """
    if actor is None or actor.tenant_id != target.tenant_id:
        raise PermissionDenied("you are not a member of this tenant with the right role")
    is_self = actor.user_id == target.user_id
    if is_self and action is Action.REMOVE_MEMBER:
        return
    if is_self and action in (Action.RESET_TWO_FACTOR, Action.UNLOCK):
        raise PermissionDenied("nobody can reset or unlock their own two-factor authentication")
    if (actor.role, action) not in MEMBER_RULES or (
        action in GATED_ACTIONS and actor.role not in gated_roles
    ):
        raise PermissionDenied(f"a tenant {actor.role.value} may not {_WHAT[action]}")
    if not _allowed(action, actor.role, target.role, gated_roles):
        raise PermissionDenied(
            f"a tenant {actor.role.value} may not {_VERB[action]} {target.role.value}s"
        )
    if new_role is not None and not _allowed(action, actor.role, new_role, gated_roles):
        raise PermissionDenied(f"a tenant {actor.role.value} may not make {new_role.value}s")


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """One tenant of a user, as an authority decision sees it: the tenant's policy, the user's
    role in it, and the acting member's role (``None``: the actor is not a member of it)."""

    policy: TenantPolicy
    role: Role
    actor_role: Role | None = None


_NO_FACTOR_AUTHORITY = (
    "you may not change this user's two-factor authentication: it is shared by every tenant "
    "they belong to, and needs an owner of each tenant that requires it, or the operator"
)


def check_factor_authority(
    action: Action,
    *,
    tenant_id: str,
    user_id: str,
    actor: Actor,
    standings: Sequence[Standing],
    gated_roles: frozenset[Role] = DEFAULT_TOGGLE_ROLES,
    challenge_everywhere: bool = False,
) -> None:
    """Decide whether ``actor`` may reset or unlock ``user_id``'s factor through ``tenant_id``.

    ``standings`` are every tenant of the user (see :class:`Standing`). The factor is shared by
    all of them, so a member acting needs the authority of :data:`MEMBER_RULES` (and a role in
    ``gated_roles``) in ``tenant_id`` and in every tenant that relies on the factor: those that
    require 2FA (in a grace period too), or all of them with ``challenge_everywhere``. An
    operator needs none.

    Raises :class:`PermissionDenied` with one message whichever tenant is missing, so that the
    answer does not tell which other tenants the user belongs to, and :class:`NotAMember` when the
    user is not in ``tenant_id`` (checked after the actor's own role there).
    """
    here = next((s for s in standings if s.policy.tenant_id == tenant_id), None)
    if here is None:
        # Whether a member actor may act in this tenant at all was checked before the user's
        # tenants were read (see TwoFactor); here the user is simply not a member.
        raise NotAMember(tenant_id, user_id)
    if actor.user_id is None:
        return
    if actor.user_id == user_id:
        raise PermissionDenied("nobody can reset or unlock their own two-factor authentication")
    relying = [
        s for s in standings if challenge_everywhere or s.policy.two_factor_required or s is here
    ]
    if not all(_allowed(action, s.actor_role, s.role, gated_roles) for s in relying):
        raise PermissionDenied(_NO_FACTOR_AUTHORITY)


def check_grace_period(grace_period: object, max_grace_period: timedelta) -> None:
    """Raise :class:`InvalidInput` unless ``grace_period`` is ``None`` or a timedelta from 0 to
    ``max_grace_period``: a deadline far in the future would postpone 2FA for good (and one
    beyond the year 9999 cannot be computed)."""
    if grace_period is None:
        return
    if not isinstance(grace_period, timedelta):
        raise InvalidInput("grace_period must be a timedelta or None")
    if not timedelta(0) <= grace_period <= max_grace_period:
        raise InvalidInput(f"grace_period must be between 0 and {max_grace_period.days} days")


def switch_two_factor(
    policy: TenantPolicy,
    *,
    enabled: bool,
    now: datetime,
    grace_period: timedelta | None = None,
    max_grace_period: timedelta = MAX_GRACE_PERIOD,
) -> TenantPolicy:
    """Return ``policy`` with 2FA switched to ``enabled`` at ``now`` and its version bumped.

    Switching on records ``now`` as the activation time (users whose identity was last checked
    before it must verify it again before enrolling). Switching off keeps ``activated_at`` for the
    record and clears the grace period.
    """
    check_grace_period(grace_period, max_grace_period)
    if enabled:
        return dataclasses.replace(
            policy,
            two_factor_required=True,
            activated_at=now,
            grace_period=grace_period,
            version=policy.version + 1,
        )
    return dataclasses.replace(
        policy, two_factor_required=False, grace_period=None, version=policy.version + 1
    )
