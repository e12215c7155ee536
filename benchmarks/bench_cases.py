"""The in-process rows: the floor, TOTP arithmetic, verify_code, login_step, enrollment, growth.

Each row builds a subject and a baseline :class:`~bench_harness.Side` and hands them to
:func:`bench_harness.compare`. Every side that verifies codes checks each answer (a benchmark of
failing verifications would measure nothing), and advances its own fake clock by one time step per
batch so that the same users can verify again without tripping replay protection.
"""

from __future__ import annotations

import hmac
import io
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bench_data as data
import bench_django
import pyotp
import segno
from bench_harness import TIMES, Body, Row, Side, Target, compare, fill
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenant2fa import Keyring, StepKind, TwoFactor, totp
from tenant2fa.audit import AuditKind, new_audit_record
from tenant2fa.enrollment import EnrollmentState
from tenant2fa.flow import UserFacts, next_step
from tenant2fa.policy import TenantPolicy
from tenant2fa.storage.memory import MemoryStorage
from tenant2fa.storage.sqlite import SQLiteStorage


class BenchError(RuntimeError):
    """A benchmarked operation did not do what it must (a code refused, a wrong step)."""


@dataclass(frozen=True)
class Sizes:
    mode: str
    batches: int
    verify_ops: int
    floor_ops: int
    pure_ops: int
    enroll_ops: int
    switch_ops: int
    members: tuple[int, int, int]
    users: tuple[int, int]
    throughput_seconds: float
    processes: tuple[int, ...]
    memory: tuple[int, int]
    audit_rows: int
    audit_ops: int


QUICK = Sizes(
    mode="quick",
    batches=5,
    verify_ops=100,
    floor_ops=20_000,
    pure_ops=2_000,
    enroll_ops=10,
    switch_ops=20,
    members=(10, 10_000, 100_000),
    users=(1_000, 100_000),
    throughput_seconds=2.0,
    processes=(1, 2, 4, 8),
    memory=(1_000, 10_000),
    audit_rows=20_000,
    audit_ops=50,
)
FULL = Sizes(
    mode="full",
    batches=15,
    verify_ops=400,
    floor_ops=200_000,
    pure_ops=20_000,
    enroll_ops=40,
    switch_ops=50,
    members=(10, 10_000, 1_000_000),
    users=(1_000, 1_000_000),
    throughput_seconds=10.0,
    processes=(1, 2, 4, 8),
    memory=(1_000, 100_000),
    audit_rows=1_000_000,
    audit_ops=200,
)


@dataclass
class Context:
    sizes: Sizes
    workdir: Path
    keyring: Keyring
    key_text: str
    postgres: data.Postgres | None
    postgres_skip: str | None

    def path(self, name: str) -> str:
        return str(self.workdir / name)


def n(value: int) -> str:
    return f"{value:,}"


# -- sides ---------------------------------------------------------------------------------------


class Stepper:
    """A fake time that moves one TOTP step per batch, over the whole run: a side built later
    on the same users (another row's) must never go back to a step they have used."""

    round = 0

    def next(self) -> datetime:
        Stepper.round += 1
        return data.at_batch(Stepper.round)


def _repeat(user_id: str, step: int) -> bool:
    return data.repeats_previous(data.secret_for(user_id), step)


def verify_side(label: str, tf: TwoFactor, users: Sequence[tuple[str, str]], ops: int) -> Side:
    """``tf.verify_code`` for ``ops`` (user, tenant) pairs per batch, each with its current code."""
    chosen = list(users[:ops])
    if len(chosen) < ops:
        raise ValueError("not enough users for a batch")
    logins = [(data.login_for(tf.keyring, u, data.T0), t) for u, t in chosen]
    clock = data.clock_of(tf)
    stepper = Stepper()

    def prepare(_batch: int) -> Body:
        now = stepper.next()
        clock.set(now)
        step = data.step_of(now)
        work = [
            (login, tenant, data.code_for(login.user_id, now), _repeat(login.user_id, step))
            for login, tenant in logins
        ]
        verify = tf.verify_code

        def body() -> None:
            for login, tenant, code, repeat in work:
                if not verify(login, tenant, code).ok and not repeat:
                    raise BenchError(f"{label}: a valid code was refused")

        return body

    return Side(label, prepare, ops)


def login_step_side(label: str, tf: TwoFactor, users: Sequence[tuple[str, str]], ops: int) -> Side:
    logins = [(data.login_for(tf.keyring, u, data.T0), t) for u, t in users[:ops]]
    clock = data.clock_of(tf)

    def prepare(_batch: int) -> Body:
        clock.set(data.at_batch(1))
        login_step = tf.login_step

        def body() -> None:
            for login, tenant in logins:
                if login_step(login, tenant).kind is not StepKind.CHALLENGE:
                    raise BenchError(f"{label}: expected a CHALLENGE step")

        return body

    return Side(label, prepare, ops)


def floor_side(ops: int, label: str = "floor: hmac.digest HMAC-SHA1, 8-byte counter") -> Side:
    key = data.secret_for("floor")
    counters = [i.to_bytes(8, "big") for i in range(ops)]
    digest = hmac.digest

    def prepare(_batch: int) -> Body:
        def body() -> None:
            for counter in counters:
                digest(key, counter, "sha1")

        return body

    return Side(label, prepare, ops)


def _connect_like_storage(path: str) -> sqlite3.Connection:
    """A ``sqlite3`` connection with SQLiteStorage's pragmas (WAL, synchronous=NORMAL, a busy
    timeout, foreign keys), in autocommit: the raw sides open their files this way."""
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    for pragma in (
        "busy_timeout = 5000",
        "foreign_keys = ON",
        "synchronous = NORMAL",
        "journal_mode = WAL",
    ):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class RawSqlite:
    """The hand-written verify a careful application would write on ``sqlite3``: the same
    pragmas as SQLiteStorage (WAL, synchronous=NORMAL, busy_timeout, foreign_keys), one
    ``BEGIN IMMEDIATE`` transaction per verification: SELECT the secret and last step, HMAC the
    three candidate steps, compare-and-set UPDATE, COMMIT. Secrets are stored in the clear."""

    def __init__(self, path: str, users: Sequence[str]) -> None:
        self.conn = _connect_like_storage(path)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_factors (user_id TEXT PRIMARY KEY, "
            "secret BLOB NOT NULL, last_step INTEGER NOT NULL DEFAULT -1)"
        )
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO raw_factors (user_id, secret) VALUES (?, ?)",
            [(u, data.secret_for(u)) for u in users],
        )
        self.conn.execute("COMMIT")
        self.users = list(users)

    def verify(self, user_id: str, code: str, now: int) -> bool:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT secret, last_step FROM raw_factors WHERE user_id = ?", (user_id,)
            ).fetchone()
            ok = False
            if row is not None:
                matched = _matched_step(row[0], code, now, row[1])
                if matched is not None:
                    ok = (
                        conn.execute(
                            "UPDATE raw_factors SET last_step = ? "
                            "WHERE user_id = ? AND last_step < ?",
                            (matched, user_id, matched),
                        ).rowcount
                        == 1
                    )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return ok

    def side(self, ops: int) -> Side:
        return raw_side(
            "raw sqlite3 verify (SELECT, HMAC ±1, CAS UPDATE, COMMIT)", self.verify, self.users, ops
        )


class RawPostgres:
    """The same hand-written verify on a plain psycopg connection (implicit BEGIN, COMMIT)."""

    def __init__(self, pg: data.Postgres, users: Sequence[str]) -> None:
        self.conn = pg.connect()
        with self.conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE raw_factors (user_id TEXT PRIMARY KEY, secret BYTEA NOT NULL, "
                "last_step BIGINT NOT NULL DEFAULT -1)"
            )
            cur.executemany(
                "INSERT INTO raw_factors (user_id, secret) VALUES (%s, %s)",
                [(u, data.secret_for(u)) for u in users],
            )
        self.conn.commit()
        self.users = list(users)

    def verify(self, user_id: str, code: str, now: int) -> bool:
        conn = self.conn
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT secret, last_step FROM raw_factors WHERE user_id = %s", (user_id,)
                )
                row = cur.fetchone()
                ok = False
                if row is not None:
                    matched = _matched_step(bytes(row[0]), code, now, row[1])
                    if matched is not None:
                        cur.execute(
                            "UPDATE raw_factors SET last_step = %s "
                            "WHERE user_id = %s AND last_step < %s",
                            (matched, user_id, matched),
                        )
                        ok = cur.rowcount == 1
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return ok

    def side(self, ops: int) -> Side:
        return raw_side(
            "raw psycopg verify (SELECT, HMAC ±1, CAS UPDATE, COMMIT)", self.verify, self.users, ops
        )

    def close(self) -> None:
        self.conn.close()


def _matched_step(secret: bytes, code: str, now: int, last_step: int) -> int | None:
    """The time step (±1 around ``now``) whose code is ``code``, if it is after ``last_step``;
    all three are computed, compared in constant time."""
    step = now // data.PERIOD
    given = code.encode()
    matched = None
    for candidate in (step - 1, step, step + 1):
        if hmac.compare_digest(data.hotp(secret, candidate).encode(), given):
            matched = candidate
    return matched if matched is not None and matched > last_step else None


class _Sealed:
    """Secrets under AES-256-GCM, bound to the user id, as the keyring stores them."""

    def __init__(self) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(self, user_id: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, secret, user_id.encode())

    def open(self, user_id: str, blob: bytes) -> bytes:
        return self.aead.decrypt(blob[:12], blob[12:], user_id.encode())


class RawSqliteFloor:
    """The floor of a real verify on ``sqlite3``, hand-written: what the library must do and no
    more. Read the factor row (one statement, no transaction), AES-GCM decrypt the secret, HMAC
    the three candidate steps, then one ``BEGIN IMMEDIATE`` transaction holding the
    compare-and-set UPDATE and the INSERT of an audit row into a lean table (an integer key, no
    other index), for a right code and a wrong one alike."""

    LABEL = "raw sqlite3 floor (SELECT; decrypt, HMAC ±1; CAS UPDATE + lean audit INSERT)"

    def __init__(self, path: str, users: Sequence[str]) -> None:
        self.conn = _connect_like_storage(path)
        self.conn.execute(
            "CREATE TABLE floor_factors (user_id TEXT PRIMARY KEY, secret BLOB NOT NULL, "
            "last_step INTEGER NOT NULL DEFAULT -1)"
        )
        self.conn.execute(
            "CREATE TABLE floor_audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, "
            "kind TEXT NOT NULL, user_id TEXT, detail TEXT NOT NULL)"
        )
        self.sealed = _Sealed()
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO floor_factors (user_id, secret) VALUES (?, ?)",
            [(u, self.sealed.seal(u, data.secret_for(u))) for u in users],
        )
        self.conn.execute("COMMIT")
        self.users = list(users)

    def verify(self, user_id: str, code: str, now: int) -> bool:
        conn = self.conn
        row = conn.execute(
            "SELECT secret, last_step FROM floor_factors WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is None:
            return False
        matched = _matched_step(self.sealed.open(user_id, row[0]), code, now, row[1])
        conn.execute("BEGIN IMMEDIATE")
        try:
            ok = (
                matched is not None
                and conn.execute(
                    "UPDATE floor_factors SET last_step = ? WHERE user_id = ? AND last_step < ?",
                    (matched, user_id, matched),
                ).rowcount
                == 1
            )
            conn.execute(
                "INSERT INTO floor_audit (at, kind, user_id, detail) VALUES (?, ?, ?, '{}')",
                (now * 1_000_000, "code_accepted" if ok else "code_rejected", user_id),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return ok

    def side(self, ops: int) -> Side:
        return raw_side(self.LABEL, self.verify, self.users, ops)


class RawPostgresFloor:
    """The same floor on a plain psycopg connection in autocommit: the SELECT, then the
    compare-and-set and the lean audit INSERT as one statement (a data-modifying CTE), so two
    round trips in all."""

    LABEL = "raw psycopg floor (SELECT; decrypt, HMAC ±1; CAS UPDATE + audit INSERT as 1 statement)"

    def __init__(self, pg: data.Postgres, users: Sequence[str]) -> None:
        self.conn = pg.connect()
        self.sealed = _Sealed()
        with self.conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE floor_factors (user_id TEXT PRIMARY KEY, secret BYTEA NOT NULL, "
                "last_step BIGINT NOT NULL DEFAULT -1)"
            )
            cur.execute(
                "CREATE TABLE floor_audit (seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, "
                "kind TEXT NOT NULL, user_id TEXT, detail TEXT NOT NULL)"
            )
            cur.executemany(
                "INSERT INTO floor_factors (user_id, secret) VALUES (%s, %s)",
                [(u, self.sealed.seal(u, data.secret_for(u))) for u in users],
            )
        self.conn.commit()
        self.conn.autocommit = True
        self.users = list(users)

    def verify(self, user_id: str, code: str, now: int) -> bool:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT secret, last_step FROM floor_factors WHERE user_id = %s", (user_id,)
            )
            row = cur.fetchone()
            if row is None:
                return False
            matched = _matched_step(self.sealed.open(user_id, bytes(row[0])), code, now, row[1])
            cur.execute(
                "WITH w AS (UPDATE floor_factors SET last_step = %(step)s "
                "WHERE user_id = %(user)s AND last_step < %(step)s RETURNING 1), "
                "a AS (INSERT INTO floor_audit (at, kind, user_id, detail) "
                "SELECT %(at)s, CASE WHEN EXISTS (SELECT 1 FROM w) THEN 'code_accepted' "
                "ELSE 'code_rejected' END, %(user)s, '{}') "
                "SELECT count(*) FROM w",
                {"step": -2 if matched is None else matched, "user": user_id, "at": now},
            )
            written = cur.fetchone()
        return matched is not None and written is not None and written[0] == 1

    def side(self, ops: int) -> Side:
        return raw_side(self.LABEL, self.verify, self.users, ops)

    def close(self) -> None:
        self.conn.close()


class RawIndexedRead:
    """One indexed read on ``sqlite3``: the row of a user by primary key (the floor of a
    decision that reads and writes nothing else)."""

    LABEL = "raw sqlite3 indexed read (one SELECT by primary key)"

    def __init__(self, raw: RawSqlite) -> None:
        self.conn = raw.conn
        self.users = raw.users

    def side(self, ops: int) -> Side:
        chosen = list(self.users[:ops])
        conn = self.conn

        def prepare(_batch: int) -> Body:
            def body() -> None:
                for user in chosen:
                    if (
                        conn.execute(
                            "SELECT secret, last_step FROM raw_factors WHERE user_id = ?", (user,)
                        ).fetchone()
                        is None
                    ):
                        raise BenchError("the indexed read found no row")

            return body

        return Side(self.LABEL, prepare, ops)


class RawMemory:
    """The hand-written in-memory verify: a dict of [secret, last step], HMAC ±1, and a
    compare-and-set under one lock (what MemoryStorage promises, minus everything else)."""

    def __init__(self, users: Sequence[str]) -> None:
        self.lock = threading.Lock()
        self.secrets = {u: data.secret_for(u) for u in users}
        self.last_steps = dict.fromkeys(users, -1)
        self.users = list(users)

    def verify(self, user_id: str, code: str, now: int) -> bool:
        with self.lock:
            secret = self.secrets.get(user_id)
            if secret is None:
                return False
            matched = _matched_step(secret, code, now, self.last_steps[user_id])
            if matched is None:
                return False
            self.last_steps[user_id] = matched
            return True

    def side(self, ops: int) -> Side:
        return raw_side(
            "raw in-memory verify (dict, HMAC ±1, CAS under a lock)", self.verify, self.users, ops
        )


def raw_side(
    label: str, verify: Callable[[str, str, int], bool], users: Sequence[str], ops: int
) -> Side:
    chosen = list(users[:ops])
    stepper = Stepper()

    def prepare(_batch: int) -> Body:
        now = stepper.next()
        stamp = data.unix(now)
        step = data.step_of(now)
        work = [(u, data.code_for(u, now), _repeat(u, step)) for u in chosen]

        def body() -> None:
            for user, code, repeat in work:
                if not verify(user, code, stamp) and not repeat:
                    raise BenchError(f"{label}: a valid code was refused")

        return body

    return Side(label, prepare, ops)


# -- rows ----------------------------------------------------------------------------------------


def row(
    row_id: str,
    group: str,
    subject: Side,
    baseline: Side,
    ctx: Context,
    target: Target | None = None,
    note: str = "",
    batches: int | None = None,
) -> Row:
    result = Row(
        id=row_id,
        group=group,
        name=subject.label,
        baseline=baseline.label,
        target=target,
        note=note,
    )
    subject_times, baseline_times = compare(subject, baseline, batches=batches or ctx.sizes.batches)
    return fill(result, subject_times, baseline_times)


def totp_rows(ctx: Context) -> list[Row]:
    ops = ctx.sizes.floor_ops
    secret = data.secret_for("pyotp")
    b32 = totp.encode_secret(secret)
    hotp_gen = pyotp.HOTP(b32)

    def pyotp_prepare(_batch: int) -> Body:
        def body() -> None:
            for counter in range(ops // 10):
                hotp_gen.at(counter)

        return body

    now = data.at_batch(1)
    step = data.step_of(now)
    code = data.hotp(secret, step)
    pyotp_totp = pyotp.TOTP(b32)
    verify_ops = ops // 40

    def ours_prepare(_batch: int) -> Body:
        def body() -> None:
            for _ in range(verify_ops):
                if totp.matching_step(secret, code, step) != step:
                    raise BenchError("matching_step missed the current step")

        return body

    def pyotp_verify_prepare(_batch: int) -> Body:
        def body() -> None:
            for _ in range(verify_ops):
                if not pyotp_totp.verify(code, for_time=now, valid_window=1):
                    raise BenchError("pyotp refused the current code")

        return body

    return [
        row(
            "floor.noise",
            "floor",
            floor_side(ops),
            floor_side(ops, "the floor again (noise check: ideal ratio 1)"),
            ctx,
            note="the same operation on both sides: shows how noisy this machine is",
        ),
        row(
            "totp.pyotp_hotp",
            "totp",
            Side("pyotp HOTP.at (one 6-digit code)", pyotp_prepare, ops // 10),
            floor_side(ops),
            ctx,
        ),
        row(
            "totp.matching_step",
            "totp",
            Side("totp.matching_step, ±1 window (3 codes)", ours_prepare, verify_ops),
            Side("pyotp TOTP.verify(valid_window=1)", pyotp_verify_prepare, verify_ops),
            ctx,
            note="pyotp stops at the first match (the current step is its 2nd); ours computes all 3",
        ),
    ]


def _verify_db(ctx: Context, path: str, users: Sequence[str]) -> TwoFactor:
    storage = data.sqlite_storage(path)
    data.load_sqlite(
        path,
        tenants=[data.TenantRow(data.TENANT)],
        members=[(data.TENANT, u, "member") for u in users],
        factors=(data.factor_values(ctx.keyring, u) for u in users),
    )
    return data.service(storage, ctx.keyring)


@dataclass
class VerifyFixture:
    """The SQLite WAL database of the verify rows, reused by the login and enrollment rows."""

    tf: TwoFactor
    storage: SQLiteStorage
    path: str
    raw: RawSqlite
    users: list[str]
    pairs: list[tuple[str, str]]


def verify_fixture(ctx: Context) -> VerifyFixture:
    users = data.user_ids("v", ctx.sizes.verify_ops)
    path = ctx.path("verify.sqlite3")
    tf = _verify_db(ctx, path, users)
    storage = tf.storage
    if not isinstance(storage, SQLiteStorage):  # pragma: no cover
        raise TypeError("the verify fixture is a SQLite database")
    return VerifyFixture(
        tf=tf,
        storage=storage,
        path=path,
        raw=RawSqlite(ctx.path("raw.sqlite3"), users),
        users=users,
        pairs=[(u, data.TENANT) for u in users],
    )


def verify_rows(ctx: Context, fx: VerifyFixture, django: Any) -> list[Row]:
    """verify_code on SQLite WAL against raw sqlite3 and django-otp; memory; PostgreSQL.

    ``django`` is a ready :class:`bench_django.DjangoOtp`, or the reason it is not available.
    """
    ops = ctx.sizes.verify_ops
    users, pairs, tf, raw = fx.users, fx.pairs, fx.tf, fx.raw
    rows = [
        row(
            "verify.sqlite.raw",
            "verify",
            verify_side("verify_code, SQLite WAL", tf, pairs, ops),
            raw.side(ops),
            ctx,
            Target(2.0),
        ),
        row(
            "verify.sqlite.floor",
            "verify",
            verify_side("verify_code, SQLite WAL", tf, pairs, ops),
            RawSqliteFloor(ctx.path("floor.sqlite3"), users).side(ops),
            ctx,
            Target(1.5),
        ),
    ]

    django_row = Row(
        id="verify.sqlite.django",
        group="verify",
        name="verify_code, SQLite WAL",
        baseline=bench_django.LABEL,
        target=Target(0.2, text=f"≤ 0.2{TIMES} (5{TIMES} faster)"),
    )
    if isinstance(django, str):
        django_row.skipped = django
    else:
        baseline = django.side(ops, ctx.sizes.batches + 1)
        subject_times, baseline_times = compare(
            verify_side("verify_code, SQLite WAL", tf, pairs, ops),
            baseline,
            batches=ctx.sizes.batches,
        )
        fill(django_row, subject_times, baseline_times)
        django_row.note = (
            "django-otp reads the real clock, so each of its batches verifies fresh devices"
        )
    rows.append(django_row)

    memory = MemoryStorage()
    data.load_storage(memory, ctx.keyring, data.TENANT, users)
    rows.append(
        row(
            "verify.memory.raw",
            "verify",
            verify_side(
                "verify_code, in-memory backend", data.service(memory, ctx.keyring), pairs, ops
            ),
            RawMemory(users).side(ops),
            ctx,
        )
    )

    pg_row = Row(
        id="verify.postgres.raw",
        group="verify",
        name="verify_code, PostgreSQL",
        baseline="raw psycopg verify (SELECT, HMAC ±1, CAS UPDATE, COMMIT)",
    )
    pg_floor_row = Row(
        id="verify.postgres.floor",
        group="verify",
        name="verify_code, PostgreSQL",
        baseline=RawPostgresFloor.LABEL,
        target=Target(1.3),
    )
    if ctx.postgres is None:
        pg_row.skipped = pg_floor_row.skipped = ctx.postgres_skip
    else:
        pg = ctx.postgres
        pg.load(
            tenants=[data.TenantRow(data.TENANT)],
            members=[(data.TENANT, u, "member") for u in users],
            factors=[data.factor_values(ctx.keyring, u) for u in users],
        )
        raw_pg = RawPostgres(pg, users)
        floor_pg = RawPostgresFloor(pg, users)
        try:
            pg_tf = data.service(pg.storage(), ctx.keyring)
            subject_times, baseline_times = compare(
                verify_side("verify_code, PostgreSQL", pg_tf, pairs, ops),
                raw_pg.side(ops),
                batches=ctx.sizes.batches,
            )
            fill(pg_row, subject_times, baseline_times)
            pg_row.note = f"PostgreSQL {pg.server_version} on 127.0.0.1, same machine"
            subject_times, baseline_times = compare(
                verify_side("verify_code, PostgreSQL", pg_tf, pairs, ops),
                floor_pg.side(ops),
                batches=ctx.sizes.batches,
            )
            fill(pg_floor_row, subject_times, baseline_times)
            pg_floor_row.note = pg_row.note
        finally:
            raw_pg.close()
            floor_pg.close()
    rows.append(pg_row)
    rows.append(pg_floor_row)
    rows.append(_django_postgres_row(ctx, fx, django))
    return rows


def _django_postgres_row(ctx: Context, fx: VerifyFixture, django: Any) -> Row:
    """verify_code on PostgreSQL against django-otp on the same server and schema."""
    result = Row(
        id="verify.postgres.django",
        group="verify",
        name="verify_code, PostgreSQL",
        baseline=bench_django.POSTGRES_LABEL,
        target=Target(0.4, text=f"≤ 0.4{TIMES} (2.5{TIMES} faster)"),
    )
    if ctx.postgres is None:
        result.skipped = ctx.postgres_skip
        return result
    if isinstance(django, str):
        result.skipped = django
        return result
    ops = ctx.sizes.verify_ops
    pg_tf = data.service(ctx.postgres.storage(), ctx.keyring)
    subject_times, baseline_times = compare(
        verify_side("verify_code, PostgreSQL", pg_tf, fx.pairs, ops),
        django.side(ops, ctx.sizes.batches + 1, database="pg"),
        batches=ctx.sizes.batches,
    )
    fill(result, subject_times, baseline_times)
    result.note = (
        f"PostgreSQL {ctx.postgres.server_version}; django-otp reads the real clock, so each "
        "of its batches verifies fresh devices"
    )
    return result


def login_rows(ctx: Context, fx: VerifyFixture) -> list[Row]:
    ops = ctx.sizes.verify_ops
    tf, raw, pairs = fx.tf, fx.raw, fx.pairs

    now = data.at_batch(1)
    login = data.login_for(ctx.keyring, pairs[0][0], data.T0)
    facts = UserFacts(state=EnrollmentState.ACTIVE, epoch=1)
    policies = [
        TenantPolicy(
            tenant_id=data.TENANT,
            name="Acme",
            two_factor_required=True,
            activated_at=data.ACTIVATED,
        ),
        TenantPolicy(tenant_id="other", name="Other"),
    ]
    flow = data.CONFIG.flow
    pure_ops = ctx.sizes.pure_ops

    def pure_prepare(_batch: int) -> Body:
        def body() -> None:
            for _ in range(pure_ops):
                step = next_step(
                    tenant_id=data.TENANT,
                    user=facts,
                    policies=policies,
                    login=login,
                    now=now,
                    config=flow,
                )
                if step.kind is not StepKind.CHALLENGE:
                    raise BenchError("next_step: expected CHALLENGE")

        return body

    floor_ops = ctx.sizes.floor_ops
    return [
        row(
            "login.next_step.floor",
            "login",
            Side("next_step (pure, enrolled user, 2 tenants)", pure_prepare, pure_ops),
            floor_side(floor_ops),
            ctx,
            Target(1.0),
        ),
        row(
            "login.login_step.floor",
            "login",
            login_step_side("login_step, SQLite WAL (reads only)", tf, pairs, ops),
            RawIndexedRead(raw).side(ops),
            ctx,
            Target(1.5),
        ),
        row(
            "login.login_step.raw",
            "login",
            login_step_side("login_step, SQLite WAL (reads only)", tf, pairs, ops),
            raw.side(ops),
            ctx,
            Target(1.0),
        ),
    ]


def enroll_rows(ctx: Context, fx: VerifyFixture) -> list[Row]:
    ops = ctx.sizes.enroll_ops
    tf = fx.tf
    users = data.user_ids("e", ops)
    data.load_sqlite(fx.path, members=[(data.TENANT, u, "member") for u in users])
    clock = data.clock_of(tf)
    stepper = Stepper()

    def ours(_batch: int) -> Body:
        now = stepper.next()
        clock.set(now)
        logins = [data.login_for(ctx.keyring, u, now) for u in users]

        def body() -> None:
            for login in logins:
                svg = tf.begin_enrollment(login).qr_svg()
                if not svg.startswith("<svg"):
                    raise BenchError("begin_enrollment: no SVG")

        return body

    def segno_alone(_batch: int) -> Body:
        uris = [
            totp.provisioning_uri(totp.generate_secret(), account_name=u, issuer=data.CONFIG.issuer)
            for u in users
        ]

        def body() -> None:
            for uri in uris:
                qr = segno.make_qr(uri, error="m", boost_error=True)
                out = io.BytesIO()
                qr.save(out, kind="svg", scale=4, xmldecl=False, nl=False)
                out.getvalue().decode("utf-8")

        return body

    return [
        row(
            "enroll.begin.segno",
            "enroll",
            Side("begin_enrollment + SVG QR, SQLite WAL", ours, ops),
            Side("segno alone, same QR (make_qr + SVG)", segno_alone, ops),
            ctx,
            Target(1.1),
        )
    ]


# -- growth --------------------------------------------------------------------------------------


def _tenant_db(ctx: Context, members: int) -> tuple[TwoFactor, SQLiteStorage]:
    path = ctx.path(f"tenant-{members}.sqlite3")
    storage = data.sqlite_storage(path)
    tf = data.service(storage, ctx.keyring)
    tf.create_tenant("big", name="Big", owner_id=data.OWNER)
    others = data.user_ids("m", members - 1)
    data.load_sqlite(path, members=(("big", u, "member") for u in others))
    return tf, storage


def switch_side(label: str, tf: TwoFactor, ops: int) -> Side:
    clock = data.clock_of(tf)

    def prepare(_batch: int) -> Body:
        def body() -> int:
            spent = 0
            for _ in range(ops):
                clock.advance(seconds=1)
                start = time.perf_counter_ns()
                tf.set_two_factor("big", actor_id=data.OWNER, enabled=True)
                spent += time.perf_counter_ns() - start
                tf.set_two_factor("big", actor_id=data.OWNER, enabled=False)
            return spent

        return body

    return Side(label, prepare, ops)


def _user_db(ctx: Context, count: int) -> tuple[TwoFactor, list[tuple[str, str]]]:
    """A database of ``count`` enrolled users in tenants of 1,000 members; a random sample of
    them (spread over the whole key space) for the timed operations."""
    path = ctx.path(f"users-{count}.sqlite3")
    storage = data.sqlite_storage(path)
    tenant_count = max(1, count // 1000)
    everyone = data.user_ids("u", count)
    data.load_sqlite(
        path,
        tenants=[data.TenantRow(f"t{i:05d}") for i in range(tenant_count)],
        members=data.spread(tenant_count, everyone),
        factors=(data.factor_values(ctx.keyring, u) for u in everyone),
    )
    picked = random.Random(count).sample(  # noqa: S311 - a reproducible sample, not a secret
        range(count), ctx.sizes.verify_ops
    )
    sample = [(everyone[i], f"t{i % tenant_count:05d}") for i in picked]
    return data.service(storage, ctx.keyring), sample


def audit_side(label: str, storage: SQLiteStorage, ops: int) -> Side:
    """``append_audit`` of ``ops`` records per batch (one write transaction each), spread over
    many tenants and users as a busy application's log is."""
    counter = iter(range(10**9))

    def prepare(_batch: int) -> Body:
        records = []
        for _ in range(ops):
            i = next(counter)
            records.append(
                new_audit_record(
                    AuditKind.CODE_ACCEPTED,
                    at=data.T0 + timedelta(microseconds=i),
                    tenant_id=f"t{i % 997:05d}",
                    user_id=f"u{i % 100_003:06d}",
                )
            )
        append = storage.append_audit

        def body() -> None:
            for record in records:
                append(record)

        return body

    return Side(label, prepare, ops)


def growth_rows(ctx: Context, progress: Callable[[str], None]) -> list[Row]:
    sizes = ctx.sizes
    small_n, mid_n, large_n = sizes.members
    progress(f"building tenants of {n(small_n)}, {n(mid_n)} and {n(large_n)} members")
    small, _ = _tenant_db(ctx, small_n)
    rows = []
    for row_id, size in (("growth.switch.mid", mid_n), ("growth.switch.large", large_n)):
        big, big_storage = _tenant_db(ctx, size)
        rows.append(
            row(
                row_id,
                "growth",
                switch_side(f"set_two_factor on, {n(size)} members", big, sizes.switch_ops),
                switch_side(f"set_two_factor on, {n(small_n)} members", small, sizes.switch_ops),
                ctx,
                Target(1.5),
            )
        )
        big_storage.close()

    few_n, many_n = sizes.users
    progress(f"building databases of {n(few_n)} and {n(many_n)} enrolled users")
    few, few_sample = _user_db(ctx, few_n)
    many, many_sample = _user_db(ctx, many_n)
    ops = sizes.verify_ops
    rows.append(
        row(
            "growth.login_step",
            "growth",
            login_step_side(
                f"login_step, {n(many_n)} users in the database", many, many_sample, ops
            ),
            login_step_side(f"login_step, {n(few_n)} users", few, few_sample, ops),
            ctx,
            Target(1.3),
        )
    )
    rows.append(
        row(
            "growth.verify",
            "growth",
            verify_side(f"verify_code, {n(many_n)} users in the database", many, many_sample, ops),
            verify_side(f"verify_code, {n(few_n)} users", few, few_sample, ops),
            ctx,
            Target(1.3),
        )
    )

    audit_n = sizes.audit_rows
    progress(f"filling an audit log of {n(audit_n)} records")
    empty = data.sqlite_storage(ctx.path("audit-empty.sqlite3"))
    full_path = ctx.path("audit-full.sqlite3")
    full = data.sqlite_storage(full_path)
    data.fill_audit(full_path, audit_n)
    rows.append(
        row(
            "growth.audit",
            "growth",
            audit_side(f"append_audit, {n(audit_n)} records in the log", full, sizes.audit_ops),
            audit_side("append_audit, empty log", empty, sizes.audit_ops),
            ctx,
            Target(1.2),
        )
    )
    empty.close()
    full.close()
    return rows
