"""Unit tests of settings parsing (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.errors import ConfigurationError
from executor.settings import Limits, load_settings


def test_defaults_without_environment() -> None:
    settings = load_settings({})
    assert settings.database_url is None and settings.redis_url is None
    assert settings.default_limits.pids >= 1


def test_reads_typed_values() -> None:
    settings = load_settings({
        "EXECUTOR_DATABASE_URL": "postgresql://x@/y",
        "EXECUTOR_PORT": "9000",
        "EXECUTOR_STATE_DIR": "/tmp/somewhere",
        "EXECUTOR_MAX_LIMITS": "memory_mb=512,cpus=1.5,pids=100,timeout_s=60",
        "EXECUTOR_DEFAULT_LIMITS": "memory_mb=64,cpus=0.5,pids=32,timeout_s=5",
        "EXECUTOR_REGISTER_EXAMPLES": "false",
        "PATH": "/usr/bin",
    })
    assert settings.port == 9000 and settings.state_dir == Path("/tmp/somewhere")
    assert settings.max_limits == Limits(512, 1.5, 100, 60.0)
    assert settings.register_examples is False


@pytest.mark.parametrize("env", [
    {"EXECUTOR_PORT": "eighty"},
    {"EXECUTOR_NO_SUCH_THING": "1"},
    {"EXECUTOR_MAX_LIMITS": "memory_mb=512"},
    {"EXECUTOR_DEFAULT_LIMITS": "memory_mb=4096,cpus=1,pids=64,timeout_s=10"},  # above the maximum
    {"EXECUTOR_DEFAULT_LIMITS": "memory_mb=64,cpus=1,pids=0,timeout_s=10"},  # 0 pids means unlimited
    {"EXECUTOR_REGISTER_EXAMPLES": "maybe"},
])
def test_bad_values_are_refused_clearly(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=r"EXECUTOR_|pids"):
        load_settings(env)


def test_bootstrap_token_is_not_in_repr() -> None:
    settings = load_settings({"EXECUTOR_BOOTSTRAP_TOKEN": "exe_secret"})
    assert "exe_secret" not in repr(settings)


def test_instance_id_persists_in_the_state_dir(tmp_path: Path) -> None:
    settings = load_settings({"EXECUTOR_STATE_DIR": str(tmp_path)})
    first = settings.resolved_instance_id
    assert first and load_settings({"EXECUTOR_STATE_DIR": str(tmp_path)}).resolved_instance_id == first
