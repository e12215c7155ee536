"""Code that runs in spawned processes: the throughput workers and the memory probes.

Kept free of Django and of the parent's state, so that ``multiprocessing``'s spawn start method
imports only what a worker needs.
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import bench_data as data

from tenant2fa import Config, Keyring, ThrottleRules, TwoFactor
from tenant2fa.storage import Storage
from tenant2fa.testing import FakeClock

REPLAY_EVERY = 25
"""A worker submits the shared already-used code once per this many verifications."""

# The replay probe may fail as often as NIST allows before a lock, so that nearly every replayed
# code reaches the compare-and-set instead of stopping at the throttle.
REPLAY_CONFIG = Config(
    issuer=data.CONFIG.issuer,
    throttle=ThrottleRules(free_failures=100, max_failures=100),
    max_login_age=data.CONFIG.max_login_age,
)


def worker_users(index: int, count: int) -> list[str]:
    return data.user_ids(f"w{index}-", count)


def open_storage(backend: str, where: str) -> Storage:
    if backend == "sqlite":
        from tenant2fa.storage.sqlite import SQLiteStorage  # noqa: PLC0415

        return SQLiteStorage(where)
    from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage  # noqa: PLC0415

    return SQLAlchemyStorage(where)


class _Worker:
    def __init__(self, index: int, keyring: Keyring, backend: str, where: str, users: int) -> None:
        storage = open_storage(backend, where)
        self.tf = TwoFactor(storage=storage, keyring=keyring, clock=FakeClock(), config=data.CONFIG)
        self.replay_tf = TwoFactor(
            storage=storage, keyring=keyring, clock=FakeClock(), config=REPLAY_CONFIG
        )
        names = worker_users(index, users)
        self.logins = [
            (data.login_for(keyring, name, data.T0), data.secret_for(name)) for name in names
        ]
        # Connect now, not inside the timed window.
        self.tf.user_status(names[0])

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        base = datetime.fromisoformat(command["base"])
        victim_login = data.login_for(self.tf.keyring, command["victim"], data.T0)
        victim_code = command["victim_code"]
        tenant = command["tenant"]
        data.clock_of(self.replay_tf).set(datetime.fromisoformat(command["victim_at"]))
        clock = data.clock_of(self.tf)
        verify = self.tf.verify_code
        reasons: Counter[str] = Counter()
        replays = Counter[str]()
        refusals: list[str] = []
        done = 0
        start = command["start_at"]
        deadline = start + command["seconds"]
        while time.time() < start:
            time.sleep(0.001)
        rounds = 0
        while time.time() < deadline:
            rounds += 1
            now = base + timedelta(seconds=rounds * data.PERIOD + data.PERIOD // 2)
            clock.set(now)
            step = data.step_of(now)
            for login, secret in self.logins:
                if time.time() >= deadline:
                    break
                # The replay goes first (every worker submits it at least once, however slow
                # the database), then once per REPLAY_EVERY verifications.
                if done % REPLAY_EVERY == 0:
                    replay = self.replay_tf.verify_code(victim_login, tenant, victim_code)
                    replays["accepted" if replay.ok else replay.reason.value] += 1
                result = verify(login, tenant, data.hotp(secret, step))
                done += 1
                if not result.ok and data.repeats_previous(secret, step):
                    reasons["same digits as the step before (refused by design)"] += 1
                    continue
                reasons[result.reason.value] += 1
                if not result.ok and len(refusals) < 5:
                    status = self.tf.user_status(login.user_id)
                    refusals.append(
                        f"{login.user_id} round {rounds} step {step}: {result.reason.value} "
                        f"(failures {status.failures}, epoch {status.epoch})"
                    )
        return {
            "verifications": done,
            "reasons": dict(reasons),
            "replays": dict(replays),
            "rounds": rounds,
            "refusals": refusals,
        }


def throughput_worker(index: int, key_text: str, commands: Any, results: Any) -> None:
    """Serve commands from the parent until ``None``: ``prepare`` (open a backend) and ``run``."""
    keyring = Keyring.from_strings([key_text])
    workers: dict[tuple[str, str], _Worker] = {}
    while True:
        command = commands.get()
        if command is None:
            return
        try:
            key = (command["backend"], command["where"])
            if command["kind"] == "prepare":
                workers[key] = _Worker(index, keyring, *key, users=command["users"])
                results.put({"index": index, "ready": True})
            else:
                results.put({"index": index, **workers[key].run(command)})
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the row
            results.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})


def memory_probe(path: str, key_text: str, users: int, verifications: int, results: Any) -> None:
    """Verify ``verifications`` codes of ``users`` users on the SQLite file at ``path``, round
    after round, then report this process's peak resident set size."""
    from tenant2fa.storage.sqlite import SQLiteStorage  # noqa: PLC0415

    keyring = Keyring.from_strings([key_text])
    tf = TwoFactor(
        storage=SQLiteStorage(path), keyring=keyring, clock=FakeClock(), config=data.CONFIG
    )
    clock = data.clock_of(tf)
    names = data.user_ids("v", users)
    logins = [(data.login_for(keyring, u, data.T0), data.secret_for(u)) for u in names]
    done = 0
    rounds = 0
    while done < verifications:
        rounds += 1
        now = data.at_batch(rounds)
        clock.set(now)
        step = data.step_of(now)
        for login, secret in logins[: verifications - done]:
            result = tf.verify_code(login, data.TENANT, data.hotp(secret, step))
            if not result.ok and not data.repeats_previous(secret, step):
                results.put({"error": "a valid code was refused"})
                return
            done += 1
    results.put(
        {
            "verifications": done,
            "peak_rss_kib": peak_rss_kib(),
            # Linux keeps ru_maxrss across execve, so in a spawned child it starts at the parent's
            # size at fork time: reported for completeness, not compared.
            "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
    )


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB: VmHWM, which starts afresh at execve (unlike
    ``ru_maxrss``); ``ru_maxrss`` where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
