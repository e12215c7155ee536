"""SMTPNotifier against a real SMTP server (aiosmtpd on 127.0.0.1), read back as the recipient would.

Every test starts its own server on a free port and reads what it received: the envelope, and
the raw message parsed with the standard library. TLS uses a throw-away certificate authority
made here; the client trusts it through ``ssl_context`` and checks the host name (127.0.0.1).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenant2fa import (
    ConfigurationError,
    DeliveryError,
    InMemoryNotifier,
    MessageTemplate,
    NotificationKind,
    Notifier,
    Templates,
    TwoFactor,
)
from tenant2fa.notify import Notification
from tenant2fa.recovery import normalize_recovery_code
from tenant2fa.smtp import SMTPNotifier, message_id_for
from tenant2fa.testing import FakeClock, code_for, pending_code_for, secret_of

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ADDRESSES = {"bob": "bob@example.com", "olga": "Olga Owner <olga@example.com>"}
USERNAME = "tenant2fa-mailer"
PASSWORD = "correct horse battery staple 7"  # an SMTP password, to be kept out of every message


# -- a certificate authority and a server certificate for 127.0.0.1 -----------------------------


@dataclass(frozen=True)
class Certificates:
    ca_pem: str
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts only the test CA, and checks the host name as the default context does."""
        return ssl.create_default_context(cadata=self.ca_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    # Fixed validity dates: the test reads no clock.
    not_before = datetime(2020, 1, 1, tzinfo=timezone.utc)
    not_after = datetime(2100, 1, 1, tzinfo=timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("tenant2fa test CA"))
        .issuer_name(_name("tenant2fa test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file = folder / "server.pem"
    key_file = folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        cert_file=cert_file,
        key_file=key_file,
    )


# -- the server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        # As a mail store keeps it: SMTP's CRLF line ends become the local "\n".
        parsed = message_from_bytes(self.raw.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it is given. Runs in the server's thread."""

    deliveries: list[Delivery] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        assert envelope.mail_from is not None
        assert isinstance(envelope.original_content, bytes)
        self.deliveries.append(
            Delivery(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(mechanism)
        ok = auth_data.login == USERNAME.encode() and auth_data.password == PASSWORD.encode()
        # handled=False: let aiosmtpd answer 535 itself on failure.
        return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Server:
    port: int
    mailbox: Mailbox

    @property
    def deliveries(self) -> list[Delivery]:
        return self.mailbox.deliveries


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Starts an aiosmtpd server on 127.0.0.1 with the given SMTP options; stops it after."""
    controllers: list[Controller] = []

    def start(**options: Any) -> Server:
        mailbox = Mailbox()
        if options.pop("with_auth", False):
            options["authenticator"] = mailbox.authenticate
        controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=_free_port(),
            server_hostname="mail.test",
            ready_timeout=5.0,
            **options,
        )
        controller.start()
        controllers.append(controller)
        return Server(controller.port, mailbox)

    yield start
    for controller in controllers:
        controller.stop()


def _notifier(port: int, **options: Any) -> SMTPNotifier:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "Onum <no-reply@onum.example>",
        "address_for": ADDRESSES.get,
        "security": "none",
        "timeout": 5.0,
        "product": "Onum",
        "local_hostname": "app.test",
    }
    settings.update(options)
    return SMTPNotifier(**settings)


def _note(kind: NotificationKind, *, user_id: str = "bob", **facts: Any) -> Notification:
    return Notification(
        notification_id=f"n-{kind.value}", kind=kind, user_id=user_id, at=AT, **facts
    )


def _parts(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert isinstance(text_part, EmailMessage)
    assert isinstance(html_part, EmailMessage)
    text, html = text_part.get_content(), html_part.get_content()
    assert isinstance(text, str)
    assert isinstance(html, str)
    return text, html


# -- every kind of message ------------------------------------------------------------------

TENANT_B = {"tenant_id": "B", "tenant_name": "Tenant B"}
BY_OLGA = {**TENANT_B, "actor_id": "olga", "actor_role": "owner"}
CASES: dict[NotificationKind, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    NotificationKind.TWO_FACTOR_ENABLED: (
        {},
        "Two-factor authentication enabled for Onum",
        ("You've enabled two-factor authentication for your user on Onum",),
    ),
    NotificationKind.TWO_FACTOR_RESET: (
        BY_OLGA,
        "Two-factor authentication reset for Onum",
        ("was reset in “Tenant B” by “olga” (an owner of the tenant)", "next login"),
    ),
    NotificationKind.TWO_FACTOR_REMOVED: (
        {},
        "Two-factor authentication removed for Onum",
        ("You removed two-factor authentication",),
    ),
    NotificationKind.RECOVERY_CODE_USED: (
        {**TENANT_B, "recovery_codes_left": 7},
        "A recovery code was used to log in to Onum",
        ("to log in to “Tenant B” on Onum", "you have 7 recovery codes left"),
    ),
    NotificationKind.RECOVERY_CODES_REGENERATED: (
        {},
        "New recovery codes for Onum",
        ("New recovery codes were generated", "The old ones no longer work"),
    ),
    NotificationKind.LOCKED_OUT: (
        {**TENANT_B, "retry_at": AT + timedelta(minutes=5)},
        "Too many wrong codes for Onum",
        ("in “Tenant B”", "You can try again after 2026-01-02 03:09 UTC."),
    ),
    NotificationKind.TENANT_TWO_FACTOR_CHANGED: (
        {**TENANT_B, "actor_id": "bob", "two_factor_on": False},
        "Two-factor authentication switched off in one of your tenants on Onum",
        ("switched off for the tenant “Tenant B” on Onum by “bob”",),
    ),
    NotificationKind.TWO_FACTOR_UNLOCKED: (
        {**TENANT_B, "actor_id": "support:jane", "actor_role": "operator"},
        "Two-factor authentication unlocked for Onum",
        ("was lifted in “Tenant B” by “support:jane” (the team that runs Onum)",),
    ),
    NotificationKind.MEMBER_ADDED: (
        {**BY_OLGA, "role": "member"},
        "You were added to a tenant on Onum",
        ("added to the tenant “Tenant B” on Onum by “olga”", "Your role there is member."),
    ),
    NotificationKind.MEMBER_REMOVED: (
        {**TENANT_B, "actor_id": "bob", "actor_role": "self", "previous_role": "admin"},
        "Your membership of a tenant on Onum ended",
        ("was ended by “bob” (you)", "Your role there was admin."),
    ),
    NotificationKind.ROLE_CHANGED: (
        {**BY_OLGA, "role": "owner", "previous_role": "admin"},
        "Your role changed in one of your tenants on Onum",
        ("Your role in the tenant “Tenant B” on Onum was changed from admin to owner",),
    ),
    NotificationKind.OWNERS_CHANGED: (
        {**BY_OLGA, "member_id": "carol", "role": None, "previous_role": "owner"},
        "The owners of one of your tenants on Onum changed",
        ("“carol” is no longer a member (was an owner), by “olga”",),
    ),
}


def test_the_cases_cover_every_kind() -> None:
    assert set(CASES) == set(NotificationKind)


@pytest.mark.parametrize("kind", list(NotificationKind), ids=lambda k: k.value)
def test_each_kind_arrives_at_its_user_with_its_subject_and_facts(
    kind: NotificationKind, start_server: Callable[..., Server]
) -> None:
    facts, subject, sentences = CASES[kind]
    user_id = "olga" if kind is NotificationKind.TENANT_TWO_FACTOR_CHANGED else "bob"
    note = _note(kind, user_id=user_id, **facts)
    server = start_server()

    _notifier(server.port).notify(note)

    (delivery,) = server.deliveries
    address = "olga@example.com" if user_id == "olga" else "bob@example.com"
    assert delivery.rcpt_tos == (address,)
    assert delivery.mail_from == "no-reply@onum.example"
    message = delivery.message
    assert message["To"].addresses[0].addr_spec == address
    assert message["From"].addresses[0].addr_spec == "no-reply@onum.example"
    assert message["Subject"] == subject
    assert parsedate_to_datetime(message["Date"]) == AT
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == message_id_for(note.notification_id)
    text, html = _parts(message)
    expected = Templates.default().render(note, product="Onum")
    assert (text, html) == (expected.text, expected.html)
    for sentence in (*sentences, "2026-01-02 03:04 UTC"):
        assert sentence in text
        assert sentence in html


def test_the_message_is_valid_mime_with_a_text_and_an_html_alternative(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    _notifier(server.port).notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    message = server.deliveries[0].message
    assert message.defects == []
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.defects == []
        assert part.get_content_charset() in {"us-ascii", "utf-8"}
    assert all(line.isascii() for line in server.deliveries[0].raw.splitlines())
    assert "<!DOCTYPE html>" in _parts(message)[1]


def test_non_ascii_names_are_encoded_and_read_back_intact(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    note = _note(
        NotificationKind.TWO_FACTOR_RESET,
        tenant_id="M",
        tenant_name="Müller & Söhne",
        actor_id="zoë",
    )
    _notifier(server.port, product="Önum").notify(note)

    message = server.deliveries[0].message
    assert message["Subject"] == "Two-factor authentication reset for Önum"
    text, html = _parts(message)
    assert "in “Müller & Söhne” by “zoë”" in text
    assert "in “Müller &amp; Söhne” by “zoë”" in html


def test_a_retried_notification_keeps_its_message_id(start_server: Callable[..., Server]) -> None:
    server = start_server()
    notifier = _notifier(server.port)
    first = _note(NotificationKind.RECOVERY_CODES_REGENERATED)
    other = Notification(
        notification_id="n-other",
        kind=NotificationKind.RECOVERY_CODES_REGENERATED,
        user_id="bob",
        at=AT,
    )

    notifier.notify(first)
    notifier.notify(first)
    notifier.notify(other)

    ids = [d.message["Message-ID"] for d in server.deliveries]
    assert ids == [
        "<n-recovery_codes_regenerated@tenant2fa.invalid>",
        "<n-recovery_codes_regenerated@tenant2fa.invalid>",
        "<n-other@tenant2fa.invalid>",
    ]


def test_a_message_id_is_derived_from_any_notification_id_and_stays_valid() -> None:
    assert message_id_for("0f3a") == "<0f3a@tenant2fa.invalid>"
    odd = message_id_for("a b<c>@d")
    assert odd == message_id_for("a b<c>@d")
    assert odd != message_id_for("a b<c>@e")
    assert re.fullmatch(r"<[0-9a-f]{64}@tenant2fa\.invalid>", odd)


def test_a_tenant_name_cannot_add_headers_or_recipients(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    note = _note(
        NotificationKind.TENANT_TWO_FACTOR_CHANGED,
        user_id="olga",
        tenant_id="B",
        tenant_name="B\r\nBcc: eve@evil.example\r\n\r\nfake body",
        actor_id="bob",
        two_factor_on=True,
    )
    _notifier(server.port).notify(note)

    (delivery,) = server.deliveries
    assert delivery.rcpt_tos == ("olga@example.com",)
    message = delivery.message
    assert message["Bcc"] is None
    # A subject this long is folded onto the next line; the parser keeps the fold's space.
    assert (
        message["Subject"] == "Two-factor authentication switched on in one of your tenants on Onum"
    )
    text, _ = _parts(message)
    assert "for the tenant “B Bcc: eve@evil[.]example fake body” on Onum" in text
    assert b"\r\nBcc:" not in delivery.raw
    assert b"\nBcc:" not in delivery.raw


def test_an_address_list_or_a_broken_address_on_file_is_refused_not_sent(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    book = {
        "bob": "bob@example.com, eve@evil.example",
        "olga": "olga@example.com\r\nBcc: eve@evil.example",
        "carol": "carol",
    }
    notifier = _notifier(server.port, address_for=book.get)
    for user_id in book:
        with pytest.raises(DeliveryError, match=r"not an e-mail address|exactly one"):
            notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED, user_id=user_id))
    assert server.deliveries == []


def test_a_user_without_an_address_is_skipped_and_logged(
    start_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    asked: list[str] = []

    def address_for(user_id: str) -> str | None:
        asked.append(user_id)
        return None

    with caplog.at_level(logging.INFO, logger="tenant2fa"):
        _notifier(server.port, address_for=address_for).notify(
            _note(NotificationKind.TWO_FACTOR_ENABLED)
        )

    assert asked == ["bob"]
    assert server.deliveries == []
    assert any(
        "no address for user 'bob'" in r.getMessage() and "n-two_factor_enabled" in r.getMessage()
        for r in caplog.records
    )


# -- TLS and login --------------------------------------------------------------------------


def test_starttls_upgrades_the_connection_before_sending(
    start_server: Callable[..., Server], certificates: Certificates
) -> None:
    server = start_server(tls_context=certificates.server_context(), require_starttls=True)
    notifier = _notifier(
        server.port, security="starttls", ssl_context=certificates.client_context()
    )

    notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    assert len(server.deliveries) == 1


def test_starttls_refuses_a_server_that_does_not_offer_it(
    start_server: Callable[..., Server], certificates: Certificates
) -> None:
    server = start_server()
    notifier = _notifier(
        server.port, security="starttls", ssl_context=certificates.client_context()
    )

    with pytest.raises(DeliveryError, match="SMTPNotSupportedError"):
        notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))
    assert server.deliveries == []


def test_starttls_refuses_a_certificate_it_does_not_trust(
    start_server: Callable[..., Server], certificates: Certificates
) -> None:
    server = start_server(tls_context=certificates.server_context())
    notifier = _notifier(server.port, security="starttls")  # the system's CAs only

    with pytest.raises(DeliveryError, match="SSLCertVerificationError"):
        notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))
    assert server.deliveries == []


def test_starttls_refuses_a_certificate_for_another_host_name(
    start_server: Callable[..., Server], certificates: Certificates
) -> None:
    server = start_server(tls_context=certificates.server_context())
    context = certificates.client_context()
    # The certificate names 127.0.0.1 only; "localhost" reaches the same server by another name.
    notifier = _notifier(server.port, host="127.0.0.1", security="starttls", ssl_context=context)
    notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))
    impostor = _notifier(server.port, host="localhost", security="starttls", ssl_context=context)

    with pytest.raises(DeliveryError, match="SSLCertVerificationError"):
        impostor.notify(_note(NotificationKind.TWO_FACTOR_REMOVED))
    assert len(server.deliveries) == 1


def test_implicit_tls_speaks_tls_from_the_first_byte(
    start_server: Callable[..., Server], certificates: Certificates
) -> None:
    server = start_server(ssl_context=certificates.server_context())
    notifier = _notifier(server.port, security="tls", ssl_context=certificates.client_context())

    notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    assert len(server.deliveries) == 1
    plain = _notifier(server.port, security="none", timeout=0.5)
    with pytest.raises(DeliveryError):
        plain.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))
    assert len(server.deliveries) == 1


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_login_with_the_right_credentials_sends(
    mechanism: str, start_server: Callable[..., Server], certificates: Certificates
) -> None:
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    server = start_server(
        tls_context=certificates.server_context(),
        with_auth=True,
        auth_required=True,
        auth_exclude_mechanism=[other],
    )
    notifier = _notifier(
        server.port,
        security="starttls",
        ssl_context=certificates.client_context(),
        username=USERNAME,
        password=PASSWORD,
    )

    notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    assert server.mailbox.logins == [mechanism]
    assert len(server.deliveries) == 1


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_login_with_a_wrong_password_fails_without_naming_it(
    mechanism: str, start_server: Callable[..., Server], certificates: Certificates
) -> None:
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    server = start_server(
        tls_context=certificates.server_context(),
        with_auth=True,
        auth_required=True,
        auth_exclude_mechanism=[other],
    )
    wrong = "wrong horse battery staple 8"
    notifier = _notifier(
        server.port,
        security="starttls",
        ssl_context=certificates.client_context(),
        username=USERNAME,
        password=wrong,
    )

    with pytest.raises(DeliveryError, match=r"SMTPAuthenticationError \(SMTP 535\)") as caught:
        notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    assert server.mailbox.logins == [mechanism]
    assert server.deliveries == []
    text = Templates.default().render(_note(NotificationKind.TWO_FACTOR_ENABLED), product="Onum")
    for shown in (str(caught.value), repr(caught.value), repr(notifier)):
        for secret in (wrong, base64.b64encode(wrong.encode()).decode()):
            assert secret not in shown
        assert text.text[:40] not in shown
    assert "password=<redacted>" in repr(notifier)


def test_a_password_is_never_sent_over_plain_smtp_unless_allowed(
    start_server: Callable[..., Server],
) -> None:
    with pytest.raises(ConfigurationError, match="plain SMTP"):
        _notifier(1025, security="none", username=USERNAME, password=PASSWORD)

    server = start_server(with_auth=True, auth_require_tls=False)
    local_relay = _notifier(
        server.port,
        security="none",
        username=USERNAME,
        password=PASSWORD,
        allow_insecure_login=True,
    )
    local_relay.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))
    assert len(server.mailbox.logins) == 1
    assert len(server.deliveries) == 1


# -- unreachable and silent servers ---------------------------------------------------------


def test_a_server_that_is_down_fails_quickly() -> None:
    notifier = _notifier(_free_port(), timeout=5.0)

    started = time.monotonic()
    with pytest.raises(DeliveryError, match="ConnectionRefusedError") as caught:
        notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    assert time.monotonic() - started < 2.0
    assert "127.0.0.1" in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_a_server_that_never_answers_fails_after_the_timeout(
    security: str, certificates: Certificates
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever reads or writes
        notifier = _notifier(
            silent.getsockname()[1],
            security=security,
            timeout=0.5,
            ssl_context=certificates.client_context(),
        )

        started = time.monotonic()
        with pytest.raises(DeliveryError):
            notifier.notify(_note(NotificationKind.TWO_FACTOR_ENABLED))
        waited = time.monotonic() - started

    assert 0.4 <= waited < 3.0


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"security": "ssl"}, "security"),
        ({"port": 0}, "port"),
        ({"port": "587"}, "port"),
        ({"host": ""}, "host"),
        ({"sender": "no-reply"}, "sender"),
        ({"sender": "a@example.com, b@example.com"}, "sender"),
        ({"sender": "x@example.com\r\nBcc: eve@evil.example"}, "sender"),
        ({"username": USERNAME}, "both"),
        ({"password": PASSWORD}, "both"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"address_for": "bob@example.com"}, "address_for"),
        ({"product": " "}, "product"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_construction(
    options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as caught:
        _notifier(**{"port": 587, **options})
    assert PASSWORD not in str(caught.value)


def test_the_notifier_is_a_notifier_and_its_repr_hides_the_password() -> None:
    notifier = _notifier(587, security="starttls", username=USERNAME, password=PASSWORD)
    assert isinstance(notifier, Notifier)
    assert PASSWORD not in repr(notifier)
    assert PASSWORD not in str(notifier)
    assert repr(notifier) == (
        "SMTPNotifier(host='127.0.0.1', port=587, security='starttls', "
        "sender='Onum <no-reply@onum.example>', username='tenant2fa-mailer', "
        "password=<redacted>)"
    )


def test_host_templates_are_used_for_the_email(start_server: Callable[..., Server]) -> None:
    server = start_server()
    templates = Templates.default().with_overrides(
        {
            NotificationKind.TWO_FACTOR_ENABLED: MessageTemplate(
                subject="[${product}] 2FA is on",
                text="Hello ${user_id}, 2FA is on since ${at}.\n",
                html="<p>Hello ${user_id}, 2FA is on since ${at}.</p>\n",
            )
        }
    )
    _notifier(server.port, templates=templates).notify(_note(NotificationKind.TWO_FACTOR_ENABLED))

    message = server.deliveries[0].message
    assert message["Subject"] == "[Onum] 2FA is on"
    assert _parts(message) == (
        "Hello bob, 2FA is on since 2026-01-02 03:04 UTC.\n",
        "<p>Hello bob, 2FA is on since 2026-01-02 03:04 UTC.</p>\n",
    )


# -- no secret in any delivered message -----------------------------------------------------

_SIX_DIGITS = re.compile(r"(?<![0-9])[0-9]{3} ?[0-9]{3}(?![0-9])")


@dataclass
class Needles:
    strings: dict[str, str] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)

    def add_secret(self, raw: bytes) -> None:
        b32 = base64.b32encode(raw).decode("ascii").rstrip("=")
        for form in (
            b32,
            b32.lower(),
            " ".join(b32[i : i + 4] for i in range(0, len(b32), 4)),
            raw.hex(),
            base64.b64encode(raw).decode("ascii").rstrip("="),
            base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
        ):
            self.strings[form] = "TOTP secret"

    def add_recovery_codes(self, codes: tuple[str, ...]) -> None:
        for code in codes:
            canonical = normalize_recovery_code(code)
            assert canonical is not None
            for form in (code, code.lower(), canonical, canonical.lower()):
                self.strings[form] = "recovery code"

    def found_in(self, text: str) -> list[str]:
        leaks = [f"{label}: {needle!r}" for needle, label in self.strings.items() if needle in text]
        runs = {run.replace(" ", "") for run in _SIX_DIGITS.findall(text)}
        leaks += [f"TOTP code {code}" for code in sorted(runs & self.codes)]
        return leaks


def _everything_readable(delivery: Delivery) -> str:
    message = delivery.message
    pieces = [delivery.raw.decode("latin-1")]
    pieces += [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if not part.is_multipart():
            content = part.get_content()
            assert isinstance(content, str)
            pieces.append(content)
    return "\n".join(pieces)


def test_no_delivered_message_contains_a_secret_a_code_or_a_recovery_code(
    tf: TwoFactor,
    clock: FakeClock,
    notifier: InMemoryNotifier,
    start_server: Callable[..., Server],
) -> None:
    needles = Needles()
    tf.create_tenant("A", name="Tenant A", owner_id="alice")
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("A", "bob", operator="host")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    clock.advance(seconds=1)

    # Enroll: the secret, its link and key, the confirming code, the recovery codes.
    login = tf.start_session("bob")
    shown = tf.begin_enrollment(login)
    needles.add_secret(secret_of(tf, "bob", pending=True))
    needles.strings[shown.uri] = "otpauth link"
    needles.strings[shown.manual_key] = "manual key"
    confirming = pending_code_for(tf, "bob")
    needles.codes.add(confirming)
    enrolled = tf.confirm_enrollment(login, confirming)
    assert enrolled.ok
    needles.add_recovery_codes(enrolled.recovery_codes)

    # A code at login, then a recovery code in a new session.
    clock.advance(seconds=30)
    second = tf.start_session("bob")
    code = code_for(tf, "bob")
    needles.codes.add(code)
    assert tf.verify_code(second, "B", code).ok
    third = tf.start_session("bob")
    assert tf.use_recovery_code(third, "B", enrolled.recovery_codes[0]).ok

    # Wrong codes until the lockout notice (codes of the real secret, from other time steps).
    fourth = tf.start_session("bob")
    for offset in range(5, 10):
        wrong = code_for(tf, "bob", offset=offset)
        needles.codes.add(wrong)
        assert not tf.verify_code(fourth, "B", wrong).ok

    # After the pause: new recovery codes, then an owner reset, then the tenant's switch off.
    clock.advance(timedelta(hours=2))
    fifth = tf.start_session("bob")
    code = code_for(tf, "bob")
    needles.codes.add(code)
    fifth = tf.verify_code(fifth, "B", code).login
    fifth, regenerated = tf.regenerate_recovery_codes(fifth)
    needles.add_recovery_codes(regenerated)
    tf.reset_two_factor("B", "bob", actor_id="olga")
    tf.set_two_factor("B", actor_id="olga", enabled=False)

    sent = notifier.sent
    assert {n.kind for n in sent} >= {
        NotificationKind.TWO_FACTOR_ENABLED,
        NotificationKind.RECOVERY_CODE_USED,
        NotificationKind.LOCKED_OUT,
        NotificationKind.RECOVERY_CODES_REGENERATED,
        NotificationKind.TWO_FACTOR_RESET,
    }
    server = start_server()
    mailer = _notifier(
        server.port, address_for={"bob": "bob@example.com", "olga": "olga@example.com"}.get
    )
    for note in sent:
        mailer.notify(note)
    assert len(server.deliveries) == len(sent)

    # The scanner finds what it looks for (so that an empty result means something).
    assert needles.found_in(f"code {confirming}!") == [f"TOTP code {confirming}"]
    assert needles.found_in(enrolled.recovery_codes[1].lower()) != []
    assert needles.found_in(shown.manual_key) != []
    for note, delivery in zip(sent, server.deliveries, strict=True):
        readable = _everything_readable(delivery).replace(note.notification_id, "")
        assert needles.found_in(readable) == [], note.kind
