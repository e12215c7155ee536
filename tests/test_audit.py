"""Audit records and queries (:mod:`tenant2fa.audit`): records are immutable values with fresh ids,
and a query refuses any filter no backend could search by, then matches records exactly as
documented (``since`` inclusive, ``until`` exclusive, ``user_id`` as subject or actor)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tenant2fa import AuditKind, AuditQuery, AuditRecord, InvalidInput
from tenant2fa.audit import MAX_PAGE_NUMBER, new_audit_record
from tenant2fa.clock import UTC

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _record(**changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "at": AT,
        "tenant_id": "B",
        "user_id": "bob",
        "actor_id": "olga",
    }
    fields.update(changes)
    kind = fields.pop("kind", AuditKind.TWO_FACTOR_RESET)
    return new_audit_record(kind, **fields)  # type: ignore[arg-type]


def test_a_new_record_has_a_fresh_random_id_and_read_only_detail() -> None:
    first = new_audit_record(
        AuditKind.TWO_FACTOR_SWITCHED, at=AT, tenant_id="B", actor_id="olga", old="off", new="on"
    )
    second = new_audit_record(AuditKind.TWO_FACTOR_SWITCHED, at=AT)
    assert len(first.record_id) == 32
    assert int(first.record_id, 16) >= 0
    assert first.record_id != second.record_id
    assert (first.kind, first.at, first.tenant_id, first.user_id, first.actor_id) == (
        AuditKind.TWO_FACTOR_SWITCHED,
        AT,
        "B",
        None,
        "olga",
    )
    assert dict(first.detail) == {"old": "off", "new": "on"}
    assert dict(second.detail) == {}
    with pytest.raises(TypeError):
        first.detail["new"] = "off"  # type: ignore[index]


def test_a_record_built_directly_has_empty_detail_by_default() -> None:
    record = AuditRecord(
        record_id="r",
        at=AT,
        kind=AuditKind.KEYS_ROTATED,
        tenant_id=None,
        user_id=None,
        actor_id="cli:root",
    )
    assert dict(record.detail) == {}


# -- building a query ----------------------------------------------------------------------


def test_the_default_query_matches_everything_a_page_at_a_time() -> None:
    query = AuditQuery()
    assert (query.limit, query.offset) == (100, 0)
    assert query.matches(_record())
    assert query.matches(_record(tenant_id=None, user_id=None, actor_id=None))


@pytest.mark.parametrize("kinds", [[AuditKind.CODE_ACCEPTED], (AuditKind.CODE_ACCEPTED,)])
def test_kinds_given_as_any_collection_are_kept_as_a_frozenset(kinds: object) -> None:
    query = AuditQuery(kinds=kinds)  # type: ignore[arg-type]
    assert query.kinds == frozenset({AuditKind.CODE_ACCEPTED})
    assert type(query.kinds) is frozenset
    assert hash(query) == hash(AuditQuery(kinds=frozenset({AuditKind.CODE_ACCEPTED})))


def test_since_and_until_in_any_zone_are_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    query = AuditQuery(
        since=AT.astimezone(paris), until=(AT + timedelta(hours=1)).astimezone(paris)
    )
    assert query.since == AT
    assert query.until == AT + timedelta(hours=1)
    assert query.since.tzinfo is UTC


@pytest.mark.parametrize("value", [0, 1, MAX_PAGE_NUMBER])
def test_limit_and_offset_take_any_int_a_database_takes(value: int) -> None:
    query = AuditQuery(limit=value, offset=value)
    assert (query.limit, query.offset) == (value, value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant_id": ""}, "tenant_id must be 1 to 255 characters long"),
        ({"tenant_id": 7}, "tenant_id must be a str, got int"),
        ({"user_id": "bob\n"}, "user_id must not contain control characters"),
        ({"kinds": "code_accepted"}, "kinds must be a set of AuditKind values, or None"),
        ({"kinds": {"code_accepted"}}, "kinds must be a set of AuditKind values, or None"),
        ({"kinds": AuditKind.CODE_ACCEPTED}, "kinds must be a set of AuditKind values, or None"),
        ({"since": datetime(2026, 1, 1)}, "since must be timezone-aware (UTC), got a naive"),  # noqa: DTZ001
        ({"until": "2026-01-01"}, "until must be a timezone-aware datetime, got str"),
        ({"limit": True}, "limit must be an int, got bool"),
        ({"limit": 10.0}, "limit must be an int, got float"),
        ({"offset": "0"}, "offset must be an int, got str"),
        ({"limit": -1}, "limit must be between 0 and 2**63 - 1"),
        ({"offset": MAX_PAGE_NUMBER + 1}, "offset must be between 0 and 2**63 - 1"),
    ],
    ids=lambda v: ",".join(f"{k}={x!r}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_a_filter_no_backend_could_search_by_is_invalid_input(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        AuditQuery(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


# -- matching ------------------------------------------------------------------------------


def test_tenant_and_kind_filters_match_exactly() -> None:
    record = _record(kind=AuditKind.CODE_REJECTED, tenant_id="B")
    assert AuditQuery(tenant_id="B").matches(record)
    assert not AuditQuery(tenant_id="A").matches(record)
    assert not AuditQuery(tenant_id="B").matches(_record(tenant_id=None))
    assert AuditQuery(kinds={AuditKind.CODE_REJECTED, AuditKind.LOCKED_OUT}).matches(record)  # type: ignore[arg-type]
    assert not AuditQuery(kinds=frozenset({AuditKind.CODE_ACCEPTED})).matches(record)
    assert not AuditQuery(kinds=frozenset()).matches(record)


def test_a_user_filter_matches_records_about_the_user_and_by_the_user() -> None:
    about_bob = _record(user_id="bob", actor_id="olga")
    by_bob = _record(user_id="carol", actor_id="bob")
    neither = _record(user_id="carol", actor_id="olga")
    query = AuditQuery(user_id="bob")
    assert query.matches(about_bob)
    assert query.matches(by_bob)
    assert not query.matches(neither)


def test_since_is_inclusive_and_until_exclusive() -> None:
    query = AuditQuery(since=AT, until=AT + timedelta(minutes=1))
    assert not query.matches(_record(at=AT - timedelta(microseconds=1)))
    assert query.matches(_record(at=AT))
    assert query.matches(_record(at=AT + timedelta(seconds=59)))
    assert not query.matches(_record(at=AT + timedelta(minutes=1)))
    assert AuditQuery(since=AT).matches(_record(at=AT + timedelta(days=1000)))
    assert AuditQuery(until=AT).matches(_record(at=AT - timedelta(days=1000)))


def test_every_filter_must_match() -> None:
    query = AuditQuery(
        tenant_id="B",
        user_id="bob",
        kinds=frozenset({AuditKind.TWO_FACTOR_RESET}),
        since=AT,
        until=AT + timedelta(seconds=1),
    )
    assert query.matches(_record())
    for change in (
        {"tenant_id": "A"},
        {"user_id": "carol", "actor_id": "olga"},
        {"kind": AuditKind.TWO_FACTOR_UNLOCKED},
        {"at": AT + timedelta(seconds=1)},
    ):
        assert not query.matches(_record(**change)), change
