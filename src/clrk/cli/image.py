"""`clrk image`: build, import, list and push agent images without a Docker engine; by
default they go to the registry `clrk dev` runs."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from clrk.cli import output
from clrk.cli.errors import CLIError
from clrk.oci import dev_registry
from clrk.oci.debian_base import PACKAGES, BootstrapError, Recipe, oci_layout
from clrk.oci.store import ImageError, ImageStore

app = typer.Typer(help="Build and push agent images (no Docker needed).",
                  no_args_is_help=True)

Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress output.")]
DEFAULT_BASE = "clrk/debian-base:bookworm"


def _store(data_dir: Path, quiet: bool = False) -> ImageStore:
    return ImageStore(data_dir, dev_registry.address(data_dir), progress=not quiet)


def _data_dir(ctx: typer.Context) -> Path:
    """The global --data-dir (CLRK_HOME): the store and registry of that `clrk dev`."""
    return Path(ctx.obj.data_dir)


def _build_args(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise CLIError(f"--build-arg {value}: expected KEY=VALUE")
        out[key] = val
    return out


@app.command()
def build(
    ctx: typer.Context,
    context: Annotated[Path, typer.Argument(help="The build context (with its Dockerfile).")],
    tag: Annotated[str, typer.Option("-t", "--tag", help="NAME[:TAG] of the image.")],
    file: Annotated[Path | None, typer.Option("-f", "--file", help="The Dockerfile.")] = None,
    build_arg: Annotated[list[str] | None, typer.Option("--build-arg", help="KEY=VALUE.")
                         ] = None,
    pull: Annotated[str, typer.Option("--pull", help="Base images: missing (pull those not "
                                      "in the store), always, or never.")] = "missing",
    push: Annotated[bool, typer.Option("--push", help="Push it once built (to the dev "
                                       "registry unless NAME names a registry).")] = False,
    quiet: Quiet = False,
) -> None:
    """Build an image from a Dockerfile (buildah, chroot isolation, a layer cache)."""
    if pull not in ("missing", "always", "never"):
        raise CLIError(f"--pull {pull}: expected missing, always or never")
    store = _store(_data_dir(ctx), quiet)
    try:
        image_id = store.build(tag, context, file, _build_args(build_arg or []), pull)
        print(f"built {tag} ({image_id[:12]})", flush=True)
        if push:
            print(f"pushed {store.push(tag)}", flush=True)
    except ImageError as err:
        raise CLIError(str(err)) from err


@app.command("push")
def push_image(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A local image, a `docker save` or OCI "
                                          "archive, or an OCI layout directory.")],
    destination: Annotated[str | None, typer.Argument(
        help="REGISTRY/NAME:TAG, or NAME:TAG for the dev registry (default: SOURCE's "
             "name).")] = None,
    creds: Annotated[str | None, typer.Option("--creds", help="USER:PASSWORD.")] = None,
    authfile: Annotated[Path | None, typer.Option("--authfile",
                                                  help="A containers auth.json.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP / no TLS "
                                           "verification (loopback is always so).")] = False,
    quiet: Quiet = False,
) -> None:
    """Push an image to the dev registry, or to any registry."""
    try:
        dest = _store(_data_dir(ctx), quiet).push(source, destination, creds, authfile, insecure)
    except ImageError as err:
        raise CLIError(str(err)) from err
    print(f"pushed {dest}", flush=True)


@app.command("import")
def import_image(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A `docker save` or OCI archive, an OCI "
                                          "layout directory, or docker://REFERENCE.")],
    name: Annotated[str, typer.Option("--name", help="The name a Dockerfile's FROM uses, "
                                      "e.g. python:3.12-slim.")],
) -> None:
    """Put a base image into clrk's store (for builds without internet)."""
    try:
        image_id = _store(_data_dir(ctx)).import_image(source, name)
    except ImageError as err:
        raise CLIError(str(err)) from err
    print(f"imported {name} ({image_id[:12]})")


@app.command("ls")
def list_images(ctx: typer.Context,
                output_format: output.OutputOpt = None) -> None:
    """The images in clrk's store."""
    fmt = output.output_format(output_format)
    try:
        images = _store(_data_dir(ctx)).images()
    except ImageError as err:
        raise CLIError(str(err)) from err
    if fmt is not None:
        print(output.dump_doc([{"names": list(i.names), "id": i.id, "size": i.size,
                                "created": i.created} for i in images], fmt), end="")
        return
    rows = [[name, image.id[:12], image.size, image.created[:19].replace("T", " ")]
            for image in images for name in image.names or ("<none>",)]
    output.print_table(["NAME", "IMAGE ID", "SIZE", "CREATED"], rows)


@app.command("rm")
def remove(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Images to remove.")],
) -> None:
    """Remove images from clrk's store."""
    store = _store(_data_dir(ctx))
    for name in names:
        try:
            store.remove(name)
        except ImageError as err:
            raise CLIError(str(err)) from err
        print(f"removed {name}")


@app.command("base")
def debian_base(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The name Dockerfiles use (FROM / --build-arg "
                                        "BASE=...).")] = DEFAULT_BASE,
    suite: Annotated[str, typer.Option("--suite", help="Debian suite.")] = "bookworm",
    mirror: Annotated[str, typer.Option("--mirror", help="Debian mirror.")
                      ] = "http://deb.debian.org/debian",
    package: Annotated[list[str] | None, typer.Option(
        "--package", help=f"Packages to include (default: {', '.join(PACKAGES)}).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Make it again even if the store "
                                        "has it.")] = False,
) -> None:
    """Make a Debian base image with debootstrap (for machines that reach a Debian mirror
    but not Docker Hub); the root filesystem is cached per recipe."""
    store = _store(_data_dir(ctx))
    try:
        if not force and store.exists(name):
            print(f"{name} is in the store already")
            return
        recipe = Recipe(suite, mirror, tuple(package or PACKAGES))
        print(f"making {name}: debootstrap {suite} with {', '.join(recipe.packages)} "
              "(minutes the first time; cached afterwards)", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="clrk-base-") as tmp:
            layout = oci_layout(recipe, Path(tmp) / "layout", store.root / "debootstrap.log")
            image_id = store.import_image(str(layout), name)
    except (ImageError, BootstrapError) as err:
        raise CLIError(str(err)) from err
    print(f"made {name} ({image_id[:12]})")
