"""Sealing secrets (executor/secrets/sealing.py) and the host's key file (service.py): pure logic,
no database."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from executor.errors import ConfigurationError
from executor.secrets.sealing import (
    KeyRing,
    Sealed,
    SecretUnreadable,
    encode_key,
    key_id,
    new_key,
    parse_key,
    parse_keys,
)
from executor.secrets.service import ensure_key_file, open_key_ring, read_key_file, valid_name
from executor.settings import load_settings

VALUE = "sk-live-🔑-0123456789abcdef"


def test_key_id_is_the_first_16_hex_of_the_sha256() -> None:
    key = bytes(range(32))
    assert key_id(key) == hashlib.sha256(key).hexdigest()[:16]
    assert len(key_id(new_key())) == 16 and key_id(new_key()) != key_id(new_key())


def test_seal_and_unseal_round_trip_with_a_fresh_nonce_each_time() -> None:
    ring = KeyRing(new_key())
    first, second = ring.seal(VALUE), ring.seal(VALUE)
    assert first.key_id == second.key_id == ring.current_id
    assert first.sealed != second.sealed  # a random nonce each time
    assert VALUE.encode() not in first.sealed and ring.unseal(first) == ring.unseal(second) == VALUE


def test_a_previous_key_still_unseals_and_reseal_moves_to_the_current_key() -> None:
    old, new = new_key(), new_key()
    sealed = KeyRing(old).seal(VALUE)
    rotated = KeyRing(new, [old])
    assert rotated.current_id == key_id(new) and rotated.key_ids == (key_id(new), key_id(old))
    assert rotated.unseal(sealed) == VALUE
    moved = rotated.reseal(sealed)
    assert moved.key_id == key_id(new) and KeyRing(new).unseal(moved) == VALUE
    assert rotated.reseal(moved) is moved  # already under the current key: untouched


def test_an_unknown_key_or_altered_bytes_are_unreadable_naming_the_key_never_the_value() -> None:
    old = new_key()
    sealed = KeyRing(old).seal(VALUE)
    with pytest.raises(SecretUnreadable) as unknown:
        KeyRing(new_key()).unseal(sealed)
    assert unknown.value.key_id == key_id(old) and key_id(old) in str(unknown.value)
    assert VALUE not in str(unknown.value)
    tampered = Sealed(sealed.key_id, sealed.sealed[:-1] + bytes([sealed.sealed[-1] ^ 1]))
    with pytest.raises(SecretUnreadable, match="do not authenticate"):
        KeyRing(old).unseal(tampered)


def test_no_repr_shows_a_key_or_sealed_bytes() -> None:
    key = new_key()
    ring = KeyRing(key)
    sealed = ring.seal(VALUE)
    for shown in (repr(ring), repr(sealed)):
        assert encode_key(key) not in shown and key.hex() not in shown
    assert sealed.sealed.hex() not in repr(sealed) and str(sealed.sealed) not in repr(sealed)


@pytest.mark.parametrize("raw", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_a_bad_key_is_a_configuration_error_that_does_not_quote_it(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="EXECUTOR_SECRETS_KEY") as refused:
        parse_key(raw, source="EXECUTOR_SECRETS_KEY")
    assert not raw or raw not in str(refused.value)


def test_previous_keys_are_comma_separated() -> None:
    a, b = new_key(), new_key()
    assert parse_keys(f"{encode_key(a)}, {encode_key(b)},", source="X") == [a, b]
    assert parse_keys(None, source="X") == [] and parse_keys("", source="X") == []
    with pytest.raises(ConfigurationError, match=r"key 2 of 2"):
        parse_keys(f"{encode_key(a)},nope", source="X")


def test_settings_keep_the_keys_out_of_their_repr() -> None:
    key, old = encode_key(new_key()), encode_key(new_key())
    settings = load_settings({"EXECUTOR_SECRETS_KEY": key, "EXECUTOR_SECRETS_PREVIOUS_KEYS": old})
    assert settings.secrets_key == key and settings.secrets_previous_keys == old
    assert key not in repr(settings) and old not in repr(settings)


def test_the_ring_comes_from_the_settings_else_from_a_key_file_made_0600(tmp_path: Path) -> None:
    key, old = new_key(), new_key()
    ring = open_key_ring(load_settings({"EXECUTOR_STATE_DIR": str(tmp_path), "EXECUTOR_SECRETS_KEY": encode_key(key),
                                        "EXECUTOR_SECRETS_PREVIOUS_KEYS": encode_key(old)}))
    assert ring.key_ids == (key_id(key), key_id(old)) and not (tmp_path / "secrets-key").exists()

    from_file = open_key_ring(load_settings({"EXECUTOR_STATE_DIR": str(tmp_path)}))
    path = tmp_path / "secrets-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert from_file.current_id == key_id(parse_key(path.read_text(), source="file"))
    again = open_key_ring(load_settings({"EXECUTOR_STATE_DIR": str(tmp_path)}))
    assert again.current_id == from_file.current_id  # read back, not made anew
    assert [p.name for p in tmp_path.iterdir()] == ["secrets-key"]  # no temporary file left


def test_processes_starting_at_once_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets-key"
    found: list[bytes] = []
    threads = [threading.Thread(target=lambda: found.append(ensure_key_file(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1 and read_key_file(path) == found[0]


def test_a_damaged_key_file_refuses_the_start(tmp_path: Path) -> None:
    path = tmp_path / "secrets-key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"garbage\n")
    os.close(fd)
    with pytest.raises(ConfigurationError, match="secrets-key"):
        open_key_ring(load_settings({"EXECUTOR_STATE_DIR": str(tmp_path)}))


@pytest.mark.parametrize(("name", "valid"), [
    ("model_key", True), ("_x", True), ("A.b-c_9", True), ("a" * 64, True),
    ("a" * 65, False), ("9lives", False), ("-x", False), ("", False), ("a b", False), ("a/b", False),
    ("key\n", False), ("ключ", False),
])
def test_secret_names(name: str, valid: bool) -> None:
    assert valid_name(name) is valid
