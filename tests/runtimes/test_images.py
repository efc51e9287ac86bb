"""Building images from local material, cached by content (real engine)."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest

import runtimes.images
from runtimes.images import (
    CONTENT_HASH_LABEL,
    IMAGES_DIR,
    ImageBuildError,
    build_images,
    content_hash,
    find_images_dir,
    image_names,
)

REPO = Path(__file__).resolve().parent.parent.parent


def test_the_images_dir_is_the_one_given_else_the_installed_one_else_the_checkouts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert IMAGES_DIR == REPO / "images"  # this run: a checkout, nothing installed beside runtimes/
    installed = tmp_path / "site-packages" / "runtimes" / "image_contexts"
    monkeypatch.setattr(runtimes.images, "_INSTALLED_IMAGES_DIR", installed)
    assert find_images_dir() == REPO / "images"  # not there: the checkout's
    installed.mkdir(parents=True)
    assert find_images_dir() == installed  # a wheel's package data
    assert find_images_dir(tmp_path / "mine") == tmp_path / "mine"  # what the operator says wins
    (tmp_path / "mine" / "tiny").mkdir(parents=True)
    (tmp_path / "mine" / "tiny" / "image.json").write_text("{}")
    assert image_names(tmp_path / "mine") == ["tiny"]


def test_what_python_leaves_beside_an_images_files_changes_nothing(tmp_path: Path) -> None:
    """pip byte-compiles the .py files it installs, the example agents' among them: a wheel's
    copy of an image must hash as the checkout's does, or it is rebuilt for nothing."""
    copy = tmp_path / "stats-python"
    shutil.copytree(IMAGES_DIR / "stats-python", copy)
    before = content_hash(tmp_path, "stats-python", "sha256:base")
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "stats.cpython-311.pyc").write_bytes(b"compiled")
    assert content_hash(tmp_path, "stats-python", "sha256:base") == before
    assert content_hash(tmp_path, "stats-python", "sha256:base") == content_hash(IMAGES_DIR, "stats-python",
                                                                                 "sha256:base")


def test_every_image_comes_after_its_base() -> None:
    names = image_names()
    assert {"busybox", "wordcount", "debian"} <= set(names)
    assert names.index("busybox") < names.index("wordcount")


def test_a_warm_build_is_cached(docker_client: docker.DockerClient, images) -> None:
    # Speed is the benchmark's business; here: nothing is rebuilt.
    built = build_images(docker_client, ["busybox", "wordcount"], progress=lambda line: None)
    assert all(image.cached for image in built)
    for image in built:
        labels = docker_client.images.get(image.tag).labels
        assert image.image_id == docker_client.images.get(image.tag).id
        assert labels[CONTENT_HASH_LABEL] == content_hash(IMAGES_DIR, image.name, _base_id(docker_client, image.name))


def _base_id(client: docker.DockerClient, name: str) -> str | None:
    return client.images.get("executor/busybox:latest").id if name == "wordcount" else None


def test_a_changed_file_rebuilds_only_that_image(docker_client: docker.DockerClient, images, tmp_path: Path) -> None:
    copy = tmp_path / "images"
    for name in ("busybox", "wordcount"):
        shutil.copytree(IMAGES_DIR / name, copy / name)
    before = content_hash(copy, "wordcount", "sha256:base")
    (copy / "wordcount" / "wordcount.awk").write_text((copy / "wordcount" / "wordcount.awk").read_text() + "\n# x\n")
    assert content_hash(copy, "wordcount", "sha256:base") != before
    assert content_hash(copy, "wordcount", "sha256:other-base") != content_hash(copy, "wordcount", "sha256:base")

    # Build the changed copy under its own names, then clean up.
    (copy / "wordcount-changed").mkdir()
    for entry in (copy / "wordcount").iterdir():
        shutil.copy2(entry, copy / "wordcount-changed" / entry.name)
    lines: list[str] = []
    try:
        busybox, changed = build_images(docker_client, ["busybox", "wordcount-changed"], images_dir=copy,
                                        progress=lines.append)
        assert busybox.cached and not changed.cached
        assert changed.image_id != docker_client.images.get("executor/wordcount:latest").id
        assert any("Step" in line for line in lines)
        again = build_images(docker_client, ["wordcount-changed"], images_dir=copy, progress=lambda line: None)
        assert again[0].cached and again[0].image_id == changed.image_id
    finally:
        # Both tags (latest and the hash) go, so no test image is left behind.
        for image in docker_client.images.list(name="executor/wordcount-changed"):
            docker_client.images.remove(image.id, force=True)


def test_a_failing_build_says_why(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "image.json").write_text("{}")
    (tmp_path / "broken" / "Dockerfile").write_text("FROM scratch\nCOPY missing-file /x\n")
    with pytest.raises(ImageBuildError, match="missing-file"):
        build_images(docker_client, ["broken"], images_dir=tmp_path, progress=lambda line: None)


def test_a_build_the_engine_refuses_says_why(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    (tmp_path / "no-dockerfile").mkdir()
    (tmp_path / "no-dockerfile" / "image.json").write_text("{}")
    with pytest.raises(ImageBuildError, match="Dockerfile"):
        build_images(docker_client, ["no-dockerfile"], images_dir=tmp_path, progress=lambda line: None)


@pytest.mark.slow
def test_debian_base_from_debootstrap(docker_client: docker.DockerClient) -> None:
    (debian,) = build_images(docker_client, ["debian"], progress=lambda line: None)
    output = docker_client.containers.run(debian.tag, ["/bin/sh", "-c", "cat /etc/debian_version"], remove=True,
                                          network_mode="none")
    assert output.decode().startswith("12.")
