"""The real `kubectl explain` against `clrk dev` describes every field of every kind.

kubectl reads the API server's /openapi/v3 documents; `kubectl explain KIND.PATH` prints
the description of PATH and of each field directly under it. So explaining each kind and
each of its object-typed paths (objects and lists of objects, recursively) shows every
field's description once, and `<no description>` (or an `<empty>` DESCRIPTION) must
appear in none of them. The calls run in parallel: one kubectl per path.

metadata's own fields (ObjectMeta, which the CRD schemas leave open) are explained from
the served document: `kubectl explain KIND.metadata` for every kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from clrk.api import all_kinds
from clrk.api.base import Resource
from clrk.api.schema import object_schema
from tests.conftest import DevServer

KINDS = sorted(all_kinds(), key=lambda c: c.kind_info.kind)
MISSING = ("<no description>", "<empty>")


def _object_paths(node: dict[str, Any], path: str = "") -> Iterator[str]:
    """Every path under ``node`` whose value is an object or a list of objects."""
    for name, prop in (node.get("properties") or {}).items():
        if not path and name == "metadata":
            continue
        here = f"{path}.{name}" if path else name
        inner = prop.get("items") if prop.get("type") == "array" else prop
        if isinstance(inner, dict) and inner.get("type") == "object":
            yield here
            yield from _object_paths(inner, here)


def _targets(cls: type[Resource]) -> list[tuple[str, str]]:
    """(api version, kubectl explain argument) for the kind and each object path."""
    info = cls.kind_info
    return [(info.api_version, info.plural), (info.api_version, f"{info.plural}.metadata")] + [
        (info.api_version, f"{info.plural}.{p}") for p in _object_paths(object_schema(cls))]


def _explain(server: DevServer, api_version: str, target: str) -> tuple[str, str]:
    r = server.kubectl("explain", target, f"--api-version={api_version}", check=False)
    return target, r.stdout if r.returncode == 0 else f"kubectl failed: {r.stderr}"


@pytest.fixture(scope="module")
def explained(shared_dev_server: DevServer) -> dict[str, str]:
    """`kubectl explain` of every kind and object path, by argument."""
    targets = [t for cls in KINDS for t in _targets(cls)]
    shared_dev_server.kubectl("explain", "taskagents")  # fills kubectl's discovery cache
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(lambda t: _explain(shared_dev_server, *t), targets))


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind_info.kind)
def test_kubectl_explain_describes_every_field(cls: type[Resource],
                                               explained: dict[str, str]) -> None:
    problems = []
    for _, target in _targets(cls):
        out = explained[target]
        if out.startswith("kubectl failed") or "KIND:" not in out:
            problems.append(f"{target}: {out.strip()[:300]}")
            continue
        for line_no, line in enumerate(out.splitlines()):
            if any(m in line for m in MISSING):
                context = out.splitlines()[max(0, line_no - 1)].strip()
                problems.append(f"{target}: {context!r} has no description")
    assert not problems, f"kubectl explain {cls.kind_info.kind}:\n  " + "\n  ".join(problems)


def test_kubectl_explain_shows_the_models_descriptions(explained: dict[str, str]) -> None:
    """What kubectl prints is the models' text: a nested model-typed field's own
    description, not its type's docstring."""
    spec = " ".join(explained["taskagents.spec"].split())
    assert "The desired state of the TaskAgent." in spec
    assert "Name of the WorkerPool, in the agent's namespace" in spec
    template = " ".join(explained["taskagents.spec.template"].split())
    assert "Every change cuts a new AgentSandboxRevision." in template
    limits = " ".join(explained["taskagents.spec.template.spec.resources"].split())
    assert "The most processes and threads the agent may have at once" in limits
