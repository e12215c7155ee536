"""The rows measured across processes: throughput with 1 to 8 workers, and peak memory.

Throughput: ``max(processes)`` workers are spawned once and connected before anything is timed;
for each count N, the first N of them verify codes of their own users for a fixed window, all
starting at the same instant. Every worker also submits, once per 25 verifications, one shared
code that the parent has already used (and that is still inside the ±1 window): it must never be
accepted. Each run has its own fake time far from the others', so no run replays another's steps.

Memory: a fresh process per case verifies N codes on a SQLite file and reports its peak RSS.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bench_data as data
from bench_cases import Context, n
from bench_harness import TIMES, Row, Target
from bench_workers import memory_probe, throughput_worker, worker_users

USERS_PER_WORKER = 2_000
_NOT_REFUSED = {"ok", "same digits as the step before (refused by design)"}
TENANT = "tp"
_SPAWN = multiprocessing.get_context("spawn")


class _Pool:
    def __init__(self, size: int, key_text: str) -> None:
        self.commands = [_SPAWN.Queue() for _ in range(size)]
        self.results = _SPAWN.Queue()
        self.processes = [
            _SPAWN.Process(
                target=throughput_worker,
                args=(i, key_text, self.commands[i], self.results),
                daemon=True,
            )
            for i in range(size)
        ]
        for process in self.processes:
            process.start()

    def ask(self, count: int, command: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        for queue in self.commands[:count]:
            queue.put(command)
        answers = [self.results.get(timeout=timeout) for _ in range(count)]
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            raise RuntimeError(f"a worker failed: {errors[0]}")
        return answers

    def close(self) -> None:
        for queue in self.commands:
            queue.put(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


def _load(ctx: Context, backend: str, workers: int, runs: int) -> tuple[str, Any]:
    """The shared database of one backend: every worker's users and one victim per run."""
    users = [u for i in range(workers) for u in worker_users(i, USERS_PER_WORKER)]
    users += [f"victim{r}" for r in range(runs)]
    tenants = [data.TenantRow(TENANT)]
    members = [(TENANT, u, "member") for u in users]
    factors = [data.factor_values(ctx.keyring, u) for u in users]
    if backend == "sqlite":
        path = ctx.path("throughput.sqlite3")
        storage = data.sqlite_storage(path)
        data.load_sqlite(path, tenants=tenants, members=members, factors=factors)
        return path, storage
    pg = ctx.postgres
    if pg is None:  # pragma: no cover - the caller skips
        raise RuntimeError("no PostgreSQL")
    pg.load(tenants=tenants, members=members, factors=factors)
    return pg.url_text, pg.storage()


def _scaling_target(count: int, cores: int) -> Target | None:
    """PostgreSQL's scaling goals (one SQLite file has one writer, so none there): two processes
    verify more than 1.7 times what one does (issue 11); more, up to the cores, more than one."""
    if count == 2 <= cores:
        return Target(1.7, at_most=False, text=f"> 1.7{TIMES}")
    if count <= cores:
        return Target(1.0, at_most=False, text=f"> 1{TIMES} (≤ {cores} cores)")
    return None


def throughput_rows(ctx: Context, progress: Callable[[str], None]) -> list[Row]:
    sizes = ctx.sizes
    cores = os.cpu_count() or 1
    counts = sizes.processes
    backends = [("postgresql", "PostgreSQL"), ("sqlite", "SQLite file (WAL)")]
    rows: list[Row] = []
    pool: _Pool | None = None
    try:
        for backend, label in backends:
            backend_rows = [
                Row(
                    id=f"throughput.{backend}.{count}",
                    group="throughput",
                    name=f"{count} processes, one {label}",
                    baseline=f"1 process, same {label}",
                    unit="verif/s",
                    target=_scaling_target(count, cores) if backend == "postgresql" else None,
                )
                for count in counts
                if count > 1
            ]
            rows += backend_rows
            if backend == "postgresql" and ctx.postgres is None:
                for r in backend_rows:
                    r.skipped = ctx.postgres_skip
                continue
            if pool is None:
                progress(f"spawning {max(counts)} worker processes")
                pool = _Pool(max(counts), ctx.key_text)
            _throughput(ctx, pool, backend, label, backend_rows, progress)
    finally:
        if pool is not None:
            pool.close()
    return rows


def _throughput(
    ctx: Context,
    pool: _Pool,
    backend: str,
    label: str,
    rows: list[Row],
    progress: Callable[[str], None],
) -> None:
    sizes = ctx.sizes
    counts = sizes.processes
    where, storage = _load(ctx, backend, max(counts), len(counts))
    progress(f"throughput on {label}: {', '.join(map(str, counts))} processes")
    pool.ask(
        max(counts),
        {"kind": "prepare", "backend": backend, "where": where, "users": USERS_PER_WORKER},
        timeout=120,
    )
    parent = data.service(storage, ctx.keyring)
    rates: dict[int, float] = {}
    details: dict[int, dict[str, Any]] = {}
    for run, count in enumerate(counts):
        base = data.T0 + timedelta(days=30 * (run + 1))
        victim = f"victim{run}"
        victim_at = data.at_batch(0, base=base)
        victim_code = data.code_for(victim, victim_at)
        data.clock_of(parent).set(victim_at)
        if not parent.verify_code(
            data.login_for(ctx.keyring, victim, data.T0), TENANT, victim_code
        ).ok:
            raise RuntimeError("the victim's first use of its code was refused")
        answers = pool.ask(
            count,
            {
                "kind": "run",
                "backend": backend,
                "where": where,
                "tenant": TENANT,
                "base": base.isoformat(),
                "victim": victim,
                "victim_code": victim_code,
                "victim_at": victim_at.isoformat(),
                "start_at": time.time() + 0.5,
                "seconds": sizes.throughput_seconds,
            },
            timeout=sizes.throughput_seconds + 120,
        )
        verifications = sum(a["verifications"] for a in answers)
        reasons: Counter[str] = Counter()
        replays: Counter[str] = Counter()
        refusals: list[str] = []
        for a in answers:
            reasons.update(a["reasons"])
            replays.update(a["replays"])
            refusals += a["refusals"]
        rates[count] = verifications / sizes.throughput_seconds
        details[count] = {
            "processes": count,
            "verifications": verifications,
            "refused": sum(n for reason, n in reasons.items() if reason not in _NOT_REFUSED),
            "reasons": dict(reasons),
            "replays_submitted": sum(replays.values()),
            "replays_accepted": replays.get("accepted", 0),
            "replay_reasons": dict(replays),
            "refusals": refusals,
        }
    for row in rows:
        count = int(row.id.rsplit(".", 1)[1])
        row.subject_value = rates[count]
        row.baseline_value = rates[1]
        row.extra = {
            **details[count],
            "baseline_detail": details[1],
            "window_seconds": sizes.throughput_seconds,
        }
        mine, single = details[count], details[1]
        row.note = (
            f"replays accepted: {mine['replays_accepted'] + single['replays_accepted']} "
            f"of {mine['replays_submitted'] + single['replays_submitted']} submitted; "
            f"valid codes refused: {mine['refused'] + single['refused']}"
        )
        repeats = sum(
            d["reasons"].get("same digits as the step before (refused by design)", 0)
            for d in (mine, single)
        )
        if repeats:
            row.note += f"; refused by design (same digits as the step before): {repeats}"
        if mine["replays_accepted"] or single["replays_accepted"]:
            row.failed = "a replayed code was accepted"


def memory_rows(ctx: Context, progress: Callable[[str], None]) -> list[Row]:
    small, large = ctx.sizes.memory
    users = 1_000
    peaks: dict[int, float] = {}
    ru_maxrss: dict[int, float] = {}
    for count in (small, large):
        progress(f"memory: a process doing {n(count)} verifications")
        path = ctx.path(f"memory-{count}.sqlite3")
        names = data.user_ids("v", users)
        storage = data.sqlite_storage(path)
        data.load_sqlite(
            path,
            tenants=[data.TenantRow(data.TENANT)],
            members=[(data.TENANT, u, "member") for u in names],
            factors=[data.factor_values(ctx.keyring, u) for u in names],
        )
        storage.close()
        results = _SPAWN.Queue()
        process = _SPAWN.Process(
            target=memory_probe, args=(path, ctx.key_text, users, count, results)
        )
        process.start()
        answer = results.get(timeout=1800)
        process.join(timeout=60)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        peaks[count] = answer["peak_rss_kib"] / 1024
        ru_maxrss[count] = answer["ru_maxrss_kib"] / 1024
    return [
        Row(
            id="memory.verify",
            group="memory",
            name=f"peak RSS, {n(large)} verifications, SQLite WAL",
            baseline=f"peak RSS, {n(small)} verifications (same process set-up)",
            unit="MiB",
            subject_value=peaks[large],
            baseline_value=peaks[small],
            note=(
                f"each case in a fresh spawned process, {n(users)} users verified round after "
                "round; peak RSS is the process's VmHWM"
            ),
            extra={"ru_maxrss_mib": ru_maxrss},
        )
    ]
