"""Signing keys: the key ring file, rotation, and the key that signs now.

The private keys live in one JSON file per host (mode 0600, created on first start),
or one key comes from EXECUTOR_SIGNING_KEY; the public halves are published in
PostgreSQL (storage/receipts.py) so that every instance serves the same JWK set.
The newest key of the ring signs; `executor keys rotate` appends a new one, and a
running service picks it up within a second (it watches the file's mtime). Older
keys stay published, so the receipts they signed keep verifying, until retired.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import nacl.signing

from executor.errors import ConfigurationError
from executor.receipts.jwk import key_id
from executor.storage import receipts as receipt_sql

_CHECK_EVERY_S = 1.0


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: nacl.signing.SigningKey
    created_at: datetime

    @property
    def public(self) -> nacl.signing.VerifyKey:
        return self.key.verify_key

    @classmethod
    def from_seed(cls, seed: bytes, created_at: datetime) -> SigningKey:
        key = nacl.signing.SigningKey(seed)
        return cls(key_id(key.verify_key), key, created_at)

    @classmethod
    def generate(cls) -> SigningKey:
        key = nacl.signing.SigningKey.generate()
        return cls(key_id(key.verify_key), key, datetime.now(UTC))


def parse_seed(raw: str, *, source: str) -> bytes:
    try:
        seed = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} is not base64") from None
    if len(seed) != 32:
        raise ConfigurationError(f"{source} must be a base64 32-byte Ed25519 seed, not {len(seed)} bytes")
    return seed


def read_ring(path: Path) -> list[SigningKey]:
    """The keys of a ring file, oldest first; [] when the file does not exist."""
    try:
        data = json.loads(path.read_text())
        return [SigningKey.from_seed(parse_seed(entry["seed"], source=f"{path}: key {entry.get('kid')}"),
                                     datetime.fromisoformat(entry["created_at"]))
                for entry in data["keys"]]
    except FileNotFoundError:
        return []
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not a key ring file: {exc}") from exc


def write_ring(path: Path, keys: list[SigningKey]) -> None:
    """Replace the ring atomically; the file is created 0600 and never exists with wider rights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"keys": [
        {"kid": k.kid, "created_at": k.created_at.isoformat(),
         "seed": base64.b64encode(bytes(k.key)).decode()} for k in keys
    ]}, indent=2).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def ensure_ring(path: Path) -> list[SigningKey]:
    """The ring, with a first key created when the file is absent."""
    keys = read_ring(path)
    if not keys:
        keys = [SigningKey.generate()]
        write_ring(path, keys)
    return keys


def rotate_ring(path: Path) -> SigningKey:
    """Append a new key, which signs from then on; the older ones stay in the ring."""
    new = SigningKey.generate()
    write_ring(path, ensure_ring(path) + [new])
    return new


def drop_from_ring(path: Path, kid: str) -> bool:
    """Remove a retired key's private half; the signing (newest) key cannot be dropped."""
    keys = read_ring(path)
    if keys and keys[-1].kid == kid:
        raise ConfigurationError(f"{kid} is the signing key: rotate first, then retire it")
    kept = [k for k in keys if k.kid != kid]
    if len(kept) == len(keys):
        return False
    write_ring(path, kept)
    return True


class Signer:
    """The key that signs now, from the environment or the newest key of the ring file."""

    def __init__(self, *, seed: bytes | None = None, ring_path: Path | None = None) -> None:
        if (seed is None) == (ring_path is None):
            raise ValueError("a Signer takes a seed or a ring file")
        self.ring_path = ring_path
        self._mtime_ns = -1
        self._checked_at = 0.0
        if seed is not None:
            self._keys = [SigningKey.from_seed(seed, datetime.now(UTC))]
        else:
            assert ring_path is not None
            self._keys = ensure_ring(ring_path)
            self._mtime_ns = ring_path.stat().st_mtime_ns

    @property
    def keys(self) -> list[SigningKey]:
        """Every key this host holds, oldest first (all of them are published)."""
        return list(self._keys)

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    async def publish(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        """Publish the public half of every key this host holds (retired ones stay retired)."""
        await receipt_sql.publish_keys(db, [(k.kid, bytes(k.public)) for k in self._keys])

    async def refresh(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        """Before signing: pick up a rotated ring, and publish a new key before it signs anything."""
        if self._reload_if_changed():
            await self.publish(db)

    def _reload_if_changed(self) -> bool:
        """Re-read the ring when its file changed (checked at most once a second)."""
        if self.ring_path is None or time.monotonic() - self._checked_at < _CHECK_EVERY_S:
            return False
        self._checked_at = time.monotonic()
        try:
            mtime_ns = self.ring_path.stat().st_mtime_ns
        except FileNotFoundError:
            return False  # keep signing with what we hold; `ensure_ring` recreates only at start
        if mtime_ns == self._mtime_ns:
            return False
        keys = read_ring(self.ring_path)
        if keys:
            self._keys, self._mtime_ns = keys, mtime_ns
        return bool(keys)
