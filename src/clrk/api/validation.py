"""Admission validation: turn a wire object into its defaulted form, or field-path errors.

The API server calls :func:`admit`; errors carry Kubernetes-style field paths
(``spec.template.spec.image``) so kubectl shows the user which field is wrong.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from clrk.api.base import Resource

FieldValidation = Literal["Strict", "Warn", "Ignore"]


@dataclass(frozen=True)
class Cause:
    """One reason an object was rejected (a metav1.StatusCause)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


class AdmissionError(Exception):
    def __init__(self, causes: list[Cause]) -> None:
        self.causes = causes
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _remove(obj: Any, loc: tuple[int | str, ...]) -> None:
    for part in loc[:-1]:
        obj = obj[part]
    if isinstance(obj, dict):
        obj.pop(loc[-1], None)


def _causes(err: ValidationError) -> tuple[list[Cause], list[tuple[int | str, ...]]]:
    causes: list[Cause] = []
    unknown: list[tuple[int | str, ...]] = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if e["type"] == "extra_forbidden":
            unknown.append(loc)
            causes.append(
                Cause(_path(loc), f'unknown field "{_path(loc)}"', "FieldValueNotSupported")
            )
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            causes.append(Cause(_path(loc), "Required value", "FieldValueRequired"))
        elif e["type"] in ("literal_error", "enum"):
            causes.append(
                Cause(_path(loc), f"Unsupported value: {e.get('input')!r}: {msg}",
                      "FieldValueNotSupported")
            )
        else:
            causes.append(Cause(_path(loc), f"Invalid value: {e.get('input')!r}: {msg}"))
    return causes, unknown


def admit(
    cls: type[Resource], obj: dict[str, Any], field_validation: FieldValidation = "Strict"
) -> tuple[dict[str, Any], list[str]]:
    """Validate ``obj`` (apiVersion/kind/metadata/spec/status) and apply defaults.

    Returns the defaulted object and warnings. Unknown fields are errors under
    ``Strict``; under ``Warn`` and ``Ignore`` they are dropped (with a warning for ``Warn``).
    ``metadata`` passes through untouched: the API server owns its validation.
    """
    body = {k: v for k, v in obj.items() if k != "metadata"}
    warnings: list[str] = []
    for _ in range(64):  # each round drops the unknown fields pydantic reported
        try:
            model = cls.model_validate(body)
            break
        except ValidationError as err:
            causes, unknown = _causes(err)
            real = [c for c in causes if c.reason != "FieldValueNotSupported" or
                    not c.message.startswith("unknown field")]
            if field_validation == "Strict" or real:
                raise AdmissionError(causes) from None
            body = copy.deepcopy(body)
            for loc in unknown:
                _remove(body, loc)
                if field_validation == "Warn":
                    warnings.append(f'unknown field "{_path(loc)}"')
    else:  # pragma: no cover - only on pathological input
        raise AdmissionError([Cause("", "object could not be validated")])
    out = model.to_wire()
    out["apiVersion"] = obj.get("apiVersion") or cls.kind_info.api_version
    out["kind"] = obj.get("kind") or cls.kind_info.kind
    out["metadata"] = obj.get("metadata") or {}
    return out, warnings
