"""Where the time goes: one benchmark scenario under cProfile (the profiles in docs/performance.md).

    python benchmarks/hotspots.py verify-sqlite
    python benchmarks/hotspots.py switch-large --members 1000000 --ops 20
    python benchmarks/hotspots.py verify-postgres --cpu --sort cumulative --limit 40
    python benchmarks/hotspots.py verify-sqlite --sql     # time per SQL statement instead

Prints the per-operation time of one unprofiled batch (cProfile itself slows Python code down by
about half, so read the profile for proportions, not for absolute times), then the functions that
took the most time inside one profiled batch.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_data as data
from bench_cases import (
    QUICK,
    Context,
    _tenant_db,
    _verify_db,
    login_step_side,
    switch_side,
    verify_side,
)
from bench_harness import TIMES, Body, Side

from tenant2fa import Keyring, StepKind
from tenant2fa.enrollment import EnrollmentState
from tenant2fa.flow import UserFacts, next_step
from tenant2fa.policy import TenantPolicy
from tenant2fa.storage.memory import MemoryStorage
from tenant2fa.storage.sqlite import SQLiteStorage


class _TimedConnection:
    """A sqlite3 connection that adds up the time spent in each SQL statement."""

    def __init__(self, conn: Any, totals: Counter[str], counts: Counter[str]) -> None:
        self._conn, self._totals, self._counts = conn, totals, counts

    def _timed(self, method: str, sql: str, *args: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return getattr(self._conn, method)(sql, *args)
        finally:
            key = " ".join(sql.split())
            self._totals[key] += time.perf_counter_ns() - start
            self._counts[key] += 1

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed("execute", sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed("executemany", sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _time_statements(totals: Counter[str], counts: Counter[str]) -> None:
    """Route every SQLiteStorage connection through :class:`_TimedConnection`."""
    original = SQLiteStorage._open

    def open_timed(self: SQLiteStorage) -> Any:
        return _TimedConnection(original(self), totals, counts)

    SQLiteStorage._open = open_timed  # type: ignore[method-assign]


def _users(ops: int) -> tuple[list[str], list[tuple[str, str]]]:
    users = data.user_ids("v", ops)
    return users, [(u, data.TENANT) for u in users]


def verify_sqlite(ctx: Context, ops: int, _members: int) -> Side:
    users, pairs = _users(ops)
    return verify_side(
        "verify_code, SQLite WAL", _verify_db(ctx, ctx.path("v.db"), users), pairs, ops
    )


def verify_memory(ctx: Context, ops: int, _members: int) -> Side:
    users, pairs = _users(ops)
    storage = MemoryStorage()
    data.load_storage(storage, ctx.keyring, data.TENANT, users)
    return verify_side("verify_code, memory", data.service(storage, ctx.keyring), pairs, ops)


def verify_postgres(ctx: Context, ops: int, _members: int) -> Side:
    users, pairs = _users(ops)
    pg = ctx.postgres
    if pg is None:
        raise SystemExit(f"PostgreSQL is needed: {ctx.postgres_skip}")
    pg.load(
        tenants=[data.TenantRow(data.TENANT)],
        members=[(data.TENANT, u, "member") for u in users],
        factors=[data.factor_values(ctx.keyring, u) for u in users],
    )
    return verify_side(
        "verify_code, PostgreSQL", data.service(pg.storage(), ctx.keyring), pairs, ops
    )


def login_step(ctx: Context, ops: int, _members: int) -> Side:
    users, pairs = _users(ops)
    tf = _verify_db(ctx, ctx.path("l.db"), users)
    return login_step_side("login_step, SQLite WAL", tf, pairs, ops)


def pure_next_step(ctx: Context, ops: int, _members: int) -> Side:
    login = data.login_for(ctx.keyring, "v0000000", data.T0)
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
    now = data.at_batch(1)

    def prepare(_batch: int) -> Body:
        def body() -> None:
            for _ in range(ops):
                step = next_step(
                    tenant_id=data.TENANT,
                    user=facts,
                    policies=policies,
                    login=login,
                    now=now,
                    config=flow,
                )
                assert step.kind is StepKind.CHALLENGE  # noqa: S101

        return body

    return Side("next_step", prepare, ops)


def switch_large(ctx: Context, ops: int, members: int) -> Side:
    tf, _ = _tenant_db(ctx, members)
    return switch_side(f"set_two_factor on, {members:,} members", tf, ops)


SCENARIOS: dict[str, Callable[[Context, int, int], Side]] = {
    "verify-sqlite": verify_sqlite,
    "verify-memory": verify_memory,
    "verify-postgres": verify_postgres,
    "login-step": login_step,
    "next-step": pure_next_step,
    "switch-large": switch_large,
}


def _print_statements(
    side: Side, wall_ns: int, totals: Counter[str], counts: Counter[str], limit: int
) -> None:
    per_op = wall_ns / side.ops / 1e3
    print(f"{side.label}: {per_op:.1f} µs per operation with statement timing, of which:")
    for sql, total in totals.most_common(limit):
        share = total / side.ops / 1e3
        print(f"{share:8.1f} µs  {counts[sql] / side.ops:4.1f}{TIMES}  {sql[:110]}")
    in_sql = sum(totals.values()) / side.ops / 1e3
    print(f"{in_sql:8.1f} µs  in SQLite, {per_op - in_sql:.1f} µs in Python")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument(
        "--cpu", action="store_true", help="profile CPU time (time.process_time), not wall time"
    )
    parser.add_argument(
        "--sql", action="store_true", help="SQLite scenarios: time each SQL statement instead"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="t2fa-hotspots-"))
    key_text = data.new_key_text()
    postgres, skip = None, None
    if args.scenario == "verify-postgres":
        try:
            postgres = data.Postgres()
        except Exception as exc:  # noqa: BLE001
            skip = str(exc)
    ctx = Context(
        sizes=QUICK,
        workdir=workdir,
        keyring=Keyring.from_strings([key_text]),
        key_text=key_text,
        postgres=postgres,
        postgres_skip=skip,
    )
    totals: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    if args.sql:
        # Before the scenario opens any connection, so that every one of them is timed.
        _time_statements(totals, counts)
    try:
        side = SCENARIOS[args.scenario](ctx, args.ops, args.members)
        side.prepare(0)()  # warm-up
        body = side.prepare(1)
        totals.clear()
        counts.clear()
        start = time.perf_counter_ns()
        measured = body()
        wall = time.perf_counter_ns() - start
        elapsed = wall if measured is None else measured
        if args.sql:
            # Wall time of the whole batch, including any untimed work between operations (the
            # switch scenario switches off again after each timed switch on).
            _print_statements(side, wall, totals, counts, args.limit)
            return 0
        print(f"{side.label}: {elapsed / side.ops / 1e3:.1f} µs per operation (unprofiled)")
        body = side.prepare(2)
        profile = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
        profile.enable()
        body()
        profile.disable()
        stats = pstats.Stats(profile, stream=sys.stdout)
        stats.strip_dirs().sort_stats(args.sort).print_stats(args.limit)
    finally:
        if postgres is not None:
            postgres.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
