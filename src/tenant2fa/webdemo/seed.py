"""The demo's state on disk: the SQLite database, the key file beside it, and the first tenants."""

from __future__ import annotations

from pathlib import Path

from tenant2fa.keyring import Keyring
from tenant2fa.service import TwoFactor
from tenant2fa.storage.files import write_private_file
from tenant2fa.webdemo.accounts import DEMO_PEOPLE, TENANTS

__all__ = ["KeyFileMissing", "key_file_for", "load_or_create_keyring", "seed_tenants"]

OWNER = "olga"


class KeyFileMissing(Exception):
    """The database exists but its key file does not: its secrets can no longer be read."""


def key_file_for(db_path: Path) -> Path:
    """Where the demo keeps the encryption key of ``db_path``: beside it, readable by you only.

    A real deployment keeps keys out of the database's directory, in a secrets manager or an
    environment variable (see docs/integration.md).
    """
    return db_path.with_name(db_path.name + ".key")


def load_or_create_keyring(db_path: Path) -> Keyring:
    """The keyring in the key file of ``db_path``; a new one (file mode 0600) for a new database.

    Raises :class:`KeyFileMissing` for an existing database without its key file.
    """
    key_file = key_file_for(db_path)
    if key_file.exists():
        return Keyring.from_strings([key_file.read_text(encoding="ascii").strip()])
    if db_path.exists():
        raise KeyFileMissing(
            f"{db_path} exists but its key file {key_file} does not: delete {db_path} to start over"
        )
    entry = Keyring.encode_key("demo-1", Keyring.new_key())
    write_private_file(key_file, entry + "\n")
    return Keyring.from_strings([entry])


def seed_tenants(tf: TwoFactor) -> bool:
    """Create Tenant A and Tenant B (Olga owns both; the others are members) unless they exist.

    Returns whether it created them.
    """
    if tf.storage.get_tenant(next(iter(TENANTS))) is not None:
        return False
    for tenant_id, name in TENANTS.items():
        tf.create_tenant(tenant_id, name=name, owner_id=OWNER)
        for user_id, _, _ in DEMO_PEOPLE:
            if user_id != OWNER:
                tf.add_member(tenant_id, user_id, operator="demo seed")
    return True
