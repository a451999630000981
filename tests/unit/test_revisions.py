"""Which template and revision run: the latest cut for the current template, or a pin."""

from __future__ import annotations

from typing import Any

import pytest

from clrk.api.agents import AgentTemplate, TaskAgent
from clrk.api.validation import AdmissionError, admit
from clrk.controllers import revisions

OLD = {"spec": {"image": "r/a:1"}}
NEW = {"spec": {"image": "r/a:2"}}


def agent(template: dict[str, Any], pin: str | None = None,
          latest: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": template}
    if pin:
        spec["pinnedRevisionName"] = pin
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": "a", "namespace": "ns"}, "spec": spec,
            "status": {"latestCreatedRevisionName": latest} if latest else {}}


def revision(name: str, template: dict[str, Any], agent_name: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {
                revisions.ANNOTATION_HASH: revisions.template_hash(
                    AgentTemplate.model_validate(template))}},
            "spec": {"agentKind": "TaskAgent", "agentName": agent_name, "generation": 1,
                     "template": template},
            "status": {"imageDigest": f"sha256:{name}"}}


def test_unpinned_runs_the_current_template_and_its_revision_once_cut() -> None:
    a = agent(NEW, latest="a-00002")
    assert revisions.wanted(a) == "a-00002"
    assert revisions.serving(a, revision("a-00002", NEW)) == (NEW, "a-00002",
                                                              "sha256:a-00002")
    # The controller has not cut the new template's revision yet: the template runs,
    # never the previous revision's.
    assert revisions.serving(agent(NEW, latest="a-00001"),
                             revision("a-00001", OLD)) == (NEW, None, None)


def test_a_pin_runs_the_pinned_revisions_template() -> None:
    a = agent(NEW, pin="a-00001", latest="a-00002")
    assert revisions.wanted(a) == "a-00001"
    assert revisions.serving(a, revision("a-00001", OLD)) == (OLD, "a-00001",
                                                              "sha256:a-00001")
    with pytest.raises(revisions.PinnedRevisionMissing, match=r"spec\.pinnedRevisionName"):
        revisions.serving(a, None)
    with pytest.raises(revisions.PinnedRevisionMissing, match="not one of its"):
        revisions.serving(a, revision("a-00001", OLD, agent_name="other"))


def test_a_pin_must_name_a_revision() -> None:
    body = agent(NEW, pin="not a revision")
    with pytest.raises(AdmissionError, match=r"spec\.pinnedRevisionName"):
        admit(TaskAgent, body)
