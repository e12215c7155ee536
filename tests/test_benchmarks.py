"""The benchmark suite runs: ``benchmarks/run.py --quick`` as a smoke test, never a timing gate.

These tests check that every row is measured and reported (a finite ratio against a named
baseline) and that no replayed code was accepted while processes raced in the throughput rows.
They assert nothing about a time or a ratio's value: on a shared two-core machine those are noise,
and docs/performance.md is where they are read.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"

POSTGRES_ROWS = {
    "verify.postgres.raw",
    "throughput.postgresql.2",
    "throughput.postgresql.4",
    "throughput.postgresql.8",
    "verify.postgres.floor",
    "verify.postgres.django",
}
EXPECTED_ROWS = POSTGRES_ROWS | {
    "floor.noise",
    "totp.pyotp_hotp",
    "totp.matching_step",
    "verify.sqlite.raw",
    "verify.sqlite.floor",
    "verify.sqlite.django",
    "verify.memory.raw",
    "login.next_step.floor",
    "login.login_step.floor",
    "login.login_step.raw",
    "enroll.begin.segno",
    "growth.switch.mid",
    "growth.switch.large",
    "growth.login_step",
    "growth.verify",
    "growth.audit",
    "memory.verify",
    "throughput.sqlite.2",
    "throughput.sqlite.4",
    "throughput.sqlite.8",
}
# As tests/db_backends.py does: where CI names a PostgreSQL server, its rows must not be skipped.
POSTGRES_REQUIRED = bool(os.environ.get("TENANT2FA_TEST_POSTGRES_URL"))

Run = tuple["subprocess.CompletedProcess[str]", dict[str, Any]]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    env = dict(os.environ)
    if POSTGRES_REQUIRED:
        env.setdefault("TENANT2FA_BENCH_POSTGRES_URL", env["TENANT2FA_TEST_POSTGRES_URL"])
    process = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    document = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return process, document


def _rows(run: Run) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in run[1].get("rows", [])}


def test_quick_run_exits_zero_and_prints_a_row_for_every_measurement(quick_run: Run) -> None:
    process, _ = quick_run
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert "| row | subject | baseline |" in process.stdout
    printed = {line.split("|")[1].strip() for line in process.stdout.splitlines() if "|" in line}
    assert printed >= EXPECTED_ROWS


def test_quick_run_says_its_figures_are_from_the_smaller_sizes(quick_run: Run) -> None:
    process, document = quick_run
    assert document["mode"] == "quick"
    assert "--quick: smaller sizes" in process.stdout
    assert "Growth to 100,000 members" in process.stdout


def test_every_row_has_a_finite_ratio_against_a_named_baseline(quick_run: Run) -> None:
    rows = _rows(quick_run)
    assert set(rows) == EXPECTED_ROWS
    for row_id, row in rows.items():
        assert row["failed"] is None, (row_id, row["failed"])
        assert row["baseline"].strip(), row_id
        if row["skipped"]:
            assert row_id in POSTGRES_ROWS, (row_id, row["skipped"])
            assert not POSTGRES_REQUIRED, (row_id, row["skipped"])
            continue
        for key in ("subject_median", "baseline_median", "ratio"):
            value = row[key]
            assert isinstance(value, float), (row_id, key, value)
            assert math.isfinite(value), (row_id, key, value)
            assert value > 0, (row_id, key, value)
        if row["target"] is not None:
            assert isinstance(row["met"], bool), row_id


def test_no_replayed_code_is_accepted_while_processes_race(quick_run: Run) -> None:
    throughput = [
        row
        for row_id, row in _rows(quick_run).items()
        if row_id.startswith("throughput.") and not row["skipped"]
    ]
    assert throughput
    for row in throughput:
        for detail in (row, row["baseline_detail"]):
            assert detail["replays_submitted"] > 0, row["id"]
            assert detail["replays_accepted"] == 0, row["id"]
            assert detail["refused"] == 0, (row["id"], detail["reasons"])
        assert "replays accepted: 0 " in row["note"]
