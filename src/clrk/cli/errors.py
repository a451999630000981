"""One clear line for every failure: no tracebacks reach the user."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import httpx
import yaml
from lightkube import ApiError, ConfigError

T = TypeVar("T")


class CLIError(Exception):
    """A user-facing error; its message is printed as is."""


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def describe(err: BaseException) -> str:
    if isinstance(err, CLIError):
        return str(err)
    if isinstance(err, ApiError):
        return err.status.message or str(err)
    if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
        url = getattr(getattr(err, "request", None), "url", None)
        where = f" at {url.scheme}://{url.host}:{url.port}" if url else ""
        return f"cannot reach the API server{where}: is `clrk dev` running?"
    if isinstance(err, httpx.HTTPError):
        return f"API request failed: {err}"
    if isinstance(err, ConfigError):
        return f"kubeconfig: {err}"
    if isinstance(err, yaml.YAMLError):
        return f"invalid YAML: {err}"
    if isinstance(err, OSError):
        return f"{err.strerror or err}: {err.filename}" if err.filename else str(err)
    return f"{type(err).__name__}: {err}"


def run_guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as err:
        fail(describe(err))
