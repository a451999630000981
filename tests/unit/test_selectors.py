"""Label and field selectors."""

from __future__ import annotations

import pytest

from clrk.apiserver.selectors import Selector, SelectorError

OBJ = {"metadata": {"name": "a", "namespace": "default", "labels": {"tier": "web", "x": "1"}},
       "involvedObject": {"name": "agent", "kind": "TaskAgent"}, "status": {"phase": "Ok"}}


@pytest.mark.parametrize(("label", "field", "match"), [
    ("tier=web", None, True), ("tier==web", None, True), ("tier!=web", None, False),
    ("tier in (web,api)", None, True), ("tier notin (web)", None, False), ("x", None, True),
    ("!x", None, False), ("missing", None, False), ("!missing", None, True),
    ("tier=web,x=1", None, True), ("tier=web,x=2", None, False),
    (None, "metadata.name=a", True), (None, "metadata.name!=a", False),
    (None, "involvedObject.name=agent,involvedObject.kind=TaskAgent", True),
    (None, "status.phase=Failed", False), (None, "metadata.namespace=default", True),
])
def test_selectors(label: str | None, field: str | None, match: bool) -> None:
    assert Selector.parse(label, field).matches(OBJ) is match


@pytest.mark.parametrize("bad", ["tier in (web", "=x", "!tier in (a)", "a b c"])
def test_bad_selectors(bad: str) -> None:
    with pytest.raises(SelectorError):
        Selector.parse(bad, None)
