"""The values the service returns (:mod:`tenant2fa.results`): what they count and what their repr
leaves out."""

from __future__ import annotations

from datetime import datetime

from tenant2fa import EnrollmentResult, Provisioning, Reason, RotationReport
from tenant2fa.clock import UTC


def test_a_rotation_report_counts_every_user_it_looked_at_once() -> None:
    assert RotationReport().processed == 0
    report = RotationReport(
        rewrapped=3, current=2, changed=1, failed=("mallory", "trent"), last_user_id="zed"
    )
    assert report.processed == 3 + 2 + 1 + 2


def test_a_provisioning_repr_shows_neither_the_uri_nor_the_key() -> None:
    provisioning = Provisioning(
        uri="otpauth://totp/Acme:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme",
        manual_key="GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
        pending_id="p-1",
        expires_at=datetime(2026, 1, 1, tzinfo=UTC),
        issuer="Acme",
        account_name="bob",
    )
    text = repr(provisioning)
    assert "GEZD" not in text
    assert "otpauth" not in text
    assert "pending_id='p-1'" in text


def test_an_enrollment_result_repr_shows_no_recovery_code() -> None:
    result = EnrollmentResult(
        ok=True,
        reason=Reason.OK,
        login=None,  # type: ignore[arg-type]
        recovery_codes=("ABCD-EFGH-JKMN-PQRS",),
    )
    assert "ABCD" not in repr(result)
    assert result.recovery_codes == ("ABCD-EFGH-JKMN-PQRS",)
