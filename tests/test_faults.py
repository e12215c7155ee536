"""Storage faults: every service operation fully happens or leaves the previous state.

For each operation we first run it without faults and record the storage calls it makes. Then,
for every one of those calls, we run it again on a fresh world with a fault injected at that call,
once *before* the call runs (it never happened: refused connection, timeout) and once *after* it
ran (it committed but the reply was lost: a crash). The state afterwards (including the notifications in the
outbox) must be the state before the operation or the state after a fault-free run; for operations that check a code it may also be
"the attempt was counted and nothing else", because the throttle charges an attempt first, by
design, so that a crash never yields a free guess. A verification under a fault is never "ok", and
no exception text carries a secret or a code.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tenant2fa import (
    AuditQuery,
    Config,
    InMemoryNotifier,
    Keyring,
    LoginSession,
    MemoryStorage,
    RecoveryCodeHasher,
    Role,
    StorageError,
    Tenant2FAError,
    TwoFactor,
)
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for, secret_of
from tenant2fa.testing.faults import FaultyStorage, StorageFault

USERS = ("alice", "olga", "bob", "carol", "dave")


@dataclasses.dataclass
class World:
    tf: TwoFactor
    faulty: FaultyStorage
    clock: FakeClock
    bob: LoginSession
    carol: LoginSession
    recovery_codes: tuple[str, ...]
    secrets: list[str] = dataclasses.field(default_factory=list)


def _world(make_storage: Callable[[], Any]) -> World:
    clock = FakeClock()
    faulty = FaultyStorage(make_storage())
    tf = TwoFactor(
        storage=faulty,
        keyring=Keyring.generate(),
        clock=clock,
        # Inline delivery: its claim and finish calls get faults injected too.
        notifier=InMemoryNotifier(),
        config=Config(recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    for tenant in ("A", "B"):
        tf.add_member(tenant, "bob", operator="host")
    tf.add_member("B", "carol", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    clock.advance(seconds=1)
    bob = tf.start_session("bob")
    tf.begin_enrollment(bob)
    enrolled = tf.confirm_enrollment(bob, pending_code_for(tf, "bob"))
    assert enrolled.ok
    clock.advance(seconds=60)
    carol = tf.start_session("carol")
    world = World(
        tf=tf,
        faulty=faulty,
        clock=clock,
        bob=enrolled.login,
        carol=carol,
        recovery_codes=enrolled.recovery_codes,
    )
    world.secrets += [*enrolled.recovery_codes, secret_of(tf, "bob").hex()]
    return world


def _charged(snapshot: tuple[object, ...], user: str, now: datetime) -> tuple[object, ...]:
    tenants, members, factors, audit, told = snapshot
    assert isinstance(factors, tuple)
    i = USERS.index(user)
    row = list(factors[i])
    row[3] = int(row[3]) + 1
    row[4] = now
    changed = list(factors)
    changed[i] = tuple(row)
    return tenants, members, tuple(changed), audit, told


Operation = Callable[[World], object]


def _wrong_code(world: World) -> str:
    valid = {code_for(world.tf, "bob", offset=o) for o in (-1, 0, 1)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)


OPERATIONS: dict[str, tuple[Operation, str | None]] = {
    # name: (operation, user whose attempt counter a code check charges first, if any)
    "create_tenant": (lambda w: w.tf.create_tenant("C", name="C", owner_id="dave"), None),
    "add_member": (lambda w: w.tf.add_member("A", "carol", role=Role.ADMIN, operator="host"), None),
    "switch_on": (lambda w: w.tf.set_two_factor("A", actor_id="alice", enabled=True), None),
    "switch_off": (lambda w: w.tf.set_two_factor("B", actor_id="olga", enabled=False), None),
    "start_session": (lambda w: w.tf.start_session("carol"), None),
    "verify_identity": (lambda w: w.tf.verify_identity(w.carol, method="google"), None),
    "begin_enrollment": (lambda w: w.tf.begin_enrollment(w.carol), None),
    "confirm_enrollment": (
        lambda w: w.tf.confirm_enrollment(w.carol, pending_code_for(w.tf, "carol")),
        "carol",
    ),
    "verify_code": (lambda w: w.tf.verify_code(w.bob, "B", code_for(w.tf, "bob")), "bob"),
    "verify_wrong_code": (lambda w: w.tf.verify_code(w.bob, "B", _wrong_code(w)), "bob"),
    "use_recovery_code": (
        lambda w: w.tf.use_recovery_code(w.bob, "B", w.recovery_codes[0]),
        "bob",
    ),
    "regenerate_recovery_codes": (lambda w: w.tf.regenerate_recovery_codes(w.bob), None),
    "reset_two_factor": (lambda w: w.tf.reset_two_factor("B", "bob", actor_id="olga"), None),
    "remove_two_factor": (
        lambda w: w.tf.remove_two_factor(w.bob),
        None,
    ),
}


def _prepare(name: str, world: World) -> None:
    """Bring the world to where the operation makes sense (not part of the operation)."""
    if name == "confirm_enrollment":
        world.tf.begin_enrollment(world.carol)
    if name == "remove_two_factor":
        world.tf.set_two_factor("B", actor_id="olga", enabled=False)
        world.bob = world.tf.verify_identity(world.bob)
    if name == "regenerate_recovery_codes":
        world.bob = world.tf.verify_identity(world.bob)


_files = itertools.count()

BACKENDS: dict[str, Callable[[Path], Callable[[], Any]]] = {
    "memory": lambda _tmp: MemoryStorage,
    "sqlite": lambda tmp: lambda: SQLiteStorage(tmp / f"faults-{next(_files)}.sqlite3"),
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_fault_at_any_storage_call_leaves_the_previous_or_the_finished_state(
    name: str, backend: str, tmp_path: Path
) -> None:
    make_storage = BACKENDS[backend](tmp_path)
    operation, charged_user = OPERATIONS[name]

    def run(
        fault: StorageFault | None,
    ) -> tuple[World, tuple[object, ...], object, Exception | None]:
        world = _world(make_storage)
        _prepare(name, world)
        before = _snapshot(world)
        world.faulty.arm(fault)
        world.faulty.calls.clear()
        try:
            return world, before, operation(world), None
        except Tenant2FAError as exc:
            return world, before, None, exc

    clean_world, clean_before, _, error = run(None)
    assert error is None
    done = _snapshot(clean_world)
    calls = list(clean_world.faulty.calls)
    assert calls, "the operation made no storage call"

    counts: dict[str, int] = {}
    for call in calls:
        counts[call] = counts.get(call, 0) + 1
        for after in (False, True):
            fault = StorageFault(method=call, nth=counts[call], after=after)
            world, before, result, exc = run(fault)
            assert world.faulty.tripped, f"{fault} was never reached"
            # Every run builds its own world; they agree on every field the snapshot keeps.
            assert before == clean_before
            state = _snapshot(world)
            allowed = [before, done]
            if charged_user is not None:
                allowed.append(_charged(before, charged_user, world.clock.now()))
            assert state in allowed, f"{name}: {fault} left a half-written state"
            if exc is not None:
                assert isinstance(exc, StorageError)
                for secret in world.secrets:
                    assert secret not in str(exc)
            if getattr(result, "ok", False):
                # Success may only be reported when the change really happened.
                assert state == done, f"{name}: reported ok under {fault} without the change"


def _snapshot(world: World) -> tuple[object, ...]:
    """The state, read past the fault injector."""
    storage = world.faulty._inner
    now = world.clock.now()
    tenants = tuple(storage.get_tenant(t) for t in ("A", "B", "C"))
    members = tuple(tuple(storage.list_memberships(t)) for t in ("A", "B", "C"))
    factors = []
    for user in USERS:
        f = storage.get_factor(user)
        factors.append(
            (
                f.state(now),
                f.last_step,
                f.epoch,
                f.failures,
                f.last_failure_at,
                f.recovery_codes_left,
                f.activated_at,
            )
        )
    audit = tuple(
        (
            r.kind,
            r.tenant_id,
            r.user_id,
            r.actor_id,
            tuple(sorted((k, v) for k, v in r.detail.items() if k != "pending_id")),
        )
        for r in storage.audit_records(AuditQuery(limit=10_000))
    )
    # What users will be told (delivery state aside: delivery is retried until it succeeds).
    told = tuple(
        (n.kind, n.user_id, n.tenant_id, n.actor_id, n.recovery_codes_left, n.two_factor_on)
        for n in (item.notification for item in storage.outbox_items(limit=10_000))
    )
    return tenants, members, tuple(factors), audit, told
