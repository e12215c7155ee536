"""The login-session value (:mod:`tenant2fa.session`): a tag over every field, and sealing into a
cookie-safe token. Whatever was not issued by the keyring, or was changed since, is an
:class:`~tenant2fa.InvalidSession`."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from tenant2fa import InvalidSession, Keyring, LoginSession
from tenant2fa.clock import UTC
from tenant2fa.session import seal, sign, unseal, verify_tag

AT = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
RING = Keyring({"k1": bytes(range(32))})


def _login(**changes: object) -> LoginSession:
    unsigned = LoginSession(
        session_id="s-1",
        user_id="bob",
        authenticated_at=AT,
        method="password",
        identity_verified_at=AT,
        identity_method="password",
    )
    return sign(unsigned, RING, **changes)


def test_a_signed_login_verifies_and_is_returned_as_it_is() -> None:
    login = _login()
    assert login.tag.startswith("k1.")
    assert verify_tag(login, RING) is login


def test_signing_applies_the_changes_in_the_same_copy() -> None:
    login = _login()
    proven = sign(login, RING, second_factor_at=AT + timedelta(seconds=5), second_factor_epoch=3)
    assert (proven.second_factor_at, proven.second_factor_epoch) == (AT + timedelta(seconds=5), 3)
    assert proven.tag != login.tag
    assert verify_tag(proven, RING) is proven
    assert login.second_factor_at is None  # a new value


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "alice"},
        {"second_factor_at": AT},
        {"second_factor_epoch": 0},
        {"identity_verified_at": AT + timedelta(hours=1)},
        {"enrollment_deferred_until": AT + timedelta(days=1)},
        {"method": "google"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_login_edited_after_signing_is_refused(change: dict[str, object]) -> None:
    edited = dataclasses.replace(_login(), **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidSession, match="not issued by this service or was altered"):
        verify_tag(edited, RING)


def test_the_same_instant_in_another_zone_is_an_edit() -> None:
    # The tag covers the ISO form: a value rebuilt in another zone was not issued like that.
    edited = dataclasses.replace(
        _login(), identity_verified_at=AT.astimezone(timezone(timedelta(hours=2)))
    )
    with pytest.raises(InvalidSession):
        verify_tag(edited, RING)


def test_a_login_signed_by_another_keyring_is_refused() -> None:
    other = Keyring({"k1": bytes(32)})
    with pytest.raises(InvalidSession, match="not issued by this service"):
        verify_tag(_login(), other)
    unknown_key = Keyring({"k2": bytes(range(32))})
    with pytest.raises(InvalidSession, match="not issued by this service"):
        verify_tag(_login(), unknown_key)


def test_a_login_signed_before_a_key_rotation_still_verifies() -> None:
    login = _login()
    rotated = RING.with_key("k2", bytes(32))
    assert verify_tag(login, rotated) is login
    assert sign(login, rotated).tag.startswith("k2.")


@pytest.mark.parametrize("value", [None, "s-1", {"session_id": "s-1"}, object()])
def test_what_is_not_a_login_session_is_refused(value: object) -> None:
    with pytest.raises(InvalidSession, match="not a LoginSession"):
        verify_tag(value, RING)


def test_a_tag_that_is_not_a_str_is_refused() -> None:
    login = dataclasses.replace(_login(), tag=b"k1.abc")  # type: ignore[arg-type]
    with pytest.raises(InvalidSession, match="not a LoginSession"):
        verify_tag(login, RING)


@pytest.mark.parametrize("tag", ["k1.A", "k1.AAAAA", "k1.\u00e9\u00e9\u00e9\u00e9"])
def test_a_tag_that_is_not_base64url_is_malformed(tag: str) -> None:
    with pytest.raises(InvalidSession, match="login session tag is malformed"):
        verify_tag(dataclasses.replace(_login(), tag=tag), RING)


@pytest.mark.parametrize("tag", ["", "k1", "k1.", "no-dot-here"])
def test_a_tag_without_a_mac_is_refused(tag: str) -> None:
    with pytest.raises(InvalidSession):
        verify_tag(dataclasses.replace(_login(), tag=tag), RING)


@pytest.mark.parametrize("value", [b"bob", {1, 2}, object()])
def test_a_login_with_a_field_json_cannot_hold_is_refused(value: object) -> None:
    login = dataclasses.replace(_login(), user_id=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidSession, match="not issued by this service"):
        verify_tag(login, RING)


# -- sealing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "second_factor_at": AT + timedelta(seconds=1),
            "second_factor_epoch": 2,
            "enrollment_deferred_until": AT + timedelta(days=2),
        },
    ],
    ids=["password-only", "every-field"],
)
def test_a_sealed_login_unseals_to_an_equal_verified_login(changes: dict[str, object]) -> None:
    login = _login(**changes)
    token = seal(login, RING)
    assert token.isascii()
    assert "=" not in token
    assert "+" not in token
    assert "/" not in token
    # Encrypted, not merely encoded: the JSON of the fields is not in it.
    blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b'"user_id"' not in blob
    assert b'"bob"' not in blob
    assert unseal(token, RING) == login


@pytest.mark.parametrize(
    "token", [None, 42, b"token", "", "x" * 4097], ids=["none", "int", "bytes", "empty", "long"]
)
def test_what_is_not_a_sealed_token_is_refused_before_decrypting(token: object) -> None:
    with pytest.raises(InvalidSession, match="not a sealed login session"):
        unseal(token, RING)


@pytest.mark.parametrize("token", ["A", "not a token at all", "AAAA", "\u00e9t\u00e9"])
def test_a_token_that_does_not_decrypt_is_refused(token: str) -> None:
    with pytest.raises(InvalidSession, match="not a valid sealed login session"):
        unseal(token, RING)


def test_a_token_sealed_under_another_keyring_is_refused() -> None:
    token = seal(_login(), Keyring({"k1": bytes(32)}))
    with pytest.raises(InvalidSession, match="not a valid sealed login session"):
        unseal(token, RING)


def test_a_token_with_a_character_changed_is_refused() -> None:
    token = seal(_login(), RING)
    changed = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(InvalidSession):
        unseal(changed, RING)


def _sealed_payload(payload: object) -> str:
    """A token the keyring did seal, holding ``payload``: as if the seal key had leaked to
    someone who then still lacks the tag key."""
    blob = RING.encrypt(json.dumps(payload).encode(), purpose="login-session-seal", context="")
    return base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")


@pytest.mark.parametrize("payload", [{}, {"session_id": "s-1"}, {"unknown_field": 1}])
def test_a_sealed_payload_that_is_not_a_login_is_refused(payload: object) -> None:
    with pytest.raises(InvalidSession, match="not a valid sealed login session"):
        unseal(_sealed_payload(payload), RING)


@pytest.mark.parametrize("payload", [[], "login", 7, None])
def test_a_sealed_payload_that_is_not_a_json_object_is_refused(payload: object) -> None:
    with pytest.raises(InvalidSession, match="not a valid sealed login session"):
        unseal(_sealed_payload(payload), RING)


def test_a_sealed_login_with_a_bad_date_or_a_forged_tag_is_refused() -> None:
    login = _login()
    fields = {
        "session_id": "s-1",
        "user_id": "bob",
        "authenticated_at": AT.isoformat(),
        "method": "password",
        "identity_verified_at": "yesterday",
        "identity_method": "password",
        "tag": login.tag,
    }
    with pytest.raises(InvalidSession, match="not a valid sealed login session"):
        unseal(_sealed_payload(fields), RING)
    # Well-formed, but claiming a second factor the tag does not cover.
    forged = {
        **fields,
        "identity_verified_at": AT.isoformat(),
        "second_factor_at": AT.isoformat(),
        "second_factor_epoch": 0,
    }
    with pytest.raises(InvalidSession, match="not issued by this service or was altered"):
        unseal(_sealed_payload(forged), RING)
