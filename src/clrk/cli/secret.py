"""`clrk secret set`: materialize a Secret from env vars, literals and files."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Annotated

import typer
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import FIELD_MANAGER

app = typer.Typer(help="Manage Secrets that credential injection reads.", no_args_is_help=True)


def _pair(text: str, flag: str) -> tuple[str, str]:
    if "=" not in text:
        raise CLIError(f"{flag} expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    if not key:
        raise CLIError(f"{flag} {text!r}: the key is empty")
    return key, value


def default_key(env_var: str) -> str:
    """ANTHROPIC_API_KEY -> anthropic-api-key."""
    return env_var.lower().replace("_", "-")


def parse_secret_flag(spec: str) -> tuple[str, str, str]:
    """`NAME=ENVVAR[:KEY]` -> (name, env var, key)."""
    if "=" not in spec:
        raise CLIError(f"--secret expects NAME=ENVVAR[:KEY], got {spec!r}")
    name, rest = spec.split("=", 1)
    env_var, _, key = rest.partition(":")
    if not name or not env_var:
        raise CLIError(f"--secret expects NAME=ENVVAR[:KEY], got {spec!r}")
    return name, env_var, key or default_key(env_var)


def put_secret(client: Client, name: str, namespace: str, data: dict[str, bytes],
               secret_type: str = "Opaque") -> None:
    body = Secret(metadata=ObjectMeta(name=name, namespace=namespace), type=secret_type,
                  data={k: base64.b64encode(v).decode() for k, v in data.items()})
    client.apply(body, field_manager=FIELD_MANAGER, force=True)


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Secret name.")],
    from_env: Annotated[list[str] | None, typer.Option("--from-env", help="key=ENVVAR")] = None,
    from_literal: Annotated[list[str] | None, typer.Option("--from-literal",
                                                           help="key=value")] = None,
    from_file: Annotated[list[str] | None, typer.Option("--from-file", help="key=PATH")] = None,
    secret_type: Annotated[str, typer.Option(
        "--type", help="The Secret's type (e.g. kubernetes.io/dockerconfigjson).")
    ] = "Opaque",
) -> None:
    """Create or update a Secret (server-side apply)."""
    opts: Options = ctx.obj
    data: dict[str, bytes] = {}
    for item in from_env or []:
        key, var = _pair(item, "--from-env")
        if var not in os.environ:
            raise CLIError(f"--from-env {item}: environment variable {var} is not set")
        data[key] = os.environ[var].encode()
    for item in from_literal or []:
        key, value = _pair(item, "--from-literal")
        data[key] = value.encode()
    for item in from_file or []:
        key, path = _pair(item, "--from-file")
        try:
            data[key] = Path(path).read_bytes()
        except OSError as err:
            raise CLIError(f"--from-file {item}: {err.strerror}") from None
    if not data:
        raise CLIError("give at least one of --from-env, --from-literal, --from-file")
    put_secret(opts.client(), name, opts.default_namespace(), data, secret_type)
    print(f"secret/{name} configured")
