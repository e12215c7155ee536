"""The login-session value: who signed in, when and how, and what they have proven since. Pure.

The host keeps it (server side, or sealed in a cookie with :func:`seal`); the service returns updated
copies. Each value carries a tag, an HMAC under the keyring, over all its fields: a value that was
built by hand or edited (say, to claim a second factor) is refused with
:class:`~tenant2fa.errors.InvalidSession` by every service call.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tenant2fa.errors import InvalidSession, KeyringError

if TYPE_CHECKING:
    from tenant2fa.keyring import Keyring

__all__ = ["LoginSession", "seal", "sign", "unseal", "verify_tag"]

_TAG_PURPOSE = "login-session-tag"
_SEAL_PURPOSE = "login-session-seal"
_MAX_SEALED = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginSession:
    """One login of one user, across the tenants they switch between.

    - ``authenticated_at``/``method``: the primary sign-in (password, Google, Microsoft...) that the
      host checked before calling :meth:`TwoFactor.start_session`.
    - ``identity_verified_at``/``identity_method``: the latest primary check in this session (the
      sign-in itself or a later :meth:`TwoFactor.verify_identity`).
    - ``second_factor_at``/``second_factor_epoch``: when a code or recovery code was proven, and the
      user's security epoch then; a reset of the user's 2FA bumps the epoch and voids the proof.
    - ``enrollment_deferred_until``: set when the user postponed enrolling in a grace period.
    """

    session_id: str
    user_id: str
    authenticated_at: datetime
    method: str
    identity_verified_at: datetime
    identity_method: str
    second_factor_at: datetime | None = None
    second_factor_epoch: int | None = None
    enrollment_deferred_until: datetime | None = None
    tag: str = field(default="", repr=False)

    def _payload(self) -> dict[str, Any]:
        return _payload({name: getattr(self, name) for name in _SIGNED})

    def _message(self) -> bytes:
        return _message(self._payload())


def _payload(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in fields.items()
    }


def _message(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


_SIGNED = tuple(f.name for f in dataclasses.fields(LoginSession) if f.name != "tag")
"""The fields the tag covers: all but the tag."""


def sign(login: LoginSession, keyring: Keyring, **changes: Any) -> LoginSession:  # noqa: ANN401
    """``login`` with ``changes`` applied and a fresh tag over its fields, made in one copy."""
    fields = {name: getattr(login, name) for name in _SIGNED}
    fields.update(changes)
    key_id, mac = keyring.mac(_message(_payload(fields)), purpose=_TAG_PURPOSE)
    tag = key_id + "." + base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")
    return dataclasses.replace(login, **changes, tag=tag)


def verify_tag(login: object, keyring: Keyring) -> LoginSession:
    """Return ``login`` if it is a :class:`LoginSession` whose tag matches its fields.

    Raises :class:`InvalidSession` otherwise.
    """
    if not isinstance(login, LoginSession) or not isinstance(login.tag, str):
        raise InvalidSession("not a LoginSession")
    key_id, _, encoded = login.tag.partition(".")
    try:
        mac = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise InvalidSession("login session tag is malformed") from None
    try:
        message = login._message()
    except (TypeError, ValueError):
        # Built by hand with fields JSON cannot hold (bytes, a circular list): not ours.
        raise InvalidSession(
            "login session was not issued by this service or was altered"
        ) from None
    if not keyring.check_mac(key_id, message, mac, purpose=_TAG_PURPOSE):
        raise InvalidSession("login session was not issued by this service or was altered")
    return login


def seal(login: LoginSession, keyring: Keyring) -> str:
    """An encrypted, authenticated, URL-safe token of ``login`` (for a cookie)."""
    payload = login._payload()
    payload["tag"] = login.tag
    blob = keyring.encrypt(
        json.dumps(payload, sort_keys=True).encode(), purpose=_SEAL_PURPOSE, context=""
    )
    return base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")


def unseal(token: object, keyring: Keyring) -> LoginSession:
    """The :class:`LoginSession` inside ``token``; raises :class:`InvalidSession` if it was not made
    by :func:`seal` with a key of ``keyring`` or was altered."""
    if not isinstance(token, str) or not token or len(token) > _MAX_SEALED:
        raise InvalidSession("not a sealed login session")
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        raw = keyring.decrypt(blob, purpose=_SEAL_PURPOSE, context="")
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("a sealed login session is a JSON object")
        for name in (
            "authenticated_at",
            "identity_verified_at",
            "second_factor_at",
            "enrollment_deferred_until",
        ):
            if data.get(name) is not None:
                data[name] = datetime.fromisoformat(data[name])
        login = LoginSession(**data)
    except (binascii.Error, ValueError, TypeError, KeyringError):
        raise InvalidSession("not a valid sealed login session") from None
    return verify_tag(login, keyring)
