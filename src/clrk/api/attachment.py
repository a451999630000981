"""Where routes and policies say whether they took effect: Gateway API route status
(``status.parents[]``) and GEP-713 policy status (``status.ancestors[]``).

A route or policy that names a missing gateway, route, Backend or Secret is still
stored (the reference may be created later), so its status is where users learn it
does nothing yet.
"""

from __future__ import annotations

from pydantic import Field

from clrk.api.base import Model, PrinterColumn
from clrk.api.meta import Condition, ParentReference, PolicyTargetReference

CONTROLLER_NAME = "clrk.apoxy.dev/egress-controller"


class RouteParentStatus(Model):
    """How one gateway named in ``spec.parentRefs`` takes the route."""

    parent_ref: ParentReference = Field(description="The parentRefs entry this is about.")
    controller_name: str = Field(description="The controller that wrote this entry.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Accepted: the gateway exists and takes the route. ResolvedRefs: every "
        "Backend the route names exists.")


class RouteStatus(Model):
    """What the controller observed of a route."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the status describes.")
    parents: list[RouteParentStatus] | None = Field(
        default=None, description="One entry per gateway in spec.parentRefs.")


class PolicyAncestorStatus(Model):
    """How one object the policy attaches to takes it."""

    ancestor_ref: PolicyTargetReference = Field(
        description="The targetRef or parentRefs entry this is about.")
    controller_name: str = Field(description="The controller that wrote this entry.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Accepted: the object the policy attaches to exists. ResolvedRefs: "
        "everything else the policy names (e.g. the Secret and its key) exists.")


class PolicyStatus(Model):
    """What the controller observed of a policy."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the status describes.")
    ancestors: list[PolicyAncestorStatus] | None = Field(
        default=None, description="One entry per object in targetRef/parentRefs.")


def _column(name: str, entries: str) -> PrinterColumn:
    """The first entry's condition ``name``, as ``kubectl get`` shows it."""
    return PrinterColumn(name, f'.status.{entries}[0].conditions[?(@.type=="{name}")].status')


ROUTE_COLUMNS = (_column("Accepted", "parents"), _column("ResolvedRefs", "parents"))
POLICY_COLUMNS = (_column("Accepted", "ancestors"), _column("ResolvedRefs", "ancestors"))
