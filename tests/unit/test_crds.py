"""CRDs generated from the models are structural and accept every example manifest."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from clrk.api import all_kinds
from clrk.api.agents import PIDS_DEFAULT, PIDS_MAX
from clrk.api.base import GROUP
from clrk.api.crd import all_crds, crd_for, crds_yaml
from tests.unit.structural import check

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
CRDS = {c["spec"]["names"]["kind"]: c for c in all_crds()}


def _jsonschema(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes dialect) -> JSON Schema for the jsonschema library."""
    if isinstance(node, list):
        return [_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if node.get("x-kubernetes-int-or-string"):
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    if out.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if out.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("type") == "object" and "properties" in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # structural pruning would drop unknown fields
    return out


def _validate(doc: dict[str, Any]) -> None:
    schema = CRDS[doc["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(doc, _jsonschema(schema))


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_structural(kind: str) -> None:
    crd = CRDS[kind]
    version = crd["spec"]["versions"][0]
    assert check(version["schema"]["openAPIV3Schema"]) == []
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{GROUP}"
    assert version["served"] and version["storage"]
    assert "title" not in yaml.safe_dump(crd)
    assert "$ref" not in yaml.safe_dump(crd)


def test_every_clrk_kind_has_a_crd_with_short_names_status_and_columns() -> None:
    clrk_kinds = [c for c in all_kinds() if c.kind_info.group == GROUP]
    assert {c.kind_info.kind for c in clrk_kinds} == set(CRDS)
    shorts = {n for c in CRDS.values() for n in c["spec"]["names"].get("shortNames", [])}
    assert {"ta", "da", "asr", "wp", "egw", "aipr", "mcpr", "el4r", "cip", "rlp", "edp", "lp",
            "inv", "be", "frp", "mp"} <= shorts
    for c in clrk_kinds:
        version = crd_for(c)["spec"]["versions"][0]
        # A ModelPrice is a price and nothing is observed of it: no status.
        assert version.get("subresources") == ({"status": {}} if c.kind_info.has_status
                                               else None)
        assert version["additionalPrinterColumns"]
    assert crds_yaml().count("kind: CustomResourceDefinition") == len(CRDS)


def test_checker_catches_violations() -> None:
    assert check({"type": "object", "properties": {"a": {}}})
    assert check({"type": "object", "properties": {"a": {"$ref": "#/x", "type": "string"}}})
    assert check({"type": "object", "properties": {"a": {
        "anyOf": [{"type": "string"}, {"type": "integer"}]}}})
    assert check({"type": "object", "properties": {"metadata": {
        "type": "object", "properties": {"labels": {"type": "object"}}}}})


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_validates_against_its_crd(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") in CRDS:
            _validate(doc)


def test_bad_manifests_fail_crd_validation() -> None:
    doc = yaml.safe_load((ROOT / "examples/spec/daemonagent-echo-bot.yaml").read_text())
    bad_enum = copy.deepcopy(doc)
    bad_enum["spec"]["restartPolicy"] = "Sometimes"
    unknown = copy.deepcopy(doc)
    unknown["spec"]["flavour"] = "x"
    no_image = copy.deepcopy(doc)
    del no_image["spec"]["template"]["spec"]["image"]
    for bad in (bad_enum, unknown, no_image):
        with pytest.raises(jsonschema.ValidationError):
            _validate(bad)


@pytest.mark.parametrize("kind", ["TaskAgent", "DaemonAgent"])
def test_pids_is_in_the_agent_crds(kind: str) -> None:
    """resources.pids reaches the CRDs (and so `kubectl explain` and the OpenAPI) from the
    model, with its bounds and description; the WorkerPool's resources have none."""
    spec = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    resources = spec["properties"]["template"]["properties"]["spec"]["properties"]["resources"]
    pids = resources["properties"]["pids"]
    assert (pids["type"], pids["minimum"], pids["maximum"], pids["default"]) == \
        ("integer", 1, PIDS_MAX, PIDS_DEFAULT)
    assert "processes and threads" in pids["description"]
    doc = yaml.safe_load((ROOT / "examples/spec/daemonagent-echo-bot.yaml").read_text())
    doc["kind"] = kind
    doc["spec"] = {"template": {"spec": {"image": "busybox", "resources": {"pids": 0}}}}
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)
    pool = CRDS["WorkerPool"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    template = pool["properties"]["spec"]["properties"]["template"]
    assert "pids" not in template["properties"]["resources"]["properties"]
