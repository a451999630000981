"""AgentSandboxRevisions: an immutable snapshot per change of an agent's template."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference

from clrk.api.agents import AgentTemplate
from clrk.api.revision import AgentSandboxRevision
from clrk.client import create_if_absent, delete_if_present, resource_class, to_dict
from clrk.controllers import events

log = logging.getLogger("clrk.controllers")

KEEP = 10
LABEL_AGENT = "clrk.apoxy.dev/agent"
LABEL_KIND = "clrk.apoxy.dev/agent-kind"
LABEL_GENERATION = "clrk.apoxy.dev/generation"
ANNOTATION_HASH = "clrk.apoxy.dev/template-hash"


def revision_name(agent: str, generation: int) -> str:
    return f"{agent}-{generation:05d}"


def template_hash(template: AgentTemplate) -> str:
    canonical = json.dumps(template.to_wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def to_prune(revisions: list[dict[str, Any]], keep: int, pinned: set[str]) -> list[str]:
    """Names to delete: all but the newest ``keep`` by generation, never a pinned one."""
    ordered = sorted(revisions, key=lambda r: int(r["spec"]["generation"]), reverse=True)
    return [r["metadata"]["name"] for r in ordered[keep:]
            if r["metadata"]["name"] not in pinned]


def newest_ready(revisions: list[dict[str, Any]]) -> str | None:
    """The newest revision whose image a worker has pulled (Ready=True)."""
    ready = [r for r in revisions if any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (r.get("status") or {}).get("conditions") or [])]
    best = max(ready, key=lambda r: int(r["spec"]["generation"]), default=None)
    return str(best["metadata"]["name"]) if best else None


async def ensure(client: AsyncClient, agent: dict[str, Any], template: AgentTemplate,
                 latest_ready: str | None, keep: str | None = None) -> tuple[str, str | None]:
    """Make sure a revision holds the current template.

    Returns the latest revision's name and the newest ready one's (if any)."""
    res = resource_class(AgentSandboxRevision)
    md = agent["metadata"]
    name, ns, kind = md["name"], md["namespace"], agent["kind"]
    want = template_hash(template)
    revs = [to_dict(r) async for r in client.list(
        res, namespace=ns, labels={LABEL_AGENT: name, LABEL_KIND: kind})]
    owned = [r for r in revs if any(o.get("uid") == md["uid"] for o in
                                    r["metadata"].get("ownerReferences") or [])]
    latest = max(owned, key=lambda r: int(r["spec"]["generation"]), default=None)
    if latest is not None and \
            (latest["metadata"].get("annotations") or {}).get(ANNOTATION_HASH) == want:
        current = str(latest["metadata"]["name"])
    else:
        generation = int(md["generation"])
        current = revision_name(name, generation)
        body = res(
            metadata=ObjectMeta(
                name=current, namespace=ns,
                labels={LABEL_AGENT: name, LABEL_KIND: kind, LABEL_GENERATION: str(generation)},
                annotations={ANNOTATION_HASH: want},
                ownerReferences=[OwnerReference(apiVersion=agent["apiVersion"], kind=kind,
                                                name=name, uid=md["uid"], controller=True,
                                                blockOwnerDeletion=True)],
            ),
            spec={"agentKind": kind, "agentName": name, "generation": generation,
                  "template": template.to_wire()},
        )
        created = await create_if_absent(client, body)
        if created is not None:
            owned.append(created)
            log.info("created revision %s/%s", ns, current)
            await events.emit(client, agent, "RevisionCreated",
                              f"created AgentSandboxRevision {current}")
    ready = newest_ready(owned) or latest_ready
    pinned = {current} | ({ready} if ready else set()) | ({keep} if keep else set())
    for stale in to_prune(owned, KEEP, pinned):
        await delete_if_present(client, res, stale, ns)
    return current, ready



class PinnedRevisionMissing(Exception):
    """An agent is pinned to a revision that is not one of its own."""


def wanted(agent: dict[str, Any]) -> str | None:
    """The revision an agent's invocations need: the pinned one, else the latest cut."""
    return str((agent.get("spec") or {}).get("pinnedRevisionName") or
               (agent.get("status") or {}).get("latestCreatedRevisionName") or "") or None


def serving(agent: dict[str, Any], revision: dict[str, Any] | None
            ) -> tuple[dict[str, Any], str | None, str | None]:
    """What runs: (the template, its revision, the image digest the revision resolved
    to). ``revision`` is :func:`wanted`'s, as found (None: absent). Pinned: the pinned
    revision's template, which must be the agent's own. Unpinned: the agent's template;
    the revision and digest only once the controller has cut the revision for it (never
    the previous revision's)."""
    md = agent["metadata"]
    pinned = (agent.get("spec") or {}).get("pinnedRevisionName")
    digest = ((revision or {}).get("status") or {}).get("imageDigest")
    if pinned:
        spec = (revision or {}).get("spec") or {}
        if spec.get("agentName") != md["name"] or spec.get("agentKind") != agent["kind"]:
            raise PinnedRevisionMissing(
                f"{agent['kind']} {md['namespace']}/{md['name']} is pinned to revision "
                f"{pinned} (spec.pinnedRevisionName), which is not one of its "
                f"AgentSandboxRevisions: pin an existing one (kubectl get asr -l "
                f"{LABEL_AGENT}={md['name']}) or remove the pin")
        return dict(spec["template"]), str(pinned), digest
    template = dict(agent["spec"]["template"])
    if revision is None or (revision["metadata"].get("annotations") or {}).get(
            ANNOTATION_HASH) != template_hash(AgentTemplate.model_validate(template)):
        return template, None, None
    return template, str(revision["metadata"]["name"]), digest
