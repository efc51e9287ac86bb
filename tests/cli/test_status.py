"""`executor status`."""

from __future__ import annotations

from tests.cli.conftest import Cli, as_json
from tests.conftest import ServiceProcess


def test_status(cli: Cli, service: ServiceProcess) -> None:
    current = as_json(cli("status", "--json"))
    assert current["instance"] == service.instance_id and "worker" in current
    human = cli("status")
    assert human.returncode == 0 and f"instance {service.instance_id}:" in human.stdout
