"""CONNECT to a host whose TLS the gateway terminates is answered at once, by Envoy.

A CONNECT's body is the tunnel, which never ends, and the first filters of a provider
host's chain wait for the whole body (json_to_metadata reads the model, ext_proc
buffers the request for the policy service): the agent's client hung until its own
timeout. A tunnel through a terminated host would also carry what no policy sees. So
every terminated chain starts with an RBAC filter that refuses CONNECT before any
other filter runs; the connection manager's local reply for a CONNECT is 405 with
``Allow`` and a body saying why; and an access log line (decision deny) becomes the
request's span, like other denials.

The same answer is given to a CONNECT sent in clear to such a host's port (an agent
using it as an HTTP proxy): a chain for the port's plain HTTP answers every request
there itself (CONNECT 405, anything else 400: the port speaks TLS), where it used to
be reset or sent on as bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATUS = 405
ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_T = "type.googleapis.com/envoy.extensions"
_METHOD = {"name": ":method", "string_match": {"exact": "CONNECT"}}
IS_CONNECT: dict[str, Any] = {"header_filter": {"header": _METHOD}}
NOT_CONNECT: dict[str, Any] = {"header_filter": {"header": {**_METHOD, "invert_match": True}}}


def reason(hostname: str, port: int) -> str:
    return (f"CONNECT is not allowed: the gateway terminates TLS for {hostname}:{port}; "
            "send the request itself")


def refusal() -> dict[str, Any]:
    """The HTTP filter, first on a terminated chain, that refuses CONNECT."""
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": f"{_T}.filters.http.rbac.v3.RBAC",
        "rules": {"action": "DENY", "policies": {"connect": {
            "permissions": [{"header": _METHOD}], "principals": [{"any": True}]}}}}}


def local_reply(hostname: str, port: int) -> dict[str, Any]:
    """The connection manager's answer to a CONNECT (whatever refused it)."""
    return {"mappers": [{
        "filter": IS_CONNECT, "status_code": STATUS,
        "body": {"inline_string": reason(hostname, port) + "\n"},
        "headers_to_add": [{"header": {"key": "allow", "value": ALLOW},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}


def excluding(only: dict[str, Any] | None) -> dict[str, Any]:
    """An access-log filter: ``only`` (or everything), but never a CONNECT (the refusal
    has its own line)."""
    return {"and_filter": {"filters": [only, NOT_CONNECT]}} if only else NOT_CONNECT


def refused_log(path: Path, fmt: dict[str, str], deny_reason: str,
                only: dict[str, Any] = IS_CONNECT) -> dict[str, Any]:
    """The access-log line of a refused request: a span with decision deny."""
    return {"name": "envoy.access_loggers.file", "filter": only, "typed_config": {
        "@type": f"{_T}.access_loggers.file.v3.FileAccessLog", "path": str(path),
        "log_format": {"json_format": {**fmt, "decision": "deny",
                                       "deny_reason": deny_reason}}}}


def cleartext_reason(hostname: str, port: int) -> str:
    return f"plain HTTP sent to {hostname}:{port}, where the gateway speaks TLS"


def cleartext_chain(name: str, vip: str, port: int, hostname: str, log: Path | None,
                    fmt: dict[str, str]) -> dict[str, Any]:
    """The chain for plain HTTP to a terminated host's port: Envoy answers it alone."""
    logs = [] if log is None else [
        refused_log(log, fmt, reason(hostname, port)),
        refused_log(log, fmt, cleartext_reason(hostname, port), NOT_CONNECT)]
    return {
        "name": name,
        "filter_chain_match": {
            "prefix_ranges": [{"address_prefix": vip, "prefix_len": 32}],
            "destination_port": port, "transport_protocol": "raw_buffer",
            "application_protocols": ["http/1.1", "h2c"]},
        "filters": [{"name": "envoy.filters.network.http_connection_manager",
                     "typed_config": {
            "@type": f"{_T}.filters.network.http_connection_manager.v3"
                     ".HttpConnectionManager",
            "stat_prefix": f"cleartext_{hostname}", "codec_type": "AUTO",
            "use_remote_address": True, "skip_xff_append": True,
            "route_config": {"name": name, "virtual_hosts": [{
                "name": hostname, "domains": ["*"], "routes": [{
                    "match": {"prefix": "/"}, "direct_response": {
                        "status": 400, "body": {"inline_string":
                                                cleartext_reason(hostname, port) + "\n"}}}]}]},
            "local_reply_config": local_reply(hostname, port),
            "access_log": logs,
            "http_filters": [refusal(), {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_T}.filters.http.router.v3.Router"}}]}}]}
