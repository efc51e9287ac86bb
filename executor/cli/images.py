"""`executor images list|build|delete`: list and delete over the API; build on this host's
engine (a server command, as before: the images folder is here)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from executor.cli.exits import CommandError, Exit
from executor.cli.http import MAX_PAGE, Api
from executor.cli.output import Progress, print_json, print_table, when
from executor.cli.parsing import Subcommands, client_command, group, server_command

if TYPE_CHECKING:
    import docker

    from executor.settings import Settings

log = logging.getLogger("executor")


def register(commands: Subcommands) -> None:
    images = group(commands, "images", "images on the engine: list, build (on this host), delete")
    client_command(images, "list", "the executor/ images on the engine, and the names that can be built", _list)
    build = server_command(images, "build", "build images from the images folder on this host's engine "
                                            "(cached by content)", _build)
    build.add_argument("names", nargs="*", help="image names (default: all)")
    delete = client_command(images, "delete", "remove an image with all its tags (refused while an agent "
                                              "version pins it)", _delete)
    delete.add_argument("ref", help="an image reference or id (executor/busybox:latest, sha256:…)")


def _list(api: Api, args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = []
    buildable: list[str] = []
    cursor: str | None = None
    while True:
        page = api.call("GET", "/v1/images", query={"limit": MAX_PAGE, "cursor": cursor})
        items += page["items"]
        buildable = page.get("buildable", buildable)
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if args.json:
        print_json(items)
        return 0
    print_table(("ID", "TAGS", "SIZE", "CREATED", "PINNED BY"), [
        (image["id"].removeprefix("sha256:")[:12], ", ".join(image["tags"]) or "-", _size(image["size"]),
         _unix(image["created"]), image["used_by_agent_versions"])
        for image in items])
    print(f"\nbuildable: {', '.join(buildable) or '-'}")
    return 0


def _delete(api: Api, args: argparse.Namespace) -> int:
    from executor.cli.http import quote

    # The route takes slashes in the reference ({ref:.+}); everything else is escaped.
    api.call("DELETE", "/v1/images/" + "/".join(quote(part) for part in args.ref.split("/")))
    if args.json:
        print_json({"deleted": args.ref})
    else:
        print(f"deleted {args.ref}")
    return 0


def _build(settings: Settings, args: argparse.Namespace) -> int:
    from runtimes.images import build_images, find_images_dir

    client = engine()
    log.info("building %s from %s", ", ".join(args.names) or "every image", find_images_dir(settings.images_dir))
    try:
        with Progress("building images") as progress, build_errors():
            built = build_images(client, args.names or None, progress=progress.step,
                                 debian_mirror=settings.debian_mirror, images_dir=settings.images_dir)
    finally:
        client.close()
    if args.json:
        print_json([{"name": b.name, "tag": b.tag, "id": b.image_id, "cached": b.cached} for b in built])
    else:
        for b in built:
            print(f"{b.name}: {'cached' if b.cached else 'built'} {b.tag} {b.image_id[:19]}")
    return 0


def engine() -> docker.DockerClient:
    """The Docker engine, or one line and exit 3 when it does not answer."""
    import docker
    import docker.errors

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise CommandError(f"the Docker engine did not answer: {exc}", "dependency_unavailable",
                           Exit.UNREACHABLE) from None


@contextlib.contextmanager
def build_errors() -> Iterator[None]:
    """A build that fails is one line and exit 1; an engine that stops answering, exit 3."""
    import docker.errors

    from runtimes.images import ImageBuildError

    try:
        yield
    except ImageBuildError as exc:
        raise CommandError(f"image build failed: {exc}", "image_build_failed") from None
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        raise CommandError(f"the Docker engine failed: {exc}", "dependency_unavailable", Exit.UNREACHABLE) from None


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def _unix(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    from datetime import UTC, datetime

    return when(datetime.fromtimestamp(seconds, UTC).isoformat())
