"""Message templates for notifications: a subject, a plain-text body and an HTML body per kind.

Templates use :class:`string.Template` syntax: ``${name}`` is a placeholder, ``$$`` a dollar sign.
Every template is checked when it is made: a placeholder that will not be given (a misspelt
name, or a fact the kind does not carry, such as ``${retry_at}`` in a recovery-code message)
raises :class:`~tenant2fa.errors.ConfigurationError` then, never at sending time.

What a placeholder is replaced with is a fact, never a secret: see :data:`PLACEHOLDERS`. Values
are made single-line (so a subject cannot gain a header), and HTML-escaped in the HTML body.
Names that other people choose (``tenant_name``, ``actor_id``, ``member_id``) are also
quoted, capped at 60 characters and kept from becoming links, by :meth:`Templates.render`
and so in a host's own templates too: a tenant named ``IT Security. Your account is frozen:
re-verify at https://evil.example`` is shown as ``“IT Security. Your account is frozen:
re-verify at https[:]//ev…”``, which reads as a name, not as the product speaking. The
rule is under :data:`PLACEHOLDERS`. Hosts replace the wording with
:meth:`Templates.with_overrides`.
"""

from __future__ import annotations

import html
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType

from tenant2fa.errors import ConfigurationError
from tenant2fa.notify import Message, Notification, NotificationKind
from tenant2fa.policy import OPERATOR, SELF, Role

__all__ = ["PLACEHOLDERS", "MessageTemplate", "Templates", "format_time"]

_COMMON = frozenset({"product", "user_id", "at", "tenant_name"})
_ACTOR = frozenset({"actor_id", "actor_role"})

PLACEHOLDERS: Mapping[NotificationKind, frozenset[str]] = MappingProxyType(
    {
        NotificationKind.TWO_FACTOR_ENABLED: _COMMON,
        NotificationKind.TWO_FACTOR_RESET: _COMMON | _ACTOR,
        NotificationKind.TWO_FACTOR_REMOVED: _COMMON,
        NotificationKind.RECOVERY_CODE_USED: _COMMON | {"recovery_codes_left"},
        NotificationKind.RECOVERY_CODES_REGENERATED: _COMMON,
        NotificationKind.LOCKED_OUT: _COMMON | {"retry_at"},
        NotificationKind.TENANT_TWO_FACTOR_CHANGED: _COMMON | {"actor_id", "two_factor"},
        NotificationKind.TWO_FACTOR_UNLOCKED: _COMMON | _ACTOR,
        NotificationKind.MEMBER_ADDED: _COMMON | _ACTOR | {"role"},
        NotificationKind.MEMBER_REMOVED: _COMMON | _ACTOR | {"previous_role"},
        NotificationKind.ROLE_CHANGED: _COMMON | _ACTOR | {"role", "previous_role"},
        NotificationKind.OWNERS_CHANGED: _COMMON | _ACTOR | {"member_id", "owner_change"},
    }
)
"""The placeholders each kind's templates may use.

- ``product``: the host application's name, as given to the renderer.
- ``user_id``: the user the message is for, as the host knows them. Not quoted: it names the
  reader, so that "Hello ${user_id}," reads naturally.
- ``at``: when it happened, ``YYYY-MM-DD HH:MM UTC``.
- ``tenant_name``: the tenant's name, else its id (both quoted names), else the product (for
  changes to the user's own enrollment, which belongs to no tenant; not quoted).
- ``actor_id``: who made the change: a member's user id, an operator's name such as
  ``support:jane``, or the user's own id. A quoted name.
- ``actor_role``: what gave the actor the authority, in words: "an owner of the tenant", "an
  administrator of the tenant", "a member of the tenant", "the team that runs <product>" (the
  host application or its operators), or "you" (the user themself).
- ``member_id``: who became or stopped being an owner (OWNERS_CHANGED, to the other owners).
  A quoted name.
- ``owner_change``: what happened to them, in words: "was added as an owner", "became an owner
  (was admin)", "is no longer an owner (now member)", "is no longer a member (was an owner)".
- ``role``, ``previous_role``: the member's role after and before the change: ``owner``,
  ``admin`` or ``member``.
- ``recovery_codes_left``: how many unused recovery codes the user has.
- ``retry_at``: when the user may try again, ``YYYY-MM-DD HH:MM UTC``; for a lock that lasts
  until an owner unlocks it, the words "an owner of your tenant unlocks your two-factor
  authentication" (so that "You can try again after ${retry_at}." reads well).
- ``two_factor``: ``on`` or ``off``, the tenant's new setting.

A fact the notification lacks is replaced with ``unknown``.

The quoted names are chosen by other people, not by the host: anyone may create a tenant and name
it, and a member's id may be a user name they picked. So that such a name cannot pass for the
product's own words (a tenant named "IT Security. Your account is frozen: re-verify at
https://evil.example"), :meth:`Templates.render` shows each name the notification carries:

- between “ and ”; every quotation mark, apostrophe or prime inside it becomes one ``'``,
  so that nothing inside can pass for the closing mark;
- cut after 60 characters, and then marked with an ellipsis (…);
- with ``[.]`` for a dot before a letter or digit and ``[:]`` for the colon of ``://``, so that
  mail clients do not turn it into a link (``evil[.]example``, ``https[:]//``);
- on one line, and HTML-escaped in the HTML body, like every value.

The stand-ins for a missing name (the product, ``unknown``) are not quoted; nor are the other
placeholders, which the library or the host words. A subclass that puts a name into another
placeholder's value must keep this rule itself.
"""

_ALL_PLACEHOLDERS = frozenset(name for names in PLACEHOLDERS.values() for name in names)
_UNKNOWN = "unknown"
_UNTIL_UNLOCKED = "an owner of your tenant unlocks your two-factor authentication"
_ACTOR_ROLES: Mapping[str, str] = MappingProxyType(
    {
        Role.OWNER.value: "an owner of the tenant",
        Role.ADMIN.value: "an administrator of the tenant",
        Role.MEMBER.value: "a member of the tenant",
        OPERATOR: "the team that runs {product}",
        SELF: "you",
    }
)

# The quoted names, each with the notification fields it is taken from: a name is quoted when
# the notification carries one of them, and a stand-in for a missing one is left bare.
_NAME_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "tenant_name": ("tenant_name", "tenant_id"),
        "actor_id": ("actor_id",),
        "member_id": ("member_id", "user_id"),
    }
)
_NAME_LIMIT = 60
_OPEN_QUOTE, _CLOSE_QUOTE, _CUT = "\u201c", "\u201d", "\u2026"
# Marks that could pass for a quotation mark but are not in Unicode's Pi and Pf categories
# (initial and final quotation punctuation), which are caught by category.
_QUOTE_LIKE = frozenset(
    "\"'`\u00b4\u02b9\u02ba\u02bc\u02dd\u02ee\u055a\u05f3\u05f4\u201a\u201e\u2032\u2033"
    "\u2034\u2035\u2036\u2037\u2057\u275b\u275c\u275d\u275e\u275f\u2760\u276e\u276f\u2e42"
    "\u3003\u301d\u301e\u301f\uff02\uff07\U0001f676\U0001f677\U0001f678"
)
_APOSTROPHES = re.compile("'{2,}")
# A dot before a letter or digit makes a domain (the ideographic and full-width dots count in
# internationalised domain names); "://" makes a URL. Mail clients turn either into a link.
_LINK_PUNCTUATION = re.compile(r"[.\u2024\u3002\ufe52\uff0e\uff61](?=\w)|:(?=//)")


def _owner_change(role: str | None, previous: str | None) -> str:
    owner = Role.OWNER.value
    if previous is None:
        return "was added as an owner" if role == owner else f"was added as {role or _UNKNOWN}"
    if role is None:
        return "is no longer a member (was an owner)" if previous == owner else "left"
    if role == owner:
        return f"became an owner (was {previous})"
    return f"is no longer an owner (now {role})"


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


def _quoted(name: str) -> str:
    """``name`` (one line already) as a quoted name: see :data:`PLACEHOLDERS`."""
    plain = "".join("'" if _is_quote_like(ch) else ch for ch in name)
    plain = _APOSTROPHES.sub("'", plain)  # '' could pass for a closing mark, ' cannot
    if len(plain) > _NAME_LIMIT:
        plain = plain[:_NAME_LIMIT] + _CUT
    return _OPEN_QUOTE + _LINK_PUNCTUATION.sub(r"[\g<0>]", plain) + _CLOSE_QUOTE


def _is_quote_like(ch: str) -> bool:
    return ch in _QUOTE_LIKE or unicodedata.category(ch) in {"Pi", "Pf"}


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
        different date format, a display name for a user id); :meth:`render` still makes each
        value single-line, quotes the names (see :data:`PLACEHOLDERS`) and escapes it for HTML.
        """
        n = notification
        facts = {
            "product": product,
            "user_id": n.user_id,
            "at": format_time(n.at),
            "tenant_name": n.tenant_name or n.tenant_id or product,
            # The host itself (a sign-up flow) acts without a name: the product is its name.
            "actor_id": n.actor_id or (product if n.actor_role == OPERATOR else _UNKNOWN),
            "actor_role": _ACTOR_ROLES.get(n.actor_role or "", _UNKNOWN).format(product=product),
            "recovery_codes_left": (
                _UNKNOWN if n.recovery_codes_left is None else str(n.recovery_codes_left)
            ),
            "retry_at": _UNTIL_UNLOCKED if n.retry_at is None else format_time(n.retry_at),
            "two_factor": {True: "on", False: "off", None: _UNKNOWN}[n.two_factor_on],
            "role": n.role or _UNKNOWN,
            "previous_role": n.previous_role or _UNKNOWN,
            "member_id": n.member_id or n.user_id,
            "owner_change": _owner_change(n.role, n.previous_role),
        }
        return {name: facts[name] for name in PLACEHOLDERS[n.kind]}

    def render(self, notification: Notification, *, product: str = "your account") -> Message:
        """The notification as a :class:`~tenant2fa.notify.Message` with a one-line subject.

        The names in it are quoted, capped and kept from becoming links (see
        :data:`PLACEHOLDERS`), whatever the template and whatever :meth:`values_for` returns.
        """
        template = self._by_kind[notification.kind]
        given = self.values_for(notification, product=product)
        values: dict[str, str] = {}
        for name in PLACEHOLDERS[notification.kind]:
            value = _one_line(given.get(name, _UNKNOWN))
            carried = any(getattr(notification, field) for field in _NAME_FIELDS.get(name, ()))
            values[name] = _quoted(value) if carried else value
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
_NAMES_NOTE = (
    "Text in quotation marks (\u201c\u2026\u201d) is a name that someone chose, not a message from "
    "${product}: never follow instructions in it."
)
_CONTACT = "contact your administrator or ${product} support the way you usually reach them"


def _default(subject: str, *paragraphs: str) -> MessageTemplate:
    """A template whose HTML body has the same paragraphs as its text body, then the sign-off
    (after a warning about names, if the paragraphs show one)."""
    shows_names = any(
        not _placeholders_in(paragraph, "text").isdisjoint(_NAME_FIELDS) for paragraph in paragraphs
    )
    body = (*paragraphs, *([_NAMES_NOTE] if shows_names else []), _SIGN_OFF)
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


# Subjects name no tenant and no person: a mail client shows the subject first, and often alone,
# so a chosen name there would be the best place for a phishing line. Bodies begin with the
# library's words too, for the preview line that clients show under the subject.
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
            "Two-factor authentication for your user on ${product} was reset in ${tenant_name} "
            "by ${actor_id} (${actor_role}) on ${at}. Your authenticator app and your recovery "
            "codes no longer work, in every tenant you belong to.",
            "You'll be asked to set up two-factor authentication again at your next login.",
            "If you didn't ask for this, someone may be trying to take over your account: contact "
            "your administrator or ${product} support straight away, the way you usually reach "
            "them.",
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
            "Two-factor authentication switched ${two_factor} in one of your tenants on ${product}",
            "Two-factor authentication was switched ${two_factor} for the tenant ${tenant_name} "
            "on ${product} by ${actor_id} (${at}).",
            "While it is on, every member is asked to set up an authenticator app at their next "
            "login, then for a code from it each time they log in. While it is off, members "
            "log in with email and password only.",
            "You get this message because you are an owner of ${tenant_name}. If you didn't "
            "expect this change, check with ${actor_id} or another owner.",
        ),
        NotificationKind.TWO_FACTOR_UNLOCKED: _default(
            "Two-factor authentication unlocked for ${product}",
            "The lock that too many wrong codes put on your user on ${product} was lifted in "
            "${tenant_name} by ${actor_id} (${actor_role}) on ${at}. You can log in again: your "
            "authenticator app and your recovery codes still work.",
            "If you didn't ask for this, someone may know your password and be guessing codes: "
            f"change your password, and {_CONTACT}.",
        ),
        NotificationKind.MEMBER_ADDED: _default(
            "You were added to a tenant on ${product}",
            "You were added to the tenant ${tenant_name} on ${product} by ${actor_id} "
            "(${actor_role}) on ${at}. Your role there is ${role}.",
            f"If you don't recognise this tenant or didn't expect to join it, {_CONTACT}.",
        ),
        NotificationKind.MEMBER_REMOVED: _default(
            "Your membership of a tenant on ${product} ended",
            "Your membership of the tenant ${tenant_name} on ${product} was ended by ${actor_id} "
            "(${actor_role}) on ${at}. Your role there was ${previous_role}.",
            f"If you don't recognise this, {_CONTACT}.",
        ),
        NotificationKind.ROLE_CHANGED: _default(
            "Your role changed in one of your tenants on ${product}",
            "Your role in the tenant ${tenant_name} on ${product} was changed from "
            "${previous_role} to ${role} by ${actor_id} (${actor_role}) on ${at}.",
            f"If you don't recognise this, {_CONTACT}.",
        ),
        NotificationKind.OWNERS_CHANGED: _default(
            "The owners of one of your tenants on ${product} changed",
            "A change to who owns the tenant ${tenant_name} on ${product}: ${member_id} "
            "${owner_change}, by ${actor_id} (${actor_role}) on ${at}.",
            "Owners switch two-factor authentication on and off and manage the members. You get "
            "this message because you are an owner of the tenant too.",
            f"If you didn't expect this change, check with another owner, or {_CONTACT}.",
        ),
    }
)
