"""Message templates: defaults for every kind, host overrides, checks when made, safe values."""

from __future__ import annotations

import html
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tenant2fa import ConfigurationError, MessageTemplate, NotificationKind, Templates
from tenant2fa.notify import Message, Notification, render
from tenant2fa.templates import PLACEHOLDERS, format_time

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
DOCS = Path(__file__).resolve().parent.parent / "docs"
BY_AN_OWNER = {
    "tenant_id": "B",
    "tenant_name": "Tenant B",
    "actor_id": "olga",
    "actor_role": "owner",
}

FACTS: dict[NotificationKind, dict[str, Any]] = {
    NotificationKind.TWO_FACTOR_ENABLED: {},
    NotificationKind.TWO_FACTOR_RESET: BY_AN_OWNER,
    NotificationKind.TWO_FACTOR_REMOVED: {},
    NotificationKind.RECOVERY_CODE_USED: {
        "tenant_id": "B",
        "tenant_name": "Tenant B",
        "recovery_codes_left": 3,
    },
    NotificationKind.RECOVERY_CODES_REGENERATED: {},
    NotificationKind.LOCKED_OUT: {
        "tenant_id": "B",
        "tenant_name": "Tenant B",
        "retry_at": AT + timedelta(seconds=30),
    },
    NotificationKind.TENANT_TWO_FACTOR_CHANGED: {
        "tenant_id": "B",
        "tenant_name": "Tenant B",
        "actor_id": "olga",
        "two_factor_on": True,
    },
    NotificationKind.TWO_FACTOR_UNLOCKED: BY_AN_OWNER,
    NotificationKind.MEMBER_ADDED: {**BY_AN_OWNER, "role": "member"},
    NotificationKind.MEMBER_REMOVED: {**BY_AN_OWNER, "previous_role": "admin"},
    NotificationKind.ROLE_CHANGED: {**BY_AN_OWNER, "role": "owner", "previous_role": "admin"},
    NotificationKind.OWNERS_CHANGED: {
        **BY_AN_OWNER,
        "role": "owner",
        "previous_role": "admin",
        "member_id": "carol",
    },
}
"""What the service gives each kind."""

CONTACT = "contact your administrator or Onum support the way you usually reach them"

FACTS_IN_TEXT: dict[NotificationKind, tuple[str, ...]] = {
    NotificationKind.TWO_FACTOR_ENABLED: (
        "You've enabled two-factor authentication for your user",
    ),
    NotificationKind.TWO_FACTOR_RESET: (
        (
            "Two-factor authentication for your user on Onum was reset in “Tenant B” by "
            "“olga” (an owner of the tenant)"
        ),
        "next login",
        "contact your administrator or Onum support straight away",
    ),
    NotificationKind.TWO_FACTOR_REMOVED: ("removed two-factor authentication",),
    NotificationKind.RECOVERY_CODE_USED: ("in to “Tenant B” on Onum", "3 recovery codes left"),
    NotificationKind.RECOVERY_CODES_REGENERATED: ("New recovery codes", "old ones no longer work"),
    NotificationKind.LOCKED_OUT: ("in “Tenant B” (", "try again after 2026-01-02 03:04 UTC"),
    NotificationKind.TENANT_TWO_FACTOR_CHANGED: (
        "Two-factor authentication was switched on for the tenant “Tenant B” on Onum by “olga”",
    ),
    NotificationKind.TWO_FACTOR_UNLOCKED: (
        (
            "The lock that too many wrong codes put on your user on Onum was lifted in "
            "“Tenant B” by “olga” (an owner of the tenant)"
        ),
        "still work",
        CONTACT,
    ),
    NotificationKind.MEMBER_ADDED: (
        "You were added to the tenant “Tenant B” on Onum by “olga” (an owner of the tenant)",
        "Your role there is member.",
        f"If you don't recognise this tenant or didn't expect to join it, {CONTACT}.",
    ),
    NotificationKind.MEMBER_REMOVED: (
        (
            "Your membership of the tenant “Tenant B” on Onum was ended by “olga” "
            "(an owner of the tenant)"
        ),
        "Your role there was admin.",
        f"If you don't recognise this, {CONTACT}.",
    ),
    NotificationKind.ROLE_CHANGED: (
        (
            "Your role in the tenant “Tenant B” on Onum was changed from "
            "admin to owner by “olga” (an owner of the tenant)"
        ),
        f"If you don't recognise this, {CONTACT}.",
    ),
    NotificationKind.OWNERS_CHANGED: (
        (
            "A change to who owns the tenant “Tenant B” on Onum: “carol” became an owner "
            "(was admin), by “olga” (an owner of the tenant)"
        ),
        "because you are an owner of the tenant too",
        f"check with another owner, or {CONTACT}.",
    ),
}


def _note(kind: NotificationKind, **facts: Any) -> Notification:
    given = {**FACTS[kind], **facts}
    return Notification(notification_id="n1", kind=kind, user_id="bob", at=AT, **given)


def _template(subject: str = "s", text: str = "t", html: str = "<p>h</p>") -> MessageTemplate:
    return MessageTemplate(subject=subject, text=text, html=html)


def _default_with_subject(kind: NotificationKind, subject: str) -> MessageTemplate:
    default = Templates.default()[kind]
    return MessageTemplate(subject=subject, text=default.text, html=default.html)


# -- the defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(NotificationKind), ids=lambda k: k.value)
def test_every_kind_has_a_default_message_that_states_its_facts(kind: NotificationKind) -> None:
    message = Templates.default().render(_note(kind), product="Onum")

    assert "\n" not in message.subject
    assert "\r" not in message.subject
    assert "Onum" in message.subject
    for fact in (*FACTS_IN_TEXT[kind], "Onum", "2026-01-02 03:04 UTC", "If "):
        assert fact in message.text, fact
        assert fact.replace("'", "&#x27;") in message.html or fact in message.html, fact
    assert message.html.startswith("<!DOCTYPE html>")
    assert "$" not in message.subject + message.text + message.html


def test_the_enabled_message_echoes_the_guide() -> None:
    message = render(_note(NotificationKind.TWO_FACTOR_ENABLED), product="Onum")
    assert message.subject == "Two-factor authentication enabled for Onum"
    # The guide: "You'll get an email confirming that you've enabled two-factor authentication
    # for your user." and "you'll be asked to enter a 6-digit code generated by your
    # authenticator app".
    assert "You've enabled two-factor authentication for your user on Onum" in message.text
    assert "Every time you log in, you'll be asked to enter the code generated by your" in (
        message.text
    )


def test_owner_messages_say_who_did_it_and_what_to_do_if_it_was_not_expected() -> None:
    reset = render(_note(NotificationKind.TWO_FACTOR_RESET), product="Onum")
    assert "by “olga” (an owner of the tenant)" in reset.text
    assert "If you didn't ask for this, someone may be trying to take over your account" in (
        reset.text
    )
    off = render(
        _note(NotificationKind.TENANT_TWO_FACTOR_CHANGED, two_factor_on=False), product="Onum"
    )
    assert off.subject == "Two-factor authentication switched off in one of your tenants on Onum"
    assert (
        "Two-factor authentication was switched off for the tenant “Tenant B” on Onum by "
        "“olga” (2026-01-02 03:04 UTC)."
    ) in off.text
    assert "check with “olga” or another owner" in off.text


@pytest.mark.parametrize(
    ("kind", "actor", "sentence"),
    [
        (
            NotificationKind.TWO_FACTOR_RESET,
            {"actor_id": "support:jane", "actor_role": "operator"},
            (
                "was reset in “Tenant B” by “support:jane” (the team that runs Onum) "
                "on 2026-01-02 03:04 UTC."
            ),
        ),
        (
            NotificationKind.TWO_FACTOR_RESET,
            {
                "tenant_id": None,
                "tenant_name": None,
                "actor_id": "cli:root",
                "actor_role": "operator",
            },
            "was reset in Onum by “cli:root” (the team that runs Onum) on",
        ),
        (
            NotificationKind.TWO_FACTOR_UNLOCKED,
            {"actor_id": "support:jane", "actor_role": "operator"},
            "was lifted in “Tenant B” by “support:jane” (the team that runs Onum)",
        ),
        (
            NotificationKind.MEMBER_ADDED,
            {"actor_id": "erin", "actor_role": "admin"},
            (
                "added to the tenant “Tenant B” on Onum by “erin” (an administrator of "
                "the tenant) on 2026-01-02 03:04 UTC."
            ),
        ),
        (
            NotificationKind.MEMBER_REMOVED,
            {"actor_id": "bob", "actor_role": "self"},
            (
                "Your membership of the tenant “Tenant B” on Onum was ended by “bob” "
                "(you) on 2026-01-02 03:04 UTC."
            ),
        ),
        (
            NotificationKind.ROLE_CHANGED,
            {"actor_id": "bob", "actor_role": "self", "role": "member"},
            (
                "Your role in the tenant “Tenant B” on Onum was changed from "
                "admin to member by “bob” (you)"
            ),
        ),
        (
            NotificationKind.ROLE_CHANGED,
            {"actor_role": None},
            "by “olga” (unknown) on",
        ),
    ],
    ids=[
        "reset-operator",
        "reset-no-tenant",
        "unlock-operator",
        "added-by-admin",
        "left",
        "demoted-self",
        "no-role",
    ],
)
def test_the_actor_is_named_with_what_gave_them_the_authority(
    kind: NotificationKind, actor: dict[str, Any], sentence: str
) -> None:
    message = render(_note(kind, **actor), product="Onum")
    assert sentence in message.text
    assert html.escape(sentence) in message.html


@pytest.mark.parametrize(
    "kind",
    [
        NotificationKind.TWO_FACTOR_RESET,
        NotificationKind.TWO_FACTOR_UNLOCKED,
        NotificationKind.MEMBER_ADDED,
        NotificationKind.MEMBER_REMOVED,
        NotificationKind.ROLE_CHANGED,
        NotificationKind.OWNERS_CHANGED,
    ],
    ids=lambda k: k.value,
)
def test_changes_made_by_others_say_whom_to_ask_and_never_ask_for_a_click(
    kind: NotificationKind,
) -> None:
    text = render(_note(kind), product="Onum").text
    assert "contact your administrator or Onum support" in text
    assert "the way you usually reach them" in text
    for word in ("click", "http", "www.", "link below"):
        assert word not in text.lower(), word


def test_a_lock_until_an_owner_unlocks_says_so() -> None:
    message = render(_note(NotificationKind.LOCKED_OUT, retry_at=None), product="Onum")
    assert (
        "You can try again after an owner of your tenant unlocks your two-factor authentication."
        in message.text
    )
    assert "reset" not in message.text


def test_a_lockout_without_a_tenant_names_the_product_instead() -> None:
    note = _note(NotificationKind.LOCKED_OUT, tenant_id=None, tenant_name=None)
    assert "for your user in Onum (" in render(note, product="Onum").text
    by_id = _note(NotificationKind.LOCKED_OUT, tenant_name=None)
    assert "for your user in “B” (" in render(by_id, product="Onum").text


def test_missing_facts_read_unknown() -> None:
    note = Notification(
        notification_id="n1",
        kind=NotificationKind.TENANT_TWO_FACTOR_CHANGED,
        user_id="olga",
        at=AT,
        tenant_id="B",
    )
    message = render(note, product="Onum")
    assert (
        message.subject
        == "Two-factor authentication switched unknown in one of your tenants on Onum"
    )
    # A stand-in for a missing name is not a name anyone chose, so it is not quoted.
    assert message.text.startswith(
        "Two-factor authentication was switched unknown for the tenant “B” on Onum by unknown ("
    )


def test_times_are_shown_in_utc_whatever_the_zone_they_come_in() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_time(datetime(2026, 1, 2, 8, 34, 59, tzinfo=india)) == "2026-01-02 03:04 UTC"
    assert format_time(datetime(2026, 1, 2, 3, 4)) == "2026-01-02 03:04 UTC"  # noqa: DTZ001 - naive is read as UTC
    note = _note(NotificationKind.LOCKED_OUT, retry_at=datetime(2026, 1, 2, 8, 40, tzinfo=india))
    assert "try again after 2026-01-02 03:10 UTC" in render(note, product="Onum").text


def test_render_uses_the_default_templates_and_body_is_the_text() -> None:
    note = _note(NotificationKind.RECOVERY_CODE_USED)
    message = render(note, product="Onum")
    assert message == Templates.default().render(note, product="Onum")
    assert message.body == message.text
    assert render(note).subject == "A recovery code was used to log in to your account"


def test_the_default_placeholders_are_each_kinds_own() -> None:
    defaults = Templates.default()
    for kind in NotificationKind:
        assert defaults[kind].placeholders <= PLACEHOLDERS[kind]
        assert set(defaults.values_for(_note(kind), product="Onum")) == PLACEHOLDERS[kind]
    assert "recovery_codes_left" in defaults[NotificationKind.RECOVERY_CODE_USED].placeholders
    assert "retry_at" in defaults[NotificationKind.LOCKED_OUT].placeholders
    assert "two_factor" in defaults[NotificationKind.TENANT_TWO_FACTOR_CHANGED].placeholders
    for kind in (NotificationKind.TWO_FACTOR_RESET, NotificationKind.TWO_FACTOR_UNLOCKED):
        assert {"actor_id", "actor_role"} <= defaults[kind].placeholders


# -- overrides ------------------------------------------------------------------------------


def test_an_override_replaces_one_kind_and_leaves_the_rest_and_the_original_alone() -> None:
    defaults = Templates.default()
    custom = defaults.with_overrides(
        {
            NotificationKind.TWO_FACTOR_RESET: _template(
                subject="[${product}] reset by ${actor_id}",
                text="${actor_id} reset ${user_id} in ${tenant_name} at ${at}; costs $$0.\n",
                html="<p>${actor_id} reset you in ${tenant_name}.</p>",
            )
        }
    )
    note = _note(NotificationKind.TWO_FACTOR_RESET)

    assert custom.render(note, product="Onum") == Message(
        subject="[Onum] reset by “olga”",
        # Names are quoted in a host's templates too; the reader's own id is not a name to quote.
        text="“olga” reset bob in “Tenant B” at 2026-01-02 03:04 UTC; costs $0.\n",
        html="<p>“olga” reset you in “Tenant B”.</p>",
    )
    assert defaults.render(note, product="Onum") == render(note, product="Onum")
    assert defaults.render(note, product="Onum").subject != "[Onum] reset by “olga”"
    enabled = _note(NotificationKind.TWO_FACTOR_ENABLED)
    assert custom.render(enabled, product="Onum") == defaults.render(enabled, product="Onum")


def test_templates_need_every_kind() -> None:
    partial: dict[NotificationKind, MessageTemplate] = {
        kind: Templates.default()[kind]
        for kind in NotificationKind
        if kind is not NotificationKind.LOCKED_OUT
    }
    with pytest.raises(ConfigurationError, match="no template for LOCKED_OUT"):
        Templates(partial)


def test_templates_are_keyed_by_kind_and_hold_message_templates() -> None:
    with pytest.raises(ConfigurationError, match="keyed by NotificationKind"):
        Templates.default().with_overrides({"locked_out": _template()})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="not a MessageTemplate"):
        Templates.default().with_overrides({NotificationKind.LOCKED_OUT: "Locked!"})  # type: ignore[dict-item]


# -- checks when a template is made ---------------------------------------------------------


@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_an_unknown_placeholder_is_refused_when_the_template_is_made(part: str) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"template {part}: unknown placeholder\(s\) tenant;"
    ):
        MessageTemplate(**{"subject": "s", "text": "t", "html": "h", part: "in ${tenant} now"})


def test_a_placeholder_the_kind_does_not_have_is_refused_when_the_templates_are_made() -> None:
    codes_left = _template(text="You have ${recovery_codes_left} codes.")
    Templates.default().with_overrides({NotificationKind.RECOVERY_CODE_USED: codes_left})
    with pytest.raises(
        ConfigurationError,
        match="TWO_FACTOR_ENABLED template uses recovery_codes_left, which TWO_FACTOR_ENABLED "
        "does not provide; it provides at, product, tenant_name, user_id",
    ):
        Templates.default().with_overrides({NotificationKind.TWO_FACTOR_ENABLED: codes_left})


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("costs $5", "line 1, column 7"),
        ("ok\nthen $ alone", "line 2, column 6"),
        ("${ product}", "line 1, column 1"),
    ],
)
def test_a_stray_dollar_is_refused_with_its_place(source: str, where: str) -> None:
    with pytest.raises(ConfigurationError, match=f"template text: .* at {where}; write"):
        _template(text=source)


def test_both_placeholder_spellings_and_the_dollar_escape_work() -> None:
    template = _template(text="$product and ${product} cost $$1")
    assert template.placeholders == {"product"}
    custom = Templates.default().with_overrides({NotificationKind.TWO_FACTOR_ENABLED: template})
    message = custom.render(_note(NotificationKind.TWO_FACTOR_ENABLED), product="Onum")
    assert message.text == "Onum and Onum cost $1"


@pytest.mark.parametrize("subject", ["two\nlines", "two\r\nlines", "tab\there", "sep\u2028arator"])
def test_a_subject_template_must_be_one_line(subject: str) -> None:
    with pytest.raises(ConfigurationError, match="subject must be one line"):
        _template(subject=subject)


@pytest.mark.parametrize("part", ["subject", "text", "html"])
@pytest.mark.parametrize("value", ["", "   ", None, b"bytes"])
def test_an_empty_or_non_text_part_is_refused(part: str, value: object) -> None:
    parts: dict[str, Any] = {"subject": "s", "text": "t", "html": "h", part: value}
    with pytest.raises(ConfigurationError, match=f"template {part} must be a non-empty str"):
        MessageTemplate(**parts)


# -- values are safe wherever they land ----------------------------------------------------


def test_values_are_html_escaped_in_the_html_part_only() -> None:
    hostile = "<script>alert('x')</script> & \"Co\""
    note = _note(NotificationKind.TWO_FACTOR_RESET, tenant_name=hostile, actor_id="<b>olga</b>")
    message = render(note, product="Onum & <Sons>")

    assert "<script>" not in message.html
    assert "<b>olga</b>" not in message.html
    assert "“&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &#x27;Co&#x27;”" in (
        message.html
    )
    assert "“&lt;b&gt;olga&lt;/b&gt;”" in message.html
    assert "<title>Onum &amp; &lt;Sons&gt;</title>" in message.html
    assert "“<script>alert('x')</script> & 'Co'”" in message.text
    assert message.subject == "Two-factor authentication reset for Onum & <Sons>"


@pytest.mark.parametrize(
    "name",
    [
        "B\r\nBcc: eve@evil.example",
        "B\nBcc: eve@evil.example",
        "B\rBcc: eve@evil.example",
        "B\x85Bcc: eve@evil.example",
        "B\u2028Bcc: eve@evil.example",
        "B\x0bBcc:\x0ceve@evil.example",
        "B\x00Bcc: eve@evil.example",
    ],
)
def test_line_breaks_in_values_cannot_inject_headers_or_paragraphs(name: str) -> None:
    kind = NotificationKind.TENANT_TWO_FACTOR_CHANGED
    note = _note(kind, tenant_name=name)
    # The default subjects show no name, so a host's own subject is the one to attack.
    subject = "2FA ${two_factor} in ${tenant_name}"
    custom = Templates.default().with_overrides({kind: _default_with_subject(kind, subject)})
    message = custom.render(note, product="Onum")

    assert len(message.subject.splitlines()) == 1
    assert message.subject.isprintable()
    assert message.subject.startswith("2FA on in “B Bcc:")
    first_paragraph = message.text.split("\n\n")[0]
    assert len(first_paragraph.splitlines()) == 1
    assert "\x00" not in message.text + message.html


def test_a_subclass_may_reword_values_but_cannot_break_a_subject() -> None:
    class German(Templates):
        def values_for(self, notification: Notification, *, product: str) -> dict[str, str]:
            values = super().values_for(notification, product=product)
            values["two_factor"] = {"on": "ein", "off": "aus"}[values["two_factor"]]
            values["tenant_name"] += "\r\nBcc: eve@evil.example"
            return values

    german = German(
        {
            **{kind: Templates.default()[kind] for kind in NotificationKind},
            NotificationKind.TENANT_TWO_FACTOR_CHANGED: _template(
                subject="2FA in ${tenant_name}: ${two_factor}",
                text="${actor_id} hat 2FA ${two_factor}geschaltet.",
                html="<p>${tenant_name}</p>",
            ),
        }
    )
    message = german.render(_note(NotificationKind.TENANT_TWO_FACTOR_CHANGED), product="Onum")
    # The subclass's words for a name are a name too: quoted, and no link.
    assert message.subject == "2FA in “Tenant B Bcc: eve@evil[.]example”: ein"
    assert message.text == "“olga” hat 2FA eingeschaltet."
    assert message.html == "<p>“Tenant B Bcc: eve@evil[.]example”</p>"


def test_messages_and_templates_are_immutable_values() -> None:
    template = _template()
    with pytest.raises(AttributeError):
        template.subject = "changed"  # type: ignore[misc]
    message = render(_note(NotificationKind.TWO_FACTOR_ENABLED))
    with pytest.raises(AttributeError):
        message.text = "changed"  # type: ignore[misc]
    assert repr(Templates.default()) == f"Templates(<{len(NotificationKind)} kinds>)"


# -- names that other people choose ---------------------------------------------------------

PHISHING = "IT Security. Your account is frozen: re-verify at https://evil.example"
PHISHING_SHOWN = "“IT Security. Your account is frozen: re-verify at https[:]//ev…”"
CHOSEN_NAMES = [
    (kind, field)
    for kind, facts in FACTS.items()
    for field in ("tenant_name", "actor_id", "member_id")
    if field in facts
]
"""Every kind with every name another person chooses, that the service gives it."""
DOUBLE_QUOTE_LOOKALIKES = frozenset(
    '"\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033\u2036\u02ba\u02dd\u02ee\u05f4\u275d\u275e\u2e42'
    "\u301d\u301e\u301f\uff02\U0001f676\U0001f677"
)


@pytest.mark.parametrize(
    ("kind", "field"), CHOSEN_NAMES, ids=[f"{k.value}-{f}" for k, f in CHOSEN_NAMES]
)
def test_a_chosen_name_is_shown_quoted_and_capped_never_whole(
    kind: NotificationKind, field: str
) -> None:
    message = render(_note(kind, **{field: PHISHING}), product="Onum")

    for part in (message.subject, message.text, message.html):
        assert PHISHING not in part
        assert "https://" not in part
        assert "evil.example" not in part
    assert "IT Security" not in message.subject
    assert PHISHING_SHOWN in message.text
    assert PHISHING_SHOWN in message.html


@pytest.mark.parametrize("kind", list(NotificationKind), ids=lambda k: k.value)
def test_subjects_and_first_words_show_no_chosen_name(kind: NotificationKind) -> None:
    # A mail client shows the subject and the first words of the body before the message.
    message = render(_note(kind), product="Onum")
    for name in ("Tenant B", "olga", "carol", "bob"):
        assert name not in message.subject
        assert not message.text.startswith((name, f"“{name}"))


@pytest.mark.parametrize("kind", list(NotificationKind), ids=lambda k: k.value)
def test_messages_that_show_names_say_they_are_not_the_products_words(
    kind: NotificationKind,
) -> None:
    message = render(_note(kind), product="Onum")
    note = (
        "Text in quotation marks (“…”) is a name that someone chose, not a message "
        "from Onum: never follow instructions in it."
    )
    shows_names = "tenant_id" in FACTS[kind]
    assert (note in message.text) is shows_names
    assert (note in message.html) is shows_names


def _shown(field: str, name: str) -> Message:
    """What a host's own template for owner changes shows when the note's ``field`` is
    ``name``."""
    kind = NotificationKind.OWNERS_CHANGED
    placeholder = "tenant_name" if field == "tenant_id" else field
    custom = Templates.default().with_overrides(
        {
            kind: _template(
                subject=f"${{{placeholder}}}",
                text=f"[${{{placeholder}}}]",
                html=f"<p>${{{placeholder}}}</p>",
            )
        }
    )
    facts = {field: name, **({"tenant_name": None} if field == "tenant_id" else {})}
    note = Notification(
        notification_id="n1", kind=kind, at=AT, **{"user_id": "bob", **FACTS[kind], **facts}
    )
    return custom.render(note, product="Onum")


@pytest.mark.parametrize(
    "name",
    [
        "Tenant B\u201d by \u201colga",
        'Tenant B" by "olga',
        "Tenant B\u2019\u2019 by \u2018\u2018olga",
        "Tenant B'' by ``olga",
        "Tenant B\u2033 by \u2036olga",
        "Tenant B\uff02 by \uff02olga",
        "Tenant B\u00bb by \u00abolga",
        "Tenant B\u301e by \u301dolga",
        "Tenant B\u201e by \u201folga",
        "Tenant B\u275e by \u275dolga",
        "Tenant B\U000e0022 by \U000e0022olga",
        "Tenant B\u05f4 by \u02baolga",
    ],
)
def test_quote_marks_in_a_name_cannot_close_its_quotes(name: str) -> None:
    message = _shown("tenant_name", name)

    assert message.text.startswith("[“Tenant B")
    assert message.text.endswith("olga”]")
    inside = message.text[2:-2]
    assert not DOUBLE_QUOTE_LOOKALIKES & set(inside), inside
    assert "''" not in inside
    assert message.subject == message.text[1:-1]
    assert message.html == f"<p>{html.escape(message.subject)}</p>"


@pytest.mark.parametrize("field", ["tenant_name", "tenant_id", "actor_id", "member_id"])
def test_a_name_of_60_characters_is_kept_whole_and_a_longer_one_is_capped(field: str) -> None:
    sixty = "Acme " * 11 + "Corp."
    assert len(sixty) == 60

    assert _shown(field, sixty).text == f"[“{sixty}”]"
    assert _shown(field, sixty + "x").text == f"[“{sixty}…”]"
    assert _shown(field, sixty + " and more").subject == f"“{sixty}…”"
    # The cap counts what is shown: line breaks and runs of spaces are one space.
    assert _shown(field, sixty.replace(" ", "\r\n  ")).text == f"[“{sixty}”]"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("https://evil.example/login", "https[:]//evil[.]example/login"),
        ("support@evil.example", "support@evil[.]example"),
        ("www.evil.example", "www[.]evil[.]example"),
        ("evil\u3002example", "evil[\u3002]example"),
        ("evil\u2024example", "evil[\u2024]example"),  # one dot leader, read as a dot
        ("evil\ufe52example", "evil[\ufe52]example"),  # small full stop
        ("http://3232235777", "http[:]//3232235777"),
        ("Acme Inc. & Co.", "Acme Inc. & Co."),
        ("support: call +1 555 0100", "support: call +1 555 0100"),
    ],
)
def test_a_name_does_not_become_a_link(name: str, shown: str) -> None:
    for field in ("tenant_name", "actor_id", "member_id"):
        message = _shown(field, name)
        assert message.text == f"[“{shown}”]"
        assert message.html == f"<p>“{html.escape(shown)}”</p>"


# -- docs/email.md --------------------------------------------------------------------------

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_email_page_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    path = DOCS / "email.md"
    text = path.read_text(encoding="utf-8")
    blocks = list(_PYTHON_BLOCK.finditer(text))
    assert len(blocks) >= 2
    module = ModuleType("email_md")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in blocks:
        source = "\n" * text.count("\n", 0, block.start(1)) + block.group(1)
        exec(compile(source, str(path), "exec", dont_inherit=True), namespace)  # noqa: S102 - running the documented example is the test
    mailer = namespace["mailer"]
    assert "password=<redacted>" in repr(mailer)
    assert "the SMTP password" not in repr(mailer)


def test_the_email_page_links_lead_somewhere_and_index_links_to_it() -> None:
    text = (DOCS / "email.md").read_text(encoding="utf-8")
    for target in _LINK.findall(text):
        file_part, _, anchor = target.partition("#")
        linked = DOCS / file_part
        assert linked.exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, target
    assert "(email.md)" in (DOCS / "index.md").read_text(encoding="utf-8")


def test_the_email_page_lists_every_kind_and_every_placeholder() -> None:
    text = (DOCS / "email.md").read_text(encoding="utf-8")
    for kind in NotificationKind:
        assert f"| `{kind.name}` |" in text, kind
    for name in sorted({n for names in PLACEHOLDERS.values() for n in names}):
        assert f"| `${{{name}}}` |" in text, name
