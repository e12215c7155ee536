"""``tenant2fa`` / ``python -m tenant2fa``: the operator's command line.

Commands for tenants, members, users, keys, the outbox and the audit log, on one database:
``--db`` takes a SQLAlchemy URL or a SQLite file (default: ``$TENANT2FA_DB``, else
``./tenant2fa.sqlite3``). Keys come from ``$TENANT2FA_KEYS`` or ``--keys-file``; only
``keys rotate`` needs them, as no other command opens a secret.

Exit codes: 0 done; 1 refused or failed (unknown tenant, not an owner, a database error, secrets no
key opens); 2 wrong usage (bad options, missing or malformed keys); 130 interrupted. Errors are
one line on stderr, ``tenant2fa: <message>``, and never carry a secret.

``main(argv)`` is the whole program (``tenant2fa.__main__`` hands it every command but ``demo``).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tenant2fa.audit import AuditKind, AuditQuery, AuditRecord
from tenant2fa.dispatch import Dispatcher
from tenant2fa.errors import (
    ConfigurationError,
    InvalidInput,
    InvalidTransition,
    PermissionDenied,
    StorageError,
    Tenant2FAError,
)
from tenant2fa.keyring import Keyring
from tenant2fa.outbox import OutboxState
from tenant2fa.policy import Role, TenantPolicy
from tenant2fa.results import RotationReport
from tenant2fa.service import TwoFactor
from tenant2fa.storage import open_storage

if TYPE_CHECKING:
    from tenant2fa.notify import Notifier
    from tenant2fa.storage import Storage

__all__ = [
    "DB_ENV",
    "DEFAULT_DB",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "KEYS_ENV",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DB_ENV = "TENANT2FA_DB"
KEYS_ENV = "TENANT2FA_KEYS"
DEFAULT_DB = "tenant2fa.sqlite3"

_PAGE = 500
_BAR_WIDTH = 30
_MAX_LISTED_FAILURES = 20


class _Refused(Exception):
    """The command cannot do what was asked (exit 1); the message is for the operator."""


class _Usage(Exception):
    """The command was called wrongly in a way argparse cannot see (exit 2)."""


# -- option types -------------------------------------------------------------------------------


def _timestamp(text: str) -> datetime:
    """An ISO 8601 date or time; without an offset it is read as UTC."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date or time: {text!r} (e.g. 2026-01-31 or 2026-01-31T09:30Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _days(text: str) -> timedelta:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 <= days <= 3650:  # ten years: anything longer is a typo
        raise argparse.ArgumentTypeError(f"must be between 0 and 3650 days, got {text}")
    return timedelta(days=days)


# -- the context a command runs in --------------------------------------------------------------


@dataclass
class _Context:
    args: argparse.Namespace
    out: TextIO
    err: TextIO
    _storage: Storage | None = field(default=None, init=False)

    @property
    def location(self) -> str:
        given: str | None = getattr(self.args, "db", None)
        return given or os.environ.get(DB_ENV) or DEFAULT_DB

    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = _open(self.location)
        return self._storage

    def service(self, keyring: Keyring | None = None) -> TwoFactor:
        # Commands without a keyring never open a secret: any keyring will do for them.
        return TwoFactor(
            storage=self.storage(),
            keyring=keyring or Keyring.generate(),
            deliver_inline=False,
        )

    def keyring(self) -> Keyring:
        """The configured keys; :class:`_Usage` if there are none."""
        keyring = _load_keys(getattr(self.args, "keys_file", None))
        if keyring is None:
            raise _Usage(
                f"this command needs the keys: set {KEYS_ENV} ('id:base64url,...', oldest first) "
                "or pass --keys-file PATH"
            )
        return keyring

    def print(self, line: str = "") -> None:
        print(line, file=self.out)

    def close(self) -> None:
        close = getattr(self._storage, "close", None)
        if callable(close):
            close()

    def storage_hint(self) -> str:
        """Why a database may fail: a SQLAlchemy database nobody ran ``init`` on."""
        engine = getattr(self._storage, "engine", None)
        if engine is None:
            return ""
        import sqlalchemy as sa  # noqa: PLC0415 - only SQLAlchemy storages have an engine

        try:
            present = sa.inspect(engine).has_table("t2fa_meta")
        except sa.exc.SQLAlchemyError:  # cannot even ask: the error says why
            return ""
        return "" if present else " (no tenant2fa tables here: run 'tenant2fa init' first)"


def _open(location: str) -> Storage:
    try:
        return open_storage(location)
    except ImportError as exc:
        raise _Refused(
            f"cannot open the database: the module {exc.name or '?'} is not installed "
            "(pip install 'tenant2fa[postgres]' or 'tenant2fa[mysql]')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the URL's parser may quote it, password and all
        raise _Usage(
            f"--db is neither a database URL nor a file path ({type(exc).__name__})"
        ) from None


def _load_keys(keys_file: str | None) -> Keyring | None:
    if keys_file is not None:
        source = "--keys-file"
        try:
            text = Path(keys_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _Usage(f"cannot read --keys-file {keys_file}: {reason}") from None
        entries = [line.strip() for line in text.splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    else:
        source = KEYS_ENV
        entries = [e.strip() for e in os.environ.get(KEYS_ENV, "").split(",") if e.strip()]
    if not entries:
        return None
    seen: set[str] = set()
    for entry in entries:
        key_id = entry.partition(":")[0]
        if key_id in seen:
            raise _Usage(f"{source}: key id {key_id!r} appears twice")
        seen.add(key_id)
    try:
        return Keyring.from_strings(entries)
    except ConfigurationError as exc:
        raise _Usage(f"{source}: {exc}") from None


# -- output helpers -----------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def _duration(period: timedelta | None) -> str:
    if period is None:
        return "none"
    if period % timedelta(days=1) == timedelta(0):
        days = period.days
        return f"{days} day" if days == 1 else f"{days} days"
    return str(period)


def _on_off(flag: bool) -> str:  # noqa: FBT001 - a formatter, not an option
    return "on" if flag else "off"


def _table(
    out: Callable[[str], None], headers: Sequence[str], rows: Iterable[Sequence[str]]
) -> None:
    rows = [list(r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for cells in [list(headers), *rows]:
        out("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def _fields(out: Callable[[str], None], pairs: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in pairs) + 1
    for name, value in pairs:
        out(f"{(name + ':').ljust(width)} {value}")


# -- init -------------------------------------------------------------------------------------


def _init(ctx: _Context) -> int:
    storage = ctx.storage()
    create_schema = getattr(storage, "create_schema", None)
    if callable(create_schema):
        create_schema()
    schema_version = getattr(storage, "schema_version", None)
    if not callable(schema_version):
        ctx.print("nothing to create: this storage keeps no schema")
        return EXIT_OK
    ctx.print(f"schema version {schema_version()}")
    return EXIT_OK


# -- tenants ----------------------------------------------------------------------------------


def _tenants(storage: Storage) -> list[TenantPolicy]:
    """Every tenant, ordered by id, a page at a time."""
    found: list[TenantPolicy] = []
    while True:
        page = storage.list_tenants(
            after_tenant_id=found[-1].tenant_id if found else None, limit=_PAGE
        )
        found += page
        if len(page) < _PAGE:
            return found


def _tenant_create(ctx: _Context) -> int:
    args = ctx.args
    policy = ctx.service().create_tenant(args.tenant, name=args.name, owner_id=args.owner)
    ctx.print(
        f"created tenant {policy.tenant_id} ({policy.name}), owner {args.owner}; "
        f"two-factor {_on_off(policy.two_factor_required)}"
    )
    return EXIT_OK


def _tenant_list(ctx: _Context) -> int:
    storage = ctx.storage()
    rows = []
    for policy in _tenants(storage):
        members = len(storage.list_memberships(policy.tenant_id))
        rows.append(
            [policy.tenant_id, policy.name, _on_off(policy.two_factor_required), str(members)]
        )
    _table(ctx.print, ["TENANT", "NAME", "2FA", "MEMBERS"], rows)
    return EXIT_OK


def _tenant_show(ctx: _Context) -> int:
    tf = ctx.service()
    policy = tf.tenant(ctx.args.tenant)
    owners = tf.storage.list_memberships(policy.tenant_id, role=Role.OWNER)
    members = tf.storage.list_memberships(policy.tenant_id)
    deadline = policy.enrollment_deadline()
    _fields(
        ctx.print,
        [
            ("tenant", policy.tenant_id),
            ("name", policy.name),
            ("two-factor", _on_off(policy.two_factor_required)),
            ("activated at", _when(policy.activated_at)),
            ("grace period", _duration(policy.grace_period)),
            ("enroll by", _when(deadline)),
            ("version", str(policy.version)),
            ("owners", ", ".join(m.user_id for m in owners) or "-"),
            ("members", str(len(members))),
        ],
    )
    return EXIT_OK


def _tenant_two_factor(ctx: _Context) -> int:
    args = ctx.args
    enabled = args.state == "on"
    if not enabled and args.grace is not None:
        raise _Usage("--grace applies only to 'two-factor on'")
    tf = ctx.service()
    before = tf.tenant(args.tenant)
    after = tf.set_two_factor(
        args.tenant, actor_id=args.actor, enabled=enabled, grace_period=args.grace
    )
    if after.version == before.version:
        ctx.print(f"two-factor is already {args.state} for tenant {after.tenant_id}; no change")
        return EXIT_OK
    line = f"two-factor {args.state} for tenant {after.tenant_id} ({after.name})"
    deadline = after.enrollment_deadline()
    if enabled and after.grace_period:
        line += f"; members may postpone enrolling until {_when(deadline)}"
    ctx.print(line)
    return EXIT_OK


# -- members ----------------------------------------------------------------------------------


def _operator(args: argparse.Namespace) -> str | None:
    """The operator a command acts as: ``None`` when ``--actor`` names a member instead."""
    if args.actor is not None:
        return None
    if args.operator is not None:
        return str(args.operator)
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        who = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{who}"


def _member_add(ctx: _Context) -> int:
    args = ctx.args
    membership = ctx.service().add_member(
        args.tenant,
        args.user,
        role=Role(args.role),
        actor_id=args.actor,
        operator=_operator(args),
    )
    ctx.print(
        f"added {membership.user_id} to tenant {membership.tenant_id} as {membership.role.value}"
    )
    return EXIT_OK


def _member_remove(ctx: _Context) -> int:
    args = ctx.args
    ctx.service().remove_member(
        args.tenant, args.user, actor_id=args.actor, operator=_operator(args)
    )
    ctx.print(f"removed {args.user} from tenant {args.tenant}")
    return EXIT_OK


def _member_role(ctx: _Context) -> int:
    args = ctx.args
    membership = ctx.service().set_role(
        args.tenant, args.user, Role(args.role), actor_id=args.actor, operator=_operator(args)
    )
    ctx.print(f"{membership.user_id} is {membership.role.value} of tenant {membership.tenant_id}")
    return EXIT_OK


def _member_list(ctx: _Context) -> int:
    tf = ctx.service()
    rows = [
        [m.user_id, m.role.value, tf.user_status(m.user_id).state.value]
        for m in tf.members(ctx.args.tenant)
    ]
    _table(ctx.print, ["USER", "ROLE", "2FA"], rows)
    return EXIT_OK


# -- users ------------------------------------------------------------------------------------


def _user_status(ctx: _Context) -> int:
    tf = ctx.service()
    status = tf.user_status(ctx.args.user)
    tenants = []
    for policy in tf.storage.tenants_of_user(status.user_id):
        membership = tf.storage.get_membership(policy.tenant_id, status.user_id)
        role = membership.role.value if membership else "?"
        tenants.append(f"{policy.tenant_id} ({role}, 2FA {_on_off(policy.two_factor_required)})")
    if not status.locked:
        locked = "no"
    elif status.retry_at is None:
        locked = "yes, until an owner unlocks the user (tenant2fa user unlock)"
    else:
        locked = f"yes, until {_when(status.retry_at)}"
    _fields(
        ctx.print,
        [
            ("user", status.user_id),
            ("two-factor", status.state.value),
            ("activated at", _when(status.activated_at)),
            ("recovery codes left", str(status.recovery_codes_left)),
            ("failures", str(status.failures)),
            ("locked", locked),
            ("tenants", ", ".join(tenants) or "-"),
        ],
    )
    return EXIT_OK


def _user_reset(ctx: _Context) -> int:
    args = ctx.args
    try:
        ctx.service().reset_two_factor(
            args.tenant, args.user, actor_id=args.actor, operator=_operator(args)
        )
    except InvalidTransition:
        raise _Refused(f"user {args.user!r} has no two-factor authentication to reset") from None
    ctx.print(
        f"reset the two-factor authentication of {args.user}: they enroll again at their next "
        "login, in every tenant"
    )
    return EXIT_OK


def _user_unlock(ctx: _Context) -> int:
    args = ctx.args
    if not ctx.service().unlock(
        args.tenant, args.user, actor_id=args.actor, operator=_operator(args)
    ):
        raise _Refused(f"user {args.user!r} has no wrong codes counted: nothing to unlock")
    ctx.print(
        f"unlocked {args.user}: their failure count is cleared; their authenticator and "
        "recovery codes still work"
    )
    return EXIT_OK


# -- keys -------------------------------------------------------------------------------------


def _keys_generate(ctx: _Context) -> int:
    key_id: str = ctx.args.id or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    key = Keyring.new_key()
    try:
        Keyring({key_id: key})  # checks the id as the application's keyring will
    except ConfigurationError as exc:
        raise _Usage(str(exc)) from None
    ctx.print(Keyring.encode_key(key_id, key))
    return EXIT_OK


def _sealed_users(storage: Storage, page: int) -> Iterable[list[bytes]]:
    """The ciphertexts of each user with a secret (active and pending), user by user."""
    after: str | None = None
    while True:
        rows = storage.sealed_secrets(after_user_id=after, limit=page)
        for sealed in rows:
            yield [b for b in (sealed.secret, sealed.pending_secret) if b is not None]
        if len(rows) < page:
            return
        after = rows[-1].user_id


def _keys_status(ctx: _Context) -> int:
    parser = Keyring.generate()  # reads only the key id in each ciphertext's header
    counts: dict[str, int] = {}
    for blobs in _sealed_users(ctx.storage(), _PAGE):
        for blob in blobs:
            try:
                key_id = parser.key_id_of(blob)
            except Tenant2FAError:
                key_id = "(unreadable)"
            counts[key_id] = counts.get(key_id, 0) + 1
    _table(ctx.print, ["KEY", "SECRETS"], [[k, str(n)] for k, n in sorted(counts.items())])
    return EXIT_OK


def _done(report: RotationReport) -> int:
    return report.rewrapped + report.current + report.changed + len(report.failed)


class _Progress:
    """Rotation progress on stderr: a redrawn bar on a terminal, one line per batch otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.tty = stream.isatty()
        self._drawn = False

    def __call__(self, report: RotationReport) -> None:
        self.done = _done(report)
        total = max(self.total, self.done)  # users who enrolled since the count
        if self.tty:
            filled = _BAR_WIDTH * self.done // total if total else _BAR_WIDTH
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{total}")
            self._drawn = True
        else:
            self.stream.write(f"keys rotate: {self.done}/{total} users\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _keys_rotate(ctx: _Context) -> int:
    keyring = ctx.keyring()
    tf = ctx.service(keyring)
    total = sum(1 for _ in _sealed_users(tf.storage, max(ctx.args.batch, _PAGE)))
    progress = _Progress(ctx.err, total)
    try:
        report = tf.rotate_keys(batch=ctx.args.batch, progress=progress)
    except KeyboardInterrupt:
        progress.end_line()
        print(
            f"tenant2fa: interrupted after {progress.done} of {total} users; what is done stays "
            "done: run 'tenant2fa keys rotate' again to finish",
            file=ctx.err,
        )
        return EXIT_INTERRUPTED
    progress.end_line()
    _fields(
        ctx.print,
        [
            ("primary key", keyring.primary_key_id),
            ("rewrapped", str(report.rewrapped)),
            ("current", str(report.current)),
            ("changed", str(report.changed)),
            ("failed", str(len(report.failed))),
        ],
    )
    if report.changed:
        ctx.print("some secrets changed during the run: run 'tenant2fa keys rotate' again")
    if report.failed:
        shown = ", ".join(report.failed[:_MAX_LISTED_FAILURES])
        more = len(report.failed) - _MAX_LISTED_FAILURES
        if more > 0:
            shown += f" and {more} more"
        raise _Refused(f"no key opens the secrets of {len(report.failed)} users: {shown}")
    return EXIT_OK


# -- outbox -----------------------------------------------------------------------------------


def _load_notifier(spec: str) -> Notifier:
    """``package.module:factory`` → ``factory()``, which must return a Notifier."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError("--notifier takes 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute)
    if not callable(factory):
        raise ValueError(f"{spec} is not callable")
    notifier = factory()
    if not callable(getattr(notifier, "notify", None)):
        raise ValueError(f"{spec}() returned an object without a notify() method")
    return notifier  # type: ignore[no-any-return]


def _outbox_dispatch(ctx: _Context) -> int:
    try:
        notifier = _load_notifier(ctx.args.notifier)
    except (ImportError, AttributeError, ValueError) as exc:
        raise _Usage(f"cannot load the notifier: {exc}") from None
    report = Dispatcher(ctx.storage(), notifier).dispatch_all()
    ctx.print(
        f"delivered {report.delivered}, retrying {report.retrying}, "
        f"abandoned {report.abandoned}, lost to another dispatcher {report.lost}"
    )
    return EXIT_OK


def _outbox_list(ctx: _Context) -> int:
    state = None if ctx.args.state is None else OutboxState(ctx.args.state)
    items = ctx.storage().outbox_items(state=state, limit=ctx.args.limit)
    rows = [
        [
            _when(item.notification.at),
            item.notification.kind.value,
            item.notification.user_id,
            item.state.value,
            str(item.attempts),
            _when(item.next_attempt_at if item.state is OutboxState.PENDING else None),
            " ".join((item.last_error or "-").split()),
        ]
        for item in items
    ]
    headers = ["CREATED", "KIND", "USER", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"]
    _table(ctx.print, headers, rows)
    return EXIT_OK


# -- audit ------------------------------------------------------------------------------------


def _audit_json(record: AuditRecord) -> str:
    return json.dumps(
        {
            "record_id": record.record_id,
            "at": record.at.isoformat(),
            "kind": record.kind.value,
            "tenant_id": record.tenant_id,
            "user_id": record.user_id,
            "actor_id": record.actor_id,
            "detail": dict(record.detail),
        }
    )


def _audit(ctx: _Context) -> int:
    args = ctx.args
    query = AuditQuery(
        tenant_id=args.tenant,
        user_id=args.user,
        kinds=frozenset(AuditKind(k) for k in args.kind) if args.kind else None,
        since=args.since,
        until=args.until,
        limit=args.limit,
        offset=args.offset,
    )
    records = ctx.service().audit_log(query)
    if args.json:
        for record in records:
            ctx.print(_audit_json(record))
        return EXIT_OK
    rows = [
        [
            _when(r.at),
            r.kind.value,
            r.tenant_id or "-",
            r.user_id or "-",
            r.actor_id or "-",
            " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(r.detail.items())) or "-",
        ]
        for r in records
    ]
    _table(ctx.print, ["AT", "KIND", "TENANT", "USER", "ACTOR", "DETAIL"], rows)
    return EXIT_OK


# -- the parser -------------------------------------------------------------------------------

_DESCRIPTION = """\
Operate tenant2fa on a database: tenants and their two-factor switch, members, users, the
encryption keys, the notification outbox and the audit log."""

_EPILOG = f"""\
database: --db URL_OR_PATH, else ${DB_ENV}, else ./{DEFAULT_DB}
  (a SQLAlchemy URL such as postgresql+psycopg://app@db/app, or a SQLite file)
keys:     ${KEYS_ENV}="id:base64url,id:base64url" (oldest first) or --keys-file PATH
  (one entry per line); only 'keys rotate' needs them ('keys generate' makes one)
exit codes: 0 done, 1 refused or failed, 2 wrong usage, 130 interrupted

Also: 'tenant2fa demo' (see 'tenant2fa demo --help').
Run 'tenant2fa COMMAND --help' for a command's options."""


_Group = argparse._SubParsersAction  # the object add_subparsers() returns


class _Commands:
    """Builds the command tree: every parser takes the common options and shows an example."""

    def __init__(self) -> None:
        # SUPPRESS: an option given after the command must not be reset by the command's parser.
        self.common = argparse.ArgumentParser(add_help=False)
        self.common.add_argument(
            "--db",
            metavar="URL_OR_PATH",
            default=argparse.SUPPRESS,
            help=f"database URL or SQLite file (default: ${DB_ENV}, else ./{DEFAULT_DB})",
        )
        self.common.add_argument(
            "--keys-file",
            metavar="PATH",
            default=argparse.SUPPRESS,
            help=f"keys, one 'id:base64url' per line, oldest first (default: ${KEYS_ENV})",
        )
        self.parser = argparse.ArgumentParser(
            prog="tenant2fa",
            description=_DESCRIPTION,
            epilog=_EPILOG,
            parents=[self.common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        self.top: _Group[argparse.ArgumentParser] = self.parser.add_subparsers(
            title="commands", dest="command", metavar="COMMAND"
        )

    def group(self, name: str, summary: str) -> _Group[argparse.ArgumentParser]:
        sub = self.top.add_parser(
            name, help=summary, description=summary, parents=[self.common], allow_abbrev=False
        )
        return sub.add_subparsers(title="commands", dest="action", metavar="ACTION", required=True)

    def leaf(
        self,
        parent: _Group[argparse.ArgumentParser] | None,
        name: str,
        summary: str,
        handler: Callable[[_Context], int],
        example: str,
    ) -> argparse.ArgumentParser:
        sub = (parent or self.top).add_parser(
            name,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            parents=[self.common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        sub.set_defaults(handler=handler)
        return sub


def _tenant_commands(c: _Commands) -> None:
    tenant = c.group("tenant", "create, list and show tenants; switch their two-factor")
    p = c.leaf(
        tenant,
        "create",
        "create a tenant (two-factor off) with its first owner",
        _tenant_create,
        "tenant2fa tenant create acme --name 'Acme Inc.' --owner olga",
    )
    p.add_argument("tenant", metavar="TENANT", help="the new tenant's id")
    p.add_argument("--name", required=True, help="the tenant's display name")
    p.add_argument("--owner", required=True, metavar="USER", help="the first owner's user id")
    c.leaf(tenant, "list", "list the tenants", _tenant_list, "tenant2fa tenant list")
    p = c.leaf(
        tenant,
        "show",
        "show a tenant's policy and owners",
        _tenant_show,
        "tenant2fa tenant show acme",
    )
    p.add_argument("tenant", metavar="TENANT")
    p = c.leaf(
        tenant,
        "two-factor",
        "switch a tenant's two-factor authentication on or off (owners only)",
        _tenant_two_factor,
        "tenant2fa tenant two-factor on acme --actor olga --grace 7",
    )
    p.add_argument("state", choices=["on", "off"], help="on or off")
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--actor", required=True, metavar="USER", help="the owner doing it")
    p.add_argument(
        "--grace",
        type=_days,
        metavar="DAYS",
        help="with 'on': members may postpone enrolling for this many days",
    )


_OPERATOR_HELP = (
    "without --actor, the command acts as the operator, audited under this name "
    "(default: cli:<your login name>)"
)


def _acting(p: argparse.ArgumentParser, actor_help: str) -> None:
    """``--actor`` (a member doing it, under the tenant's rules) or ``--operator``."""
    who = p.add_mutually_exclusive_group()
    who.add_argument("--actor", metavar="USER", help=actor_help)
    who.add_argument("--operator", metavar="NAME", help=_OPERATOR_HELP)


def _member_commands(c: _Commands) -> None:
    member = c.group("member", "add, remove and list the members of a tenant; change roles")
    p = c.leaf(
        member,
        "add",
        "add a user to a tenant",
        _member_add,
        "tenant2fa member add acme bob --role admin --actor olga",
    )
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("user", metavar="USER")
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.MEMBER.value)
    _acting(p, "the owner or admin doing it (default: the operator, who may add anyone)")
    p = c.leaf(
        member,
        "remove",
        "remove a user from a tenant (their second factor stays theirs)",
        _member_remove,
        "tenant2fa member remove acme bob --actor olga",
    )
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("user", metavar="USER")
    _acting(p, "the owner or admin doing it, or the user leaving (default: the operator)")
    p = c.leaf(
        member,
        "role",
        "change a member's role (a tenant always keeps an owner)",
        _member_role,
        "tenant2fa member role acme carol owner --actor olga",
    )
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("user", metavar="USER")
    p.add_argument("role", metavar="ROLE", choices=[r.value for r in Role])
    _acting(p, "the owner or admin doing it (default: the operator)")
    p = c.leaf(
        member,
        "list",
        "list a tenant's members, their roles and 2FA states",
        _member_list,
        "tenant2fa member list acme",
    )
    p.add_argument("tenant", metavar="TENANT")


def _user_commands(c: _Commands) -> None:
    user = c.group("user", "see a user's two-factor state; unlock or reset it")
    p = c.leaf(
        user,
        "status",
        "show a user's two-factor state, lockout and tenants",
        _user_status,
        "tenant2fa user status bob",
    )
    p.add_argument("user", metavar="USER")
    p = c.leaf(
        user,
        "reset-2fa",
        "remove a user's authenticator and recovery codes (lost phone) and clear a lockout",
        _user_reset,
        "tenant2fa user reset-2fa bob --tenant acme",
    )
    p.add_argument("user", metavar="USER")
    p.add_argument("--tenant", required=True, help="a tenant of the user's (named in the e-mail)")
    _acting(
        p,
        "an owner doing it: needs to own every tenant of the user that requires two-factor "
        "(default: the operator)",
    )
    p = c.leaf(
        user,
        "unlock",
        "clear a user's wrong-code lock, keeping their authenticator and recovery codes",
        _user_unlock,
        "tenant2fa user unlock bob --tenant acme",
    )
    p.add_argument("user", metavar="USER")
    p.add_argument("--tenant", required=True, help="a tenant of the user's (named in the e-mail)")
    _acting(
        p,
        "an owner doing it: needs to own every tenant of the user that requires two-factor "
        "(default: the operator)",
    )


def _keys_commands(c: _Commands) -> None:
    keys = c.group("keys", "encryption keys of the stored secrets")
    p = c.leaf(
        keys,
        "generate",
        f"print a new key entry for ${KEYS_ENV} (append it: the last key encrypts)",
        _keys_generate,
        f'export {KEYS_ENV}="${KEYS_ENV},$(tenant2fa keys generate --id 2026-07)"',
    )
    p.add_argument("--id", metavar="ID", help="the key id (default: today's date, UTC)")
    p = c.leaf(
        keys,
        "rotate",
        "re-encrypt every stored secret with the newest key (resumable)",
        _keys_rotate,
        "tenant2fa --keys-file /etc/tenant2fa/keys keys rotate --batch 200",
    )
    p.add_argument(
        "--batch", type=_count(1), default=_PAGE, metavar="N", help=f"users per batch ({_PAGE})"
    )
    c.leaf(
        keys,
        "status",
        "count the stored secrets by the key that encrypts them",
        _keys_status,
        "tenant2fa keys status",
    )


def _outbox_commands(c: _Commands) -> None:
    outbox = c.group("outbox", "the notifications waiting to be delivered")
    p = c.leaf(
        outbox,
        "dispatch",
        "deliver the notifications that are due, then exit (run it from cron)",
        _outbox_dispatch,
        "tenant2fa outbox dispatch --notifier myapp.mail:notifier",
    )
    p.add_argument(
        "--notifier",
        required=True,
        metavar="MODULE:FACTORY",
        help="'package.module:factory' returning your Notifier (e.g. a configured SMTPNotifier)",
    )
    p = c.leaf(
        outbox,
        "list",
        "list the notifications in the outbox, oldest first",
        _outbox_list,
        "tenant2fa outbox list --state abandoned",
    )
    p.add_argument("--state", choices=[s.value for s in OutboxState])
    p.add_argument("--limit", type=_count(1), default=100, metavar="N", help="at most N (100)")


def _audit_command(c: _Commands) -> None:
    p = c.leaf(
        None,
        "audit",
        "read the audit log, oldest first",
        _audit,
        "tenant2fa audit --tenant acme --kind two_factor_switched --since 2026-01-01 --json",
    )
    p.add_argument("--tenant", metavar="TENANT", help="records of this tenant")
    p.add_argument("--user", metavar="USER", help="records about this user or by them")
    p.add_argument(
        "--kind",
        action="append",
        choices=[k.value for k in AuditKind],
        metavar="KIND",
        help="only this kind (repeatable): " + ", ".join(k.value for k in AuditKind),
    )
    p.add_argument("--since", type=_timestamp, metavar="ISO", help="from this time (inclusive)")
    p.add_argument("--until", type=_timestamp, metavar="ISO", help="before this time")
    p.add_argument("--limit", type=_count(1), default=100, metavar="N", help="at most N (100)")
    p.add_argument("--offset", type=_count(0), default=0, metavar="N", help="skip N first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    """The ``tenant2fa`` argument parser (every command but ``demo``)."""
    c = _Commands()
    c.leaf(
        None,
        "init",
        "create or upgrade the database schema; print its version",
        _init,
        "tenant2fa --db postgresql+psycopg://app@db/app init",
    )
    _tenant_commands(c)
    _member_commands(c)
    _user_commands(c)
    _keys_commands(c)
    _outbox_commands(c)
    _audit_command(c)
    return c.parser


# -- running ----------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _run(ctx: _Context, handler: Callable[[_Context], int]) -> int:
    def fail(message: str, code: int) -> int:
        print(f"tenant2fa: {message}", file=ctx.err)
        return code

    try:
        return handler(ctx)
    except _Usage as exc:
        return fail(str(exc), EXIT_USAGE)
    except _Refused as exc:
        return fail(str(exc), EXIT_FAILED)
    except (ConfigurationError, InvalidInput) as exc:
        return fail(_one_line(exc), EXIT_USAGE)
    except PermissionDenied as exc:
        return fail(f"refused: {_one_line(exc)}", EXIT_FAILED)
    except StorageError as exc:
        return fail(f"{_one_line(exc)}{ctx.storage_hint()}", EXIT_FAILED)
    except Tenant2FAError as exc:
        return fail(_one_line(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, or argparse's own usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    ctx = _Context(args=args, out=sys.stdout, err=sys.stderr)
    # Commands report failures themselves; the library's log lines (one per user a rotation cannot
    # open, say) would only repeat them on stderr.
    quiet = logging.NullHandler()
    logging.getLogger("tenant2fa").addHandler(quiet)
    try:
        return _run(ctx, args.handler)
    finally:
        logging.getLogger("tenant2fa").removeHandler(quiet)
        ctx.close()
