"""Merge, JSON and strategic merge patches; server-side apply field ownership."""

from __future__ import annotations

from typing import Any

import pytest

from clrk.apiserver import managedfields as mf
from clrk.apiserver.patching import PatchError, json_patch, merge_patch, strategic_merge_patch

NOW = "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(("target", "patch", "result"), [  # RFC 7386 appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_rfc7386(target: dict[str, Any], patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_rejects_non_objects() -> None:
    with pytest.raises(PatchError) as err:
        merge_patch({}, [1])
    assert err.value.code == 400


def test_json_patch() -> None:
    obj = {"spec": {"a": 1, "list": [1, 2]}}
    out = json_patch(obj, [{"op": "test", "path": "/spec/a", "value": 1},
                           {"op": "replace", "path": "/spec/a", "value": 2},
                           {"op": "add", "path": "/spec/list/-", "value": 3},
                           {"op": "move", "from": "/spec/a", "path": "/spec/b"},
                           {"op": "copy", "from": "/spec/b", "path": "/spec/c"},
                           {"op": "remove", "path": "/spec/list/0"}])
    assert out == {"spec": {"b": 2, "c": 2, "list": [2, 3]}}
    assert obj == {"spec": {"a": 1, "list": [1, 2]}}  # input untouched
    with pytest.raises(PatchError) as err:
        json_patch(obj, [{"op": "test", "path": "/spec/a", "value": 9}])
    assert err.value.code == 422 and "test" in err.value.message
    with pytest.raises(PatchError) as err:
        json_patch(obj, [{"op": "remove", "path": "/spec/missing"}])
    assert err.value.code == 422
    with pytest.raises(PatchError) as err:
        json_patch(obj, {"op": "add"})
    assert err.value.code == 400
    with pytest.raises(PatchError):
        json_patch(obj, [{"op": "frobnicate", "path": "/spec"}])


def test_strategic_merge_directives() -> None:
    obj = {"data": {"a": "1", "b": "2"}, "metadata": {"labels": {"x": "1"},
                                                      "finalizers": ["f1", "f2"]}}
    out = strategic_merge_patch(obj, {"data": {"c": "3", "a": None},
                                      "metadata": {"$setElementOrder/finalizers": [],
                                                   "$deleteFromPrimitiveList/finalizers":
                                                       ["f1"]}})
    assert out["data"] == {"b": "2", "c": "3"}
    assert out["metadata"]["finalizers"] == ["f2"]
    out = strategic_merge_patch(obj, {"data": {"$patch": "replace", "z": "9"}})
    assert out["data"] == {"z": "9"}
    out = strategic_merge_patch(obj, {"data": {"$retainKeys": ["a"], "a": "5"}})
    assert out["data"] == {"a": "5"}


def _obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": "x"}, "spec": spec}


def _owned(obj: dict[str, Any], manager: str) -> set[str]:
    for e in obj["metadata"]["managedFields"]:
        if e["manager"] == manager:
            return {mf._pretty(p) for p in mf._from_tree(e["fieldsV1"])}
    return set()


def test_apply_creates_and_owns() -> None:
    out = mf.apply(None, _obj(timeout="1s", args=["a"]), "alice", False, now=NOW)
    assert out["spec"] == {"timeout": "1s", "args": ["a"]}
    assert _owned(out, "alice") == {".spec.timeout", ".spec.args"}
    entry = out["metadata"]["managedFields"][0]
    assert entry["operation"] == "Apply" and entry["time"] == NOW
    assert entry["fieldsV1"] == {"f:spec": {"f:args": {}, "f:timeout": {}}}


def test_conflict_force_and_shared_ownership() -> None:
    live = mf.apply(None, _obj(timeout="1s", pool="a"), "alice", False)
    with pytest.raises(mf.ApplyConflict) as err:
        mf.apply(live, _obj(timeout="2s"), "bob", False)
    assert err.value.conflicts == [(".spec.timeout", "alice")]
    shared = mf.apply(live, _obj(timeout="1s"), "bob", False)  # same value: no conflict
    assert ".spec.timeout" in _owned(shared, "alice") and ".spec.timeout" in _owned(shared,
                                                                                     "bob")
    forced = mf.apply(live, _obj(timeout="2s"), "bob", True)
    assert forced["spec"]["timeout"] == "2s"
    assert ".spec.timeout" not in _owned(forced, "alice")
    assert _owned(forced, "alice") == {".spec.pool"}


def test_removing_a_field_from_the_applied_config_deletes_it() -> None:
    live = mf.apply(None, _obj(timeout="1s", pool="a"), "alice", False)
    out = mf.apply(live, _obj(timeout="1s"), "alice", False)
    assert out["spec"] == {"timeout": "1s"}
    # ...unless another manager also owns it.
    shared = mf.apply(live, _obj(pool="a"), "bob", False)
    out = mf.apply(shared, _obj(timeout="1s"), "alice", False)
    assert out["spec"] == {"timeout": "1s", "pool": "a"}


def test_lists_are_atomic_and_labels_granular() -> None:
    live = mf.apply(None, {**_obj(args=["a", "b"]), "metadata": {
        "name": "x", "labels": {"team": "a"}, "finalizers": ["f1"]}}, "alice", False)
    with pytest.raises(mf.ApplyConflict):
        mf.apply(live, _obj(args=["c"]), "bob", False)
    out = mf.apply(live, {**_obj(), "metadata": {"name": "x", "labels": {"env": "prod"},
                                                 "finalizers": ["f2"]}}, "bob", False)
    assert out["metadata"]["labels"] == {"team": "a", "env": "prod"}
    assert out["metadata"]["finalizers"] == ["f1", "f2"]
    assert ".metadata.labels.env" in _owned(out, "bob")


def test_defaulted_values_do_not_conflict() -> None:
    live = mf.apply(None, _obj(parentRefs=[{"name": "gw"}]), "kubectl-client-side-apply",
                    False)
    live["spec"]["parentRefs"][0]["group"] = "clrk.apoxy.dev"  # the server's default
    out = mf.apply(live, _obj(parentRefs=[{"name": "gw"}]), "kubectl", False)
    assert out["spec"]["parentRefs"] == [{"name": "gw"}]


def test_record_update_moves_ownership() -> None:
    live = mf.apply(None, _obj(timeout="1s", pool="a"), "alice", False)
    new = {**live, "spec": {"timeout": "9s", "pool": "a", "extra": True}}
    out = mf.record_update(live, new, "kubectl-edit")
    assert _owned(out, "kubectl-edit") == {".spec.timeout", ".spec.extra"}
    assert _owned(out, "alice") == {".spec.pool"}
    created = mf.record_update(None, _obj(a=1), "creator")
    assert _owned(created, "creator") == {".spec.a"}
    assert created["metadata"]["managedFields"][0]["operation"] == "Update"
