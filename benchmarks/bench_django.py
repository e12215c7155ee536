"""The django-otp baseline: a ``TOTPDevice`` fetched by user and ``verify_token``, on SQLite.

The way django-otp itself verifies (``django_otp.verify_token``, its forms): in one atomic block,
fetch the device with ``select_for_update()`` so that concurrent requests cannot both accept a
code, then ``verify_token``, which saves the device. Django is configured in this process (once) with the same SQLite settings as SQLiteStorage: WAL,
``synchronous=NORMAL``, a 5 s busy timeout, ``BEGIN IMMEDIATE`` for atomic blocks. django-otp
reads the real clock (``time.time()``) and refuses a time step it has accepted before, so every
batch verifies devices that have never verified: each batch gets its own users.
"""

from __future__ import annotations

from typing import Any

import bench_data as data
from bench_harness import Body, Side

LABEL = "django-otp: atomic TOTPDevice fetch (for update) + verify_token, SQLite WAL"
POSTGRES_LABEL = "django-otp: atomic TOTPDevice fetch (for update) + verify_token, PostgreSQL"


def unavailable() -> str | None:
    """Why the django-otp row cannot run here, or ``None``."""
    try:
        import django  # noqa: F401, PLC0415
        import django_otp  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"skipped: {exc.name} is not installed (pip install -e '.[bench]')"
    return None


class DjangoOtp:
    """``devices`` TOTP devices, one per user, in a fresh Django database at ``path``; with
    ``postgres``, as many again in the bench's PostgreSQL schema (database alias ``"pg"``)."""

    def __init__(self, path: str, devices: int, postgres: data.Postgres | None = None) -> None:
        import django  # noqa: PLC0415
        from django.conf import settings  # noqa: PLC0415
        from django.core.management import call_command  # noqa: PLC0415

        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench-only",  # noqa: S106 - a throwaway settings object
            USE_TZ=True,
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django_otp",
                "django_otp.plugins.otp_totp",
            ],
            DATABASES={
                **({"pg": _postgres_settings(postgres)} if postgres is not None else {}),
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": path,
                    "OPTIONS": {
                        "init_command": (
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                            "PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON"
                        ),
                        "transaction_mode": "IMMEDIATE",
                    },
                },
            },
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        )
        django.setup()
        databases = ["default", *(["pg"] if postgres is not None else [])]
        for database in databases:
            call_command("migrate", verbosity=0, interactive=False, database=database)

        from django.contrib.auth.models import User  # noqa: PLC0415
        from django.db import transaction  # noqa: PLC0415
        from django_otp.plugins.otp_totp.models import TOTPDevice  # noqa: PLC0415

        self.device_model: Any = TOTPDevice
        self.atomic: Any = transaction.atomic
        names = data.user_ids("dj", devices)
        self.users: dict[str, list[tuple[int, str]]] = {}
        for database in databases:
            users = User.objects.using(database).bulk_create(
                [User(username=name) for name in names], batch_size=2000
            )
            TOTPDevice.objects.using(database).bulk_create(
                [
                    TOTPDevice(
                        user_id=user.pk,
                        name="phone",
                        confirmed=True,
                        key=data.secret_for(user.username).hex(),
                    )
                    for user in users
                ],
                batch_size=2000,
            )
            self.users[database] = [(user.pk, user.username) for user in users]

    @property
    def has_postgres(self) -> bool:
        return "pg" in self.users

    def side(self, ops: int, batches: int, *, database: str = "default") -> Side:
        """Batch ``b`` verifies users ``b * ops`` to ``(b + 1) * ops``, at the real time."""
        users = self.users[database]
        if len(users) < ops * batches:
            raise ValueError("not enough django-otp devices for every batch")
        import time  # noqa: PLC0415

        devices = self.device_model.objects.using(database)
        atomic = self.atomic

        def prepare(batch: int) -> Body:
            step = int(time.time()) // data.PERIOD
            work = [
                (pk, data.hotp(data.secret_for(name), step))
                for pk, name in users[batch * ops : (batch + 1) * ops]
            ]

            def body() -> None:
                for pk, code in work:
                    with atomic(using=database):
                        device = devices.select_for_update().get(user_id=pk)
                        accepted = device.verify_token(code)
                    if not accepted:
                        raise RuntimeError("django-otp refused a valid code")

            return body

        return Side(LABEL if database == "default" else POSTGRES_LABEL, prepare, ops)


def _postgres_settings(postgres: data.Postgres) -> dict[str, Any]:
    """Django's settings for the bench's PostgreSQL schema (Django's tables beside ours)."""
    url = postgres.base
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.database,
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.host or "",
        "PORT": str(url.port or ""),
        "OPTIONS": {"options": f"-csearch_path={postgres.schema}"},
    }
