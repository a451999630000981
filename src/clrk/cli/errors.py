"""One clear line for every failure: no tracebacks reach the user.

Usage errors too: the command line is parsed with ``standalone_mode=False``, so click's
own exceptions (read by their attributes: typer vendors its own click) come here and
are printed as one ``error:`` line instead of typer's framed panel."""

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


def usage_error(err: BaseException) -> tuple[str, int] | None:
    """(message, exit code) of a click exception (a usage error, a bad value, an abort);
    None for any other exception. The message says where help is, as kubectl's do."""
    if type(err).__name__ == "Abort":
        return "aborted", 1
    format_message = getattr(err, "format_message", None)
    code = getattr(err, "exit_code", None)
    if not callable(format_message) or not isinstance(code, int):
        return None
    message = " ".join(str(format_message()).split())
    path = getattr(getattr(err, "ctx", None), "command_path", None)
    if path and code == 2:
        message += f" (see '{path} --help')"
    return message, code


def run_guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            # A group run bare: its help, printed already by rich (else in the message).
            text = str(getattr(err, "message", "") or "")
            if text:
                print(text)
            raise SystemExit(0) from None
        usage = usage_error(err)
        if usage is not None:
            fail(*usage)
        fail(describe(err))
