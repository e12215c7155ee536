"""Settings (:class:`tenant2fa.Config`): safe defaults, every bound enforced at construction with a
:class:`~tenant2fa.ConfigurationError` (never a ``TypeError`` from a comparison), and the flow
settings derived from them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tenant2fa import Config, ConfigurationError, RecoveryCodeHasher, Role, ThrottleRules
from tenant2fa.flow import FlowConfig
from tenant2fa.totp import TotpSettings


def test_the_defaults_are_the_documented_safe_values() -> None:
    config = Config()
    assert config.issuer == "tenant2fa"
    assert config.totp == TotpSettings()
    assert config.throttle == ThrottleRules()
    assert config.reauth_window == timedelta(minutes=10)
    assert config.pending_ttl == timedelta(minutes=10)
    assert config.challenge_everywhere is False
    assert config.toggle_roles == frozenset({Role.OWNER})
    assert config.recovery_code_count == 10
    assert config.recovery_hasher == RecoveryCodeHasher()
    assert config.max_login_age == timedelta(hours=12)
    assert config.max_grace_period == timedelta(days=90)


def test_the_flow_gets_the_login_settings_of_the_config() -> None:
    throttle = ThrottleRules(free_failures=3)
    config = Config(
        reauth_window=timedelta(minutes=5),
        challenge_everywhere=True,
        throttle=throttle,
        max_login_age=None,
    )
    assert config.flow == FlowConfig(
        reauth_window=timedelta(minutes=5),
        challenge_everywhere=True,
        throttle=throttle,
        max_login_age=None,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reauth_window": timedelta(seconds=30)},
        {"reauth_window": timedelta(hours=24), "max_login_age": timedelta(hours=24)},
        {"pending_ttl": timedelta(minutes=1)},
        {"pending_ttl": timedelta(hours=24)},
        {"toggle_roles": frozenset({Role.OWNER, Role.ADMIN})},
        {"recovery_code_count": 1},
        {"recovery_code_count": 100},
        {"max_login_age": None},
        {"max_login_age": timedelta(minutes=10)},
        {"max_login_age": timedelta(days=366)},
        {"max_grace_period": timedelta(0)},
        {"max_grace_period": timedelta(days=3650)},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_every_bound_is_inclusive(kwargs: dict[str, Any]) -> None:
    config = Config(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"reauth_window": timedelta(seconds=29)},
            "reauth_window must be between 30 seconds and 24 hours",
        ),
        (
            {"reauth_window": timedelta(hours=24, seconds=1)},
            "reauth_window must be between 30 seconds and 24 hours",
        ),
        (
            {"pending_ttl": timedelta(seconds=59)},
            "pending_ttl must be between 1 minute and 24 hours",
        ),
        (
            {"pending_ttl": timedelta(hours=24, seconds=1)},
            "pending_ttl must be between 1 minute and 24 hours",
        ),
        ({"toggle_roles": frozenset()}, "toggle_roles must name at least one role"),
        ({"recovery_code_count": 0}, "recovery_code_count must be between 1 and 100"),
        ({"recovery_code_count": 101}, "recovery_code_count must be between 1 and 100"),
        (
            {"max_login_age": timedelta(minutes=9)},
            "max_login_age must be None or between reauth_window and 366 days",
        ),
        (
            {"max_login_age": timedelta(days=366, seconds=1)},
            "max_login_age must be None or between reauth_window and 366 days",
        ),
        (
            {"reauth_window": timedelta(hours=2), "max_login_age": timedelta(hours=1)},
            "max_login_age must be None or between reauth_window and 366 days",
        ),
        (
            {"max_grace_period": timedelta(seconds=-1)},
            "max_grace_period must be between 0 and 3650 days",
        ),
        (
            {"max_grace_period": timedelta(days=3650, seconds=1)},
            "max_grace_period must be between 0 and 3650 days",
        ),
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_a_value_out_of_bounds_is_a_configuration_error_naming_the_setting(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config(**kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("name", "value", "type_name"),
    [
        ("totp", {"digits": 6}, "dict"),
        ("throttle", None, "NoneType"),
        ("reauth_window", 600, "int"),
        ("pending_ttl", "10m", "str"),
        ("challenge_everywhere", 1, "int"),
        ("toggle_roles", [Role.OWNER], "list"),
        ("toggle_roles", Role.OWNER, "Role"),
        ("recovery_code_count", 10.0, "float"),
        ("recovery_code_count", True, "bool"),
        ("recovery_hasher", "scrypt", "str"),
        ("max_login_age", 3600, "int"),
        ("max_grace_period", None, "NoneType"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_configuration_error_naming_the_setting(
    name: str, value: object, type_name: str
) -> None:
    kwargs: dict[str, Any] = {name: value}
    with pytest.raises(ConfigurationError) as caught:
        Config(**kwargs)
    assert str(caught.value) == f"{name} has the wrong type: {type_name}"


@pytest.mark.parametrize("roles", [{"owner"}, frozenset({Role.OWNER, "admin"})])
def test_toggle_roles_must_be_role_values(roles: object) -> None:
    with pytest.raises(ConfigurationError, match=r"toggle_roles must be a set of tenant2fa\.Role"):
        Config(toggle_roles=roles)  # type: ignore[arg-type]


def test_a_set_of_roles_is_kept_as_a_frozenset_so_that_the_config_hashes() -> None:
    config = Config(toggle_roles={Role.OWNER, Role.ADMIN})  # type: ignore[arg-type]
    assert type(config.toggle_roles) is frozenset
    assert config.toggle_roles == {Role.OWNER, Role.ADMIN}
    assert hash(config) == hash(Config(toggle_roles=frozenset({Role.ADMIN, Role.OWNER})))


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("Acme: Corp", "issuer must not contain a colon (Key URI format)"),
        ("", "issuer must be a non-empty str"),
        (" Acme", "issuer must not start or end with whitespace"),
        ("Acme\n", "issuer must not start or end with whitespace"),
        ("Ac\x00me", "issuer must not contain control characters"),
    ],
)
def test_an_issuer_no_authenticator_could_show_is_a_configuration_error(
    issuer: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config(issuer=issuer)
    assert str(caught.value) == message


def test_an_issuer_that_leaves_no_room_for_an_account_name_in_a_qr_code_is_refused() -> None:
    Config(issuer="A" * 1000)
    with pytest.raises(ConfigurationError, match="too long for a QR code"):
        Config(issuer="\u00e9" * 1000)  # 6 characters each, percent-encoded, twice in the URI


def test_a_config_is_a_frozen_value() -> None:
    config = Config(issuer="Acme")
    with pytest.raises(AttributeError):
        config.issuer = "Evil"  # type: ignore[misc]
    assert config == Config(issuer="Acme")
