"""Notifiers for tests/test_outbox.py that work across processes (importable by spawn and by the
CLI's --notifier option)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tenant2fa.notify import Notification
from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
from tenant2fa.testing import FakeClock

LOG_ENV = "TENANT2FA_TEST_DELIVERY_LOG"


class FileNotifier:
    """Appends each delivered notification id as a line of a file (O_APPEND: atomic lines)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def notify(self, notification: Notification) -> None:
        line = f"{notification.notification_id} {os.getpid()}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def file_notifier() -> FileNotifier:
    """The factory the CLI's ``--notifier tests.outbox_helpers:file_notifier`` form loads."""
    return FileNotifier(os.environ[LOG_ENV])


def delivered_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines()]


def dispatch_in_process(url: str, log: str, now: str, barrier: Any) -> int:
    """Run one dispatcher over everything due, after lining up with the others."""
    from datetime import datetime

    from tenant2fa.dispatch import Dispatcher

    storage = SQLAlchemyStorage(url)
    clock = FakeClock(datetime.fromisoformat(now))
    dispatcher = Dispatcher(storage, FileNotifier(log), clock=clock, batch=7)
    barrier.wait(timeout=60)
    delivered = dispatcher.dispatch_all().delivered
    storage.engine.dispose()
    return delivered


def address_for(user_id: str) -> str:
    return f"{user_id}@example.com"


def smtp_dispatch_in_process(url: str, port: int, now: str, barrier: Any) -> int:
    """One dispatcher delivering through a real SMTP server on 127.0.0.1:``port``."""
    from datetime import datetime

    from tenant2fa.dispatch import Dispatcher
    from tenant2fa.smtp import SMTPNotifier

    storage = SQLAlchemyStorage(url)
    notifier = SMTPNotifier(
        host="127.0.0.1",
        port=port,
        sender="security@example.com",
        address_for=address_for,
        security="none",
        product="Onum",
    )
    dispatcher = Dispatcher(
        storage, notifier, clock=FakeClock(datetime.fromisoformat(now)), batch=5
    )
    barrier.wait(timeout=60)
    delivered = dispatcher.dispatch_all().delivered
    storage.engine.dispose()
    return delivered
