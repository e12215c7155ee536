"""Message templates for notifications: a subject, a plain-text body and an HTML body per kind.

Templates use :class:`string.Template` syntax: ``${name}`` is a placeholder, ``$$`` a dollar sign.
Every template is checked when it is made: a placeholder that will not be given (a misspelt
name, or a fact the kind does not carry, such as ``${retry_at}`` in a recovery-code message)
raises :class:`~tenant2fa.errors.ConfigurationError` then, never at sending time.

What a placeholder is replaced with is a fact, never a secret: see :data:`PLACEHOLDERS`. Values
are made single-line (so a subject cannot gain a header), and HTML-escaped in the HTML body.
Hosts replace the wording with :meth:`Templates.with_overrides`.
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType

from tenant2fa.errors import ConfigurationError
from tenant2fa.notify import Message, Notification, NotificationKind

__all__ = ["PLACEHOLDERS", "MessageTemplate", "Templates", "format_time"]

_COMMON = frozenset({"product", "user_id", "at", "tenant_name"})

PLACEHOLDERS: Mapping[NotificationKind, frozenset[str]] = MappingProxyType(
    {
        NotificationKind.TWO_FACTOR_ENABLED: _COMMON,
        NotificationKind.TWO_FACTOR_RESET: _COMMON | {"actor_id"},
        NotificationKind.TWO_FACTOR_REMOVED: _COMMON,
        NotificationKind.RECOVERY_CODE_USED: _COMMON | {"recovery_codes_left"},
        NotificationKind.RECOVERY_CODES_REGENERATED: _COMMON,
        NotificationKind.LOCKED_OUT: _COMMON | {"retry_at"},
        NotificationKind.TENANT_TWO_FACTOR_CHANGED: _COMMON | {"actor_id", "two_factor"},
    }
)
"""The placeholders each kind's templates may use.

- ``product``: the host application's name, as given to the renderer.
- ``user_id``: the user the message is for.
- ``at``: when it happened, ``YYYY-MM-DD HH:MM UTC``.
- ``tenant_name``: the tenant's name, else its id, else the product (for changes to the user's
  own enrollment, which belongs to no tenant).
- ``actor_id``: the owner who reset the user's 2FA or switched the tenant's.
- ``recovery_codes_left``: how many unused recovery codes the user has.
- ``retry_at``: when the user may try again, ``YYYY-MM-DD HH:MM UTC``; for a lock that lasts
  until an owner resets it, the words "an owner of your tenant resets your two-factor
  authentication" (so that "You can try again after ${retry_at}." reads well).
- ``two_factor``: ``on`` or ``off``, the tenant's new setting.

A fact the notification lacks is replaced with ``unknown``.
"""

_ALL_PLACEHOLDERS = frozenset(name for names in PLACEHOLDERS.values() for name in names)
_UNKNOWN = "unknown"
_UNTIL_RESET = "an owner of your tenant resets your two-factor authentication"


def format_time(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DD HH:MM UTC`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        utc = moment.replace(tzinfo=timezone.utc)
    else:
        utc = moment.astimezone(timezone.utc)
    return f"{utc:%Y-%m-%d %H:%M} UTC"


def _one_line(value: str) -> str:
    # Line breaks and other control characters could end a header line or fake a paragraph.
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def _placeholders_in(source: str, part: str) -> frozenset[str]:
    names: set[str] = set()
    for match in string.Template.pattern.finditer(source):
        if match.group("invalid") is not None:
            before = source[: match.start()]
            line = before.count("\n") + 1
            column = len(before) - (before.rfind("\n") + 1) + 1
            raise ConfigurationError(
                f"template {part}: a '$' that starts no placeholder at line {line}, column "
                f"{column}; write ${{name}} for a placeholder and $$ for a dollar sign"
            )
        name = match.group("named") or match.group("braced")
        if name is not None:
            names.add(name)
    unknown = names - _ALL_PLACEHOLDERS
    if unknown:
        raise ConfigurationError(
            f"template {part}: unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"the placeholders are {', '.join(sorted(_ALL_PLACEHOLDERS))}"
        )
    return frozenset(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageTemplate:
    """The three parts of one kind of message, as :class:`string.Template` sources.

    ``subject`` must be one line. Raises :class:`~tenant2fa.errors.ConfigurationError` for an
    empty part, a line break in the subject, a stray ``$`` or an unknown placeholder.
    """

    subject: str
    text: str
    html: str

    def __post_init__(self) -> None:
        for part in ("subject", "text", "html"):
            value = getattr(self, part)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"template {part} must be a non-empty str")
            _placeholders_in(value, part)
        if not self.subject.isprintable():
            raise ConfigurationError("template subject must be one line without control characters")

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholder names the three parts use."""
        return frozenset(
            name
            for part in ("subject", "text", "html")
            for name in _placeholders_in(getattr(self, part), part)
        )


class Templates:
    """The templates for every :class:`~tenant2fa.notify.NotificationKind`.

    ``Templates.default()`` holds the library's English texts; ``with_overrides`` returns a copy
    with some replaced. Raises :class:`~tenant2fa.errors.ConfigurationError` if a kind has no
    template, or if a template uses a placeholder its kind does not provide (see
    :data:`PLACEHOLDERS`). Immutable, so one instance may serve every thread.
    """

    __slots__ = ("_by_kind",)

    def __init__(self, templates: Mapping[NotificationKind, MessageTemplate]) -> None:
        for kind, template in templates.items():
            if not isinstance(kind, NotificationKind):
                raise ConfigurationError(f"templates are keyed by NotificationKind, not {kind!r}")
            if not isinstance(template, MessageTemplate):
                raise ConfigurationError(f"the template for {kind.name} is not a MessageTemplate")
            unavailable = template.placeholders - PLACEHOLDERS[kind]
            if unavailable:
                raise ConfigurationError(
                    f"the {kind.name} template uses {', '.join(sorted(unavailable))}, which "
                    f"{kind.name} does not provide; it provides "
                    f"{', '.join(sorted(PLACEHOLDERS[kind]))}"
                )
        missing = [kind.name for kind in NotificationKind if kind not in templates]
        if missing:
            raise ConfigurationError(f"no template for {', '.join(missing)}")
        self._by_kind: Mapping[NotificationKind, MessageTemplate] = MappingProxyType(
            dict(templates)
        )

    @classmethod
    def default(cls) -> Templates:
        """The library's own templates."""
        return _DEFAULT

    def with_overrides(self, overrides: Mapping[NotificationKind, MessageTemplate]) -> Templates:
        """A copy in which the kinds in ``overrides`` use the given templates."""
        return Templates({**self._by_kind, **overrides})

    def __getitem__(self, kind: NotificationKind) -> MessageTemplate:
        return self._by_kind[kind]

    def __repr__(self) -> str:
        return f"Templates(<{len(self._by_kind)} kinds>)"

    def values_for(self, notification: Notification, *, product: str) -> dict[str, str]:
        """What each placeholder of the notification's kind stands for.

        A subclass may override this to word the facts differently (another language, a
        different date format); :meth:`render` still makes each value single-line and escapes
        it for HTML.
        """
        n = notification
        facts = {
            "product": product,
            "user_id": n.user_id,
            "at": format_time(n.at),
            "tenant_name": n.tenant_name or n.tenant_id or product,
            "actor_id": n.actor_id or _UNKNOWN,
            "recovery_codes_left": (
                _UNKNOWN if n.recovery_codes_left is None else str(n.recovery_codes_left)
            ),
            "retry_at": _UNTIL_RESET if n.retry_at is None else format_time(n.retry_at),
            "two_factor": {True: "on", False: "off", None: _UNKNOWN}[n.two_factor_on],
        }
        return {name: facts[name] for name in PLACEHOLDERS[n.kind]}

    def render(self, notification: Notification, *, product: str = "your account") -> Message:
        """The notification as a :class:`~tenant2fa.notify.Message` with a one-line subject."""
        template = self._by_kind[notification.kind]
        given = self.values_for(notification, product=product)
        values = {
            name: _one_line(given.get(name, _UNKNOWN)) for name in PLACEHOLDERS[notification.kind]
        }
        escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
        return Message(
            subject=string.Template(template.subject).substitute(values),
            text=string.Template(template.text).substitute(values),
            html=string.Template(template.html).substitute(escaped),
        )


# -- the default texts --------------------------------------------------------------------------

_SIGN_OFF = (
    "This message was sent automatically by ${product}. It never contains a code or a link to "
    "sign in: never give a code from your authenticator app to anyone who asks for it."
)


def _default(subject: str, *paragraphs: str) -> MessageTemplate:
    """A template whose HTML body has the same paragraphs as its text body."""
    body = (*paragraphs, _SIGN_OFF)
    return MessageTemplate(
        subject=subject,
        text="\n\n".join(body) + "\n",
        html=(
            '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
            "<title>${product}</title></head>\n<body>\n"
            + "".join(f"<p>{paragraph}</p>\n" for paragraph in body)
            + "</body>\n</html>\n"
        ),
    )


_DEFAULT = Templates(
    {
        NotificationKind.TWO_FACTOR_ENABLED: _default(
            "Two-factor authentication enabled for ${product}",
            "You've enabled two-factor authentication for your user on ${product} (${at}).",
            "Every time you log in, you'll be asked to enter the code generated by your "
            "authenticator app. Keep your recovery codes somewhere safe: each one lets you log "
            "in once if you lose your phone.",
            "If this wasn't you, contact your administrator immediately: someone may know your "
            "password.",
        ),
        NotificationKind.TWO_FACTOR_RESET: _default(
            "Two-factor authentication reset for ${product}",
            "An owner of ${tenant_name} (${actor_id}) reset two-factor authentication for your "
            "user on ${product} (${at}). Your authenticator app and your recovery codes no "
            "longer work, in every tenant you belong to.",
            "You'll be asked to set up two-factor authentication again at your next login.",
            "If you didn't ask for this, contact your administrator immediately.",
        ),
        NotificationKind.TWO_FACTOR_REMOVED: _default(
            "Two-factor authentication removed for ${product}",
            "You removed two-factor authentication from your user on ${product} (${at}). You'll "
            "log in without a code from now on, and your recovery codes no longer work.",
            "If this wasn't you, change your password and contact your administrator immediately.",
        ),
        NotificationKind.RECOVERY_CODE_USED: _default(
            "A recovery code was used to log in to ${product}",
            "A recovery code was used to log in to ${tenant_name} on ${product} (${at}). Each "
            "code works once: you have ${recovery_codes_left} recovery codes left.",
            "If you're running out, generate new recovery codes in your security settings. If "
            "you lost your phone, set up your authenticator app again.",
            "If this wasn't you, contact your administrator immediately: someone may know your "
            "password and have one of your recovery codes.",
        ),
        NotificationKind.RECOVERY_CODES_REGENERATED: _default(
            "New recovery codes for ${product}",
            "New recovery codes were generated for your user on ${product} (${at}). The old "
            "ones no longer work.",
            "If this wasn't you, contact your administrator immediately.",
        ),
        NotificationKind.LOCKED_OUT: _default(
            "Too many wrong codes for ${product}",
            "Too many wrong two-factor authentication codes were entered for your user in "
            "${tenant_name} (${at}), so logging in is paused. You can try again after "
            "${retry_at}.",
            "If this wasn't you, someone may know your password: change it, and tell your "
            "administrator.",
        ),
        NotificationKind.TENANT_TWO_FACTOR_CHANGED: _default(
            "Two-factor authentication switched ${two_factor} in ${tenant_name}",
            "${actor_id} switched two-factor authentication ${two_factor} for ${tenant_name} on "
            "${product} (${at}).",
            "While it is on, every member is asked to set up an authenticator app at their next "
            "login, then for a code from it each time they log in. While it is off, members "
            "log in with email and password only.",
            "You get this message because you are an owner of ${tenant_name}. If you didn't "
            "expect this change, check with ${actor_id} or another owner.",
        ),
    }
)
