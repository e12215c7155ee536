"""The web demo through Flask's test client: the guard, CSRF, owners only, server-side sessions.

The demo is the reference integration, so what it must get right is pinned here, fast and
without a browser: every POST needs the session's CSRF token; only an owner sees or changes the
Two-factor authentication toggle; the cookie holds a random id and nothing else, and changes
when privileges do; no secret is ever in a cookie, a URL or a redirect; every step page answers
as the user guide says; the mailbox shows each signed-in person only their own mail; no page can
be framed; only behind a proxy does X-Forwarded-Proto count. tests/test_browser.py walks the whole
guide in a real browser.
"""

from __future__ import annotations

import re
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask import request as flask_request
from flask.testing import FlaskClient
from markupsafe import escape
from werkzeug.test import TestResponse

from tenant2fa import AuditKind, Config, LoginSession, Reason, RecoveryCodeHasher, totp
from tenant2fa.notify import render
from tenant2fa.testing import FakeClock
from tenant2fa.webdemo import create_app
from tenant2fa.webdemo.app import MESSAGES, PRODUCT, demo_of
from tenant2fa.webdemo.seed import KeyFileMissing, key_file_for
from tenant2fa.webdemo.server import parse_smtp
from tenant2fa.webdemo.sessions import COOKIE_NAME

PASSWORDS = {
    "olga@example.com": "olga-pass",
    "bob@example.com": "bob-pass",
    "carol@example.com": "carol-pass",
}
CHEAP = Config(issuer=PRODUCT, recovery_hasher=RecoveryCodeHasher(n=2**4))
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r'<code class="key" id="manual-key">([A-Z2-7 ]+)</code>')


def make_app(db: Path, clock: FakeClock, **options: Any) -> Flask:
    return create_app(db_path=db, passwords=PASSWORDS, clock=clock, config=CHEAP, **options)


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock) -> Flask:
    return make_app(tmp_path / "demo.sqlite3", clock)


class Person:
    """One browser: a test client with its cookie, and the last page it was shown."""

    def __init__(self, app: Flask, email: str) -> None:
        self.app = app
        self.email = email
        self.client: FlaskClient = app.test_client()
        self.page = ""
        self.locations: list[str] = []
        self.set_cookies: list[str] = []

    def get(self, path: str, *, status: int = 200) -> str:
        response = self.client.get(path, follow_redirects=True)
        self._saw(response)
        assert response.status_code == status, response.text
        self.page = response.text
        return self.page

    def post(
        self, path: str, form: dict[str, str] | None = None, *, csrf: bool = True
    ) -> TestResponse:
        data = dict(form or {})
        if csrf:
            data["csrf_token"] = self.csrf_token()
        response = self.client.post(path, data=data, follow_redirects=True)
        self._saw(response)
        self.page = response.text
        return response

    def _saw(self, response: TestResponse) -> None:
        self.locations += [r.headers["Location"] for r in response.history]
        self.locations.append(response.request.url)
        for answer in (*response.history, response):
            self.set_cookies += answer.headers.getlist("Set-Cookie")

    def csrf_token(self) -> str:
        tokens = set(TOKEN_FIELD.findall(self.page))
        assert len(tokens) == 1, "every form of a page carries the same token"
        return str(tokens.pop())

    def cookie(self) -> str | None:
        cookie = self.client.get_cookie(COOKIE_NAME)
        return None if cookie is None else cookie.value

    def sign_in(self, method: str = "password") -> None:
        self.get("/sign-in")
        response = self.post(
            "/sign-in", {"email": self.email, "password": PASSWORDS[self.email], "method": method}
        )
        assert response.status_code == 200
        assert "Choose a tenant" in self.page

    def sign_out(self) -> None:
        self.post("/sign-out")
        assert "<h1>Sign in</h1>" in self.page

    def login(self) -> LoginSession:
        """The tenant2fa login kept on the server for this browser."""
        cookie = self.cookie()
        assert cookie is not None
        login = demo_of(self.app).sessions.stored()[cookie]["login"]
        assert isinstance(login, LoginSession)
        return login


@dataclass
class Phone:
    """An authenticator app: it remembers the keys typed into it."""

    clock: FakeClock
    keys: dict[str, str] = field(default_factory=dict)

    def add(self, person: Person) -> None:
        match = KEY.search(person.page)
        assert match is not None, "the enable page shows the key for manual entry"
        self.keys[person.email] = match.group(1)

    def code(self, person: Person) -> str:
        secret = totp.decode_secret(self.keys[person.email])
        return totp.code_at(secret, totp.time_step(self.clock.now()))


def enable_two_factor(person: Person, phone: Phone, tenant_id: str) -> list[str]:
    """From the verify-identity page on: verify, scan, enable. Returns the recovery codes."""
    phone.clock.advance(seconds=5)  # the identity check must come after the switch
    page = person.get(f"/t/{tenant_id}")
    if "Verify your identity" in page:
        person.post(f"/t/{tenant_id}/verify-identity", {"password": PASSWORDS[person.email]})
    assert "Enable two-factor authentication" in person.page
    phone.add(person)
    response = person.post(f"/t/{tenant_id}/2fa/enable", {"code": phone.code(person)})
    assert response.status_code == 200
    assert "Two-factor authentication is on" in person.page
    return re.findall(r"<li><code>([0-9A-Z-]{19})</code></li>", person.page)


def switch_two_factor(owner: Person, tenant_id: str, value: str) -> TestResponse:
    owner.get(f"/t/{tenant_id}/settings/authentication")
    return owner.post(f"/t/{tenant_id}/settings/authentication", {"two_factor": value})


# -- CSRF ------------------------------------------------------------------------------------


def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    app: Flask, clock: FakeClock
) -> None:
    olga = Person(app, "olga@example.com")
    olga.get("/sign-in")
    # Sign-in itself is protected (login CSRF): no token, no session.
    refused = olga.post("/sign-in", {"email": olga.email, "password": "olga-pass"}, csrf=False)
    assert refused.status_code == 403
    olga.sign_in()
    olga.get("/t/tenant-b/settings/authentication")
    token = olga.csrf_token()
    for sent in ({}, {"csrf_token": ""}, {"csrf_token": token[:-1]}, {"csrf_token": token + "x"}):
        answer = olga.client.post(
            "/t/tenant-b/settings/authentication", data={"two_factor": "on", **sent}
        )
        assert answer.status_code == 403
    assert not demo_of(app).tf.tenant("tenant-b").two_factor_required
    # Another browser's token is not this one's.
    carol = Person(app, "carol@example.com")
    carol.get("/sign-in")
    assert carol.csrf_token() != token
    answer = olga.client.post(
        "/t/tenant-b/settings/authentication",
        data={"two_factor": "on", "csrf_token": carol.csrf_token()},
    )
    assert answer.status_code == 403
    assert not demo_of(app).tf.tenant("tenant-b").two_factor_required
    # With its own token, the same request goes through.
    assert switch_two_factor(olga, "tenant-b", "on").status_code == 200
    assert demo_of(app).tf.tenant("tenant-b").two_factor_required


def test_every_form_of_every_page_carries_the_csrf_token(app: Flask, clock: FakeClock) -> None:
    olga = Person(app, "olga@example.com")
    pages = [olga.get("/sign-in")]
    olga.sign_in()
    pages += [olga.get("/tenants"), olga.get("/t/tenant-b")]
    pages.append(olga.get("/t/tenant-b/settings/authentication"))
    switch_two_factor(olga, "tenant-b", "on")
    pages.append(olga.page)  # verify identity
    clock.advance(seconds=5)
    olga.post("/t/tenant-b/verify-identity", {"password": "olga-pass"})
    pages.append(olga.page)  # enable
    enable_two_factor(olga, Phone(clock), "tenant-b")
    pages.append(olga.page)  # recovery codes
    olga.sign_out()
    clock.advance(seconds=30)
    olga.sign_in()
    pages += [olga.get("/t/tenant-b"), olga.get("/t/tenant-b/2fa/recovery"), olga.get("/mailbox")]
    forms = 0
    for page in pages:
        for form in re.findall(r"<form\b.*?</form>", page, flags=re.DOTALL):
            assert 'method="post"' in form
            assert len(TOKEN_FIELD.findall(form)) == 1, form
            forms += 1
    assert forms >= len(pages)


# -- owners only -----------------------------------------------------------------------------


def test_a_member_never_sees_the_toggle_and_a_forged_toggle_request_is_refused(
    app: Flask, clock: FakeClock
) -> None:
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    for tenant_id in ("tenant-a", "tenant-b"):
        page = bob.get(f"/t/{tenant_id}")
        assert "settings/authentication" not in page
        assert "two-factor-toggle" not in page
        page = bob.get(f"/t/{tenant_id}/settings/authentication", status=403)
        assert "Only owners see the Authentication settings." in page
        assert "two-factor-toggle" not in page
        # Bob knows the URL and has a valid CSRF token: tenant2fa still says no.
        forged = bob.post(f"/t/{tenant_id}/settings/authentication", {"two_factor": "on"})
        assert forged.status_code == 403
        assert "Only an owner can change" in bob.page
        assert not demo_of(app).tf.tenant(tenant_id).two_factor_required
    switched = demo_of(app).tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}))
    assert switched == []


def test_the_owner_sees_the_toggle_and_switching_it_on_asks_everyone_for_more(
    app: Flask, clock: FakeClock
) -> None:
    olga = Person(app, "olga@example.com")
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    assert "You're signed in to Tenant A" in bob.get("/t/tenant-a")
    olga.sign_in()
    assert "settings/authentication" in olga.get("/t/tenant-b")
    page = olga.get("/t/tenant-b/settings/authentication")
    assert 'id="two-factor-toggle"' in page
    assert 'aria-checked="false"' in page
    clock.advance(seconds=60)
    switch_two_factor(olga, "tenant-b", "on")
    assert demo_of(app).tf.tenant("tenant-b").two_factor_required
    # Everyone who signed in before the switch verifies their identity first, Olga included.
    assert "<h1>Verify your identity</h1>" in olga.page
    clock.advance(seconds=60)
    assert "<h1>Verify your identity</h1>" in bob.get("/t/tenant-a")
    assert bob.locations[-1].endswith("/t/tenant-a/verify-identity")
    wrong = bob.post("/t/tenant-a/verify-identity", {"password": "not-bob-pass"})
    assert wrong.status_code == 401
    assert "Wrong password." in bob.page
    bob.post("/t/tenant-a/verify-identity", {"password": "bob-pass", "method": "google"})
    assert "Enable two-factor authentication" in bob.page
    assert bob.login().identity_method == "google"
    page = bob.page
    assert page.count("<svg") == 1
    code_field = re.search(r'<input name="code"[^>]*>', page)
    assert code_field is not None
    assert 'autocomplete="one-time-code"' in code_field.group(0)
    assert 'inputmode="numeric"' in code_field.group(0)
    assert 'id="enable">Enable</button>' in page


def test_an_unknown_tenant_or_one_the_user_is_not_in_is_not_found(app: Flask) -> None:
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    bob.get("/t/tenant-z", status=404)
    bob.get("/t/tenant-z/settings/authentication", status=404)
    anonymous = Person(app, "bob@example.com")
    assert "<h1>Sign in</h1>" in anonymous.get("/t/tenant-a")


# -- sessions --------------------------------------------------------------------------------


def test_the_cookie_holds_only_a_random_id_and_the_login_lives_on_the_server(app: Flask) -> None:
    bob = Person(app, "bob@example.com")
    bob.get("/sign-in")
    bob.sign_in()
    cookie = bob.client.get_cookie(COOKIE_NAME)
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie.value)
    assert len(bob.set_cookies) == 2  # an anonymous session for the form, a new one signed in
    for header in bob.set_cookies:
        assert header.startswith(f"{COOKIE_NAME}=")
        assert "; HttpOnly" in header
        assert "; SameSite=Lax" in header
    stored = demo_of(app).sessions.stored()
    assert list(stored) == [cookie.value]
    login = stored[cookie.value]["login"]
    assert isinstance(login, LoginSession)
    assert login.user_id == "bob"
    assert "bob" not in cookie.value


def test_the_session_id_changes_at_sign_in_and_when_the_second_factor_is_proven(
    app: Flask, clock: FakeClock
) -> None:
    bob = Person(app, "bob@example.com")
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    clock.advance(seconds=60)
    bob.get("/sign-in")
    ids = [bob.cookie()]
    bob.sign_in()
    ids.append(bob.cookie())
    bob.get("/t/tenant-a")
    assert bob.cookie() == ids[-1]  # nothing changed: the same session
    phone = Phone(clock)
    enable_two_factor(bob, phone, "tenant-a")
    ids.append(bob.cookie())
    assert len(set(ids)) == 3
    assert None not in ids
    assert ids[-1] in demo_of(app).sessions.stored()
    for old in ids[:-1]:
        assert old not in demo_of(app).sessions.stored()
    # Proving the second factor at a later sign-in rotates it too.
    bob.sign_out()
    clock.advance(seconds=30)
    bob.sign_in()
    before_code = bob.cookie()
    assert "Enter your code" in bob.get("/t/tenant-b")
    bob.post("/t/tenant-b/2fa/code", {"code": phone.code(bob)})
    assert "You're signed in to Tenant B" in bob.page
    assert bob.cookie() not in (None, before_code)
    assert before_code not in demo_of(app).sessions.stored()
    # An old id is worth nothing: a browser presenting it is not signed in.
    thief = Person(app, "bob@example.com")
    thief.client.set_cookie(COOKIE_NAME, str(ids[1]))
    assert "<h1>Sign in</h1>" in thief.get("/t/tenant-a")


def test_signing_out_forgets_the_session_on_the_server(app: Flask) -> None:
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    cookie = bob.cookie()
    assert cookie in demo_of(app).sessions.stored()
    bob.sign_out()
    assert cookie not in demo_of(app).sessions.stored()
    assert bob.cookie() != cookie


def test_a_wrong_password_is_refused_without_starting_a_login(app: Flask) -> None:
    bob = Person(app, "bob@example.com")
    bob.get("/sign-in")
    for email, password in (("bob@example.com", "olga-pass"), ("nobody@example.com", "x")):
        answer = bob.post("/sign-in", {"email": email, "password": password})
        assert answer.status_code == 401
        assert "Wrong email or password." in bob.page
    assert all("login" not in data for data in demo_of(app).sessions.stored().values())
    assert (
        bob.post(
            "/sign-in", {"email": bob.email, "password": "bob-pass", "method": "x"}
        ).status_code
        == 400
    )


def test_no_secret_is_ever_in_a_url_a_redirect_or_a_cookie(app: Flask, clock: FakeClock) -> None:
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    phone = Phone(clock)
    codes = enable_two_factor(olga, phone, "tenant-b")
    olga.sign_out()
    clock.advance(seconds=30)
    olga.sign_in()
    olga.get("/t/tenant-b")
    olga.post("/t/tenant-b/2fa/code", {"code": phone.code(olga)})
    assert "You're signed in to Tenant B" in olga.page
    key = phone.keys[olga.email].replace(" ", "")
    secrets = [key, key.lower(), *codes, "otpauth"]
    assert len(codes) == 10
    assert olga.locations
    for location in olga.locations:
        assert not any(secret in location for secret in secrets), location
    assert olga.set_cookies
    for header in olga.set_cookies:
        assert header.startswith(f"{COOKIE_NAME}=")
        assert not any(secret in header for secret in secrets)
    # The QR code is drawn inline: no image is fetched by a URL that could carry the secret.
    olga.sign_out()
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    page = bob.get("/t/tenant-a")
    assert "<svg" in page
    assert "otpauth" not in page
    assert "<img" not in page


# -- behind a proxy, and framing ---------------------------------------------------------------


def _session_cookie_header(
    app: Flask, headers: dict[str, str], base_url: str = "http://localhost"
) -> str:
    """The Set-Cookie header of the session a new browser gets on the sign-in page."""
    response = app.test_client().get("/sign-in", headers=headers, base_url=base_url)
    assert response.status_code == 200
    [header] = response.headers.getlist("Set-Cookie")
    assert header.startswith(f"{COOKIE_NAME}=")
    return header


def test_only_behind_a_proxy_does_x_forwarded_proto_make_the_session_cookie_secure(
    tmp_path: Path, clock: FakeClock
) -> None:
    https = {"X-Forwarded-Proto": "https"}
    direct = make_app(tmp_path / "direct.sqlite3", clock)
    proxied = make_app(tmp_path / "proxied.sqlite3", clock, behind_proxy=True)
    # Without the option the header is the client's word, and counts for nothing.
    assert "; Secure" not in _session_cookie_header(direct, https)
    assert "; Secure" in _session_cookie_header(direct, {}, "https://localhost")
    # Behind the proxy, its header says how the browser came in.
    assert "; Secure" in _session_cookie_header(proxied, https)
    assert "; Secure" not in _session_cookie_header(proxied, {})
    http = {"X-Forwarded-Proto": "http"}
    assert "; Secure" not in _session_cookie_header(proxied, http)


def test_behind_a_proxy_no_forwarded_header_but_the_scheme_is_trusted(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = make_app(tmp_path / "demo.sqlite3", clock, behind_proxy=True)

    @app.get("/test-only/request")
    def seen() -> dict[str, str]:
        return {
            "scheme": flask_request.scheme,
            "remote_addr": str(flask_request.remote_addr),
            "host": flask_request.host,
            "script_root": flask_request.script_root,
        }

    forwarded = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "attacker.example",
        "X-Forwarded-Port": "8443",
        "X-Forwarded-Prefix": "/elsewhere",
    }
    answer = app.test_client().get("/test-only/request", headers=forwarded)
    assert answer.json == {
        "scheme": "https",
        "remote_addr": "127.0.0.1",
        "host": "localhost",
        "script_root": "",
    }


def test_no_page_may_be_framed(app: Flask, clock: FakeClock) -> None:
    bob = Person(app, "bob@example.com")
    answers = [
        bob.client.get("/sign-in"),
        bob.client.get("/t/tenant-a"),  # signed out: a redirect
        bob.client.get("/static/demo.css"),
    ]
    bob.sign_in()
    answers += [
        bob.client.get("/t/tenant-a"),
        bob.client.get("/mailbox"),
        bob.client.get("/t/tenant-a/settings/authentication"),
        bob.client.get("/t/tenant-z"),
    ]
    assert [a.status_code for a in answers] == [200, 302, 200, 200, 200, 403, 404]
    assert "You're signed in to Tenant A" in answers[3].text
    assert "<h1>Mailbox</h1>" in answers[4].text
    for answer in answers:
        assert answer.headers.get("X-Frame-Options") == "DENY"
        policy = [part.strip() for part in answer.headers["Content-Security-Policy"].split(";")]
        assert "frame-ancestors 'none'" in policy
        answer.close()


# -- the step pages --------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once_and_the_mailbox_shows_the_notice(
    app: Flask, clock: FakeClock
) -> None:
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    codes = enable_two_factor(olga, Phone(clock), "tenant-b")
    olga.sign_out()
    clock.advance(seconds=30)
    olga.sign_in()
    page = olga.get("/t/tenant-b")
    assert "Enter your code" in page
    assert "Use a recovery code" in page
    olga.get("/t/tenant-b/2fa/recovery")
    olga.post("/t/tenant-b/2fa/recovery", {"code": codes[0].lower()})
    assert "You're signed in to Tenant B" in olga.page
    assert "You have 9 left" in olga.page
    olga.sign_out()
    olga.sign_in()
    olga.get("/t/tenant-b/2fa/recovery")
    again = olga.post("/t/tenant-b/2fa/recovery", {"code": codes[0]})
    assert again.status_code == 400
    assert "That recovery code didn&#39;t work." in olga.page
    mailbox = olga.get("/mailbox")
    assert f"A recovery code was used to log in to {PRODUCT}" in mailbox
    assert mailbox.index("A recovery code was used") < mailbox.index(
        "Two-factor authentication enabled"
    )
    assert codes[0] not in mailbox


def test_too_many_wrong_codes_show_the_locked_page_with_the_time_to_retry(
    app: Flask, clock: FakeClock
) -> None:
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    phone = Phone(clock)
    enable_two_factor(olga, phone, "tenant-b")
    olga.sign_out()
    clock.advance(seconds=30)
    olga.sign_in()
    olga.get("/t/tenant-b")
    right = phone.code(olga)
    wrong = next(c for c in ("111111", "222222", "333333") if c != right)
    statuses = []
    for _ in range(10):
        if "Too many attempts" in olga.page:
            break
        statuses.append(olga.post("/t/tenant-b/2fa/code", {"code": wrong}).status_code)
    assert statuses[0] == 400
    assert "<h1>Too many attempts</h1>" in olga.page
    assert olga.locations[-1].endswith("/t/tenant-b/locked")
    status = demo_of(app).tf.user_status("olga")
    assert status.locked
    assert status.retry_at is not None
    assert f"You can try again after <strong>{status.retry_at:%H:%M:%S} UTC</strong>" in olga.page
    # Even the right code waits; every page of the tenant shows the lock.
    olga.get("/t/tenant-b/2fa/code")
    assert "<h1>Too many attempts</h1>" in olga.page
    assert olga.post("/t/tenant-b/2fa/code", {"code": right}).status_code == 200
    assert "<h1>Too many attempts</h1>" in olga.page
    assert demo_of(app).tf.user_status("olga").locked
    clock.set(status.retry_at + timedelta(seconds=1))
    assert "Enter your code" in olga.get("/t/tenant-b")


def test_a_wrong_code_at_enrollment_keeps_the_same_qr_code_and_says_why(
    app: Flask, clock: FakeClock
) -> None:
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    clock.advance(seconds=5)
    olga.post("/t/tenant-b/verify-identity", {"password": "olga-pass"})
    first = KEY.search(olga.page)
    assert first is not None
    assert KEY.search(olga.get("/t/tenant-b/2fa/enable")) is not None
    assert KEY.findall(olga.page) == [first.group(1)]  # a reload shows the same key
    answer = olga.post("/t/tenant-b/2fa/enable", {"code": "12345"})
    assert answer.status_code == 400
    assert MESSAGES[Reason.MALFORMED].replace("'", "&#39;") in olga.page
    assert KEY.findall(olga.page) == [first.group(1)]


# -- the mailbox -------------------------------------------------------------------------------


def mail_to_olga_and_bob(app: Flask, clock: FakeClock) -> dict[str, list[str]]:
    """Olga switches 2FA on in Tenant B (its owners hear of it), then Bob enables it (he gets a
    confirmation). Returns the subjects sent to each user id so far, escaped as a page shows them
    (other mail, such as notices of the seeding, is counted in too)."""
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    clock.advance(seconds=60)
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    enable_two_factor(bob, Phone(clock), "tenant-a")
    sent = demo_of(app).mailbox
    assert sent is not None
    subjects: dict[str, list[str]] = {}
    for note in sent.sent:
        subject = str(escape(render(note, product=PRODUCT).subject))
        subjects.setdefault(note.user_id, []).append(subject)
    # Each of the two got a message the other did not.
    assert set(subjects["olga"]) - set(subjects["bob"])
    assert set(subjects["bob"]) - set(subjects["olga"])
    return subjects


def test_the_mailbox_needs_a_sign_in_and_shows_no_mail_before(app: Flask, clock: FakeClock) -> None:
    subjects = mail_to_olga_and_bob(app, clock)
    stranger = Person(app, "carol@example.com")
    answer = stranger.client.get("/mailbox")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/sign-in"
    page = stranger.get("/mailbox")
    assert "<h1>Sign in</h1>" in page
    assert stranger.locations[-1].endswith("/sign-in")
    for subject in (s for own in subjects.values() for s in own):
        assert subject not in page
    assert "@example.com" not in page
    assert '<article class="mail">' not in page
    # Nor does the header of a page for signed-out visitors point to it.
    assert "/mailbox" not in page


def test_the_mailbox_shows_each_person_only_their_own_mail(app: Flask, clock: FakeClock) -> None:
    subjects = mail_to_olga_and_bob(app, clock)
    people = {"olga": "olga@example.com", "bob": "bob@example.com", "carol": "carol@example.com"}
    for user_id, email in people.items():
        own = subjects.get(user_id, [])
        others = {s for other, sent in subjects.items() if other != user_id for s in sent}
        person = Person(app, email)
        person.sign_in()
        page = person.get("/mailbox")
        assert page.count('<article class="mail">') == len(own)
        assert page.count(f"To {email} ") == len(own)
        for subject in own:
            assert subject in page
        for subject in others - set(own):
            assert subject not in page
        for other in people.values():
            assert other == email or f"To {other}" not in page
        if not own:
            assert "No e-mail yet." in page


# -- start-up, restarts, e-mail --------------------------------------------------------------


def test_a_restart_keeps_the_key_file_and_what_users_enabled(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = tmp_path / "demo.sqlite3"
    first = make_app(db, clock)
    olga = Person(first, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    phone = Phone(clock)
    enable_two_factor(olga, phone, "tenant-b")
    key_file = key_file_for(db)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_text = key_file.read_text(encoding="ascii")

    again = make_app(db, clock)  # the same files: nothing is seeded twice
    assert key_file.read_text(encoding="ascii") == key_text
    assert len(demo_of(again).tf.members("tenant-b")) == 3
    clock.advance(seconds=30)
    olga = Person(again, "olga@example.com")
    olga.sign_in()
    assert "Enter your code" in olga.get("/t/tenant-b")
    olga.post("/t/tenant-b/2fa/code", {"code": phone.code(olga)})
    assert "You're signed in to Tenant B" in olga.page

    key_file.unlink()
    with pytest.raises(KeyFileMissing, match="delete"):
        make_app(db, clock)


def test_passwords_are_kept_only_as_scrypt_hashes(app: Flask) -> None:
    accounts = demo_of(app).accounts
    for account in accounts:
        assert PASSWORDS[account.email].encode() not in account.password_hash
        assert PASSWORDS[account.email] not in repr(account)
        assert accounts.check_password(account.email, PASSWORDS[account.email]) == account
        assert accounts.check_password(account.email, PASSWORDS[account.email] + "!") is None
    assert accounts.check_password(" BOB@example.com ", "bob-pass") is not None


def test_smtp_option_parses_host_and_port() -> None:
    assert parse_smtp("127.0.0.1:1025") == ("127.0.0.1", 1025)
    assert parse_smtp("[::1]:25") == ("::1", 25)
    for bad in ("localhost", "host:", ":25", "host:0", "host:70000", "host:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_smtp(bad)


class _Catcher:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd calls it so
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mail_catcher() -> Iterator[tuple[int, _Catcher]]:
    catcher = _Catcher()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    controller = Controller(catcher, hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    try:
        yield port, catcher
    finally:
        controller.stop()


def test_with_smtp_the_confirmation_email_goes_to_the_mail_server(
    tmp_path: Path, clock: FakeClock, mail_catcher: tuple[int, _Catcher]
) -> None:
    port, catcher = mail_catcher
    app = make_app(tmp_path / "demo.sqlite3", clock, smtp=("127.0.0.1", port))
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    enable_two_factor(olga, Phone(clock), "tenant-b")
    subjects = [(m["To"], m["Subject"]) for m in catcher.messages]
    assert ("olga@example.com", f"Two-factor authentication enabled for {PRODUCT}") in subjects
    assert f"127.0.0.1:{port}" in olga.get("/mailbox")


def test_an_owner_unlocks_a_locked_member_and_only_an_owner_can(
    app: Flask, clock: FakeClock
) -> None:
    olga = Person(app, "olga@example.com")
    olga.sign_in()
    switch_two_factor(olga, "tenant-b", "on")
    phone = Phone(clock)
    enable_two_factor(olga, phone, "tenant-b")
    bob = Person(app, "bob@example.com")
    bob.sign_in()
    enable_two_factor(bob, phone, "tenant-b")
    bob.sign_out()
    clock.advance(seconds=30)
    bob.sign_in()
    bob.get("/t/tenant-b")
    right = phone.code(bob)
    wrong = next(c for c in ("111111", "222222", "333333") if c != right)
    while "Too many attempts" not in bob.page:
        bob.post("/t/tenant-b/2fa/code", {"code": wrong})
    tf = demo_of(app).tf
    assert tf.user_status("bob").locked
    unlock = "/t/tenant-b/settings/members/bob/unlock"
    # A member cannot unlock anyone, even signed in with her second factor and a valid CSRF
    # token of her own: the refusal is the library's.
    carol = Person(app, "carol@example.com")
    carol.sign_in()
    enable_two_factor(carol, phone, "tenant-b")
    assert carol.post(unlock).status_code == 403
    assert tf.user_status("bob").locked
    page = olga.get("/t/tenant-b/settings/authentication")
    assert unlock in page
    assert olga.post(unlock).status_code == 200
    assert "can try codes again" in olga.page
    status = tf.user_status("bob")
    assert not status.locked
    assert status.state.is_enrolled
    assert "Enter your code" in bob.get("/t/tenant-b")
    bob.post("/t/tenant-b/2fa/code", {"code": phone.code(bob)})
    assert bob.locations[-1].endswith("/t/tenant-b")
    record = tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_UNLOCKED}))[0]
    assert (record.user_id, record.actor_id) == ("bob", "olga")
