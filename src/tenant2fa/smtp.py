"""`SMTPNotifier`: sends notifications as e-mail through an SMTP server, on the standard library.

Each notification becomes one ``multipart/alternative`` message (plain text and HTML, from
:class:`~tenant2fa.templates.Templates`) sent over its own connection: STARTTLS on the
submission port (587), implicit TLS (465), or plain SMTP for a relay on the same host. The
certificate and host name are checked with ``ssl.create_default_context()`` unless the host
passes its own context.

The ``Message-ID`` is made from the notification id, so a notification delivered twice (a
retry after a timeout) carries the same id both times and mail systems can drop the copy.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from datetime import timezone
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from hashlib import sha256
from typing import Literal

from tenant2fa.errors import ConfigurationError, DeliveryError
from tenant2fa.notify import Notification
from tenant2fa.templates import Templates

__all__ = ["SMTPNotifier", "Security", "message_id_for"]

_log = logging.getLogger("tenant2fa")

Security = Literal["starttls", "tls", "none"]
_SECURITY: tuple[Security, ...] = ("starttls", "tls", "none")
_MESSAGE_ID_DOMAIN = "tenant2fa.invalid"
_ID_LEFT = re.compile(r"[A-Za-z0-9_-]{1,128}")


def message_id_for(notification_id: str) -> str:
    """The ``Message-ID`` of the e-mail for ``notification_id``: the same id, the same value.

    An id made of letters, digits, ``-`` and ``_`` is used as it is; any other is hashed.
    """
    left = notification_id
    if not _ID_LEFT.fullmatch(left):
        left = sha256(notification_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{left}@{_MESSAGE_ID_DOMAIN}>"


def _check_address(value: object, what: str) -> str:
    """``value`` if it is one header-safe address (``a@b`` or ``Name <a@b>``), else ValueError."""
    if not isinstance(value, str) or not value.isprintable():
        raise ValueError(f"{what} is not an e-mail address")
    try:
        header = policy.default.header_factory("To", value)
    except (HeaderParseError, IndexError) as exc:
        # IndexError: the standard library's parser trips on some inputs, such as "@x".
        raise ValueError(f"{what} is not an e-mail address") from exc
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if header.defects or len(addresses) != 1 or not (addresses[0].username and addresses[0].domain):
        raise ValueError(f"{what} must be exactly one e-mail address")
    return value


class SMTPNotifier:
    """A :class:`~tenant2fa.notify.Notifier` that e-mails each notification to its user.

    - ``host``, ``port``: the SMTP server (587 for STARTTLS, 465 for implicit TLS).
    - ``sender``: the ``From`` address, ``no-reply@example.com`` or ``Acme <no-reply@...>``.
    - ``address_for``: the user id to the address on file; ``None`` means the user has none,
      and the notification is skipped (and logged).
    - ``security``: ``"starttls"`` (upgrade the connection, refuse to go on without it),
      ``"tls"`` (TLS from the first byte) or ``"none"`` (plain SMTP: only for a relay on the
      same machine or network).
    - ``username``, ``password``: log in, only over TLS unless ``allow_insecure_login``.
    - ``timeout``: seconds for connecting and for each read or write.
    - ``ssl_context``: how the server's certificate is checked (default:
      ``ssl.create_default_context()``, the system's trusted CAs and a host name check).
    - ``product``, ``templates``: the application's name and the texts.
    - ``local_hostname``: the name given in ``EHLO`` (default: this machine's full name).

    Raises :class:`~tenant2fa.errors.ConfigurationError` for settings that cannot work. Each
    :meth:`notify` opens its own connection, so one instance serves any number of threads. It
    does not retry: a caller that retries sends the same ``Message-ID`` again.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        address_for: Callable[[str], str | None],
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        allow_insecure_login: bool = False,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        product: str = "your account",
        templates: Templates | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if not isinstance(host, str) or not host or not host.isprintable():
            raise ConfigurationError("host must be a non-empty host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError("port must be an int from 1 to 65535")
        try:
            _check_address(sender, "sender")
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if not callable(address_for):
            raise ConfigurationError("address_for must be a callable: user id -> address or None")
        if security not in _SECURITY:
            raise ConfigurationError(f"security must be one of {', '.join(_SECURITY)}")
        if (username is None) != (password is None):
            raise ConfigurationError("give both username and password, or neither")
        if username is not None and security == "none" and not allow_insecure_login:
            raise ConfigurationError(
                "refusing to send a password over plain SMTP: use security='starttls' or "
                "'tls', or pass allow_insecure_login=True for a trusted local relay"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        if not isinstance(product, str) or not product.strip():
            raise ConfigurationError("product must be a non-empty str")
        self.host = host
        self.port = port
        self.sender = sender
        self.address_for = address_for
        self.security: Security = security
        self.username = username
        self._password = password
        self.timeout = float(timeout)
        self.ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self.product = product
        self.templates = templates if templates is not None else Templates.default()
        self.local_hostname = local_hostname

    def __repr__(self) -> str:
        login = f", username={self.username!r}, password=<redacted>" if self.username else ""
        return (
            f"SMTPNotifier(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"sender={self.sender!r}{login})"
        )

    def build(self, notification: Notification, address: str) -> EmailMessage:
        """The e-mail for ``notification`` to ``address``, as :meth:`notify` would send it.

        Raises :class:`~tenant2fa.errors.DeliveryError` if ``address`` is not a usable address.
        """
        try:
            recipient = _check_address(address, "the recipient")
        except ValueError:
            raise DeliveryError(
                f"notification {notification.notification_id}: the address on file for user "
                f"{notification.user_id!r} is not an e-mail address"
            ) from None
        rendered = self.templates.render(notification, product=self.product)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = rendered.subject
        at = notification.at
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
        message["Date"] = format_datetime(at)
        message["Message-ID"] = message_id_for(notification.notification_id)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    def notify(self, notification: Notification) -> None:
        """E-mail ``notification`` to its user; return once the server has accepted it.

        Skips (and logs) a user without an address. Raises
        :class:`~tenant2fa.errors.DeliveryError` if the server cannot be reached, does not
        answer within ``timeout``, fails the TLS handshake or certificate check, refuses the
        login, the sender or the recipient. Its message names the failure, never the password
        or the message's text. An exception from ``address_for`` is not caught.
        """
        address = self.address_for(notification.user_id)
        if address is None:
            _log.info(
                "notification %s (%s) not e-mailed: no address for user %r",
                notification.notification_id,
                notification.kind.value,
                notification.user_id,
            )
            return
        message = self.build(notification, address)
        try:
            self._send(message)
        except (smtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "smtp_code", None)
            raise DeliveryError(
                f"notification {notification.notification_id} to user {notification.user_id!r} "
                f"not delivered by {self.host}:{self.port}: {type(exc).__name__}"
                + (f" (SMTP {code})" if isinstance(code, int) else "")
            ) from exc
        _log.debug(
            "notification %s (%s) e-mailed to user %r",
            notification.notification_id,
            notification.kind.value,
            notification.user_id,
        )

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self.ssl_context,
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )

    def _send(self, message: EmailMessage) -> None:
        smtp = self._connect()
        try:
            if self.security == "starttls":
                # Raises SMTPNotSupportedError if the server does not offer it: no silent
                # downgrade to plain text.
                smtp.starttls(context=self.ssl_context)
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(message)
            # The server has accepted the message: a failed goodbye changes nothing.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        finally:
            smtp.close()
