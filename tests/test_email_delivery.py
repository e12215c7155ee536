"""E-mail through the outbox, against a real SMTP server on 127.0.0.1 (aiosmtpd): nothing lost
while the server is down, nothing sent twice when it comes back or when two dispatchers run."""

from __future__ import annotations

import multiprocessing
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from db_backends import server_url, sqlalchemy_server_storage
from outbox_helpers import address_for, smtp_dispatch_in_process
from tenant2fa import (
    AuditKind,
    Config,
    Keyring,
    Membership,
    NotificationKind,
    RecoveryCodeHasher,
    Role,
    TwoFactor,
)
from tenant2fa.audit import new_audit_record
from tenant2fa.outbox import OutboxState
from tenant2fa.smtp import SMTPNotifier
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, pending_code_for

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))


@dataclass
class Inbox:
    """Collects what the SMTP server accepted."""

    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(m["Message-ID"]) for m in self.messages]


class MailServer:
    """An aiosmtpd server on a fixed port that can be stopped and started again."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    yield server
    server.stop()


def _notifier(port: int) -> SMTPNotifier:
    return SMTPNotifier(
        host="127.0.0.1",
        port=port,
        sender="security@example.com",
        address_for=address_for,
        security="none",
        timeout=2,
        product="Onum",
    )


def test_with_the_smtp_server_stopped_enrollment_completes_and_the_email_is_sent_once_later(
    mail_server: MailServer, tmp_path: Path
) -> None:
    clock = FakeClock()
    storage = SQLiteStorage(tmp_path / "mail.sqlite3")
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring.generate(),
        clock=clock,
        notifier=_notifier(mail_server.port),
        config=CONFIG,
    )
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    mail_server.stop()

    login = tf.start_session("olga")
    tf.begin_enrollment(login)
    result = tf.confirm_enrollment(login, pending_code_for(tf, "olga"))
    assert result.ok  # the mail server being down changes nothing for the user
    (waiting,) = storage.outbox_items(state=OutboxState.PENDING)
    assert waiting.notification.kind is NotificationKind.TWO_FACTOR_ENABLED
    assert waiting.last_error is not None
    assert waiting.last_error.startswith("DeliveryError")
    assert mail_server.inbox.messages == []

    mail_server.start()
    clock.advance(seconds=30)
    dispatcher = tf.dispatcher()
    assert dispatcher.dispatch_all().delivered == 1
    clock.advance(seconds=3600)
    assert dispatcher.dispatch_all().delivered == 0
    (message,) = mail_server.inbox.messages
    assert message["To"] == "olga@example.com"
    assert "enabled" in message["Subject"].lower()
    assert waiting.notification.notification_id in message["Message-ID"]


def test_two_dispatcher_processes_on_one_postgresql_send_each_email_once(
    mail_server: MailServer,
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
    for i in range(14):
        # Straight into storage: what is under test is the toggles' mail, not the owners'.
        storage.add_membership(
            Membership(tenant_id="B", user_id=f"owner-{i:02d}", role=Role.OWNER),
            new_audit_record(AuditKind.MEMBER_ADDED, at=clock.now(), tenant_id="B"),
        )
    for enabled in (True, False):
        clock.advance(seconds=1)
        tf.set_two_factor("B", actor_id="olga", enabled=enabled)
    expected = {
        item.notification.notification_id
        for item in storage.outbox_items(state=OutboxState.PENDING, limit=1000)
    }
    assert len(expected) == 30  # 15 owners told twice

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        futures = [
            pool.submit(
                smtp_dispatch_in_process,
                server_url("postgresql"),
                mail_server.port,
                clock.now().isoformat(),
                barrier,
            )
            for _ in range(2)
        ]
        counts = [f.result(timeout=120) for f in futures]
    ids = mail_server.inbox.message_ids()
    assert sum(counts) == len(ids) == 30
    assert len(set(ids)) == 30  # every e-mail once
    assert {i.strip("<>").split("@")[0] for i in ids} == expected
    assert storage.outbox_items(state=OutboxState.PENDING, limit=1000) == []
