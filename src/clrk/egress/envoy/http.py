"""Filter chains that terminate TLS for a routed hostname (a leaf signed by the
gateway's CA), run HTTP through the policy service (ext_proc) and Envoy's router, and
clusters that re-encrypt to the real upstream, verified against the system roots plus
the gateway's additional trust bundle.

Bodies go to the policy service only on chains that need them (AI and MCP hosts):
requests buffered (the model, the tool, the budget are in there), responses streamed
(token usage arrives at the end of a stream; the policy service asks for the
response body of any request it injected a credential into, to scrub it). On those
chains Envoy serves and meters most calls alone (clrk.egress.envoy.metering). Every
chain refuses CONNECT first (clrk.egress.envoy.connect).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk.egress.envoy import connect, metering, scrubbing
from clrk.egress.envoy.clusters import endpoint_cluster
from clrk.egress.leaves import Leaf

POLICY = "clrk_policy"
_T = "type.googleapis.com/envoy.extensions"
MAX_REQUEST_BODY = 32 << 20  # what a buffered request may hold (larger: 413 from Envoy)


@dataclass(frozen=True)
class Native:
    """What Envoy does alone for a route that needs no Python: a credential header from
    an SDS file, or the deny policy's answer; every request in the access log."""
    route: str  # Kind/name of the route, for the records
    access_log: Path
    header: str | None = None  # credential header name
    secret_file: Path | None = None  # SDS file holding the header's value
    secret_name: str = ""
    deny: tuple[int, str] | None = None
    scrub_file: Path | None = None  # the forms of the value, scrubbed from answers


BACKEND_HEADER = "x-clrk-backend"
# Never upstream: our routing header, and the sandbox's address Envoy adds for
# external clients.
STRIPPED = [BACKEND_HEADER, metering.PYTHON_HEADER, "x-envoy-external-address"]


@dataclass(frozen=True)
class BackendRoute:
    """Where a request goes when the policy service picks this Backend for it."""
    name: str
    cluster: str
    host: str
    retry: tuple[int, tuple[int, ...], float | None] | None = None  # attempts, codes, per try
    # An aggregate cluster of this Backend then the rule's others (a FallbackRoutingPolicy):
    # a retry goes to the next Backend, whose own name goes in Host.
    fallback: str = ""


def retry_policy(retry: tuple[int, tuple[int, ...], float | None] | None,
                 fallback: bool = False) -> dict[str, Any]:
    """A FallbackRoutingPolicy as Envoy's route retry policy. Across Backends, a retry
    goes to the next one (previous_priorities) and a Backend that cannot be reached at
    all (refused, reset: the first reason to fall back) is retried too."""
    if retry is None:
        return {}
    attempts, codes, per_try = retry
    policy: dict[str, Any] = {"retry_on": "retriable-status-codes",
                              "retriable_status_codes": list(codes),
                              "num_retries": attempts}
    if fallback:
        policy["retry_on"] += ",connect-failure,reset,refused-stream"
        policy["retry_priority"] = {
            "name": "envoy.retry_priorities.previous_priorities", "typed_config": {
                "@type": f"{_T}.retry.priority.previous_priorities.v3."
                         "PreviousPrioritiesConfig", "update_frequency": 1}}
    if per_try:
        policy["per_try_timeout"] = f"{per_try:.3f}s"
    return {"retry_policy": policy}


@dataclass(frozen=True)
class TerminatedHost:
    gateway: str  # namespace/name
    hostname: str
    vip: str
    port: int
    leaf: Leaf | None  # None: plain HTTP (an HTTP listener), nothing to terminate
    bodies: bool
    cluster: str
    route: str = ""  # Kind/name, when the chain serves one route (EgressL4Route)
    native: Native | None = None
    backends: tuple[BackendRoute, ...] = ()
    meter: metering.Metering | None = None  # on a chain with bodies: Envoy meters calls
    log: Path | None = None  # where Envoy logs the requests it refuses itself (CONNECT)


HTTP_LOG_FORMAT = {
    "kind": "http-log",
    "start_time": "%START_TIME%",
    "source": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "method": "%REQ(:METHOD)%",
    "scheme": "%REQ(:SCHEME)%",
    "path": "%REQ(:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "status": "%RESPONSE_CODE%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "flags": "%RESPONSE_FLAGS%",
    "user_agent": "%REQ(USER-AGENT)%",
    "content_type": "%REQ(CONTENT-TYPE)%",
    "traceparent": "%REQ(TRACEPARENT)%",
}


def _native_filters(native: Native) -> list[dict[str, Any]]:
    if native.header is None or native.secret_file is None:
        return []
    scrub = [scrubbing.native_filter(native.scrub_file)] if native.scrub_file else []
    return [*scrub, {"name": "envoy.filters.http.credential_injector", "typed_config": {
        "@type": f"{_T}.filters.http.credential_injector.v3.CredentialInjector",
        "overwrite": True, "credential": {
            "name": "envoy.http.injected_credentials.generic", "typed_config": {
                "@type": f"{_T}.http.injected_credentials.generic.v3.Generic",
                "header": native.header,
                "credential": {"name": native.secret_name, "sds_config": {
                    "path_config_source": {
                        "path": str(native.secret_file),
                        "watched_directory": {"path": str(native.secret_file.parent)}},
                    "resource_api_version": "V3"}}}}}}]


def _file_log(path: Path, fmt: dict[str, str],
              only: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"name": "envoy.access_loggers.file", **({"filter": only} if only else {}),
             "typed_config": {"@type": f"{_T}.access_loggers.file.v3.FileAccessLog",
                              "path": str(path), "log_format": {"json_format": fmt}}}]


def _native_log(host: TerminatedHost, native: Native) -> list[dict[str, Any]]:
    return _file_log(native.access_log, {
        **HTTP_LOG_FORMAT, "route": native.route, "host": host.hostname,
        "port": str(host.port), "injected": native.header or "",
        "scrubbed": scrubbing.COUNT, "decision": "deny" if native.deny else "allow",
        "deny_reason": native.deny[1] if native.deny else ""}, connect.NOT_CONNECT)


def _metered_log(host: TerminatedHost, meter: metering.Metering) -> list[dict[str, Any]]:
    return _file_log(meter.access_log, {**HTTP_LOG_FORMAT, **metering.LOG_FIELDS,
                                        "host": host.hostname, "port": str(host.port)},
                     connect.excluding(metering.LOG_FILTER))


def _refused_fields(host: TerminatedHost) -> dict[str, str]:
    return {**HTTP_LOG_FORMAT, "route": host.route, "host": host.hostname,
            "port": str(host.port)}


def cleartext_chain(host: TerminatedHost) -> dict[str, Any]:
    """Plain HTTP to the port of a host whose TLS the gateway terminates (a CONNECT
    sent in clear, above all): answered by Envoy alone (clrk.egress.envoy.connect)."""
    return connect.cleartext_chain(f"cleartext {host.hostname}:{host.port}", host.vip,
                                   host.port, host.hostname, host.log,
                                   _refused_fields(host))


def _ext_proc(host: TerminatedHost) -> dict[str, Any]:
    body = "BUFFERED" if host.bodies else "NONE"
    return {"name": "envoy.filters.http.ext_proc", "typed_config": {
        "@type": f"{_T}.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": POLICY}, "timeout": "10s",
                         "initial_metadata": [
                             {"key": "x-clrk-gateway", "value": host.gateway},
                             {"key": "x-clrk-host", "value": host.hostname},
                             {"key": "x-clrk-port", "value": str(host.port)},
                             {"key": "x-clrk-route", "value": host.route}]},
        "failure_mode_allow": False,
        "message_timeout": "10s",
        "processing_mode": {
            "request_header_mode": "SEND", "response_header_mode": "SEND",
            "request_body_mode": body,
            "response_body_mode": "STREAMED" if host.bodies else "NONE",
            "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"},
        "request_attributes": ["source.address"],
        # The service may remove the agent's x-envoy-* headers (and add its own).
        "mutation_rules": {"allow_envoy": True},
        # It asks for the response body of a request it injected a credential into.
        "allow_mode_override": True,
    }}


def terminated_chain(host: TerminatedHost) -> dict[str, Any]:
    net = ipaddress.ip_network(f"{host.vip}/32")
    native = host.native
    action: dict[str, Any] = {"route": {"cluster": host.cluster, "timeout": "0s"}}
    if native is not None and native.deny is not None:
        action = {"direct_response": {"status": native.deny[0],
                                      "body": {"inline_string": native.deny[1] + "\n"}}}
    meter = host.meter if host.bodies and native is None else None
    if native is not None:
        filters = _native_filters(native)
    elif meter is not None:
        filters = metering.provider_filters(meter, _ext_proc(host))
    else:
        filters = [_ext_proc(host)]
    # A compressed answer could not be scrubbed of the credential Envoy injects.
    stripped = [*STRIPPED, "accept-encoding"] if native is not None and native.scrub_file \
        else STRIPPED
    # The policy service names a Backend in a header (then clears the route cache);
    # the header never leaves.
    backend_routes = [{
        "match": {"prefix": "/", "headers": [{"name": BACKEND_HEADER,
                                              "string_match": {"exact": b.name}}]},
        "request_headers_to_remove": STRIPPED,
        "request_body_buffer_limit": MAX_REQUEST_BODY,
        "route": {"cluster": b.fallback or b.cluster, "timeout": "0s",
                  **({"auto_host_rewrite": True} if b.fallback else
                     {"host_rewrite_literal": b.host}),
                  **retry_policy(b.retry, bool(b.fallback))}}
        for b in host.backends]
    logs = _native_log(host, native) if native is not None else \
        _metered_log(host, meter) if meter is not None else []
    if host.log is not None:
        logs.append(connect.refused_log(host.log, _refused_fields(host),
                                        connect.reason(host.hostname, host.port)))
    manager_log = {"access_log": logs} if logs else {}
    match: dict[str, Any] = {
        "prefix_ranges": [{"address_prefix": str(net.network_address), "prefix_len": 32}],
        "destination_port": host.port}
    tls: dict[str, Any] = {}
    if host.leaf is None:  # plain HTTP, as http_inspector saw it
        match.update(transport_protocol="raw_buffer",
                     application_protocols=["http/1.1", "h2c"])
    else:
        match["transport_protocol"] = "tls"
        tls = {"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_T}.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{"certificate_chain": {"filename": str(host.leaf.cert)},
                                      "private_key": {"filename": str(host.leaf.key)}}]}}}}
    return {
        "name": f"{'terminate' if host.leaf else 'http'} {host.hostname}:{host.port}",
        "filter_chain_match": match, **tls,
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": f"{_T}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": f"mitm_{host.hostname}", "codec_type": "AUTO",
            # Sandboxes are external clients: Envoy drops the x-envoy-* headers they send
            # (retries, timeouts are ours to set), and adds no X-Forwarded-For.
            # (An empty cidr_ranges would mean Envoy's default: private ranges internal.)
            "use_remote_address": True, "skip_xff_append": True,
            "internal_address_config": {"unix_sockets": False, "cidr_ranges": [
                {"address_prefix": "127.0.0.1", "prefix_len": 32}]},
            "stream_idle_timeout": "300s",
            # The cluster may arrive a moment after the listener (separate xDS files):
            # accept the route now rather than reject the whole listener.
            "route_config": {"name": f"{host.gateway}/{host.hostname}",
                             "validate_clusters": False, "virtual_hosts": [{
                "name": host.hostname, "domains": ["*"],
                "routes": [*backend_routes, {
                    "match": {"prefix": "/"}, "request_headers_to_remove": stripped,
                    "request_body_buffer_limit": MAX_REQUEST_BODY, **action}]}]},
            "local_reply_config": connect.local_reply(host.hostname, host.port),
            **manager_log,
            "http_filters": [connect.refusal(), *filters, {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_T}.filters.http.router.v3.Router"}}]}}],
    }


def _http_options(upstream_h2: bool) -> dict[str, Any]:
    explicit: dict[str, Any] = {"http2_protocol_options": {}} if upstream_h2 else {
        "http_protocol_options": {}}
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": f"{_T}.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": explicit}}


def plain_upstream_cluster(name: str, address: str, port: int,
                           hostname: str | None = None) -> dict[str, Any]:
    """A Backend spoken to without TLS (``tls: false``: e.g. a model server inside the
    cluster)."""
    return endpoint_cluster(name, address, port, hostname,
                            typed_extension_protocol_options=_http_options(False))


def tls_upstream_cluster(name: str, hostname: str, address: str, port: int,
                         trust: Path) -> dict[str, Any]:
    """The real upstream for a terminated host: TLS again, SNI and name checked."""
    return endpoint_cluster(
        name, address, port, hostname,
        typed_extension_protocol_options=_http_options(False),
        transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_T}.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": hostname,
            "common_tls_context": {
                "alpn_protocols": ["http/1.1"],
                "validation_context": {
                    "trusted_ca": {"filename": str(trust)},
                    "match_typed_subject_alt_names": [{
                        "san_type": "DNS", "matcher": {"exact": hostname}}]}}}})


def policy_cluster(socket: Path) -> dict[str, Any]:
    return {"name": POLICY, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": _http_options(True),
            "load_assignment": {"cluster_name": POLICY, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": str(socket)}}}}]}]}}
