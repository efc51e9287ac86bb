"""PyNaCl, imported on first use: only receipt verification needs it (the `verify` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nacl.signing

MISSING = "receipt verification needs PyNaCl: pip install 'executor-client[verify]'"


def require() -> None:
    """ImportError naming the extra when PyNaCl is not installed."""
    try:
        import nacl.signing  # noqa: F401
    except ImportError as exc:
        raise ImportError(MISSING) from exc


def verify_key(raw: bytes) -> nacl.signing.VerifyKey:
    require()
    import nacl.signing

    return nacl.signing.VerifyKey(raw)


def is_valid_point(raw: bytes) -> bool:
    """Refuses small-order and non-canonical points: no honest key is one."""
    require()
    import nacl.bindings

    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(raw))


def holds(key: nacl.signing.VerifyKey, message: bytes, signature: bytes) -> bool:
    require()
    import nacl.exceptions

    try:
        key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True
