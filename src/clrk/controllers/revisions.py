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
                 latest_ready: str | None) -> tuple[str, str | None]:
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
    pinned = {current} | ({ready} if ready else set())
    for stale in to_prune(owned, KEEP, pinned):
        await delete_if_present(client, res, stale, ns)
    return current, ready

