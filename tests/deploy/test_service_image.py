"""The service image installs what the repository holds: its recipe's `repo_files` are
copied into the build context and hashed, so a changed source means a new image."""

from __future__ import annotations

import shutil
from pathlib import Path

from runtimes.images import IMAGES_DIR, _recipe, content_hash, repo_files


def test_the_recipe_takes_every_source_of_the_package() -> None:
    files = {target for target, _ in repo_files(IMAGES_DIR, _recipe(IMAGES_DIR, "service"))}
    root = IMAGES_DIR.parent
    for package in ("executor", "runtimes"):
        for path in (root / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert f"src/{path.relative_to(root)}" in files
    assert "src/pyproject.toml" in files and "src/images/wasm/image.json" in files
    assert not any("__pycache__" in target or target.endswith(".pyc") for target in files)


def test_a_changed_source_changes_the_image(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "service").mkdir(parents=True)
    (images / "service" / "image.json").write_text('{"repo_files": {"src": ["module.py"]}}')
    source = tmp_path / "module.py"
    source.write_text("one = 1\n")
    before = content_hash(images, "service", "sha256:base")
    source.write_text("one = 2\n")
    assert content_hash(images, "service", "sha256:base") != before
    shutil.rmtree(images)
