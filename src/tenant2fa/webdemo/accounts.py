"""The demo's user table: three people, their e-mail addresses and scrypt password hashes.

This stands in for the host application's own users. tenant2fa never sees a password: the host
checks it (or a Google/Microsoft sign-in), then tells tenant2fa who signed in and how.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["DEMO_PEOPLE", "TENANTS", "Account", "Accounts", "new_passwords"]

TENANTS: Mapping[str, str] = {"tenant-a": "Tenant A", "tenant-b": "Tenant B"}
"""The demo's tenants: id -> name. Olga owns both; Bob and Carol are members of both."""

DEMO_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("olga", "olga@example.com", "Olga"),
    ("bob", "bob@example.com", "Bob"),
    ("carol", "carol@example.com", "Carol"),
)
"""(user id, e-mail, name). The user id is what tenant2fa knows; the address is for e-mail."""

# scrypt at the cost OWASP suggests for passwords (16 MiB, a few tens of milliseconds).
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
# No look-alikes (l/1, o/0): people type these.
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 - an alphabet, not a password


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )


def new_passwords() -> dict[str, str]:
    """A fresh random password for each demo person, by e-mail (``xxxx-xxxx-xxxx``)."""
    return {
        email: "-".join(
            "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(4)) for _ in range(3)
        )
        for _, email, _ in DEMO_PEOPLE
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    user_id: str
    email: str
    name: str
    salt: bytes = field(repr=False)
    password_hash: bytes = field(repr=False)


class Accounts:
    """The demo people with the given passwords (by e-mail), kept only as scrypt hashes."""

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._by_email: dict[str, Account] = {}
        for user_id, email, name in DEMO_PEOPLE:
            salt = secrets.token_bytes(16)
            self._by_email[email] = Account(
                user_id=user_id,
                email=email,
                name=name,
                salt=salt,
                password_hash=_scrypt(passwords[email], salt),
            )
        self._by_id = {a.user_id: a for a in self._by_email.values()}

    def check_password(self, email: str, password: str) -> Account | None:
        """The account if ``password`` is its password, else ``None`` (the same work either way)."""
        account = self._by_email.get(email.strip().lower())
        salt = account.salt if account else b"\0" * 16
        expected = account.password_hash if account else b"\0" * 32
        matches = hmac.compare_digest(_scrypt(password, salt), expected)
        return account if account is not None and matches else None

    def by_id(self, user_id: str) -> Account | None:
        return self._by_id.get(user_id)

    def email_of(self, user_id: str) -> str | None:
        """The address on file for a tenant2fa user id (what a notifier needs)."""
        account = self._by_id.get(user_id)
        return account.email if account else None

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_id.values())
