"""tenant2fa.operations, driven by hand: the requests a login operation makes, in order, and
what it answers when storage fails or the record keeps moving. No backend is involved: each
test plays the storage itself, from a snapshot taken of a real enrolled user."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta

import pytest

from conftest import Enrolled
from tenant2fa import TwoFactor, operations
from tenant2fa.enrollment import EnrollmentState
from tenant2fa.errors import InvalidTransition, StorageError
from tenant2fa.factor import FactorCommit, LoginState
from tenant2fa.recovery import (
    RecoveryCodeHasher,
    generate_recovery_codes,
    normalize_recovery_code,
)
from tenant2fa.results import Reason
from tenant2fa.testing import FakeClock, code_for


def _context(tf: TwoFactor) -> operations.Context:
    ids = iter(range(10**6))
    return operations.Context(
        now=tf.clock.now(), config=tf.config, keyring=tf.keyring, new_id=lambda: f"id-{next(ids)}"
    )


def _playing(
    state: LoginState, *, commit: Callable[[FactorCommit], bool]
) -> tuple[list[operations.Request], Callable[[operations.Request], object]]:
    """A storage that answers every LoadLogin with ``state`` and every CommitFactor with
    ``commit(...)``; the requests it saw."""
    seen: list[operations.Request] = []

    def perform(request: operations.Request) -> object:
        seen.append(request)
        match request:
            case operations.LoadLogin():
                return state
            case operations.CommitFactor(written):
                return commit(written)
        return None

    return seen, perform


def test_a_right_code_is_one_read_and_one_write_and_a_wrong_one_too(
    tf: TwoFactor, enrolled: Enrolled, clock: FakeClock
) -> None:
    clock.advance(seconds=30)
    state = tf.storage.load_login("bob")
    code = code_for(tf, "bob")
    seen, perform = _playing(state, commit=lambda _: True)
    result = operations.drive(
        operations.verify_code(_context(tf), enrolled.login, "B", code), perform
    )
    assert result.ok
    assert [type(r) for r in seen] == [operations.LoadLogin, operations.CommitFactor]
    (written,) = [r.commit for r in seen if isinstance(r, operations.CommitFactor)]
    assert written.expected_revision == state.factor.revision
    assert written.factor.failures == 0
    assert [a.kind.value for a in written.audit] == ["code_accepted"]

    seen, perform = _playing(state, commit=lambda _: True)
    wrong = operations.drive(
        operations.verify_code(_context(tf), enrolled.login, "B", "000000"), perform
    )
    assert wrong.reason is Reason.INVALID
    assert [type(r) for r in seen] == [operations.LoadLogin, operations.CommitFactor]


def test_a_storage_failure_is_thrown_in_and_verification_fails_closed(
    tf: TwoFactor, enrolled: Enrolled, clock: FakeClock
) -> None:
    clock.advance(seconds=30)
    state = tf.storage.load_login("bob")
    for failing in (operations.LoadLogin, operations.CommitFactor):
        seen: list[operations.Request] = []

        def perform(
            request: operations.Request,
            failing: type = failing,
            seen: list[operations.Request] = seen,
        ) -> object:
            seen.append(request)
            if isinstance(request, failing):
                raise StorageError("the database went away")
            return state if isinstance(request, operations.LoadLogin) else None

        code = code_for(tf, "bob")
        result = operations.drive(
            operations.verify_code(_context(tf), enrolled.login, "B", code), perform
        )
        assert result.reason is Reason.UNAVAILABLE
        assert not result.ok
        assert result.login == enrolled.login
        # After the failure: only the log line that says it failed closed.
        after = seen[[type(r) for r in seen].index(failing) + 1 :]
        assert len(after) == 1
        assert isinstance(after[0], operations.Log)
        assert after[0].level == logging.ERROR


def test_a_record_that_keeps_moving_is_read_a_bounded_number_of_times_then_fails_closed(
    tf: TwoFactor, enrolled: Enrolled, clock: FakeClock
) -> None:
    clock.advance(seconds=30)
    state = tf.storage.load_login("bob")
    seen, perform = _playing(state, commit=lambda _: False)
    code = code_for(tf, "bob")
    result = operations.drive(
        operations.verify_code(_context(tf), enrolled.login, "B", code), perform
    )
    assert result.reason is Reason.UNAVAILABLE
    loads = [r for r in seen if isinstance(r, operations.LoadLogin)]
    commits = [r for r in seen if isinstance(r, operations.CommitFactor)]
    assert len(loads) == len(commits) == operations.COMMIT_RETRIES


def test_the_operations_take_their_ids_and_time_from_the_context(
    tf: TwoFactor, enrolled: Enrolled, clock: FakeClock
) -> None:
    clock.advance(seconds=30)
    state = tf.storage.load_login("bob")
    seen, perform = _playing(state, commit=lambda _: True)
    ctx = dataclasses.replace(_context(tf), now=clock.now() + timedelta(seconds=1))
    operations.drive(operations.verify_code(ctx, enrolled.login, "B", "000000"), perform)
    (written,) = [r.commit for r in seen if isinstance(r, operations.CommitFactor)]
    assert [a.record_id for a in written.audit] == ["id-0"]
    assert written.at == ctx.now == written.audit[0].at
    assert written.factor.last_failure_at == ctx.now


def test_a_commit_must_carry_the_next_revision(tf: TwoFactor, enrolled: Enrolled) -> None:
    factor = tf.storage.get_factor("bob")
    with pytest.raises(ValueError, match="expected revision"):
        FactorCommit(factor=factor, expected_revision=factor.revision, at=tf.clock.now())


def test_confirming_while_locked_out_is_refused_and_writes_nothing(
    tf: TwoFactor, clock: FakeClock
) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    tf.begin_enrollment(login)
    for _ in range(tf.config.throttle.free_failures):
        assert tf.confirm_enrollment(login, "000000").reason is Reason.INVALID
    state = tf.storage.load_login("alice")
    seen, perform = _playing(state, commit=lambda _: True)
    codes = generate_recovery_codes(2)
    recovery = tf.config.recovery_hasher.new_set(codes)
    result = operations.drive(
        operations.confirm_enrollment(_context(tf), login, "123456", codes, recovery), perform
    )
    assert result.reason is Reason.LOCKED
    assert result.retry_at is not None
    assert result.retry_at > clock.now()
    assert not result.ok
    assert result.recovery_codes == ()
    assert [type(r) for r in seen] == [operations.LoadLogin]


def test_new_recovery_codes_for_a_user_not_enrolled_are_an_invalid_transition(
    tf: TwoFactor,
) -> None:
    tf.create_tenant("A", name="A", owner_id="alice")
    login = tf.start_session("alice")
    state = tf.storage.load_login("alice")
    seen, perform = _playing(state, commit=lambda _: True)
    recovery = tf.config.recovery_hasher.new_set(generate_recovery_codes(2))
    with pytest.raises(InvalidTransition) as raised:
        operations.drive(
            operations.regenerate_recovery_codes(_context(tf), login, recovery), perform
        )
    assert raised.value.state is EnrollmentState.NONE
    assert [type(r) for r in seen] == [operations.LoadLogin]


_HASHED: list[bytes] = []


class _CountingHasher(RecoveryCodeHasher):
    def digest(self, code: str, salt: bytes) -> bytes:
        _HASHED.append(salt)
        return super().digest(code, salt)


def test_a_recovery_code_is_hashed_once_even_when_decided_again(
    tf: TwoFactor, enrolled: Enrolled
) -> None:
    state = tf.storage.load_login("bob", recovery_codes=True)
    answers = iter([False, True])  # the first write finds the record moved on
    seen, perform = _playing(state, commit=lambda _: next(answers))
    counting = _CountingHasher(n=2**4)  # the fixture's parameters: the same digests
    ctx = dataclasses.replace(
        _context(tf), config=dataclasses.replace(tf.config, recovery_hasher=counting)
    )
    _HASHED.clear()
    canonical = normalize_recovery_code(enrolled.recovery_codes[0])
    assert canonical is not None
    result = operations.drive(
        operations.use_recovery_code(ctx, enrolled.login, "B", canonical), perform
    )
    assert result.ok
    assert [type(r) for r in seen].count(operations.LoadLogin) == 2
    assert len(_HASHED) == 1
