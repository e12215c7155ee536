"""The exceptions (:mod:`tenant2fa.errors`): one hierarchy under :class:`~tenant2fa.Tenant2FAError`
as the module documents it, the standard bases callers may catch instead, and messages and
attributes that name what went wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

import tenant2fa
from tenant2fa import errors
from tenant2fa.enrollment import EnrollmentEvent, EnrollmentState
from tenant2fa.flow import StepKind

# The tree drawn in the module docstring, child -> parent.
PARENT: dict[type[Exception], type[Exception]] = {
    errors.ConfigurationError: errors.Tenant2FAError,
    errors.InvalidInput: errors.Tenant2FAError,
    errors.NotFound: errors.Tenant2FAError,
    errors.UnknownTenant: errors.NotFound,
    errors.NotAMember: errors.NotFound,
    errors.Conflict: errors.Tenant2FAError,
    errors.TenantExists: errors.Conflict,
    errors.AlreadyMember: errors.Conflict,
    errors.LastOwner: errors.Conflict,
    errors.ConcurrentChange: errors.Conflict,
    errors.PermissionDenied: errors.Tenant2FAError,
    errors.TwoFactorRequired: errors.PermissionDenied,
    errors.StepUpRequired: errors.Tenant2FAError,
    errors.InvalidTransition: errors.Tenant2FAError,
    errors.InvalidSession: errors.Tenant2FAError,
    errors.KeyringError: errors.Tenant2FAError,
    errors.StorageError: errors.Tenant2FAError,
    errors.DeliveryError: errors.Tenant2FAError,
}


def test_every_exported_exception_is_in_the_documented_tree() -> None:
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported == {*PARENT, errors.Tenant2FAError}
    for child, parent in PARENT.items():
        assert child.__bases__[0] is parent, child
        assert getattr(tenant2fa, child.__name__) is child  # importable from the package
    assert errors.Tenant2FAError.__bases__ == (Exception,)


def test_bad_input_is_a_value_error_and_a_missing_thing_a_lookup_error() -> None:
    assert issubclass(errors.InvalidInput, ValueError)
    assert issubclass(errors.UnknownTenant, LookupError)
    assert issubclass(errors.NotAMember, LookupError)
    with pytest.raises(ValueError, match="bad"):
        raise errors.InvalidInput("bad")


@pytest.mark.parametrize(
    ("error", "message", "attributes"),
    [
        (errors.UnknownTenant("B"), "unknown tenant 'B'", {"tenant_id": "B"}),
        (
            errors.NotAMember("B", "bob"),
            "user 'bob' is not a member of tenant 'B'",
            {"tenant_id": "B", "user_id": "bob"},
        ),
        (errors.TenantExists("B"), "tenant 'B' already exists", {"tenant_id": "B"}),
        (
            errors.AlreadyMember("B", "bob"),
            "user 'bob' is already a member of tenant 'B'",
            {"tenant_id": "B", "user_id": "bob"},
        ),
        (errors.LastOwner("B"), "tenant 'B' must keep at least one owner", {"tenant_id": "B"}),
        (
            errors.StepUpRequired(StepKind.VERIFY_IDENTITY, "verify your identity first"),
            "verify your identity first",
            {"step": StepKind.VERIFY_IDENTITY},
        ),
        (
            errors.InvalidTransition(EnrollmentState.NONE, EnrollmentEvent.CONFIRM),
            "enrollment event CONFIRM is not allowed in state NONE",
            {"state": EnrollmentState.NONE, "event": EnrollmentEvent.CONFIRM},
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_an_error_names_what_it_is_about_in_its_message_and_attributes(
    error: Exception, message: str, attributes: dict[str, object]
) -> None:
    assert str(error) == message
    for name, value in attributes.items():
        assert getattr(error, name) == value


def test_ids_are_quoted_with_repr_so_odd_ones_stay_readable() -> None:
    assert str(errors.UnknownTenant("a'b\n")) == 'unknown tenant "a\'b\\n"'


def test_the_concepts_page_draws_the_same_tree_as_the_module() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "concepts.md").read_text("utf-8")
    doc = errors.__doc__ or ""
    drawn = doc[doc.index("    Tenant2FAError") :].rstrip()
    tree = "\n".join(line[4:] for line in drawn.splitlines())
    assert f"```text\n{tree}\n```" in page
