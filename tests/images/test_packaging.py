"""What a wheel ships (pyproject.toml lists its packages, so that the image folders go along)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent


def _setuptools() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return table


def test_every_package_of_the_tree_is_listed() -> None:
    """A package missing from the list would be missing from a wheel install only: the tests, run
    from the checkout, would never see it."""
    in_tree = {".".join(init.parent.relative_to(REPO).parts)
               for root in ("executor", "runtimes") for init in (REPO / root).rglob("__init__.py")}
    listed = set(_setuptools()["packages"])
    assert in_tree - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - in_tree == {"runtimes.image_contexts"}, "listed, but not a package of the tree"


def test_the_image_folders_and_the_migrations_ship_as_package_data() -> None:
    setuptools = _setuptools()
    assert setuptools["package-dir"] == {"runtimes.image_contexts": "images"}  # runtimes/images.py looks there
    assert setuptools["package-data"]["runtimes.image_contexts"] == ["**/*"]
    assert setuptools["package-data"]["executor.storage"] == ["migrations/*.sql"]
    assert list((REPO / "executor" / "storage" / "migrations").glob("*.sql"))
