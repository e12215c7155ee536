"""How the SQL backends store a value, written once for both (``sqlite`` and ``sqlalchemy``).

Times are integers: microseconds since the Unix epoch, UTC (the same on every database, sortable,
exact). A factor record is the row of ``t2fa_factors``; :data:`FACTOR_FIELDS` names its columns
in one order, which :func:`factor_values` and :func:`factor_from_values` share.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tenant2fa.clock import UTC
from tenant2fa.enrollment import PendingEnrollment
from tenant2fa.factor import FactorRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "FACTOR_FIELDS",
    "factor_from_values",
    "factor_values",
    "from_us",
    "required_from_us",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

FACTOR_FIELDS = (
    "secret",
    "activated_at",
    "last_step",
    "pending_id",
    "pending_secret",
    "pending_created_at",
    "pending_expires_at",
    "epoch",
    "failures",
    "last_failure_at",
    "recovery_salt",
    "identity_floor",
    "recovery_left",
    "revision",
)
"""The columns of ``t2fa_factors`` besides ``user_id``, in the order of :func:`factor_values`."""


def to_us(value: datetime | None) -> int | None:
    """An aware time as microseconds since the epoch (``None`` stays ``None``)."""
    if value is None:
        return None
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int | None) -> datetime | None:
    """Microseconds since the epoch as an aware UTC time (``None`` stays ``None``)."""
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def required_from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def factor_values(factor: FactorRecord) -> dict[str, object]:
    """The column values of ``factor``'s row, by the names of :data:`FACTOR_FIELDS`."""
    pending = factor.pending
    return {
        "secret": factor.secret,
        "activated_at": to_us(factor.activated_at),
        "last_step": factor.last_step,
        "pending_id": pending.pending_id if pending else None,
        "pending_secret": pending.secret if pending else None,
        "pending_created_at": to_us(pending.created_at) if pending else None,
        "pending_expires_at": to_us(pending.expires_at) if pending else None,
        "epoch": factor.epoch,
        "failures": factor.failures,
        "last_failure_at": to_us(factor.last_failure_at),
        "recovery_salt": factor.recovery_salt,
        "identity_floor": to_us(factor.identity_floor),
        "recovery_left": factor.recovery_codes_left,
        "revision": factor.revision,
    }


def factor_from_values(user_id: str, values: Sequence[object] | None) -> FactorRecord:
    """The record stored as ``values`` (in the order of :data:`FACTOR_FIELDS`, as the driver
    returns them; blobs as ``bytes`` or a buffer). ``None``, or a row of NULLs from an outer
    join, is a user with no record: an empty one."""
    if values is None or values[13] is None:
        return FactorRecord(user_id=user_id)
    (
        secret,
        activated_at,
        last_step,
        pending_id,
        pending_secret,
        pending_created_at,
        pending_expires_at,
        epoch,
        failures,
        last_failure_at,
        recovery_salt,
        identity_floor,
        recovery_left,
        revision,
    ) = values[:14]
    pending = None
    if pending_id is not None:
        pending = PendingEnrollment(
            pending_id=str(pending_id),
            secret=_bytes(pending_secret),
            created_at=required_from_us(_int(pending_created_at)),
            expires_at=required_from_us(_int(pending_expires_at)),
        )
    return FactorRecord(
        user_id=user_id,
        secret=None if secret is None else _bytes(secret),
        activated_at=from_us(_optional_int(activated_at)),
        last_step=_int(last_step),
        pending=pending,
        epoch=_int(epoch),
        failures=_int(failures),
        last_failure_at=from_us(_optional_int(last_failure_at)),
        recovery_salt=None if recovery_salt is None else _bytes(recovery_salt),
        recovery_codes_left=_int(recovery_left),
        identity_floor=from_us(_optional_int(identity_floor)),
        revision=_int(revision),
    )


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer column, got {type(value).__name__}")
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected a binary column, got {type(value).__name__}")
    return bytes(value)
