"""Sealing secrets at rest: the operator's keys, their ids, and PyNaCl SecretBox (XSalsa20-Poly1305).

Pure: no file, no database. A KeyRing holds the key that seals now and the previous keys still
accepted for reading (a rotation: EXECUTOR_SECRETS_KEY is the new key, the old one moves to
EXECUTOR_SECRETS_PREVIOUS_KEYS until `executor secrets reseal` has moved every row). Each sealed
value is stored with the id of its key, the first 16 hex characters of the key's SHA-256, so
that unsealing picks its key without trying them all, and a row under a key no longer held is
named by that id (never by its value) when it is read.

Nothing here ever puts a value, or a key, in an exception, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.secret
import nacl.utils

from executor.errors import ConfigurationError, ExecutorError

KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE  # 32


class SecretUnreadable(ExecutorError):
    """A stored secret that cannot be unsealed: its key is not among those held (`key_id`), or its
    bytes do not authenticate under it. The operator's to fix (a key removed too early, a row
    altered); the message names the key id, never a value."""

    def __init__(self, key_id: str, reason: str) -> None:
        super().__init__(f"a secret sealed under key {key_id} cannot be unsealed: {reason}")
        self.key_id = key_id
        self.reason = reason


def key_id(key: bytes) -> str:
    """The public name of a key: the first 16 hex characters of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:16]


def parse_key(raw: str, *, source: str) -> bytes:
    """A 32-byte key from its base64 (standard alphabet, padded); ConfigurationError naming `source`,
    never the text, otherwise."""
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{source} must be the base64 of {KEY_BYTES} bytes, not {len(key)} bytes")
    return key


def parse_keys(raw: str | None, *, source: str) -> list[bytes]:
    """Comma-separated base64 keys (EXECUTOR_SECRETS_PREVIOUS_KEYS); empty items are skipped."""
    if not raw:
        return []
    parts = [part for part in raw.split(",") if part.strip()]
    return [parse_key(part, source=f"{source} (key {n} of {len(parts)})") for n, part in enumerate(parts, 1)]


def new_key() -> bytes:
    return nacl.utils.random(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass(frozen=True)
class Sealed:
    """A value as stored: the id of the key it is sealed under, and SecretBox's nonce + ciphertext."""

    key_id: str
    sealed: bytes = field(repr=False)


class KeyRing:
    """The key that seals, and every key that may still unseal (the current one among them)."""

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()) -> None:
        if len(current) != KEY_BYTES:
            raise ValueError(f"a key is {KEY_BYTES} bytes")
        self._current_id = key_id(current)
        self._boxes: dict[str, nacl.secret.SecretBox] = {self._current_id: nacl.secret.SecretBox(current)}
        for key in previous:
            self._boxes.setdefault(key_id(key), nacl.secret.SecretBox(key))

    def __repr__(self) -> str:
        return f"KeyRing(current={self._current_id}, held={sorted(self._boxes)})"

    @property
    def current_id(self) -> str:
        return self._current_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key held: the current one first."""
        return (self._current_id, *(kid for kid in self._boxes if kid != self._current_id))

    def holds(self, kid: str) -> bool:
        return kid in self._boxes

    def seal(self, value: str) -> Sealed:
        """The value's UTF-8 under the current key, with a fresh random nonce."""
        box = self._boxes[self._current_id]
        return Sealed(self._current_id, bytes(box.encrypt(value.encode())))

    def unseal(self, sealed: Sealed) -> str:
        box = self._boxes.get(sealed.key_id)
        if box is None:
            raise SecretUnreadable(sealed.key_id, "that key is not held (EXECUTOR_SECRETS_KEY, "
                                                  "EXECUTOR_SECRETS_PREVIOUS_KEYS)")
        try:
            plain = box.decrypt(sealed.sealed)
        except nacl.exceptions.CryptoError:
            raise SecretUnreadable(sealed.key_id, "its bytes do not authenticate under that key") from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise SecretUnreadable(sealed.key_id, "it is not UTF-8") from None

    def reseal(self, sealed: Sealed) -> Sealed:
        """The same value under the current key (itself when it is already there)."""
        if sealed.key_id == self._current_id:
            return sealed
        return self.seal(self.unseal(sealed))
