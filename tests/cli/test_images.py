"""`executor images list|delete` over the API (`images build`: test_server.py, test_progress.py)."""

from __future__ import annotations

from tests.cli.conftest import Cli, as_json, one_line_error


def test_list_and_delete_an_unknown_image(cli: Cli) -> None:
    images = as_json(cli("images", "list", "--json"))
    assert any("executor/busybox:latest" in image["tags"] for image in images)
    table = cli("images", "list")
    assert table.stdout.splitlines()[0].split()[:2] == ["ID", "TAGS"] and "buildable:" in table.stdout
    one_line_error(cli("images", "delete", "executor/no-such-image:latest"), 5, "not_found")
