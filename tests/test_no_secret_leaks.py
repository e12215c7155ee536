"""No secret ever leaves through a log line, an exception, a repr, an audit record or a message.

One scenario drives every path of the service (enrolling, right/wrong/replayed/malformed codes,
lockout, recovery codes, regeneration, sealed sessions, an owner reset, re-enrolling, removal,
toggles, storage and keyring failures, refused calls) while everything that a host could print,
log or store is gathered. Then every secret of the scenario is looked for in it, in every encoding
a careless line of code might produce: raw bytes, bytes repr, hex, Base32 (padded, unpadded, lower
case, in the "ABCD EFGH" form), base64 (standard and URL-safe, padded or not), the otpauth link,
the TOTP codes, recovery codes in display and canonical form, session tags and sealed tokens, the
keyring's keys, and the ciphertexts and hashes kept in storage.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from tenant2fa import (
    AuditKind,
    AuditQuery,
    Config,
    InMemoryNotifier,
    InvalidSession,
    Keyring,
    KeyringError,
    LoginSession,
    MemoryStorage,
    NotificationKind,
    PermissionDenied,
    Provisioning,
    Reason,
    RecoveryCodeHasher,
    Role,
    StepKind,
    StepUpRequired,
    StorageError,
    Tenant2FAError,
    TwoFactor,
    totp,
)
from tenant2fa.notify import Notification, render
from tenant2fa.recovery import normalize_recovery_code
from tenant2fa.testing import FakeClock, secret_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenant2fa.storage import FactorCommit

FULLWIDTH_CODE = "\uff11\uff12\uff13\uff14\uff15\uff16"
"""Six Unicode digits that str.isdigit() accepts and the code grammar must not."""
_SIX_DIGITS = re.compile(r"(?<![0-9])[0-9]{3} ?[0-9]{3}(?![0-9])")
"""A whole run of six digits, also as users type it ("123 456")."""


# -- what is looked for ----------------------------------------------------------------------


@dataclass
class Needles:
    """Every secret of the scenario, each in every encoding worth looking for."""

    strings: dict[str, str] = field(default_factory=dict)
    """needle text -> what it is"""
    codes: dict[str, str] = field(default_factory=dict)
    """6-digit TOTP code -> what it is (matched as a whole run of digits)"""

    def add_text(self, label: str, text: str) -> None:
        assert len(text) >= 8, f"{label}: too short to look for reliably"
        self.strings[text] = label

    def add_bytes(self, label: str, raw: bytes) -> None:
        b32 = base64.b32encode(raw).decode("ascii")
        b32_bare = b32.rstrip("=")
        forms = {
            "latin-1": raw.decode("latin-1"),
            "bytes repr": repr(raw)[2:-1],
            "hex": raw.hex(),
            "HEX": raw.hex().upper(),
            "base32": b32,
            "base32 unpadded": b32_bare,
            "base32 lower": b32_bare.lower(),
            "base32 grouped": " ".join(b32_bare[i : i + 4] for i in range(0, len(b32_bare), 4)),
            "base64": base64.b64encode(raw).decode("ascii"),
            "base64 unpadded": base64.b64encode(raw).decode("ascii").rstrip("="),
            "base64url": base64.urlsafe_b64encode(raw).decode("ascii"),
            "base64url unpadded": base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
        }
        for form, text in forms.items():
            self.add_text(f"{label} ({form})", text)

    def add_code(self, label: str, code: str) -> None:
        assert re.fullmatch(r"[0-9]{6}", code)
        self.codes.setdefault(code, label)

    def add_recovery_code(self, label: str, code: str) -> None:
        canonical = normalize_recovery_code(code)
        assert canonical is not None
        for text in (code, code.lower(), canonical, canonical.lower()):
            self.add_text(label, text)

    def add_session(self, login: LoginSession) -> None:
        self.add_text("login session tag", login.tag)
        self.add_text("login session MAC", login.tag.partition(".")[2])


@dataclass
class Haystack:
    """Everything a host could print, log or store, with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    random_ids: set[str] = field(default_factory=set)
    """Random identifiers (record, notification, session and pending ids): opaque, not derived
    from any secret, blanked out before looking for 6-digit codes so that a run of six digits
    inside a hex id is not mistaken for a code."""

    def add(self, source: str, text: str) -> None:
        self.texts.append((source, text))

    def value(self, source: str, value: object) -> None:
        self.add(f"repr({source})", repr(value))
        self.add(f"str({source})", str(value))
        if isinstance(value, LoginSession):
            self.random_ids.add(value.session_id)
        if isinstance(value, Provisioning):
            self.random_ids.add(value.pending_id)

    def exception(self, source: str, exc: BaseException) -> None:
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.add(f"str({source}: {type(current).__name__})", str(current))
            self.add(f"repr({source}: {type(current).__name__})", repr(current))
            self.add(f"args({source})", repr(current.args))
            current = current.__cause__ or current.__context__


def find_leaks(haystack: Haystack, needles: Needles) -> list[str]:
    leaks = []
    for source, raw_text in haystack.texts:
        text = raw_text
        for random_id in haystack.random_ids:
            text = text.replace(random_id, "<id>")
        leaks += [f"{label} in {source}" for n, label in needles.strings.items() if n in raw_text]
        leaks += [
            f"{needles.codes[run]} ({run}) in {source}"
            for run in (found.replace(" ", "") for found in _SIX_DIGITS.findall(text))
            if run in needles.codes
        ]
    return leaks


def test_the_leak_finder_finds_each_encoded_form_of_a_secret() -> None:
    needles = Needles()
    secret = bytes(range(1, 21))
    needles.add_bytes("secret", secret)
    needles.add_code("code", "012345")
    needles.add_recovery_code("recovery code", "ABCD-EFGH-JKMN-PQRS")
    clean = Haystack()
    clean.add("clean", "user 'bob' code rejected at 2026-03-02T09:00:00+00:00 (5 failures)")
    clean.random_ids.add("ab0123459f")
    clean.add("a hex id", "record ab0123459f")
    assert find_leaks(clean, needles) == []
    for text in (
        *needles.strings,
        f"otpauth://totp/x:y?secret={base64.b32encode(secret).decode().rstrip('=')}",
        repr(secret),
        "got code=012345.",
        "code 012 345",
        "abcdefghjkmnpqrs",
    ):
        dirty = Haystack()
        dirty.add("dirty", f"prefix {text} suffix")
        assert find_leaks(dirty, needles), text


# -- the scenario ----------------------------------------------------------------------------


class FlakyStorage(MemoryStorage):
    """In-memory storage whose backend can be made to fail, as a database connection can."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def commit_factor(self, commit: FactorCommit) -> bool:
        if self.down:
            try:
                raise ConnectionError("connection to the database was reset")
            except ConnectionError as exc:
                raise StorageError("the storage backend is unavailable") from exc
        return super().commit_factor(commit)


class FlakyNotifier(InMemoryNotifier):
    """Keeps every notification and, while ``broken``, then fails as a mail server can, with an
    error text that repeats the whole notification."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def notify(self, notification: Notification) -> None:
        super().notify(notification)
        if self.broken:
            raise RuntimeError(f"SMTP refused {notification!r}")


@dataclass
class Scenario:
    tf: TwoFactor
    clock: FakeClock
    storage: FlakyStorage
    notifier: FlakyNotifier
    seen: Haystack = field(default_factory=Haystack)
    needles: Needles = field(default_factory=Needles)
    secrets: list[bytes] = field(default_factory=list)
    recovery_sets: list[tuple[str, ...]] = field(default_factory=list)
    refusals: list[type[BaseException]] = field(default_factory=list)
    started: datetime | None = None

    def keep(self, source: str, value: object) -> None:
        self.seen.value(source, value)
        if isinstance(value, LoginSession):
            self.needles.add_session(value)

    def refused(
        self,
        source: str,
        call: Callable[[], object],
        kind: type[Exception] = Tenant2FAError,
    ) -> None:
        with pytest.raises(kind) as info:
            call()
        self.seen.exception(source, info.value)
        self.refusals.append(type(info.value))

    def provisioned(self, source: str, p: Provisioning, user_id: str) -> bytes:
        self.keep(source, p)
        self.needles.add_text(f"otpauth URI of {source}", p.uri)
        self.needles.add_text(f"manual key of {source}", p.manual_key)
        secret = secret_of(self.tf, user_id, pending=True)
        from_link = parse_qs(urlsplit(p.uri).query)["secret"][0]
        assert totp.decode_secret(from_link) == secret
        self.needles.add_bytes(f"TOTP secret of {source}", secret)
        pending = self.storage.get_factor(user_id).pending
        assert pending is not None
        self.keep(f"pending enrollment of {source}", pending)
        self.needles.add_bytes(f"ciphertext of {source}", pending.secret)
        self.secrets.append(secret)
        return secret

    def code(self, secret: bytes, offset: int = 0) -> str:
        step = totp.time_step(self.clock.now()) + offset
        return totp.code_at(secret, step)

    def wrong_code(self, secret: bytes, start: int = 0) -> str:
        """A well-formed code, at or after ``start``, that the window does not accept now."""
        window = {self.code(secret, k) for k in (-1, 0, 1)}
        candidates = (f"{(start + n) % 1_000_000:06d}" for n in range(4))
        return next(c for c in candidates if c not in window)

    def recovery_codes(self, source: str, codes: tuple[str, ...]) -> None:
        assert codes
        self.recovery_sets.append(codes)
        for code in codes:
            self.needles.add_recovery_code(f"recovery code from {source}", code)


def run_scenario(s: Scenario) -> None:  # noqa: PLR0915 - one long story on purpose
    tf, clock = s.tf, s.clock
    s.started = clock.now()

    # Tenants, members, toggles (with a grace period), and a refused toggle.
    s.keep("create_tenant", tf.create_tenant("A", name="Tenant A", owner_id="alice"))
    s.keep("create_tenant", tf.create_tenant("B", name="Tenant B", owner_id="olga"))
    for tenant_id, user_id in (("A", "bob"), ("B", "bob")):
        s.keep("add_member", tf.add_member(tenant_id, user_id, operator="host"))
    s.keep("add_member", tf.add_member("B", "carol", role=Role.ADMIN, actor_id="olga"))
    s.refused("toggle by admin", lambda: tf.set_two_factor("B", actor_id="carol", enabled=True))
    s.refused("duplicate tenant", lambda: tf.create_tenant("B", name="again", owner_id="olga"))
    s.refused("duplicate member", lambda: tf.add_member("B", "bob", operator="host"))
    s.keep(
        "set_two_factor",
        tf.set_two_factor("B", actor_id="olga", enabled=True, grace_period=timedelta(days=1)),
    )
    clock.advance(seconds=5)

    # Bob signs in, is offered to enroll (skippable), postpones, then begins twice.
    bob = tf.start_session("bob", method="password")
    s.keep("start_session", bob)
    s.keep("login_step", tf.login_step(bob, "B"))
    s.keep("defer_enrollment", tf.defer_enrollment(bob, "B"))
    first = s.provisioned("begin_enrollment #1", tf.begin_enrollment(bob), "bob")
    s.keep("factor record", tf.storage.get_factor("bob"))

    # Confirming: malformed, wrong, the replaced secret's code, then the right one.
    malformed: tuple[object, ...] = ("12345", FULLWIDTH_CODE, "12 34 5x", 123456, "1234567")
    for bad in malformed:
        s.keep("confirm_enrollment(malformed)", tf.confirm_enrollment(bob, bad))
    wrong = s.wrong_code(first)
    s.needles.add_code("a wrong code", wrong)
    s.keep("confirm_enrollment(wrong)", tf.confirm_enrollment(bob, wrong))
    clock.advance(seconds=30)
    second = s.provisioned("begin_enrollment #2", tf.begin_enrollment(bob), "bob")
    stale = s.code(first)
    s.needles.add_code("the replaced pending secret's code", stale)
    s.keep("confirm_enrollment(stale)", tf.confirm_enrollment(bob, stale))
    right = s.code(second)
    s.needles.add_code("the confirming code", right)
    enabled = tf.confirm_enrollment(bob, f"{right[:3]} {right[3:]}")
    assert enabled.ok, enabled.reason
    s.keep("confirm_enrollment(right)", enabled)
    s.recovery_codes("confirm_enrollment", enabled.recovery_codes)
    bob = enabled.login
    s.keep("factor record", tf.storage.get_factor("bob"))
    salt = tf.storage.get_factor("bob").recovery_salt
    assert salt is not None
    s.needles.add_bytes("recovery code salt", salt)
    for code in enabled.recovery_codes:
        canonical = normalize_recovery_code(code)
        assert canonical is not None
        s.needles.add_bytes("recovery code hash", tf.config.recovery_hasher.digest(canonical, salt))
    active = tf.storage.get_factor("bob").secret
    assert active is not None
    s.needles.add_bytes("stored ciphertext of the active secret", active)

    # Codes at login: right, replayed in another session, wrong, malformed.
    clock.advance(seconds=60)
    login = tf.start_session("bob", method="microsoft")
    s.keep("login_step", tf.login_step(login, "B"))
    code = s.code(second)
    s.needles.add_code("a login code", code)
    accepted = tf.verify_code(login, "B", code)
    assert accepted.ok
    s.keep("verify_code(right)", accepted)
    other = tf.start_session("bob")
    replayed = tf.verify_code(other, "B", code)
    assert replayed.reason is Reason.INVALID
    s.keep("verify_code(replayed)", replayed)
    for bad in (*malformed, "", "abcdef", None):
        s.keep("verify_code(malformed)", tf.verify_code(other, "B", bad))

    # Brute force until locked out; the lockout email fails to send.
    s.notifier.broken = True
    for n in range(tf.config.throttle.free_failures):
        guess = s.wrong_code(second, start=271_828 * (n + 1))
        s.needles.add_code("a guessed code", guess)
        s.keep("verify_code(wrong)", tf.verify_code(other, "B", guess))
    s.notifier.broken = False
    locked = tf.verify_code(other, "B", s.code(second))
    assert locked.reason is Reason.LOCKED
    assert locked.retry_at is not None
    s.keep("verify_code(locked)", locked)
    s.keep("login_step(locked)", tf.login_step(other, "B"))
    s.keep("user_status(locked)", tf.user_status("bob"))
    s.refused("unlock by admin", lambda: tf.unlock("B", "bob", actor_id="carol"))
    s.keep("unlock", tf.unlock("B", "bob", actor_id="olga"))
    clock.set(locked.retry_at)

    # Recovery codes: wrong, malformed, right, reused, then regenerated.
    s.keep("use_recovery_code(wrong)", tf.use_recovery_code(other, "B", "AAAA-BBBB-CCCC-DDDD"))
    s.keep("use_recovery_code(malformed)", tf.use_recovery_code(other, "B", "not a code"))
    clock.advance(timedelta(minutes=10))
    spent = enabled.recovery_codes[0]
    used = tf.use_recovery_code(other, "B", spent)
    assert used.ok, used.reason
    s.keep("use_recovery_code(right)", used)
    again = tf.use_recovery_code(tf.start_session("bob"), "B", spent.lower().replace("-", ""))
    assert again.reason is Reason.INVALID
    s.keep("use_recovery_code(reused)", again)
    refreshed = tf.verify_identity(used.login, method="password")
    s.keep("verify_identity", refreshed)
    regenerated_login, regenerated = tf.regenerate_recovery_codes(refreshed)
    s.keep("regenerate_recovery_codes", regenerated_login)
    s.recovery_codes("regenerate_recovery_codes", regenerated)

    # Sealed sessions: a good token, someone else's, a tampered one, a forged session value.
    token = tf.seal_session(regenerated_login)
    s.needles.add_text("sealed login session", token)
    s.keep("open_session", tf.open_session(token, user_id="bob"))
    s.refused("open_session(other user)", lambda: tf.open_session(token, user_id="carol"))
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    s.refused("open_session(tampered)", lambda: tf.open_session(tampered))
    forged = dataclasses.replace(other, second_factor_at=clock.now(), second_factor_epoch=1)
    s.refused("login_step(forged)", lambda: tf.login_step(forged, "B"), InvalidSession)

    # Infrastructure failures: storage down, then the keyring swapped for one without the key.
    s.storage.down = True
    s.keep("verify_code(storage down)", tf.verify_code(other, "B", s.code(second)))
    s.keep("use_recovery_code(storage down)", tf.use_recovery_code(other, "B", regenerated[0]))
    s.storage.down = False
    original = tf.keyring
    tf.keyring = Keyring({"k2": Keyring.new_key()})
    new_ring_login = tf.start_session("bob")
    s.keep("start_session(new keyring)", new_ring_login)
    clock.advance(seconds=30)
    s.keep("verify_code(unknown key)", tf.verify_code(new_ring_login, "B", s.code(second)))
    s.refused("login_step(old keyring)", lambda: tf.login_step(bob, "B"), InvalidSession)
    s.refused(
        "keyring.decrypt(wrong user)",
        lambda: original.decrypt(active, purpose="totp-secret", context="carol"),
        KeyringError,
    )
    # A rotation with a ring where no key opens the secrets: every user fails, by id only.
    s.keep("rotate_keys(unknown key)", tf.rotate_keys())
    tf.keyring = original
    # A real rotation: every secret re-encrypted under a new key (its key joins the needles).
    rotated_key = Keyring.new_key()
    s.needles.add_bytes("rotated keyring key", rotated_key)
    tf.keyring = original.with_key("k9", rotated_key)
    s.keep("rotate_keys", tf.rotate_keys())

    # Refused calls that carry secret-looking input.
    manual = totp.encode_secret(second)
    s.refused("decode_secret(not base32)", lambda: totp.decode_secret(manual + "1"))
    s.refused("decode_secret(too short)", lambda: totp.decode_secret(manual[:16]))
    s.refused("Keyring(short key)", lambda: Keyring({"k1": second}))
    s.refused("Keyring.from_strings(no id)", lambda: Keyring.from_strings([manual]))
    s.refused("begin_enrollment(stale identity)", lambda: tf.begin_enrollment(other))
    s.refused("verify_code(unknown tenant)", lambda: tf.verify_code(other, "Z", code))
    s.refused("audit_log(both)", lambda: tf.audit_log(AuditQuery(tenant_id="B"), tenant_id="B"))

    # The owner resets Bob (lost phone); refused resets; Bob enrolls again.
    s.refused("reset by admin", lambda: tf.reset_two_factor("B", "bob", actor_id="carol"))
    s.refused("reset of self", lambda: tf.reset_two_factor("B", "olga", actor_id="olga"))
    tf.reset_two_factor("B", "bob", actor_id="olga")
    s.refused("reset with nothing", lambda: tf.reset_two_factor("B", "bob", actor_id="olga"))
    s.keep("login_step(after reset)", tf.login_step(regenerated_login, "B"))
    clock.advance(seconds=60)
    bob = tf.start_session("bob", method="google")
    third = s.provisioned("begin_enrollment #3", tf.begin_enrollment(bob), "bob")
    code = s.code(third)
    s.needles.add_code("the re-enrolling code", code)
    reenrolled = tf.confirm_enrollment(bob, code)
    assert reenrolled.ok, reenrolled.reason
    s.keep("confirm_enrollment(again)", reenrolled)
    s.recovery_codes("confirm_enrollment(again)", reenrolled.recovery_codes)

    # Switched off; Bob removes his own 2FA.
    clock.advance(seconds=60)
    s.keep("set_two_factor(off)", tf.set_two_factor("B", actor_id="olga", enabled=False))
    s.keep("remove_two_factor", tf.remove_two_factor(reenrolled.login))
    s.keep("login_step(off)", tf.login_step(tf.start_session("bob"), "B"))

    # Membership: a role changes, a member leaves, the last owner cannot.
    s.keep("set_role", tf.set_role("B", "carol", Role.MEMBER, actor_id="olga"))
    s.refused("last owner leaves", lambda: tf.remove_member("B", "olga", actor_id="olga"))
    s.keep("add_member(owner)", tf.add_member("B", "otto", role=Role.OWNER, actor_id="olga"))
    tf.remove_member("B", "carol", actor_id="carol")


def test_no_secret_appears_in_logs_exceptions_reprs_audit_or_messages(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="tenant2fa")
    key = Keyring.new_key()
    storage = FlakyStorage()
    notifier = FlakyNotifier()
    tf = TwoFactor(
        storage=storage,
        keyring=Keyring({"k1": key}),
        notifier=notifier,
        clock=clock,
        config=Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    s = Scenario(tf=tf, clock=clock, storage=storage, notifier=notifier)
    s.needles.add_bytes("keyring key", key)
    s.needles.add_text("keyring key (env form)", Keyring.encode_key("k1", key).partition(":")[2])

    run_scenario(s)

    # Gather everything else a host could print, log or keep.
    seen = s.seen
    for log in caplog.records:
        seen.add(f"log {log.levelname} {log.name}", logging.Formatter().format(log))
        seen.add(f"log args {log.name}", repr(log.args))
    audit = tf.audit_log(limit=100_000)
    for record in audit:
        seen.value(f"audit {record.kind.value}", record)
        seen.add(f"audit detail {record.kind.value}", repr(dict(record.detail)))
        seen.random_ids.add(record.record_id)
        seen.random_ids.update(v for k, v in record.detail.items() if k == "pending_id")
    for note in notifier.sent:
        seen.value(f"notification {note.kind.value}", note)
        seen.random_ids.add(note.notification_id)
        message = render(note, product="Onum")
        seen.value(f"message {note.kind.value}", message)
        seen.add(f"message subject {note.kind.value}", message.subject)
        seen.add(f"message body {note.kind.value}", message.body)
    for user_id in ("alice", "olga", "bob", "carol"):
        seen.value(f"user_status({user_id})", tf.user_status(user_id))
        seen.value(f"factor record({user_id})", storage.get_factor(user_id))
    for tenant_id in ("A", "B"):
        seen.value(f"tenant({tenant_id})", tf.tenant(tenant_id))
        seen.value(f"members({tenant_id})", tf.members(tenant_id))
    seen.value("RecoveryCodeSet", tf.config.recovery_hasher.new_set(s.recovery_sets[-1]))
    for name, value in (
        ("TwoFactor", tf),
        ("Keyring", tf.keyring),
        ("MemoryStorage", storage),
        ("InMemoryNotifier", notifier),
        ("Config", tf.config),
        ("FakeClock", clock),
    ):
        seen.value(name, value)

    # Every valid code of every secret, at every time step the scenario went through.
    assert s.started is not None
    first_step = totp.time_step(s.started) - 1
    last_step = totp.time_step(clock.now()) + 1
    assert last_step - first_step < 20_000
    for secret in s.secrets:
        for step in range(first_step, last_step + 1):
            s.needles.add_code("a valid TOTP code", totp.code_at(secret, step))

    # The scenario must really have gone everywhere before its silence means anything.
    assert {r.kind for r in audit} == set(AuditKind)
    assert {n.kind for n in notifier.sent} == set(NotificationKind)
    levels = {r.levelno for r in caplog.records}
    assert {logging.INFO, logging.WARNING, logging.ERROR} <= levels
    unavailable = [t for src, t in seen.texts if src.startswith("repr(") and "UNAVAILABLE" in t]
    assert len(unavailable) >= 3
    assert {PermissionDenied, InvalidSession, KeyringError, StepUpRequired} <= {
        kind for refused in s.refusals for kind in refused.__mro__
    }
    assert len(s.secrets) == 3
    assert len(s.recovery_sets) == 3
    locked_steps = [t for src, t in seen.texts if src == "repr(login_step(locked))"]
    assert locked_steps
    assert StepKind.LOCKED.name in locked_steps[0]

    assert find_leaks(seen, s.needles) == []
