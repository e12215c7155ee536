"""The user guide (spec/user-guide.md), told once, start to finish, through the public API.

Each block below is headed with the guide's own section heading and quotes the sentence it checks.
The cast: Olga owns Tenant B, Alice owns Tenant A, Bob is a member of both, Carol is an admin of B
and Dave a plain member of B. Codes are computed the way an authenticator app computes them: from
the ``otpauth://`` link shown to the user, never from what the library stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tenant2fa import (
    AuditKind,
    EnrollmentState,
    InMemoryNotifier,
    NotificationKind,
    PermissionDenied,
    Provisioning,
    Reason,
    Role,
    StepKind,
    StepUpRequired,
    TwoFactor,
)
from tenant2fa.notify import render
from tenant2fa.testing import FakeClock


def authenticator_app(uri: str, at: datetime) -> str:
    """The 6-digit code an authenticator app shows at ``at`` after scanning ``uri``.

    RFC 6238 is written out here (SHA-1, 30 s, 6 digits: what the link says by leaving the
    parameters out), so the story does not lean on the library's own TOTP code.
    """
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    params = parse_qs(parts.query, strict_parsing=True)
    assert set(params) == {"secret", "issuer"}, "non-default parameters would need explicit support"
    encoded = params["secret"][0]
    key = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    counter = int(at.timestamp()) // 30
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def a_wrong_code(uri: str, at: datetime) -> str:
    """A well-formed code that is none of the codes accepted at ``at`` (the ±1 step window)."""
    window = {authenticator_app(uri, at + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in window)


def test_the_user_guide_story_runs_end_to_end_through_the_public_api(  # noqa: PLR0915 - one story
    tf: TwoFactor, clock: FakeClock, notifier: InMemoryNotifier
) -> None:
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("A", "bob", operator="host")
    tf.add_member("B", "bob", operator="host")
    tf.add_member("B", "carol", role=Role.ADMIN, actor_id="olga")
    tf.add_member("B", "dave", actor_id="carol")
    clock.set(datetime.fromisoformat("2026-03-02T09:00:00+00:00"))

    # Bob signs in at nine and works in Tenant A. Olga is signed in too.
    bob = tf.start_session("bob", method="password")
    olga_earlier = tf.start_session("olga", method="password")
    assert tf.login_step(bob, "A").kind is StepKind.DONE
    assert tf.login_step(bob, "B").kind is StepKind.DONE

    # ## Two-factor Authentication
    # > "you'll only see this section if you have Owner user permissions."
    # An admin and a plain member both try to switch it on: refused, and nothing changes.
    clock.advance(timedelta(minutes=30))
    policy_before = tf.tenant("B")
    audit_before = tf.audit_log(tenant_id="B")
    for intruder in ("carol", "dave", "bob", "alice"):
        with pytest.raises(PermissionDenied):
            tf.set_two_factor("B", actor_id=intruder, enabled=True)
    assert tf.tenant("B") == policy_before
    assert tf.audit_log(tenant_id="B") == audit_before
    assert tf.login_step(bob, "A").kind is StepKind.DONE

    # ## Activate Two-Factor Authentication in your Tenant
    # > "Once there, activate the Two-factor authentication toggle."
    clock.advance(timedelta(minutes=30))
    activated_at = clock.now()
    policy = tf.set_two_factor("B", actor_id="olga", enabled=True)
    assert policy.two_factor_required
    assert policy.activated_at == activated_at
    assert tf.tenant("B") == policy
    switched = tf.audit_log(tenant_id="B", kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}))
    assert [(r.actor_id, dict(r.detail)) for r in switched] == [
        ("olga", {"old": "off", "new": "on"})
    ]
    assert not tf.tenant("A").two_factor_required

    # ## Enable Two-Factor Authentication for your User
    # > "imagine your admin activates two-factor authentication in Tenant B while you are working
    # > in Tenant A. If you log in to Tenant A after that, you'll need to verify your identity."
    clock.advance(timedelta(minutes=5))
    step = tf.login_step(bob, "A")
    assert step.kind is StepKind.VERIFY_IDENTITY
    assert step.required_by == ("B",)
    assert not step.skippable
    with pytest.raises(StepUpRequired) as refused:
        tf.begin_enrollment(bob)
    assert refused.value.step is StepKind.VERIFY_IDENTITY

    # > "entering your password or logging in with Google or Microsoft."
    bob = tf.verify_identity(bob, method="google")
    assert bob.identity_method == "google"
    # > "After verifying your identity, you'll see this screen to enable two-factor authentication"
    assert tf.login_step(bob, "A").kind is StepKind.ENROLL
    assert tf.login_step(bob, "B").kind is StepKind.ENROLL

    # > "Use the app to scan the QR code that appears on the configuration screen."
    shown: Provisioning = tf.begin_enrollment(bob)
    assert tf.user_status("bob").state is EnrollmentState.PENDING
    svg = shown.qr_svg()
    assert svg.lstrip().startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert shown.qr_png().startswith(b"\x89PNG\r\n\x1a\n")
    assert unquote(urlsplit(shown.uri).path) == "/Onum:bob"
    link_secret = parse_qs(urlsplit(shown.uri).query)["secret"][0]
    # The key for typing it in by hand is the same secret, in groups of four.
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{1,4})+", shown.manual_key)
    assert shown.manual_key.replace(" ", "") == link_secret
    assert len(base64.b32decode(link_secret + "=" * (-len(link_secret) % 8))) == 20

    # > "Finally, enter the 6-digit code generated by your app and click Enable."
    clock.advance(timedelta(seconds=40))
    code = authenticator_app(shown.uri, clock.now())
    assert re.fullmatch(r"[0-9]{6}", code)
    enabled = tf.confirm_enrollment(bob, code)
    assert enabled.ok, enabled.reason
    bob = enabled.login
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE

    # > "You'll get an email confirming that you've enabled two-factor authentication"
    # (Bob was also told when he was added to A and B: nobody is added silently.)
    (email,) = (n for n in notifier.for_user("bob") if n.kind is not NotificationKind.MEMBER_ADDED)
    assert email.kind is NotificationKind.TWO_FACTOR_ENABLED
    message = render(email, product="Onum")
    assert "enabled two-factor authentication" in message.body
    for text in (repr(email), message.subject, message.body):
        assert code not in text
        assert link_secret not in text
        assert shown.manual_key not in text

    # Recovery codes are shown once: in this result, never in its repr, stored only as hashes.
    codes = enabled.recovery_codes
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", c) for c in codes)
    assert not any(c in repr(enabled) for c in codes)
    assert tf.user_status("bob").recovery_codes_left == 10

    # Confirming counted as the second factor for this login: Bob goes on working in A and B.
    assert tf.login_step(bob, "A").kind is StepKind.DONE
    assert tf.login_step(bob, "B").kind is StepKind.DONE

    # > "Every time you log in, you'll be asked to enter a 6-digit code generated by your
    # > authenticator app."
    clock.advance(timedelta(days=1))
    bob = tf.start_session("bob", method="password")
    assert tf.login_step(bob, "B").kind is StepKind.CHALLENGE
    wrong = tf.verify_code(bob, "B", a_wrong_code(shown.uri, clock.now()))
    assert not wrong.ok
    assert wrong.reason is Reason.INVALID
    assert wrong.login == bob
    assert tf.login_step(bob, "B").kind is StepKind.CHALLENGE
    right = tf.verify_code(bob, "B", authenticator_app(shown.uri, clock.now()))
    assert right.ok, right.reason
    bob = right.login
    assert tf.login_step(bob, "B").kind is StepKind.DONE
    # Tenant A does not require it: email + password is enough there.
    assert tf.login_step(tf.start_session("bob"), "A").kind is StepKind.DONE

    # > "Note that all the users in the Tenant will be prompted to enable two-factor
    # > authentication when an owner activates it."
    # Olga too. Her session from before the switch must first verify her identity again; a fresh
    # sign-in goes straight to enrolling, like everyone else in B who has not enrolled yet.
    assert tf.login_step(olga_earlier, "B").kind is StepKind.VERIFY_IDENTITY
    fresh_steps = {
        m.user_id: tf.login_step(tf.start_session(m.user_id), "B").kind for m in tf.members("B")
    }
    assert fresh_steps == {
        "bob": StepKind.CHALLENGE,
        "carol": StepKind.ENROLL,
        "dave": StepKind.ENROLL,
        "olga": StepKind.ENROLL,
    }
    # Alice belongs to no tenant that requires it, so nothing changes for her.
    assert tf.login_step(tf.start_session("alice"), "A").kind is StepKind.DONE

    # ## Deactivate Two-Factor Authentication
    # > "they simply need to switch off the Two-factor authentication toggle. The Tenant
    # > authentication method will go back to email + password once users log in again."
    clock.advance(timedelta(hours=1))
    assert not tf.set_two_factor("B", actor_id="olga", enabled=False).two_factor_required
    for user_id in ("bob", "carol", "dave", "olga"):
        just_signed_in = tf.start_session(user_id, method="password")
        assert tf.login_step(just_signed_in, "B").kind is StepKind.DONE, user_id
    # Bob's authenticator stays, dormant, for the day 2FA is switched on again.
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE
    switches = tf.audit_log(tenant_id="B", kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}))
    assert [dict(r.detail)["new"] for r in switches] == ["on", "off"]
