"""Shared field types: durations, quantities, conditions, references, DNS-safe names."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from clrk.api.base import Model

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration ("100s", "1m30s", "250ms")."""
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: use a number and unit, e.g. 30s, 5m, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def _check_positive_duration(text: str) -> str:
    if parse_duration(text) <= timedelta(0):
        raise ValueError(f"duration {text!r} must be greater than 0")
    return text


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
PositiveDuration = Annotated[
    str,
    AfterValidator(_check_positive_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]

_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")


def _check_quantity(value: int | float | str) -> str:
    text = str(value)
    if not _QUANTITY.match(text):
        raise ValueError(f"invalid quantity {text!r}: use e.g. 500m, 1, 512Mi, 2Gi")
    return text


Quantity = Annotated[
    int | float | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": _QUANTITY.pattern,
        }
    ),
]
"""A Kubernetes resource quantity ("500m", 1, "512Mi"); stored as a string."""

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "P": 1e15, "E": 1e18}


def parse_quantity(text: str | int | float) -> float:
    """The numeric value of a quantity ("512Mi" -> 536870912.0, "500m" -> 0.5)."""
    s = _check_quantity(text)
    for suffix, mult in _BIN.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    if "e" in s.lower() and not s.endswith(("E",)):
        return float(s)
    for suffix in ("n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if s.endswith(suffix):
            return float(s[:-1]) * _DEC[suffix]
    return float(s)


def _check_dns_label(name: str) -> str:
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise ValueError(
            f"invalid name {name!r}: must be a DNS label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return name


DNSLabel = Annotated[str, AfterValidator(_check_dns_label), Field(max_length=63)]


class Condition(Model):
    """A status condition, as in metav1.Condition."""

    type: str = Field(min_length=1, max_length=316,
                      description="Type of condition in CamelCase, e.g. Accepted or Ready.")
    status: Literal["True", "False", "Unknown"] = Field(
        description="Status of the condition: True, False or Unknown.")
    reason: str = Field(default="", description="A CamelCase, machine-readable reason for "
                        "the condition's last transition, e.g. ImagePullFailed.")
    message: str = Field(default="", description="A human-readable message with details "
                         "about the transition.")
    last_transition_time: str | None = Field(
        default=None, description="When the condition last changed status (RFC 3339); it "
        "does not move while the status stays the same.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation of the object the "
        "condition was set for.")


class LocalObjectReference(Model):
    """A reference to an object in the same namespace."""

    name: DNSLabel = Field(description="Name of the referenced object, in the referrer's "
                           "namespace.")


class SecretKeyRef(Model):
    """A key of a Secret in the referrer's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret, in the referrer's "
                      "namespace.")
    key: str = Field(min_length=1, description="Key in the Secret's data.")


class ParentReference(Model):
    """Gateway API style parent reference (routes -> gateways, policies -> routes)."""

    group: str = Field(default="clrk.apoxy.dev", description="API group of the parent "
                       "(default clrk.apoxy.dev).")
    kind: str = Field(default="EgressGateway", description="Kind of the parent (default "
                      "EgressGateway). Routes attach only to an EgressGateway; a policy's "
                      "parentRefs may also name a route (AIProviderRoute, MCPRoute, "
                      "EgressL4Route) or a Backend.")
    name: str = Field(min_length=1, description="Name of the parent object.")
    namespace: str | None = Field(
        default=None, description="Namespace of the parent (default: the referrer's). "
        "References across namespaces are not supported: routes and policies attach only "
        "to objects in their own namespace.")
    section_name: str | None = Field(
        default=None, description="For a route, the name of a listener of the parent "
        "EgressGateway: a name the gateway does not have sets the route's Accepted "
        "condition False. Traffic is matched on every listener either way.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Accepted for "
                             "Gateway API compatibility; clrk does not use it.")


class PolicyTargetReference(Model):
    """GEP-713 target reference for policies."""

    group: str = Field(default="clrk.apoxy.dev", description="API group of the target "
                       "(default clrk.apoxy.dev).")
    kind: str = Field(description="Kind of the target: EgressGateway, AIProviderRoute, "
                      "MCPRoute, EgressL4Route or Backend.")
    name: str = Field(min_length=1, description="Name of the target object.")
    namespace: str | None = Field(
        default=None, description="Namespace of the target (default: the policy's). A "
        "policy applies only to objects in its own namespace.")
    section_name: str | None = Field(default=None, description="Accepted for GEP-713 "
                                     "compatibility; clrk does not use it.")


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without ``metadata.managedFields`` (a shallow copy; ``obj`` is unchanged):
    what the CLI's json and yaml output and the console's YAML show."""
    md = obj.get("metadata")
    if not isinstance(md, dict) or "managedFields" not in md:
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}
