"""Encryption of secrets at rest: an AES-256-GCM keyring with key ids and rotation. Pure.

The newest key encrypts; every key in the ring decrypts, so rotating means adding a key and
re-encrypting at leisure. Each ciphertext names its key id and is bound to a context (the user id,
as associated data): a ciphertext copied onto another user's row does not open.

Ciphertext layout (version 1)::

    0x01 | len(key_id) (1 byte) | key_id (ASCII) | nonce (12 bytes) | AES-GCM ciphertext + tag
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenant2fa.errors import ConfigurationError, KeyringError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Keyring"]

_VERSION = 1
_NONCE_BYTES = 12
_KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


def _context_aad(purpose: str, context: str) -> bytes:
    # Length-prefixed so that ("a", "bc") and ("ab", "c") never share associated data.
    p, c = purpose.encode("utf-8"), context.encode("utf-8")
    return b"tenant2fa\x00" + len(p).to_bytes(2, "big") + p + len(c).to_bytes(4, "big") + c


class Keyring:
    """A set of named 256-bit keys; the newest (``primary``) encrypts, all decrypt.

    >>> ring = Keyring({"2026-01": Keyring.new_key()})
    >>> blob = ring.encrypt(b"secret", purpose="totp", context="user-1")
    >>> ring.decrypt(blob, purpose="totp", context="user-1")
    b'secret'
    """

    __slots__ = ("_aeads", "_keys", "_mac_keys", "_primary")

    def __init__(self, keys: Mapping[str, bytes], *, primary: str | None = None) -> None:
        if not keys:
            raise ConfigurationError("a keyring needs at least one key")
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError("key ids are 1 to 64 characters of [A-Za-z0-9_.-]")
            if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
                raise ConfigurationError(f"key {key_id!r} must be {_KEY_BYTES} bytes")
        self._keys = dict(keys)
        self._primary = primary if primary is not None else list(keys)[-1]
        if self._primary not in self._keys:
            raise ConfigurationError(f"primary key id {self._primary!r} is not in the keyring")
        self._aeads = {key_id: AESGCM(key) for key_id, key in self._keys.items()}
        # MAC subkeys, derived once per (key id, purpose): tagging a login value is on every
        # request's path. Filled lazily; a lost race derives the same bytes twice.
        self._mac_keys: dict[tuple[str, str], bytes] = {}

    @staticmethod
    def new_key() -> bytes:
        """A fresh random 256-bit key."""
        return AESGCM.generate_key(bit_length=256)

    @classmethod
    def generate(cls, key_id: str = "k1") -> Keyring:
        """A keyring with one fresh key: for tests and demos (keys must outlive the process)."""
        return cls({key_id: cls.new_key()})

    @classmethod
    def from_strings(cls, entries: Iterable[str]) -> Keyring:
        """Build from ``"key_id:base64url-key"`` strings, oldest first (the last one encrypts).

        This is the form for an environment variable, e.g.
        ``TENANT2FA_KEYS="2025-01:...,2026-01:..."``.
        """
        keys: dict[str, bytes] = {}
        for entry in entries:
            key_id, sep, encoded = entry.strip().partition(":")
            if not sep:
                raise ConfigurationError("keyring entries look like 'key_id:base64url-key'")
            if key_id in keys:
                raise ConfigurationError(f"key id {key_id!r} appears twice")
            try:
                keys[key_id] = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                raise ConfigurationError(f"key {key_id!r} is not valid base64url") from None
        return cls(keys)

    @staticmethod
    def encode_key(key_id: str, key: bytes) -> str:
        """The ``"key_id:base64url-key"`` form that :meth:`from_strings` reads."""
        return f"{key_id}:{base64.urlsafe_b64encode(key).decode('ascii').rstrip('=')}"

    @property
    def primary_key_id(self) -> str:
        """The id of the key that encrypts."""
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def with_key(self, key_id: str, key: bytes) -> Keyring:
        """A new keyring with ``key`` added as the primary (rotation); old keys still decrypt."""
        keys = {k: v for k, v in self._keys.items() if k != key_id}
        keys[key_id] = key
        return Keyring(keys, primary=key_id)

    def encrypt(self, plaintext: bytes, *, purpose: str, context: str) -> bytes:
        """Encrypt with the primary key, binding ``purpose`` and ``context`` as associated data."""
        key_id = self._primary.encode("ascii")
        nonce = os.urandom(_NONCE_BYTES)
        body = self._aeads[self._primary].encrypt(nonce, plaintext, _context_aad(purpose, context))
        return bytes((_VERSION, len(key_id))) + key_id + nonce + body

    def key_id_of(self, blob: bytes) -> str:
        """The id of the key that sealed ``blob`` (raises :class:`KeyringError` if malformed)."""
        return self._parse(blob)[0]

    def decrypt(self, blob: bytes, *, purpose: str, context: str) -> bytes:
        """Open ``blob``; raise :class:`KeyringError` if the key is unknown, the data was changed,
        or it was sealed for another purpose or context (e.g. another user)."""
        key_id, nonce, body = self._parse(blob)
        aead = self._aeads.get(key_id)
        if aead is None:
            raise KeyringError(f"no key with id {key_id!r} in the keyring")
        try:
            return aead.decrypt(nonce, body, _context_aad(purpose, context))
        except InvalidTag:
            raise KeyringError(
                "ciphertext failed authentication (tampered, or bound to another user)"
            ) from None

    def reencrypt(self, blob: bytes, *, purpose: str, context: str) -> bytes:
        """``blob`` re-sealed with the primary key (unchanged plaintext)."""
        return self.encrypt(
            self.decrypt(blob, purpose=purpose, context=context), purpose=purpose, context=context
        )

    def mac(self, message: bytes, *, purpose: str) -> tuple[str, bytes]:
        """HMAC-SHA256 of ``message`` under a subkey of the primary key; returns (key id, tag)."""
        return self._primary, self._mac(self._primary, message, purpose)

    def check_mac(self, key_id: str, message: bytes, tag: bytes, *, purpose: str) -> bool:
        """True if ``tag`` is :meth:`mac` of ``message`` under ``key_id`` (constant time)."""
        if key_id not in self._keys:
            return False
        return hmac.compare_digest(self._mac(key_id, message, purpose), tag)

    def _mac(self, key_id: str, message: bytes, purpose: str) -> bytes:
        subkey = self._mac_keys.get((key_id, purpose))
        if subkey is None:
            subkey = hmac.digest(
                self._keys[key_id], b"tenant2fa mac key\x00" + purpose.encode(), "sha256"
            )
            self._mac_keys[(key_id, purpose)] = subkey
        return hmac.digest(subkey, message, "sha256")

    def _parse(self, blob: bytes) -> tuple[str, bytes, bytes]:
        if not isinstance(blob, bytes) or len(blob) < 2 or blob[0] != _VERSION:
            raise KeyringError("not a tenant2fa ciphertext")
        n = blob[1]
        key_id_end = 2 + n
        body_start = key_id_end + _NONCE_BYTES
        if len(blob) < body_start + 16:
            raise KeyringError("ciphertext is truncated")
        try:
            key_id = blob[2:key_id_end].decode("ascii")
        except UnicodeDecodeError:
            raise KeyringError("not a tenant2fa ciphertext") from None
        return key_id, blob[key_id_end:body_start], blob[body_start:]

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self._keys)!r}, primary={self._primary!r})"
