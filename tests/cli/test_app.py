"""The command as a whole: --version, --help, and the exit code of each kind of failure, each
reported as one line on stderr (docs/cli.md)."""

from __future__ import annotations

import uuid

from executor import __version__
from executor.embedded import free_port
from tests.cli.conftest import Cli, one_line_error, run
from tests.conftest import ServiceProcess


def test_version_is_the_package_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"executor {__version__}"


def test_help_documents_the_exit_codes() -> None:
    done = run("--help")
    assert done.returncode == 0
    for line in ("0  ok", "1  the operation failed", "2  usage", "3  unreachable", "4  not authorized",
                 "5  not found"):
        assert line in done.stdout, done.stdout


def test_bad_usage_is_2() -> None:
    for args in (["executions"], ["executions", "list", "--limit", "0"], ["no-such-command"],
                 ["entitlements", "grant", "--user", "alice"]):
        done = run(*args)
        assert done.returncode == 2 and "usage:" in done.stderr and "Traceback" not in done.stderr, args
    done = run("tokens", "create", "user", env={"EXECUTOR_URL": "http://127.0.0.1:1", "EXECUTOR_TOKEN": "x"})
    one_line_error(done, 2, "usage")
    one_line_error(run("agents", "list", "--url", "ftp://example.com"), 2, "usage")


def test_an_unreachable_service_is_3() -> None:
    refused = run("executions", "list", env={"EXECUTOR_URL": f"http://127.0.0.1:{free_port()}",
                                             "EXECUTOR_TOKEN": "exe_x", "EXECUTOR_NOT_A_SETTING": "1"})
    one_line_error(refused, 3, "service_unreachable")
    assert "connection refused" in refused.stderr
    unknown_host = run("status", "--url", "http://executor.invalid", "--token", "exe_x")
    one_line_error(unknown_host, 3, "service_unreachable")


def test_no_token_is_4_before_any_request() -> None:
    done = run("agents", "list", env={"EXECUTOR_URL": f"http://127.0.0.1:{free_port()}"})
    one_line_error(done, 4, "unauthenticated")


async def test_each_refusal_of_the_service_has_its_code(cli: Cli, api, service: ServiceProcess, tmp_path) -> None:
    one_line_error(cli("executions", "list", token="exe_not_a_token"), 4, "unauthenticated")
    user = await api.new_token("user")
    one_line_error(cli("status", token=user.token), 4, "forbidden")
    missing = str(uuid.uuid4())
    one_line_error(cli("executions", "get", missing), 5, "not_found")
    one_line_error(cli("agents", "get", missing, "--json"), 5, "not_found")
    (tmp_path / "agent.json").write_text('{"name": "Not A Name", "image": "executor/busybox:latest"}')
    refused = cli("agents", "register", "-f", str(tmp_path / "agent.json"))
    one_line_error(refused, 1, "request_invalid")
    assert "/name" in refused.stderr  # the violations are in the one line
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    one_line_error(cli("agents", "register", "-f", str(not_json)), 2, "usage")


def test_client_commands_ignore_the_server_settings() -> None:
    """Unknown and invalid server settings break server commands (exit 2), never client ones."""
    done = run("status", "--json", env={"EXECUTOR_URL": "http://127.0.0.1:1", "EXECUTOR_TOKEN": "x",
                                        "EXECUTOR_NOT_A_SETTING": "1", "EXECUTOR_MAX_WAIT_S": "soon"})
    one_line_error(done, 3, "service_unreachable")  # it got as far as the network
    done = run("migrate", env={"EXECUTOR_NOT_A_SETTING": "1"})
    one_line_error(done, 2, "configuration_invalid")
    assert "EXECUTOR_NOT_A_SETTING" in done.stderr


def test_a_private_server_that_cannot_start_is_one_line_and_3(tmp_path) -> None:
    """pytest's tmp_path is root's alone: the private PostgreSQL (run as `postgres`) cannot use a
    state directory inside it. That is a dependency that is not there, not a traceback."""
    done = run("up", env={"EXECUTOR_STATE_DIR": str(tmp_path / "state"), "EXECUTOR_PORT": str(free_port()),
                          "EXECUTOR_EXAMPLE_IMAGES": "busybox"}, timeout=120)
    one_line_error(done, 3, "dependency_unavailable")
