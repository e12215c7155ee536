"""The public surface: what ``import tenant2fa`` promises to hosts and adapter authors."""

from __future__ import annotations

import importlib.resources
import inspect

import pytest

import tenant2fa
from tenant2fa import Tenant2FAError, TwoFactor


def test_every_public_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from tenant2fa import *", namespace)  # noqa: S102 - the star import is the thing tested
    exported = {name for name in namespace if name != "__builtins__"}
    assert exported == set(tenant2fa.__all__)
    for name in tenant2fa.__all__:
        assert getattr(tenant2fa, name) is namespace[name]


def test_all_is_sorted_and_without_duplicates() -> None:
    assert list(tenant2fa.__all__) == sorted(tenant2fa.__all__)
    assert len(set(tenant2fa.__all__)) == len(tenant2fa.__all__)


def test_public_names_are_tenant2fa_own() -> None:
    for name in tenant2fa.__all__:
        value = getattr(tenant2fa, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("tenant2fa."), name


def test_every_public_exception_derives_from_tenant2fa_error() -> None:
    exceptions = [
        value
        for value in (getattr(tenant2fa, name) for name in tenant2fa.__all__)
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert len(exceptions) >= 10
    assert all(issubclass(e, Tenant2FAError) for e in exceptions)


@pytest.mark.parametrize(
    ("method", "leading_parameters"),
    [
        ("create_tenant", ["tenant_id", "name", "owner_id"]),
        ("add_member", ["tenant_id", "user_id", "role", "actor_id"]),
        ("set_two_factor", ["tenant_id", "actor_id", "enabled"]),
        ("start_session", ["user_id", "method"]),
        ("login_step", ["login", "tenant_id"]),
        ("verify_identity", ["login", "method"]),
        ("begin_enrollment", ["login"]),
        ("confirm_enrollment", ["login", "code"]),
        ("verify_code", ["login", "tenant_id", "code"]),
        ("use_recovery_code", ["login", "tenant_id", "code"]),
        ("reset_two_factor", ["tenant_id", "user_id", "actor_id"]),
        ("audit_log", ["query"]),
    ],
)
def test_two_factor_offers_the_documented_calls(method: str, leading_parameters: list[str]) -> None:
    """The shape in DESIGN.md "How a host uses it" (and docs/integration.md) stays callable."""
    function = getattr(TwoFactor, method)
    assert callable(function)
    names = [p for p in inspect.signature(function).parameters if p != "self"]
    assert names[: len(leading_parameters)] == leading_parameters


def test_the_package_ships_py_typed() -> None:
    marker = importlib.resources.files("tenant2fa").joinpath("py.typed")
    assert marker.is_file()


def test_the_package_has_a_version() -> None:
    assert isinstance(tenant2fa.__version__, str)
    assert tenant2fa.__version__
