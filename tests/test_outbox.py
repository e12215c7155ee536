"""Notifications are never lost and never sent twice: the outbox and its dispatcher."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from db_backends import server_url, sqlalchemy_server_storage
from outbox_helpers import LOG_ENV, delivered_ids, dispatch_in_process
from tenant2fa import (
    AuditKind,
    Config,
    InMemoryNotifier,
    Keyring,
    Membership,
    Notification,
    NotificationKind,
    RecoveryCodeHasher,
    Role,
    TwoFactor,
)
from tenant2fa.audit import new_audit_record
from tenant2fa.dispatch import Dispatcher
from tenant2fa.outbox import DeliveryRules, OutboxState
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, pending_code_for
from tenant2fa.testing.faults import FaultyStorage, StorageFault

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


class FlakyNotifier:
    """Fails while ``down`` is set; records what it delivered."""

    def __init__(self) -> None:
        self.down = True
        self.delivered: list[Notification] = []
        self.calls = 0

    def notify(self, notification: Notification) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("mail server down")
        self.delivered.append(notification)


def _enroll(tf: TwoFactor, user: str = "bob") -> None:
    clock = tf.clock
    assert isinstance(clock, FakeClock)
    if tf.storage.get_tenant("B") is None:
        tf.create_tenant("B", name="Tenant B", owner_id="olga")
    login = tf.start_session(user)
    tf.begin_enrollment(login)
    assert tf.confirm_enrollment(login, pending_code_for(tf, user)).ok


def test_with_the_mail_server_down_enrollment_completes_and_the_email_waits(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    notifier = FlakyNotifier()
    storage = SQLiteStorage(tmp_path / "outbox.sqlite3")
    tf = TwoFactor(
        storage=storage, keyring=Keyring.generate(), clock=clock, notifier=notifier, config=CONFIG
    )
    _enroll(tf)
    assert tf.user_status("bob").state.is_enrolled
    (item,) = storage.outbox_items(state=OutboxState.PENDING)
    assert item.notification.kind is NotificationKind.TWO_FACTOR_ENABLED
    assert item.attempts == 1
    assert item.next_attempt_at == clock.now() + DeliveryRules().base_delay
    assert item.last_error == "ConnectionRefusedError: mail server down"

    dispatcher = tf.dispatcher()
    assert dispatcher.dispatch().attempted == 0  # not due yet: back-off
    clock.advance(seconds=30)
    assert dispatcher.dispatch().retrying == 1  # still down: next wait is twice as long
    (item,) = storage.outbox_items()
    assert item.next_attempt_at == clock.now() + timedelta(seconds=60)

    notifier.down = False
    clock.advance(seconds=60)
    assert dispatcher.dispatch().delivered == 1
    assert dispatcher.dispatch_all().attempted == 0
    assert [n.kind for n in notifier.delivered] == [NotificationKind.TWO_FACTOR_ENABLED]
    (item,) = storage.outbox_items()
    assert (item.state, item.attempts, item.delivered_at) == (
        OutboxState.DELIVERED,
        3,
        clock.now(),
    )


def test_a_notification_that_keeps_failing_is_abandoned_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    notifier = FlakyNotifier()
    rules = DeliveryRules(max_attempts=3)
    tf = TwoFactor(
        storage=SQLiteStorage(":memory:"),
        keyring=Keyring.generate(),
        clock=clock,
        notifier=notifier,
        delivery=rules,
        config=CONFIG,
    )
    _enroll(tf)
    dispatcher = tf.dispatcher()
    with caplog.at_level("ERROR", logger="tenant2fa.dispatch"):
        for _ in range(5):
            clock.advance(timedelta(hours=2))
            dispatcher.dispatch()
    (item,) = tf.storage.outbox_items()
    assert (item.state, item.attempts) == (OutboxState.ABANDONED, 3)
    assert notifier.calls == 3
    assert "abandoned after 3 attempts" in caplog.text


def test_a_crash_between_the_change_and_the_send_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    clock = FakeClock()
    keyring = Keyring.generate()
    faulty = FaultyStorage(SQLiteStorage(path))
    before = InMemoryNotifier()
    tf = TwoFactor(
        storage=faulty,
        keyring=keyring,
        clock=clock,
        notifier=before,
        config=CONFIG,
    )
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    # The process dies right after the enrollment commits, before it can send anything.
    faulty.arm(StorageFault(method="claim_notifications"))
    _enroll(tf)
    assert faulty.tripped
    assert before.sent == ()

    # After a restart, a dispatcher on the same database delivers it, once.
    after = InMemoryNotifier()
    dispatcher = Dispatcher(SQLiteStorage(path), after, clock=clock)
    assert dispatcher.dispatch_all().delivered == 1
    assert dispatcher.dispatch_all().delivered == 0
    assert [n.kind for n in after.sent] == [NotificationKind.TWO_FACTOR_ENABLED]


def test_a_dispatcher_that_dies_mid_delivery_is_taken_over_when_its_lease_runs_out() -> None:
    clock = FakeClock()
    storage = SQLiteStorage(":memory:")
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        clock=clock,
        notifier=InMemoryNotifier(),
        deliver_inline=False,
        config=CONFIG,
    )
    _enroll(tf)
    rules = DeliveryRules(lease=timedelta(minutes=2))
    (claimed,) = storage.claim_notifications(
        now=clock.now(), claimant="dead", lease=rules.lease, limit=10
    )
    survivor_notes = InMemoryNotifier()
    survivor = Dispatcher(storage, survivor_notes, clock=clock, rules=rules)
    assert survivor.dispatch().attempted == 0  # still leased to the dead one
    clock.advance(rules.lease)
    assert survivor.dispatch().delivered == 1
    assert [n.notification_id for n in survivor_notes.sent] == [
        claimed.notification.notification_id
    ]


def test_without_inline_delivery_only_a_dispatcher_sends(tmp_path: Path) -> None:
    clock = FakeClock()
    notifier = InMemoryNotifier()
    tf = TwoFactor(
        storage=SQLiteStorage(tmp_path / "x.sqlite3"),
        keyring=Keyring.generate(),
        clock=clock,
        notifier=notifier,
        deliver_inline=False,
        config=CONFIG,
    )
    _enroll(tf)
    assert notifier.sent == ()
    assert tf.dispatcher().dispatch_all().delivered == 1
    assert len(notifier.sent) == 1


def test_a_background_dispatcher_thread_delivers_what_inline_delivery_could_not() -> None:
    notifier = FlakyNotifier()
    delivered = threading.Event()
    original = notifier.notify

    def notify(notification: Notification) -> None:
        original(notification)
        delivered.set()

    notifier.notify = notify  # type: ignore[method-assign]
    clock = FakeClock()
    tf = TwoFactor(
        storage=SQLiteStorage(":memory:"),
        keyring=Keyring.generate(),
        clock=clock,
        notifier=notifier,
        config=CONFIG,
        delivery=DeliveryRules(base_delay=timedelta(seconds=1)),
    )
    _enroll(tf)
    assert notifier.delivered == []
    notifier.down = False
    clock.advance(seconds=1)
    dispatcher = tf.dispatcher()
    dispatcher.start(interval=timedelta(milliseconds=20))
    try:
        assert delivered.wait(timeout=10)
    finally:
        dispatcher.stop()
    assert [n.kind for n in notifier.delivered] == [NotificationKind.TWO_FACTOR_ENABLED]


def test_the_cli_dispatches_the_outbox_for_cron(tmp_path: Path) -> None:
    db = tmp_path / "cron.sqlite3"
    tf = TwoFactor(
        storage=SQLiteStorage(db),
        keyring=Keyring.generate(),
        clock=FakeClock(),
        deliver_inline=False,
        config=CONFIG,
    )
    _enroll(tf)
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    log = tmp_path / "delivered.log"
    env = {**os.environ, LOG_ENV: str(log), "PYTHONPATH": str(Path(__file__).parent)}
    command = [
        sys.executable,
        "-m",
        "tenant2fa",
        "outbox",
        "dispatch",
        "--db",
        f"sqlite:///{db}",
        "--notifier",
        "outbox_helpers:file_notifier",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("delivered 2,")
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.stdout.startswith("delivered 0,")
    assert len(delivered_ids(log)) == 2

    bad = subprocess.run(
        [*command[:-1], "no_such_module:factory"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "cannot load the notifier" in bad.stderr


def test_two_dispatcher_processes_on_one_postgresql_deliver_each_message_once(
    tmp_path: Path,
) -> None:
    storage = sqlalchemy_server_storage("postgresql")
    clock = FakeClock()
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        clock=clock,
        deliver_inline=False,
        config=CONFIG,
    )
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    for i in range(40):
        # Straight into storage: what is under test is the toggles' mail, not the owners'.
        storage.add_membership(
            Membership(tenant_id="B", user_id=f"owner-{i:02d}", role=Role.OWNER),
            new_audit_record(AuditKind.MEMBER_ADDED, at=clock.now(), tenant_id="B"),
        )
    for enabled in (True, False, True):  # three toggles, 41 owners told each time
        clock.advance(seconds=1)
        tf.set_two_factor("B", actor_id="olga", enabled=enabled)
    pending = storage.outbox_items(state=OutboxState.PENDING, limit=1000)
    assert len(pending) == 123
    log = tmp_path / "delivered.log"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        futures = [
            pool.submit(
                dispatch_in_process,
                server_url("postgresql"),
                str(log),
                clock.now().isoformat(),
                barrier,
            )
            for _ in range(2)
        ]
        counts = [f.result(timeout=120) for f in futures]
    ids = delivered_ids(log)
    assert sum(counts) == len(ids) == 123
    assert len(set(ids)) == 123  # each one once
    assert all(c > 0 for c in counts), counts  # both dispatchers did work
    assert storage.outbox_items(state=OutboxState.PENDING, limit=1000) == []
