"""Admission through the models: defaults, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clrk.api import lookup
from clrk.api.agents import PIDS_DEFAULT, PIDS_MAX, AgentTemplate, EgressRef, gateway_of
from clrk.api.validation import AdmissionError, admit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def _admit(doc: dict[str, Any], mode: str = "Strict") -> dict[str, Any]:
    cls = lookup(doc["kind"])
    assert cls is not None
    out, _ = admit(cls, doc, mode)  # type: ignore[arg-type]
    return out


def _fails(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(AdmissionError) as err:
        _admit(doc)
    return [c.field for c in err.value.causes]


def ta(**spec: Any) -> dict[str, Any]:
    template = spec.pop("template", {"spec": {"image": "busybox:1.36"}})
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": "t"}, "spec": {"template": template, **spec}}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_admit(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        _admit(doc)


def test_defaults() -> None:
    out = _admit(ta())
    assert out["spec"]["timeout"] == "100s"
    assert out["spec"]["workerPoolRef"] == "default"
    assert out["spec"]["delivery"] == {"mode": "Stdin"}
    assert out["spec"]["template"]["spec"]["resources"]["limits"] == {"cpu": "1",
                                                                      "memory": "512Mi"}
    assert out["spec"]["template"]["spec"]["resources"]["pids"] == PIDS_DEFAULT
    gw = _admit({"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressGateway",
                 "metadata": {"name": "g"}})
    assert gw["spec"]["defaultPolicy"] == "deny-all"
    da = _admit({"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "DaemonAgent",
                 "metadata": {"name": "d"},
                 "spec": {"template": {"spec": {"image": "busybox"}}}})
    assert da["spec"]["restartPolicy"] == "Always"
    rl = _admit({"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "RateLimitPolicy",
                 "metadata": {"name": "r"}, "spec": {"requests": 1, "window": "1s"}})
    assert rl["spec"]["scope"] == "PerAgent"


def test_the_template_gateway_comes_first() -> None:
    """One rule names an agent's gateway for the workers and the console alike."""
    plain = AgentTemplate.model_validate({"spec": {"image": "busybox"}})
    own = AgentTemplate.model_validate({"spec": {"image": "busybox", "egressRefs": [
        {"gatewayRef": "t1"}, {"gatewayRef": "t2"}]}})
    agents = [EgressRef(gateway_ref="a1"), EgressRef(gateway_ref="a2")]
    assert gateway_of(plain, None) is None and gateway_of(plain, []) is None
    assert gateway_of(plain, agents) == "a1"
    assert gateway_of(own, agents) == "t1" and gateway_of(own, None) == "t1"


@pytest.mark.parametrize(("timeout", "ok"), [("60s", True), ("1m30s", True), ("250ms", True),
                                             ("0s", False), ("-5s", False), ("5", False),
                                             ("soon", False)])
def test_timeout(timeout: str, ok: bool) -> None:
    if ok:
        assert _admit(ta(timeout=timeout))["spec"]["timeout"] == timeout
    else:
        assert _fails(ta(timeout=timeout)) == ["spec.timeout"]


@pytest.mark.parametrize(("schedule", "ok"), [
    ("*/5 * * * *", True), ("@every 2s", True), ("@hourly", True), ("0 9 * * 1-5", True),
    ("@every", False), ("@every -1s", False), ("@sometimes", False), ("* * *", False),
    ("61 * * * *", False)])
def test_schedule(schedule: str, ok: bool) -> None:
    if ok:
        _admit(ta(schedule=schedule))
    else:
        assert _fails(ta(schedule=schedule)) == ["spec.schedule"]


@pytest.mark.parametrize(("pids", "ok"), [
    (1, True), (64, True), (PIDS_MAX, True), (0, False), (-1, False), (PIDS_MAX + 1, False),
    ("256", False), (2.5, False), (True, False), (None, False)])
def test_pids(pids: Any, ok: bool) -> None:
    """resources.pids is a whole count of processes and threads, within bounds, for both
    kinds of agent; a WorkerPool's template has no such field (its worker runs no agent)."""
    template = {"spec": {"image": "busybox", "resources": {"pids": pids}}}
    da = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "DaemonAgent",
          "metadata": {"name": "d"}, "spec": {"template": template}}
    if ok:
        assert _admit(ta(template=template))["spec"]["template"]["spec"]["resources"][
            "pids"] == pids
        assert _admit(da)["spec"]["template"]["spec"]["resources"]["pids"] == pids
    else:
        assert _fails(ta(template=template)) == ["spec.template.spec.resources.pids"]
        assert _fails(da) == ["spec.template.spec.resources.pids"]
    assert _fails(_doc("WorkerPool", {"template": {"resources": {"pids": 64}}})) == \
        ["spec.template.resources.pids"]


def test_invalid_fields_are_named() -> None:
    assert _fails(ta(template={"spec": {}})) == ["spec.template.spec.image"]
    assert _fails(ta(template={"spec": {"image": "UPPER/Case:x"}})) == \
        ["spec.template.spec.image"]
    assert _fails(ta(flavour=1)) == ["spec.flavour"]
    assert _fails(ta(delivery={"mode": "Carrier"})) == ["spec.delivery.mode"]
    assert _fails(ta(maxConcurrent=-1)) == ["spec.maxConcurrent"]
    vf = _fails(ta(template={"spec": {"image": "b", "env": [
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}}))
    assert vf == ["spec.template.spec.env[0].valueFrom"]
    with pytest.raises(AdmissionError) as err:
        _admit(ta(template={"spec": {"image": "b", "env": [{"name": "K", "valueFrom": {}}]}}))
    assert "CredentialInjectionPolicy" in str(err.value)
    dup = _fails(ta(template={"spec": {"image": "b", "env": [{"name": "A"}, {"name": "A"}]}}))
    assert dup == ["spec.template.spec.env"]


def test_unknown_fields_dropped_unless_strict() -> None:
    cls = lookup("ta")
    assert cls is not None
    out, warnings = admit(cls, ta(flavour=1), "Warn")
    assert "flavour" not in out["spec"] and warnings == ['unknown field "spec.flavour"']
    out, warnings = admit(cls, ta(flavour=1), "Ignore")
    assert "flavour" not in out["spec"] and warnings == []


def _doc(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"},
            "spec": spec}


def test_egress_kinds() -> None:
    parent = [{"name": "gw"}]
    assert _fails(_doc("AIProviderRoute", {"parentRefs": parent, "rules": [
        {"matches": [{"provider": "acme"}]}]})) == ["spec.rules[0].matches[0].provider"]
    with pytest.raises(AdmissionError) as err:
        _admit(_doc("AIProviderRoute", {"parentRefs": parent, "rules": [
            {"matches": [{"provider": "acme"}]}]}))
    assert "azure-openai" in str(err.value)
    assert _fails(_doc("EgressL4Route", {"parentRefs": parent, "rules": [
        {"matches": [{"destinationCIDRs": ["10.0.0.0/33"]}]}]})) == \
        ["spec.rules[0].matches[0].destinationCIDRs[0]"]
    assert _fails(_doc("MCPRoute", {"parentRefs": parent, "rules": [
        {"matches": [{"tools": ["/([/"]}]}]})) == ["spec.rules[0].matches[0].tools[0]"]
    assert _fails(_doc("EgressGateway", {"listeners": [
        {"name": "l", "protocol": "QUIC"}]})) == ["spec.listeners[0].protocol"]
    assert _fails(_doc("EgressGateway", {"listeners": [
        {"name": "l", "protocol": "TCP", "tls": {"mode": "Terminate"}}]})) == \
        ["spec.listeners[0]"]
    assert _fails(_doc("CredentialInjectionPolicy", {
        "parentRefs": parent, "secretRef": {"name": "s"}, "secretKey": "k",
        "target": "Header"})) == ["spec"]
    assert _fails(_doc("RateLimitPolicy", {"requests": 1, "window": "1s",
                                           "scope": "PerPlanet"})) == ["spec.scope"]
    tls = _admit(_doc("EgressGateway", {"listeners": [{"name": "l", "protocol": "TLS"}]}))
    assert tls["spec"]["listeners"][0]["tls"] == {"mode": "Terminate"}


def test_secret_data_must_be_base64() -> None:
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
           "data": {"good": "aGk=", "bad": "***"}}
    assert _fails(doc) == ["data"]
