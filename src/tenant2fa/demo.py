"""``tenant2fa demo``: the user guide's story, told in the terminal on a real SQLite file.

This is the reference integration in miniature: every line that talks to :class:`TwoFactor` is
what a web host does in a request handler. By default a simulated phone computes the codes; with
``--interactive`` you scan the QR code with a real authenticator app and type its codes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tenant2fa import totp
from tenant2fa.clock import Clock, SystemClock
from tenant2fa.config import Config
from tenant2fa.keyring import Keyring
from tenant2fa.notify import InMemoryNotifier, render
from tenant2fa.service import TwoFactor
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing.clock import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenant2fa.results import Provisioning

__all__ = ["run_demo"]


def _secret_from_uri(uri: str) -> bytes:
    # What the phone does after scanning: read the secret parameter of the otpauth URI.
    from urllib.parse import parse_qs, urlsplit  # noqa: PLC0415

    return totp.decode_secret(parse_qs(urlsplit(uri).query)["secret"][0])


def run_demo(  # noqa: PLR0915 - the story reads best as one straight script
    *,
    db_path: Path,
    out: TextIO,
    ask: Callable[[str], str] | None = None,
) -> int:
    """Run the story. ``ask`` reads a code typed by a person (``None``: a simulated phone)."""

    def say(text: str = "") -> None:
        print(text, file=out)

    mailbox = InMemoryNotifier()
    # A simulated phone needs no real waiting: its clock jumps 30 s ahead when the story says
    # "later". A real phone needs the real clock.
    clock: Clock = SystemClock() if ask is not None else FakeClock(SystemClock().now())
    tf = TwoFactor(
        storage=SQLiteStorage(db_path),
        keyring=Keyring.generate("demo"),
        notifier=mailbox,
        clock=clock,
        config=Config(issuer="tenant2fa demo"),
    )
    phone: dict[str, bytes] = {}

    def later(seconds: int) -> None:
        # Time passes between the clicks of the story (a real clock needs no help).
        if isinstance(clock, FakeClock):
            clock.advance(seconds=seconds)

    def code_from_phone(user: str, prompt: str) -> str:
        if ask is not None:
            return ask(prompt)
        step = totp.time_step(tf.clock.now())
        return totp.code_at(phone[user], step)

    say(f"Database: {db_path} (SQLite, WAL)")
    say()
    say("== Activate two-factor authentication in your tenant ==")
    tf.create_tenant("tenant-a", name="Tenant A", owner_id="alice@example.com")
    tf.create_tenant("tenant-b", name="Tenant B", owner_id="olga@example.com")
    for tenant in ("tenant-a", "tenant-b"):
        tf.add_member(tenant, "bob@example.com", operator="demo")
    say("Tenants A (owner alice) and B (owner olga); bob is a member of both.")

    bob = tf.start_session("bob@example.com", method="password")
    say(
        f"bob signs in to Tenant A with email + password -> {tf.login_step(bob, 'tenant-a').kind.name}"
    )

    try:
        tf.set_two_factor("tenant-b", actor_id="bob@example.com", enabled=True)
    except Exception as exc:  # noqa: BLE001 - the demo shows whatever the refusal is
        say(f"bob tries the Two-factor authentication toggle of B -> refused: {exc}")
    tf.set_two_factor("tenant-b", actor_id="olga@example.com", enabled=True)
    say("olga (owner of B) switches the Two-factor authentication toggle on.")
    say()

    say("== Enable two-factor authentication for your user ==")
    later(60)
    step = tf.login_step(bob, "tenant-a")
    say(f"bob, still signed in from before, opens Tenant A -> {step.kind.name}")
    later(5)
    bob = tf.verify_identity(bob, method="google")
    say("bob verifies his identity with 'Sign in with Google' (checked by the host app).")
    say(f"next step -> {tf.login_step(bob, 'tenant-a').kind.name}")
    provisioning: Provisioning = tf.begin_enrollment(bob, account_name="bob@example.com")
    say("Scan this QR code with an authenticator app (Google Authenticator, Apple Passwords...):")
    say(_terminal_qr(provisioning.uri))
    say(f"or enter this key by hand: {provisioning.manual_key}")
    phone["bob"] = _secret_from_uri(provisioning.uri)
    code = code_from_phone("bob", "6-digit code from your app: ")
    result = tf.confirm_enrollment(bob, code)
    say(f"bob enters the 6-digit code and clicks Enable -> {result.reason.name}")
    if not result.ok:
        say("That code was not accepted; run the demo again.")
        return 1
    bob = result.login
    say("Recovery codes (shown once; keep them safe):")
    for recovery_code in result.recovery_codes:
        say(f"    {recovery_code}")
    say()

    say("== Every login asks for a code ==")
    later(totp.TotpSettings().period)  # the next login is later: the app shows a new code
    bob = tf.start_session("bob@example.com", method="password")
    say(f"bob signs in to Tenant B -> {tf.login_step(bob, 'tenant-b').kind.name}")
    wrong = tf.verify_code(bob, "tenant-b", "000000")
    say(f"a wrong code -> {wrong.reason.name}")
    right = tf.verify_code(
        bob,
        "tenant-b",
        code_from_phone("bob", "wait for your app to show a NEW code, then type it: "),
    )
    say(
        f"the code from his app -> {right.reason.name}; step -> "
        f"{tf.login_step(right.login, 'tenant-b').kind.name}"
    )
    say()

    say("== Deactivate two-factor authentication ==")
    tf.set_two_factor("tenant-b", actor_id="olga@example.com", enabled=False)
    bob = tf.start_session("bob@example.com", method="password")
    say(
        f"olga switches the toggle off; bob signs in to B -> {tf.login_step(bob, 'tenant-b').kind.name}"
        " (email + password only)"
    )
    say()

    say("== Mailbox ==")
    for note in mailbox.sent:
        message = render(note, product="tenant2fa demo")
        say(f"To {note.user_id}: {message.subject}")
    say()
    say("Audit log:")
    for record in tf.audit_log(limit=1000):
        detail = " ".join(f"{k}={v}" for k, v in sorted(record.detail.items()))
        say(
            f"  {record.at:%H:%M:%S} {record.kind.value:<22} tenant={record.tenant_id} "
            f"user={record.user_id} actor={record.actor_id} {detail}".rstrip()
        )
    return 0


def _terminal_qr(uri: str) -> str:
    import io  # noqa: PLC0415

    qr = totp._make_qr(uri)
    buffer = io.StringIO()
    qr.terminal(out=buffer, compact=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenant2fa demo", description=__doc__)
    parser.add_argument("--db", type=Path, help="SQLite file to use (default: a new temporary one)")
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="scan the QR code with a real authenticator app and type its codes",
    )
    args = parser.parse_args(argv)
    import sys  # noqa: PLC0415

    if args.db is None:
        args.db = Path(tempfile.mkdtemp(prefix="tenant2fa-demo-")) / "demo.sqlite3"
    return run_demo(db_path=args.db, out=sys.stdout, ask=input if args.interactive else None)
