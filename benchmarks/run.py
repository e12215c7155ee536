"""tenant2fa benchmarks: every row a ratio against a baseline measured side by side in this run.

    pip install -e '.[bench]'
    python benchmarks/run.py            # the full run (about 5 minutes on two cores)
    python benchmarks/run.py --quick    # smaller sizes and fewer batches: a smoke test
    python benchmarks/run.py --json results.json --only verify --only login

Prints a Markdown table (the one in docs/performance.md) and writes every row to JSON. PostgreSQL
rows use TENANT2FA_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
in a private schema t2fa_bench_<pid> that is dropped at the end; if the server does not answer
they print "skipped". The exit status is 1 if a row failed (an exception, a valid code refused,
a replayed code accepted), never because of a time: missed targets are reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import bench_data as data
import bench_django
from bench_cases import (
    FULL,
    QUICK,
    Context,
    enroll_rows,
    growth_rows,
    login_rows,
    totp_rows,
    verify_fixture,
    verify_rows,
)
from bench_harness import TIMES, Row
from bench_processes import memory_rows, throughput_rows

from tenant2fa import Keyring

GROUPS = ("totp", "verify", "login", "enroll", "growth", "memory", "throughput")
_started = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f} s] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in (
        "tenant2fa",
        "pyotp",
        "segno",
        "cryptography",
        "sqlalchemy",
        "psycopg",
        "django",
        "django-otp",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "load_before": os.getloadavg(),
    }


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "µs/op":
        if value >= 100:
            return f"{value:,.0f} µs"
        return f"{value:.3g} µs"
    if unit == "verif/s":
        return f"{value:,.0f}/s"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    return f"{value:.3g} {unit}"


def table(rows: list[Row]) -> str:
    lines = [
        "| row | subject | baseline | subject | baseline | ratio | target | met |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        ratio = r.ratio
        if r.failed:
            status = f"FAILED: {r.failed}"
        elif r.skipped:
            status = r.skipped
        else:
            status = {True: "yes", False: "**no**", None: "—"}[r.met]
        lines.append(
            "| "
            + " | ".join(
                [
                    r.id,
                    r.name,
                    r.baseline,
                    fmt(r.subject_value, r.unit),
                    fmt(r.baseline_value, r.unit),
                    "—" if ratio is None else f"{ratio:.2f}{TIMES}",
                    "—" if r.target is None else r.target.describe(),
                    status,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _guard(rows: list[Row], group: str, build: Callable[[], list[Row]]) -> None:
    """Run one group; an exception becomes a failed row instead of ending the run."""
    progress(f"{group}: measuring")
    try:
        rows += build()
    except Exception as exc:  # noqa: BLE001 - reported in the table and the exit status
        traceback.print_exc()
        rows.append(
            Row(
                id=f"{group}.error",
                group=group,
                name=f"{group} rows",
                baseline="—",
                failed=f"{type(exc).__name__}: {exc}",
            )
        )


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    sizes = QUICK if args.quick else FULL
    data.check_hotp_agrees_with_tenant2fa()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="t2fa-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    key_text = data.new_key_text()
    keyring = Keyring.from_strings([key_text])
    postgres: data.Postgres | None = None
    postgres_skip: str | None = None
    try:
        postgres = data.Postgres()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server skips its rows
        url = os.environ.get(data.POSTGRES_ENV) or data.DEFAULT_POSTGRES_URL
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        postgres_skip = f"skipped: PostgreSQL not reachable at {url} ({reason})"
    ctx = Context(
        sizes=sizes,
        workdir=workdir,
        keyring=keyring,
        key_text=key_text,
        postgres=postgres,
        postgres_skip=postgres_skip,
    )
    info = machine()
    if postgres is not None:
        info["postgresql"] = postgres.server_version
    wanted = set(args.only or GROUPS)
    rows: list[Row] = []
    try:
        if "totp" in wanted:
            _guard(rows, "totp", lambda: totp_rows(ctx))
        if wanted & {"verify", "login", "enroll"}:
            fx = verify_fixture(ctx)
            if "verify" in wanted:
                _guard(rows, "verify", lambda: verify_rows(ctx, fx, _django(ctx)))
            if "login" in wanted:
                _guard(rows, "login", lambda: login_rows(ctx, fx))
            if "enroll" in wanted:
                _guard(rows, "enroll", lambda: enroll_rows(ctx, fx))
            fx.storage.close()
        if "growth" in wanted:
            _guard(rows, "growth", lambda: growth_rows(ctx, progress))
        if "memory" in wanted:
            _guard(rows, "memory", lambda: memory_rows(ctx, progress))
        if "throughput" in wanted:
            _guard(rows, "throughput", lambda: throughput_rows(ctx, progress))
    finally:
        if postgres is not None:
            postgres.close()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    return rows, info


def _django(ctx: Context) -> Any:
    reason = bench_django.unavailable()
    if reason is not None:
        return reason
    progress("django-otp: migrating and creating devices")
    batches = ctx.sizes.batches + 1
    return bench_django.DjangoOtp(
        ctx.path("django.sqlite3"), ctx.sizes.verify_ops * batches, ctx.postgres
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few batches (smoke)")
    parser.add_argument("--json", metavar="PATH", help="where to write the rows as JSON")
    parser.add_argument("--only", action="append", choices=GROUPS, help="run only these groups")
    parser.add_argument("--workdir", help="keep the databases in this directory")
    args = parser.parse_args(argv)

    rows, info = run(args)
    sizes = QUICK if args.quick else FULL
    heading = (
        "--quick: smaller sizes and fewer batches, a smoke test; not figures to quote. "
        if args.quick
        else ""
    )
    print(
        f"tenant2fa benchmarks, {sizes.mode} run. {heading}"
        f"{sizes.batches} batches per side, medians. Growth to {sizes.members[-1]:,} members and "
        f"{sizes.users[-1]:,} users; memory {sizes.memory[1]:,} vs {sizes.memory[0]:,} "
        f"verifications; throughput windows of {sizes.throughput_seconds:g} s."
    )
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}, SQLite {info['sqlite']}, "
        f"PostgreSQL {info.get('postgresql', 'n/a')}; load average "
        f"{info['load_before'][0]:.2f} before, {info['load_after'][0]:.2f} after."
    )
    print()
    print(table(rows))
    path = Path(args.json) if args.json else Path(tempfile.gettempdir()) / "tenant2fa-bench.json"
    document = {
        "mode": sizes.mode,
        "sizes": sizes.__dict__,
        "machine": info,
        "rows": [r.as_json() for r in rows],
    }
    path.write_text(json.dumps(document, indent=2, default=_finite) + "\n", encoding="utf-8")
    print(f"\nJSON: {path}", file=sys.stderr)
    return 1 if any(r.failed for r in rows) else 0


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
