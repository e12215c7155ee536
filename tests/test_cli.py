"""The operator's command line: every command run as a subprocess on a fresh database.

Each test checks what the command prints and its exit code (0 done, 1 refused or failed, 2 wrong
usage, 130 interrupted). Set-up that is not the point of a test (users enrolled under a key, say)
is done in-process with :class:`~tenant2fa.TwoFactor` on the same SQLite file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from db_backends import server_url, sqlalchemy_server_storage
from outbox_helpers import LOG_ENV, delivered_ids
from tenant2fa import (
    AuditKind,
    Config,
    EnrollmentState,
    Keyring,
    LoginSession,
    RecoveryCodeHasher,
    Role,
    TwoFactor,
)
from tenant2fa.cli import DB_ENV, DEFAULT_DB, KEYS_ENV, build_parser, main
from tenant2fa.storage.sqlalchemy import SCHEMA_VERSION as SA_SCHEMA_VERSION
from tenant2fa.storage.sqlite import SCHEMA_VERSION, SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for, secret_of

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs"
CONFIG = Config(recovery_hasher=RecoveryCodeHasher(n=2**4))


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without tenant2fa's own variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in (DB_ENV, KEYS_ENV)}
    env.update(extra)
    return env


def _command(db: Path | str | None, args: tuple[str, ...]) -> list[str]:
    where = [] if db is None else ["--db", str(db)]
    return [sys.executable, "-m", "tenant2fa", *where, *args]


def cli(
    *args: str,
    db: Path | str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(db, args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env or _env(),
        cwd=cwd,
    )


def _keys_env(**keys: bytes) -> dict[str, str]:
    return _env(**{KEYS_ENV: ",".join(Keyring.encode_key(k, v) for k, v in keys.items())})


def _enroll(tf: TwoFactor, user: str) -> LoginSession:
    login = tf.start_session(user)
    tf.begin_enrollment(login)
    result = tf.confirm_enrollment(login, pending_code_for(tf, user))
    assert result.ok
    return result.login


def _wrong_code(tf: TwoFactor, user: str) -> str:
    near = {code_for(tf, user, offset=o) for o in (-1, 0, 1)}
    candidate = 0
    while f"{candidate:06d}" in near:
        candidate += 1
    return f"{candidate:06d}"


def _key_ids(tf: TwoFactor) -> list[str]:
    """The key id of every stored ciphertext."""
    ids = []
    for sealed in tf.storage.sealed_secrets(after_user_id=None, limit=10_000):
        ids += [tf.keyring.key_id_of(b) for b in (sealed.secret, sealed.pending_secret) if b]
    return ids


def _field(out: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}:\s+(.*)$", out, flags=re.MULTILINE)
    assert match is not None, f"no {name!r} in:\n{out}"
    return match.group(1)


@dataclass
class World:
    """Tenant A ("Acme", owner olga) with bob (member, enrolled) and carl (admin), on a file."""

    db: Path
    tf: TwoFactor
    clock: FakeClock
    key: bytes


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    key = Keyring.new_key()
    # The CLI reads the system clock: start the fake one at the real time, so that what the
    # set-up writes (pending enrollments, say) is current for the commands under test.
    clock = FakeClock(datetime.now(timezone.utc))
    storage = SQLiteStorage(tmp_path / "world.sqlite3")
    tf = TwoFactor(storage=storage, keyring=Keyring({"k1": key}), clock=clock, config=CONFIG)
    tf.create_tenant("A", name="Acme", owner_id="olga")
    tf.add_member("A", "bob", operator="host")
    tf.add_member("A", "carl", role=Role.ADMIN, operator="host")
    _enroll(tf, "bob")
    yield World(db=Path(storage.path), tf=tf, clock=clock, key=key)
    storage.close()


# -- help and usage ---------------------------------------------------------------------------


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path
        return
    for name, sub in groups[0].choices.items():
        yield from _leaves(sub, (*path, name))


COMMANDS = sorted(_leaves(build_parser()))
GROUPS = sorted({c[:1] for c in COMMANDS if len(c) > 1})


def test_the_command_tree_is_the_one_the_issue_asks_for() -> None:
    assert {" ".join(c) for c in COMMANDS} == {
        "init",
        "tenant create",
        "tenant list",
        "tenant show",
        "tenant two-factor",
        "member add",
        "member list",
        "member remove",
        "member role",
        "user status",
        "user reset-2fa",
        "user unlock",
        "keys generate",
        "keys rotate",
        "keys status",
        "outbox dispatch",
        "outbox list",
        "audit",
    }


@pytest.mark.parametrize("command", [(), *GROUPS, *COMMANDS], ids=" ".join)
def test_help_of_every_command_exits_0_and_shows_its_usage(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('tenant2fa', *command))} ")
    assert "--db URL_OR_PATH" in out
    if command in COMMANDS:
        example = out.partition("\nexample:\n  ")[2]
        assert "tenant2fa " in example
        assert " ".join(command) in example


def test_help_as_a_subprocess_lists_the_commands_and_the_exit_codes() -> None:
    run = cli("--help")
    assert run.returncode == 0
    for group in ("init", "tenant", "member", "user", "keys", "outbox", "audit", "demo"):
        assert re.search(rf"\b{group}\b", run.stdout), group
    assert "exit codes: 0 done, 1 refused or failed, 2 wrong usage, 130 interrupted" in run.stdout


def test_docs_describe_every_command() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        assert f"## `tenant2fa {' '.join(command)}" in text, command


@pytest.mark.parametrize(
    "args",
    [("frobnicate",), ("tenant",), ("tenant", "rename", "A"), ("keys", "rotate", "--batch", "0")],
    ids=" ".join,
)
def test_unknown_or_incomplete_commands_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    run = cli(*args, db=tmp_path / "t.sqlite3")
    assert run.returncode == 2
    assert "usage: tenant2fa" in run.stderr
    assert run.stdout == ""


# -- database and init ------------------------------------------------------------------------


def test_init_creates_the_schema_and_prints_its_version(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite3"
    run = cli("init", db=db)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"schema version {SCHEMA_VERSION}\n"
    assert SQLiteStorage(db).schema_version() == SCHEMA_VERSION


def test_the_database_comes_from_the_option_then_the_environment_then_the_default(
    tmp_path: Path,
) -> None:
    assert (
        cli("tenant", "create", "D", "--name", "Default", "--owner", "o", cwd=tmp_path).returncode
        == 0
    )
    from_env = tmp_path / "env.sqlite3"
    env = _env(**{DB_ENV: str(from_env)})
    assert cli("tenant", "create", "E", "--name", "Env", "--owner", "o", env=env).returncode == 0
    # --db after the command works too, and wins over the environment.
    option = tmp_path / "option.sqlite3"
    run = cli(
        "tenant", "create", "O", "--name", "Opt", "--owner", "o", "--db", str(option), env=env
    )
    assert run.returncode == 0, run.stderr
    for path, tenant in ((tmp_path / DEFAULT_DB, "D"), (from_env, "E"), (option, "O")):
        listed = cli("tenant", "list", db=path).stdout.splitlines()
        assert [line.split()[0] for line in listed[1:]] == [tenant]


def test_a_sqlalchemy_database_without_tables_says_to_run_init(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'sa.sqlite3'}"
    before = cli("tenant", "list", db=url)
    assert before.returncode == 1
    assert before.stderr.startswith("tenant2fa: ")
    assert "run 'tenant2fa init' first" in before.stderr
    init = cli("init", db=url)
    assert init.returncode == 0, init.stderr
    assert init.stdout == f"schema version {SA_SCHEMA_VERSION}\n"
    assert cli("tenant", "create", "A", "--name", "Acme", "--owner", "olga", db=url).returncode == 0
    assert cli("tenant", "list", db=url).stdout.splitlines()[1].split() == ["A", "Acme", "off", "1"]


def test_a_postgresql_url_works_like_a_file() -> None:
    sqlalchemy_server_storage("postgresql")  # empty tables (or skip without a server)
    url = server_url("postgresql")
    assert cli("init", db=url).stdout == f"schema version {SA_SCHEMA_VERSION}\n"
    created = cli("tenant", "create", "A", "--name", "Acme", "--owner", "olga", db=url)
    assert created.returncode == 0, created.stderr
    assert cli("member", "add", "A", "bob", db=url).returncode == 0
    refused = cli("tenant", "two-factor", "on", "A", "--actor", "bob", db=url)
    assert refused.returncode == 1
    assert cli("tenant", "two-factor", "on", "A", "--actor", "olga", db=url).returncode == 0
    shown = cli("tenant", "show", "A", db=url)
    assert _field(shown.stdout, "two-factor") == "on"
    assert _field(shown.stdout, "members") == "2"


def test_database_errors_are_one_line_without_the_password(tmp_path: Path) -> None:
    unreachable = cli("tenant", "list", db="postgresql+psycopg://app:hunter2@127.0.0.1:1/app")
    assert unreachable.returncode == 1
    malformed = cli("tenant", "list", db="nosuchdb://app:hunter2@host/app")
    assert malformed.returncode == 2
    missing_dir = cli("tenant", "list", db=tmp_path / "no" / "such" / "dir.sqlite3")
    assert missing_dir.returncode == 1
    for run in (unreachable, malformed, missing_dir):
        assert run.stderr.startswith("tenant2fa: ")
        assert run.stderr.count("\n") == 1
        assert "hunter2" not in run.stderr + run.stdout


# -- tenants ----------------------------------------------------------------------------------


def test_tenant_create_list_and_show(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite3"
    created = cli("tenant", "create", "acme", "--name", "Acme Inc.", "--owner", "olga", db=db)
    assert created.returncode == 0, created.stderr
    assert created.stdout == "created tenant acme (Acme Inc.), owner olga; two-factor off\n"
    assert (
        cli("tenant", "create", "beta", "--name", "Beta", "--owner", "bert", db=db).returncode == 0
    )
    assert cli("member", "add", "beta", "olga", db=db).returncode == 0

    listed = cli("tenant", "list", db=db)
    assert listed.returncode == 0
    assert [line.split() for line in listed.stdout.splitlines()] == [
        ["TENANT", "NAME", "2FA", "MEMBERS"],
        ["acme", "Acme", "Inc.", "off", "1"],
        ["beta", "Beta", "off", "2"],
    ]
    shown = cli("tenant", "show", "beta", db=db)
    assert shown.returncode == 0
    assert _field(shown.stdout, "name") == "Beta"
    assert _field(shown.stdout, "two-factor") == "off"
    assert _field(shown.stdout, "owners") == "bert"
    assert _field(shown.stdout, "members") == "2"
    assert _field(shown.stdout, "enroll by") == "-"


def test_creating_a_tenant_twice_is_refused(world: World) -> None:
    run = cli("tenant", "create", "A", "--name", "Other", "--owner", "mallory", db=world.db)
    assert run.returncode == 1
    assert run.stderr == "tenant2fa: tenant 'A' already exists\n"
    assert world.tf.tenant("A").name == "Acme"


def test_an_owner_switches_two_factor_on_with_a_grace_period_then_off(world: World) -> None:
    on = cli("tenant", "two-factor", "on", "A", "--actor", "olga", "--grace", "7", db=world.db)
    assert on.returncode == 0, on.stderr
    policy = world.tf.tenant("A")
    assert policy.two_factor_required
    assert policy.grace_period == timedelta(days=7)
    deadline = policy.enrollment_deadline()
    assert deadline is not None
    assert deadline.isoformat(timespec="seconds") in on.stdout
    shown = cli("tenant", "show", "A", db=world.db).stdout
    assert _field(shown, "two-factor") == "on"
    assert _field(shown, "grace period") == "7 days"

    again = cli("tenant", "two-factor", "on", "A", "--actor", "olga", "--grace", "7", db=world.db)
    assert again.returncode == 0
    assert "already on" in again.stdout
    assert world.tf.tenant("A").version == policy.version

    off = cli("tenant", "two-factor", "off", "A", "--actor", "olga", db=world.db)
    assert off.returncode == 0
    assert off.stdout == "two-factor off for tenant A (Acme)\n"
    assert not world.tf.tenant("A").two_factor_required
    switches = world.tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED}))
    assert [(r.actor_id, r.detail["new"]) for r in switches] == [("olga", "on"), ("olga", "off")]


@pytest.mark.parametrize("actor", ["bob", "carl", "stranger"])
def test_a_non_owner_cannot_switch_two_factor_and_nothing_changes(world: World, actor: str) -> None:
    run = cli("tenant", "two-factor", "on", "A", "--actor", actor, db=world.db)
    assert run.returncode == 1
    assert run.stderr == (
        "tenant2fa: refused: only a tenant owner may change its two-factor authentication\n"
    )
    assert not world.tf.tenant("A").two_factor_required
    assert world.tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_SWITCHED})) == []


@pytest.mark.parametrize(
    "args",
    [
        ("tenant", "two-factor", "off", "A", "--actor", "olga", "--grace", "3"),
        ("tenant", "two-factor", "on", "A", "--actor", "olga", "--grace", "-1"),
        ("tenant", "two-factor", "maybe", "A", "--actor", "olga"),
        ("tenant", "two-factor", "on", "A"),
        ("tenant", "create", "B", "--name", "B"),
        ("member", "add", "A", "dan", "--role", "emperor"),
        ("tenant", "create", "bad\tid", "--name", "B", "--owner", "o"),
    ],
    ids=lambda a: " ".join(a).replace("\t", "\\t"),
)
def test_bad_options_are_usage_errors_that_change_nothing(
    world: World, args: tuple[str, ...]
) -> None:
    before = world.tf.audit_log(limit=1000)
    run = cli(*args, db=world.db)
    assert run.returncode == 2
    assert run.stdout == ""
    assert world.tf.audit_log(limit=1000) == before


@pytest.mark.parametrize(
    "args",
    [
        ("tenant", "show", "Z"),
        ("tenant", "two-factor", "on", "Z", "--actor", "olga"),
        ("member", "add", "Z", "dan"),
        ("member", "list", "Z"),
        ("user", "reset-2fa", "bob", "--tenant", "Z", "--actor", "olga"),
    ],
    ids=" ".join,
)
def test_an_unknown_tenant_is_refused_with_exit_1(world: World, args: tuple[str, ...]) -> None:
    run = cli(*args, db=world.db)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith("tenant2fa: ")
    assert run.stderr.count("\n") == 1
    assert world.tf.storage.get_tenant("Z") is None


# -- members ----------------------------------------------------------------------------------


def test_members_are_added_by_the_operator_or_an_owner_or_admin(world: World) -> None:
    assert (
        cli("member", "add", "A", "dan", db=world.db).stdout == "added dan to tenant A as member\n"
    )
    by_admin = cli("member", "add", "A", "erin", "--role", "admin", "--actor", "carl", db=world.db)
    assert by_admin.returncode == 0, by_admin.stderr
    # Only owners add owners, and plain members add no one.
    assert (
        cli(
            "member", "add", "A", "fay", "--role", "owner", "--actor", "carl", db=world.db
        ).returncode
        == 1
    )
    refused = cli("member", "add", "A", "gus", "--actor", "bob", db=world.db)
    assert refused.returncode == 1
    assert refused.stderr == "tenant2fa: refused: a tenant member may not add members\n"
    twice = cli("member", "add", "A", "dan", db=world.db)
    assert twice.returncode == 1
    assert twice.stderr == "tenant2fa: user 'dan' is already a member of tenant 'A'\n"

    listed = cli("member", "list", "A", db=world.db)
    assert listed.returncode == 0
    assert [line.split() for line in listed.stdout.splitlines()] == [
        ["USER", "ROLE", "2FA"],
        ["bob", "member", "active"],
        ["carl", "admin", "none"],
        ["dan", "member", "none"],
        ["erin", "admin", "none"],
        ["olga", "owner", "none"],
    ]


# -- users ------------------------------------------------------------------------------------


def test_user_status_of_an_enrolled_user(world: World) -> None:
    world.tf.create_tenant("B", name="Beta", owner_id="bob")
    world.tf.set_two_factor("B", actor_id="bob", enabled=True)
    run = cli("user", "status", "bob", db=world.db)
    assert run.returncode == 0, run.stderr
    status = world.tf.user_status("bob")
    assert status.activated_at is not None
    assert _field(run.stdout, "two-factor") == "active"
    assert _field(run.stdout, "activated at") == status.activated_at.isoformat(timespec="seconds")
    assert _field(run.stdout, "recovery codes left") == "10"
    assert _field(run.stdout, "failures") == "0"
    assert _field(run.stdout, "locked") == "no"
    assert _field(run.stdout, "tenants") == "A (member, 2FA off), B (owner, 2FA on)"


def test_a_user_unknown_to_the_database_has_no_two_factor(world: World) -> None:
    run = cli("user", "status", "nobody", db=world.db)
    assert run.returncode == 0
    assert _field(run.stdout, "two-factor") == "none"
    assert _field(run.stdout, "tenants") == "-"


def _lock_for_good(world: World, user_id: str = "bob") -> None:
    tf, clock = world.tf, world.clock
    login = tf.start_session(user_id)
    while tf.user_status(user_id).failures < tf.config.throttle.max_failures:
        clock.advance(seconds=30)
        login = tf.verify_identity(login)  # the back-off takes days: keep the login current
        result = tf.verify_code(login, "A", _wrong_code(tf, user_id))
        if result.retry_at is not None:
            clock.set(result.retry_at)


def test_an_owner_unlocks_a_user_locked_for_good_and_keeps_their_authenticator(
    world: World,
) -> None:
    tf = world.tf
    _lock_for_good(world)
    locked = cli("user", "status", "bob", db=world.db)
    assert _field(locked.stdout, "failures") == str(tf.config.throttle.max_failures)
    assert _field(locked.stdout, "locked").startswith("yes, until an owner unlocks")

    for actor in ("carl", "bob"):  # an admin, and the user himself
        refused = cli("user", "unlock", "bob", "--tenant", "A", "--actor", actor, db=world.db)
        assert refused.returncode == 1
        assert refused.stderr.startswith("tenant2fa: refused: ")
    assert tf.user_status("bob").locked

    unlocked = cli("user", "unlock", "bob", "--tenant", "A", "--actor", "olga", db=world.db)
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.startswith("unlocked bob")
    after = cli("user", "status", "bob", db=world.db).stdout
    assert _field(after, "two-factor") == "active"
    assert _field(after, "locked") == "no"
    assert _field(after, "failures") == "0"
    (record,) = tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_UNLOCKED}))
    assert (record.user_id, record.actor_id, record.tenant_id) == ("bob", "olga", "A")
    assert record.detail["actor_role"] == "owner"

    nothing = cli("user", "unlock", "bob", "--tenant", "A", "--actor", "olga", db=world.db)
    assert nothing.returncode == 1
    assert nothing.stderr == "tenant2fa: user 'bob' has no wrong codes counted: nothing to unlock\n"


def test_an_owner_reset_clears_a_user_locked_for_good(world: World) -> None:
    tf = world.tf
    _lock_for_good(world)
    for actor in ("carl", "bob"):  # an admin, and the user himself
        refused = cli("user", "reset-2fa", "bob", "--tenant", "A", "--actor", actor, db=world.db)
        assert refused.returncode == 1
        assert refused.stderr.startswith("tenant2fa: refused: ")
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE

    reset = cli("user", "reset-2fa", "bob", "--tenant", "A", "--actor", "olga", db=world.db)
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.startswith("reset the two-factor authentication of bob")
    after = cli("user", "status", "bob", db=world.db).stdout
    assert _field(after, "two-factor") == "none"
    assert _field(after, "locked") == "no"
    assert _field(after, "failures") == "0"
    (record,) = tf.audit_log(kinds=frozenset({AuditKind.TWO_FACTOR_RESET}))
    assert (record.user_id, record.actor_id, record.tenant_id) == ("bob", "olga", "A")

    nothing = cli("user", "reset-2fa", "bob", "--tenant", "A", "--actor", "olga", db=world.db)
    assert nothing.returncode == 1
    assert nothing.stderr == "tenant2fa: user 'bob' has no two-factor authentication to reset\n"


def test_without_actor_the_operator_resets_and_unlocks_under_its_name(world: World) -> None:
    tf = world.tf
    # bob's other tenant requires 2FA and olga does not own it: only the operator may reset him.
    tf.create_tenant("B", name="Beta", owner_id="bea")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="bea", enabled=True)
    refused = cli("user", "reset-2fa", "bob", "--tenant", "A", "--actor", "olga", db=world.db)
    assert refused.returncode == 1
    assert "every tenant" in refused.stderr
    assert "B" not in refused.stderr.removeprefix("tenant2fa: ")  # which tenant stays unsaid
    _lock_for_good(world)
    run = cli("user", "unlock", "bob", "--tenant", "A", "--operator", "support:jane", db=world.db)
    assert run.returncode == 0, run.stderr
    assert not tf.user_status("bob").locked
    run = cli("user", "reset-2fa", "bob", "--tenant", "A", db=world.db)
    assert run.returncode == 0, run.stderr
    assert tf.user_status("bob").state is EnrollmentState.NONE
    records = tf.audit_log(
        kinds=frozenset({AuditKind.TWO_FACTOR_UNLOCKED, AuditKind.TWO_FACTOR_RESET})
    )
    assert [(r.kind, r.actor_id, r.detail["actor_role"]) for r in records] == [
        (AuditKind.TWO_FACTOR_UNLOCKED, "support:jane", "operator"),
        (AuditKind.TWO_FACTOR_RESET, f"cli:{getpass.getuser()}", "operator"),
    ]
    both = cli("user", "reset-2fa", "bob", "--tenant", "A", "--actor", "olga", "--operator", "x")
    assert both.returncode == 2


def test_members_are_removed_and_roles_changed_keeping_an_owner(world: World) -> None:
    tf = world.tf
    last = cli("member", "remove", "A", "olga", "--actor", "olga", db=world.db)
    assert last.returncode == 1
    assert last.stderr == "tenant2fa: tenant 'A' must keep at least one owner\n"
    # An admin may not make an owner, nor remove one.
    assert (
        cli("member", "role", "A", "bob", "owner", "--actor", "carl", db=world.db).returncode == 1
    )
    assert cli("member", "remove", "A", "olga", "--actor", "carl", db=world.db).returncode == 1

    promoted = cli("member", "role", "A", "bob", "owner", "--actor", "olga", db=world.db)
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout == "bob is owner of tenant A\n"
    stepped_down = cli("member", "role", "A", "olga", "member", "--actor", "olga", db=world.db)
    assert stepped_down.returncode == 0, stepped_down.stderr
    left = cli("member", "remove", "A", "olga", "--actor", "olga", db=world.db)
    assert left.returncode == 0, left.stderr
    assert left.stdout == "removed olga from tenant A\n"
    by_operator = cli("member", "remove", "A", "carl", db=world.db)
    assert by_operator.returncode == 0, by_operator.stderr
    assert [(m.user_id, m.role) for m in tf.members("A")] == [("bob", Role.OWNER)]
    gone = cli("member", "remove", "A", "carl", db=world.db)
    assert gone.returncode == 1
    assert gone.stderr == "tenant2fa: user 'carl' is not a member of tenant 'A'\n"
    kinds = [r.kind for r in tf.audit_log(tenant_id="A", limit=1000)][-4:]
    assert kinds == [
        AuditKind.ROLE_CHANGED,
        AuditKind.ROLE_CHANGED,
        AuditKind.MEMBER_REMOVED,
        AuditKind.MEMBER_REMOVED,
    ]


def test_resetting_a_user_of_another_tenant_is_refused(world: World) -> None:
    world.tf.create_tenant("B", name="Beta", owner_id="mallory")
    run = cli("user", "reset-2fa", "bob", "--tenant", "B", "--actor", "mallory", db=world.db)
    assert run.returncode == 1
    assert run.stderr == "tenant2fa: user 'bob' is not a member of tenant 'B'\n"
    assert world.tf.user_status("bob").state is EnrollmentState.ACTIVE


# -- audit ------------------------------------------------------------------------------------


def test_audit_prints_a_table_and_filters(world: World) -> None:
    assert cli("tenant", "two-factor", "on", "A", "--actor", "olga", db=world.db).returncode == 0
    table = cli("audit", db=world.db)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["AT", "KIND", "TENANT", "USER", "ACTOR", "DETAIL"]
    assert [line.split()[1] for line in lines[1:]] == [
        r.kind.value for r in world.tf.audit_log(limit=1000)
    ]
    assert lines[-1].split()[1:] == ["two_factor_switched", "A", "-", "olga", "new=on", "old=off"]

    kinds = cli("audit", "--kind", "member_added", "--kind", "tenant_created", db=world.db)
    assert [line.split()[1] for line in kinds.stdout.splitlines()[1:]] == [
        "tenant_created",
        "member_added",
        "member_added",
    ]
    carl = cli("audit", "--tenant", "A", "--user", "carl", db=world.db)
    assert [line.split()[1:4] for line in carl.stdout.splitlines()[1:]] == [
        ["member_added", "A", "carl"]
    ]
    page = cli("audit", "--limit", "2", "--offset", "1", db=world.db)
    assert [line.split()[1] for line in page.stdout.splitlines()[1:]] == [
        "member_added",
        "member_added",
    ]


def test_audit_json_has_one_object_per_record_and_time_filters(world: World) -> None:
    run = cli("audit", "--json", "--kind", "member_added", db=world.db)
    assert run.returncode == 0
    records = [json.loads(line) for line in run.stdout.splitlines()]
    expected = world.tf.audit_log(kinds=frozenset({AuditKind.MEMBER_ADDED}))
    assert records == [
        {
            "record_id": r.record_id,
            "at": r.at.isoformat(),
            "kind": "member_added",
            "tenant_id": "A",
            "user_id": r.user_id,
            "actor_id": "host",  # the set-up adds members as the operator "host"
            "detail": dict(r.detail),
        }
        for r in expected
    ]
    first = expected[0].at
    since = cli("audit", "--json", "--since", first.isoformat(), db=world.db).stdout
    until = cli("audit", "--json", "--until", first.isoformat(), db=world.db).stdout
    assert len(since.splitlines()) + len(until.splitlines()) == len(world.tf.audit_log(limit=1000))
    assert all(json.loads(line)["at"] >= first.isoformat() for line in since.splitlines())
    future = (first + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cli("audit", "--json", "--since", future, db=world.db).stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("--since", "yesterday"),
        ("--until", "2026-13-01"),
        ("--kind", "everything"),
        ("--limit", "0"),
        ("--offset", "-1"),
    ],
    ids=" ".join,
)
def test_bad_audit_filters_are_usage_errors(world: World, args: tuple[str, ...]) -> None:
    run = cli("audit", *args, db=world.db)
    assert run.returncode == 2
    assert f"argument {args[0]}" in run.stderr
    assert run.stdout == ""


# -- outbox -----------------------------------------------------------------------------------


def test_outbox_list_then_dispatch_delivers_what_commands_queued(
    world: World, tmp_path: Path
) -> None:
    world.tf.add_member("A", "dave", role=Role.OWNER, operator="host")
    assert cli("tenant", "two-factor", "on", "A", "--actor", "olga", db=world.db).returncode == 0
    pending = cli("outbox", "list", "--state", "pending", db=world.db)
    assert pending.returncode == 0
    rows = [line.split() for line in pending.stdout.splitlines()[1:]]
    # The set-up's mails (bob, carl and dave added, olga told of the new owner, bob's "enabled"),
    # and both owners told of the switch.
    assert sorted((r[1], r[2], r[3]) for r in rows) == [
        ("member_added", "bob", "pending"),
        ("member_added", "carl", "pending"),
        ("member_added", "dave", "pending"),
        ("owners_changed", "olga", "pending"),
        ("tenant_two_factor_changed", "dave", "pending"),
        ("tenant_two_factor_changed", "olga", "pending"),
        ("two_factor_enabled", "bob", "pending"),
    ]
    log = tmp_path / "delivered.log"
    env = _env(**{LOG_ENV: str(log), "PYTHONPATH": str(TESTS)})
    dispatch = ("outbox", "dispatch", "--notifier", "outbox_helpers:file_notifier")
    run = cli(*dispatch, db=world.db, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "delivered 7, retrying 0, abandoned 0, lost to another dispatcher 0\n"
    assert len(delivered_ids(log)) == 7
    assert cli("outbox", "list", "--state", "pending", db=world.db).stdout.count("\n") == 1
    delivered = cli("outbox", "list", "--state", "delivered", "--limit", "2", db=world.db)
    assert delivered.stdout.count("\n") == 3

    bad = cli("outbox", "dispatch", "--notifier", "no_such_module:factory", db=world.db, env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("tenant2fa: cannot load the notifier: ")


# -- keys -------------------------------------------------------------------------------------


def test_keys_generate_prints_an_entry_the_keyring_reads() -> None:
    run = cli("keys", "generate", "--id", "2026-07")
    assert run.returncode == 0
    ring = Keyring.from_strings([run.stdout.strip()])
    assert ring.key_ids == ("2026-07",)
    default = cli("keys", "generate").stdout.strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d:[A-Za-z0-9_-]{43}", default)
    assert default.partition(":")[2] != run.stdout.partition(":")[2]
    bad = cli("keys", "generate", "--id", "no spaces")
    assert bad.returncode == 2
    assert bad.stdout == ""


def test_keys_status_counts_secrets_by_key(world: World) -> None:
    newer = world.tf.keyring.with_key("k2", Keyring.new_key())
    later = TwoFactor(storage=world.tf.storage, keyring=newer, clock=world.clock, config=CONFIG)
    for user in ("dan", "erin"):
        later.begin_enrollment(later.start_session(user))
    run = cli("keys", "status", db=world.db)
    assert run.returncode == 0
    assert [line.split() for line in run.stdout.splitlines()] == [
        ["KEY", "SECRETS"],
        ["k1", "1"],
        ["k2", "2"],
    ]


def test_keys_rotate_without_keys_is_a_usage_error_and_changes_nothing(world: World) -> None:
    run = cli("keys", "rotate", db=world.db)
    assert run.returncode == 2
    assert run.stderr == (
        f"tenant2fa: this command needs the keys: set {KEYS_ENV} ('id:base64url,...', oldest "
        "first) or pass --keys-file PATH\n"
    )
    assert world.tf.audit_log(kinds=frozenset({AuditKind.KEYS_ROTATED})) == []


@pytest.mark.parametrize(
    "keys",
    ["k1", "k1:dG9vIHNob3J0", "k1:AAAA,k1:BBBB", "k 1:" + "A" * 43],
    ids=["no-colon", "short-key", "duplicate-id", "bad-id"],
)
def test_malformed_keys_are_usage_errors_that_show_no_key(world: World, keys: str) -> None:
    run = cli("keys", "rotate", db=world.db, env=_env(**{KEYS_ENV: keys}))
    assert run.returncode == 2
    assert run.stderr.startswith(f"tenant2fa: {KEYS_ENV}: ")
    assert run.stderr.count("\n") == 1
    for entry in keys.split(","):
        key = entry.partition(":")[2]
        assert not key or key not in run.stderr
    assert _key_ids(world.tf) == ["k1"]


def test_keys_rotate_reads_a_keys_file_with_comments(world: World, tmp_path: Path) -> None:
    k2 = Keyring.new_key()
    keys_file = tmp_path / "keys"
    keys_file.write_text(
        "# oldest first; the last key encrypts\n"
        f"{Keyring.encode_key('k1', world.key)}\n\n"
        f"{Keyring.encode_key('k2', k2)}\n",
        encoding="utf-8",
    )
    run = cli("--keys-file", str(keys_file), "keys", "rotate", db=world.db)
    assert run.returncode == 0, run.stderr
    assert _field(run.stdout, "primary key") == "k2"
    assert _field(run.stdout, "rewrapped") == "1"
    assert _key_ids(world.tf) == ["k2"]
    missing = cli("--keys-file", str(tmp_path / "nope"), "keys", "rotate", db=world.db)
    assert missing.returncode == 2
    assert "cannot read --keys-file" in missing.stderr


@pytest.mark.parametrize("wrong", ["another-key-id", "wrong-old-key"])
def test_keys_rotate_with_keys_that_open_nothing_fails_and_names_the_users(
    world: World, wrong: str
) -> None:
    world.tf.begin_enrollment(world.tf.start_session("dan"))
    if wrong == "another-key-id":
        keys = {"k9": Keyring.new_key()}
    else:  # the ring names k1, but with some other key
        keys = {"k1": Keyring.new_key(), "k2": Keyring.new_key()}
    run = cli("keys", "rotate", db=world.db, env=_keys_env(**keys))
    assert run.returncode == 1
    assert _field(run.stdout, "failed") == "2"
    assert _field(run.stdout, "rewrapped") == "0"
    assert run.stderr.splitlines()[-1] == "tenant2fa: no key opens the secrets of 2 users: bob, dan"
    assert _key_ids(world.tf) == ["k1", "k1"]
    for key_id, key in keys.items():
        assert Keyring.encode_key(key_id, key).partition(":")[2] not in run.stdout + run.stderr


@dataclass
class UnderOldKey:
    """Users whose secrets are all encrypted with k1; k2 is the key to rotate to."""

    tf: TwoFactor
    storage: SQLiteStorage
    clock: FakeClock
    k2: bytes
    users: list[str]
    enrolled: list[str]
    secrets: dict[str, bytes]


def _under_old_key(path: Path, count: int) -> tuple[UnderOldKey, dict[str, str]]:
    k1, k2 = Keyring.new_key(), Keyring.new_key()
    clock = FakeClock(datetime.now(timezone.utc))
    storage = SQLiteStorage(path)
    tf = TwoFactor(storage=storage, keyring=Keyring({"k1": k1}), clock=clock, config=CONFIG)
    tf.create_tenant("A", name="Acme", owner_id="olga")
    users = [f"user-{i:03d}" for i in range(count)]
    enrolled = users[::40]
    for user in users:
        if user in enrolled:
            tf.add_member("A", user, operator="host")
            _enroll(tf, user)
        else:  # most are half-way through enrolling: a pending secret to re-encrypt
            tf.begin_enrollment(tf.start_session(user))
    secrets = {u: secret_of(tf, u, pending=u not in enrolled) for u in users}
    world = UnderOldKey(
        tf=tf,
        storage=storage,
        clock=clock,
        k2=k2,
        users=users,
        enrolled=enrolled,
        secrets=secrets,
    )
    return world, _keys_env(k1=k1, k2=k2)


def _stop_after_first_progress_line(
    command: list[str], env: dict[str, str], stop: signal.Signals
) -> tuple[str, str, str, int]:
    """Run ``command``, send it ``stop`` once its first progress line is out; its first stderr
    line, the rest of stderr, stdout and exit code.

    stderr goes into a one-page pipe that is not read after the first line: the command blocks
    on it long before the end of a long job, so the signal always lands mid-way.
    """
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=write_end, env=env, text=True
    ) as proc:
        os.close(write_end)
        with os.fdopen(read_end, encoding="utf-8") as err:
            first = err.readline()
            proc.send_signal(stop)
            rest = err.read()
        out, _ = proc.communicate(timeout=60)
    return first, rest, out, proc.returncode


@pytest.mark.skipif(sys.platform != "linux", reason="shrinks a pipe with F_SETPIPE_SZ (Linux)")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_keys_rotate_interrupted_then_run_again_finishes_the_job(
    tmp_path: Path, stop: signal.Signals
) -> None:
    world, env = _under_old_key(tmp_path / "rotate.sqlite3", 400)
    tf, total = world.tf, len(world.users)
    assert _key_ids(tf) == ["k1"] * total

    command = _command(world.storage.path, ("keys", "rotate", "--batch", "1"))
    first, rest, out, code = _stop_after_first_progress_line(command, env, stop)
    assert first == f"keys rotate: 1/{total} users\n"
    assert out == ""
    if stop is signal.SIGINT:
        assert code == 130, rest
        assert re.search(
            rf"^tenant2fa: interrupted after \d+ of {total} users; .*run 'tenant2fa keys "
            "rotate' again to finish$",
            rest,
            flags=re.MULTILINE,
        )
    else:
        assert code == -signal.SIGKILL
    halfway = _key_ids(tf)
    done = halfway.count("k2")
    assert 0 < done < total
    assert halfway.count("k1") == total - done
    assert tf.audit_log(kinds=frozenset({AuditKind.KEYS_ROTATED})) == []

    again = cli("keys", "rotate", "--batch", "64", db=world.storage.path, env=env)
    assert again.returncode == 0, again.stderr
    assert _field(again.stdout, "rewrapped") == str(total - done)
    assert _field(again.stdout, "current") == str(done)
    assert _field(again.stdout, "failed") == "0"
    assert again.stderr.splitlines()[-1] == f"keys rotate: {total}/{total} users"
    assert _key_ids(tf) == ["k2"] * total
    (record,) = tf.audit_log(kinds=frozenset({AuditKind.KEYS_ROTATED}))
    assert record.detail["key_id"] == "k2"

    # k1 can leave the ring: k2 alone opens every secret, unchanged, and codes still verify.
    only_k2 = TwoFactor(
        storage=tf.storage, keyring=Keyring({"k2": world.k2}), clock=world.clock, config=CONFIG
    )
    for user in world.users:
        assert secret_of(only_k2, user, pending=user not in world.enrolled) == world.secrets[user]
    world.clock.advance(seconds=30)
    for user in world.enrolled:
        result = only_k2.verify_code(only_k2.start_session(user), "A", code_for(only_k2, user))
        assert result.ok, user
    world.storage.close()


def test_keys_rotate_draws_a_bar_on_a_terminal(world: World) -> None:
    for user in ("dan", "erin", "fay", "gus"):
        world.tf.begin_enrollment(world.tf.start_session(user))
    controller, terminal = pty.openpty()
    command = _command(world.db, ("keys", "rotate", "--batch", "2"))
    env = _keys_env(k1=world.key, k2=Keyring.new_key())
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal, env=env) as proc:
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=60)
    os.close(controller)
    assert proc.returncode == 0
    screen = shown.decode()
    assert screen.startswith("\r[" + "#" * 12 + "." * 18 + "] 2/5")
    assert "\r[" + "#" * 24 + "." * 6 + "] 4/5" in screen
    assert screen.endswith("\r[" + "#" * 30 + "] 5/5\r\n")
    assert _field(out.decode(), "rewrapped") == "5"
