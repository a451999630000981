"""Request bodies decoded with bounds, so a small hostile body cannot stall the server.

A 626-byte YAML document of nested aliases ("billion laughs") expands to tens of
millions of nodes once anything walks it; a body nested ten thousand levels deep
overflows a recursive walk. kube-apiserver bounds both, and so do we, before any work
is done on the value: the YAML node graph is measured with shared nodes counted once
(linear in the document as written, never in its expansion), recursive anchors are
refused, and the expanded document may hold at most ``MAX_NODES`` values nested at
most ``MAX_DEPTH`` deep. Every refusal is a 4xx ``APIError`` that says which bound.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from clrk.apiserver import protobuf
from clrk.apiserver.errors import APIError

MAX_BODY = 3 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 100_000  # values in a decoded body, aliases expanded (a manifest has ~100s)

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """YAML as kube-apiserver reads it: the JSON types only. Dates stay strings (kube's
    YAML-to-JSON conversion keeps them so); binary, sets, ordered maps and pairs are
    refused instead of becoming values JSON cannot hold."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if not tag.endswith(":timestamp")]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()}


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag} has no JSON equivalent", node.start_mark)


for _tag in ("binary", "timestamp", "omap", "pairs", "set"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


class _Bounds:
    """Counts a YAML node graph's expanded size and depth, each shared node once."""

    def __init__(self) -> None:
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth)
        self.open: set[int] = set()

    def measure(self, root: yaml.Node) -> tuple[int, int]:
        # Iterative post-order walk: a deep document must not exhaust Python's stack.
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            if done:
                self.open.discard(key)
                size, depth = 1, 1
                for child in _children(node):
                    s, d = self.sizes[id(child)]
                    size += s
                    depth = max(depth, d + 1)
                    if size > MAX_NODES:
                        raise _too_many()
                if depth > MAX_DEPTH:
                    raise _too_deep()
                self.sizes[key] = (size, depth)
                continue
            if key in self.sizes:
                continue
            if key in self.open:
                raise APIError(400, "the request body is not valid YAML: an alias refers to "
                               "a node that contains it (a recursive document)")
            self.open.add(key)
            stack.append((node, True))
            if len(self.open) > MAX_DEPTH:
                raise _too_deep()
            stack.extend((c, False) for c in _children(node) if id(c) not in self.sizes)
        return self.sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _too_deep() -> APIError:
    return APIError(400, f"the request body is nested more than {MAX_DEPTH} levels deep")


def _too_many() -> APIError:
    return APIError(413, f"the request body holds more than {MAX_NODES} values (YAML "
                    "aliases expanded)", "RequestEntityTooLarge")


def _check_value(value: Any) -> None:
    """Depth and size of a JSON value (which shares nothing), without recursion."""
    stack = [(value, 1)]
    count = 0
    while stack:
        v, d = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _too_many()
        if d > MAX_DEPTH:
            raise _too_deep()
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


def count_values(value: Any, limit: int = MAX_NODES) -> int:
    """How many values ``value`` holds, counting stops just past ``limit``."""
    stack = [value]
    count = 0
    while stack and count <= limit:
        v = stack.pop()
        count += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return count


def _json_value(value: Any) -> Any:
    """YAML's values as JSON's, aliases expanded into copies of their own (bounded by
    MAX_NODES and MAX_DEPTH already): map keys become strings (as kube's YAML-to-JSON
    does); non-finite floats are refused."""
    if isinstance(value, float) and not math.isfinite(value):
        raise APIError(400, f"the request body holds {value}, which JSON cannot hold")
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        key = k if isinstance(k, str) else json.dumps(k) if k is None or isinstance(
            k, bool | int | float) else None
        if key is None:
            raise APIError(400, f"the request body uses {k!r} as a map key; keys must be "
                           "strings")
        out[key] = _json_value(v)
    return out


def _yaml(body: bytes) -> Any:
    try:
        documents = list(yaml.compose_all(body, Loader=_Loader))
    except yaml.YAMLError as err:
        raise APIError(400, f"the request body is not valid YAML: {err}") from None
    except RecursionError:
        raise _too_deep() from None
    if len(documents) > 1:
        raise APIError(400, "the request body holds more than one YAML document")
    if not documents or documents[0] is None:
        raise APIError(400, "the request body is empty")
    root = documents[0]
    _Bounds().measure(root)
    loader = _Loader("")
    try:
        return _json_value(loader.construct_document(root))
    except yaml.YAMLError as err:
        raise APIError(400, f"the request body is not valid YAML: {err}") from None
    except (RecursionError, TypeError, ValueError) as err:
        # TypeError: an unhashable mapping key (a list or map used as a key).
        raise APIError(400, f"the request body is not valid YAML: {err}") from None
    finally:
        loader.dispose()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode(body: bytes, content_type: str) -> Any:
    """JSON, YAML or protobuf request body -> value, bounded; a 4xx APIError otherwise."""
    if not body.strip():
        raise APIError(400, "the request body is empty")
    if len(body) > MAX_BODY:
        raise APIError(413, f"the request body is {len(body)} bytes; the limit is {MAX_BODY} "
                       "bytes", "RequestEntityTooLarge")
    if "protobuf" in content_type:
        try:
            value: Any = protobuf.decode(body)
        except protobuf.UnsupportedKind as err:
            raise APIError(415, str(err), "UnsupportedMediaType") from None
        except (protobuf.ProtobufError, UnicodeDecodeError) as err:
            raise APIError(400, f"the request body is not valid protobuf: {err}") from None
    elif "yaml" in content_type:
        return _yaml(body)
    else:
        try:
            value = json.loads(body, parse_constant=_no_constant)
        except RecursionError:
            raise _too_deep() from None
        except ValueError as err:
            raise APIError(400, f"the request body is not valid JSON: {err}") from None
    _check_value(value)
    return value


def decode_object(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    """A body that must be one JSON (or YAML) object, as subresources take."""
    value = decode(body, content_type)
    if not isinstance(value, dict):
        raise APIError(400, "the request body must be a JSON object")
    return value
