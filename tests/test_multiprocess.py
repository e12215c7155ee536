"""Replay, throttling and the last owner hold across processes, on every durable backend.

16 worker processes (spawned, each with its own connections) are lined up on a barrier and then
act at the same instant: on one user (the same valid code, the same recovery code, or a flood of
wrong codes), or in pairs on 8 tenants, whose two owners remove or demote each other.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db_backends import server_url, sqlalchemy_server_storage
from multiprocess_workers import CONFIG, act_on_owner, attempt
from tenant2fa import AuditKind, Keyring, Reason, Role, TwoFactor
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for

WORKERS = 16
PAIRS = WORKERS // 2


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[ProcessPoolExecutor, Any]]:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(WORKERS, mp_context=context) as ex:
        yield ex, manager


@dataclass(frozen=True)
class Shared:
    kind: str
    where: str
    key: str
    tf: TwoFactor


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    key = Keyring.encode_key("k1", Keyring.new_key())
    kind: str = request.param
    if kind == "sqlite":
        where = str(tmp_path / "shared.sqlite3")
        storage: Any = SQLiteStorage(where)
        backend = "sqlite"
    else:
        storage = sqlalchemy_server_storage(kind)
        where = server_url(kind)
        backend = "sqlalchemy"
    tf = TwoFactor(
        storage=storage, keyring=Keyring.from_strings([key]), clock=FakeClock(), config=CONFIG
    )
    yield Shared(kind=backend, where=where, key=key, tf=tf)
    if isinstance(storage, SQLiteStorage):
        storage.close()


def _enroll_bob(tf: TwoFactor) -> tuple[str, ...]:
    clock = tf.clock
    assert isinstance(clock, FakeClock)
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    clock.advance(seconds=1)
    login = tf.start_session("bob")
    tf.begin_enrollment(login)
    result = tf.confirm_enrollment(login, pending_code_for(tf, "bob"))
    assert result.ok
    clock.advance(seconds=30)
    return result.recovery_codes


def _run(
    pool: tuple[ProcessPoolExecutor, Any], shared: Shared, action: str, codes: list[list[str]]
) -> list[str]:
    executor, manager = pool
    barrier = manager.Barrier(len(codes))
    login = shared.tf.seal_session(shared.tf.start_session("bob"))
    now = shared.tf.clock.now().isoformat()
    futures = [
        executor.submit(
            attempt, shared.kind, shared.where, shared.key, now, login, action, batch, barrier
        )
        for batch in codes
    ]
    return [reason for f in futures for reason in f.result(timeout=120)]


def test_one_of_16_processes_submitting_the_same_valid_code_succeeds(
    pool: tuple[ProcessPoolExecutor, Any], shared: Shared
) -> None:
    _enroll_bob(shared.tf)
    code = code_for(shared.tf, "bob")
    reasons = _run(pool, shared, "verify", [[code] for _ in range(WORKERS)])
    assert reasons.count(Reason.OK.value) == 1
    assert set(reasons) <= {Reason.OK.value, Reason.INVALID.value, Reason.LOCKED.value}


def test_one_recovery_code_used_by_16_processes_succeeds_once(
    pool: tuple[ProcessPoolExecutor, Any], shared: Shared
) -> None:
    codes = _enroll_bob(shared.tf)
    reasons = _run(pool, shared, "recovery", [[codes[0]] for _ in range(WORKERS)])
    assert reasons.count(Reason.OK.value) == 1
    assert shared.tf.user_status("bob").recovery_codes_left == len(codes) - 1


def test_50_parallel_wrong_codes_get_no_more_guesses_than_the_throttle_allows(
    pool: tuple[ProcessPoolExecutor, Any], shared: Shared
) -> None:
    _enroll_bob(shared.tf)
    valid = {code_for(shared.tf, "bob", offset=o) for o in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)
    batches = [[wrong] * (4 if i < 50 - 3 * WORKERS else 3) for i in range(WORKERS)]
    assert sum(map(len, batches)) == 50
    reasons = _run(pool, shared, "verify", batches)
    evaluated = reasons.count(Reason.INVALID.value)
    allowed = shared.tf.config.throttle.free_failures
    assert evaluated == allowed  # all at one instant: only the free attempts are evaluated
    assert reasons.count(Reason.LOCKED.value) == 50 - evaluated
    assert shared.tf.user_status("bob").failures == evaluated


_LOSING = {"PermissionDenied", "LastOwner", "NotAMember", "ConcurrentChange"}
"""What the owner who loses the race may get: PermissionDenied when the service, finding the
other's change stored first, asks again and they are no longer an owner (or no member)."""


@pytest.mark.parametrize(
    ("ann_does", "ben_does"),
    [("remove", "remove"), ("demote", "demote"), ("remove", "demote")],
    ids=["removing", "demoting", "one-removing-one-demoting"],
)
def test_two_owners_acting_on_each_other_from_separate_processes_leave_exactly_one_owner(
    pool: tuple[ProcessPoolExecutor, Any], shared: Shared, ann_does: str, ben_does: str
) -> None:
    executor, manager = pool
    tf = shared.tf
    tenants = [f"T{k}" for k in range(PAIRS)]
    for tenant_id in tenants:
        tf.create_tenant(tenant_id, name=f"Tenant {tenant_id}", owner_id="ann")
        tf.add_member(tenant_id, "ben", role=Role.OWNER, actor_id="ann")
    barrier = manager.Barrier(2 * PAIRS)
    now = tf.clock.now().isoformat()
    futures = {
        tenant_id: [
            executor.submit(
                act_on_owner,
                shared.kind,
                shared.where,
                shared.key,
                now,
                tenant_id,
                me,
                other,
                action,
                barrier,
            )
            for me, other, action in (("ann", "ben", ann_does), ("ben", "ann", ben_does))
        ]
        for tenant_id in tenants
    }
    submitted = [f for pair in futures.values() for f in pair]
    wait(submitted, timeout=120)
    errors = [exc for f in submitted if (exc := f.exception(timeout=0)) is not None]
    # The error that broke the barrier, not the BrokenBarrierError of the workers waiting at it.
    errors.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))
    if errors:
        raise errors[0]
    done = {"remove": 0, "demote": 0}
    for tenant_id, pair in futures.items():
        outcomes = [f.result() for f in pair]
        assert outcomes.count("ok") == 1, (tenant_id, outcomes)
        assert set(outcomes) <= {"ok", *_LOSING}, (tenant_id, outcomes)
        winner, loser, action = (
            ("ann", "ben", ann_does) if outcomes[0] == "ok" else ("ben", "ann", ben_does)
        )
        done[action] += 1
        kept = (
            {winner: Role.OWNER} if action == "remove" else {winner: Role.OWNER, loser: Role.ADMIN}
        )
        assert {m.user_id: m.role for m in tf.members(tenant_id)} == kept, tenant_id
    removed = tf.audit_log(kinds=frozenset({AuditKind.MEMBER_REMOVED}), limit=1000)
    demoted = tf.audit_log(kinds=frozenset({AuditKind.ROLE_CHANGED}), limit=1000)
    assert (len(removed), len(demoted)) == (done["remove"], done["demote"])
