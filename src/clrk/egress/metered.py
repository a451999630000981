"""The calls Envoy serves and meters alone (clrk.egress.envoy.metering): the files its
Lua filter reads per request, and the record of such a call from its access-log line.

A provider host is metered by Envoy while its route leaves Python nothing to decide
per request: one AIProviderRoute rule for the host, naming no model, endpoint,
budget or Backend; no MCPRoute on it; at most a Header credential; no rate limit,
deny or logging policy and no body capture. Envoy then injects the credential, adds
``traceparent`` and reads the usage of JSON answers; streams and embeddings still go
to the policy service.

The files live next to the credential files Envoy injects (memory-backed, root only,
never under the data directory): ``meter/<gateway>/<hash of the host>`` holds the
route, the provider, the credential header and its value, one per line, then the
forms of the credential its answers are scrubbed of (clrk.egress.scrub), one per line;
``traces/<address>`` holds the trace id of the execution that owns a sandbox address.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk import pki
from clrk.egress.envoy.scrubbing import pattern_text
from clrk.egress.providers import codec_for
from clrk.telemetry.pricing import billed_as

METERED_PROVIDERS = ("anthropic", "openai", "azure-openai", "google")
_JSON = re.compile(r"(?i)application/json(\s*;.*)?$")


@dataclass(frozen=True)
class Meter:
    route: str  # Kind/name
    provider: str
    header: str = ""  # the credential header Envoy injects ("" for none)
    value: str = ""
    scrub: tuple[bytes, ...] = ()  # the forms of the credential, scrubbed from answers

    def text(self) -> str:
        return (f"{self.route}\n{self.provider}\n{self.header}\n{self.value}\n"
                + pattern_text(self.scrub))


def _write(path: Path, text: str) -> None:
    """Atomically, readable by root only: the Lua filter may read at any moment."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.write_private(path, text.encode())


class MeterFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def traces(self) -> Path:
        return self.directory / "traces"

    def meter_file(self, gateway: str, host: str) -> Path:
        # Named by a hash: a name under a wildcard route is the sandbox's to invent.
        name = hashlib.sha256(host.encode()).hexdigest()[:24]
        return self.directory / "meter" / gateway / name

    def sync(self, meters: dict[Path, Meter]) -> None:
        """Exactly these hosts are metered by Envoy from now on."""
        for path, meter in meters.items():
            _write(path, meter.text())
        root = self.directory / "meter"
        for path in root.glob("*/*") if root.exists() else ():
            if path not in meters:
                path.unlink(missing_ok=True)

    def trace(self, address: str, trace_id: str) -> None:
        """The trace the calls from ``address`` belong to, from now on."""
        path = self.traces / address
        if trace_id:
            _write(path, trace_id + "\n")
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _fields(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def record_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The GenAI attributes and span id of a call Envoy metered, from its log line."""
    provider, path = str(item["provider"]), str(item.get("path") or "/")
    codec = codec_for(provider, path)
    request = codec.parse_request(json.dumps(_fields(item.get("request"))).encode())
    attrs = {"gen_ai.provider.name": provider, "gen_ai.operation.name": request.operation,
             "gen_ai.request.stream": "false", "clrk.metered_by": "envoy"}
    if request.model:
        attrs["gen_ai.request.model"] = request.model
    status = int(item.get("status") or 0)
    if status:
        usage = codec.read_fields(_fields(item.get("usage")))
        attrs.update(usage.attributes(status))
        attrs.update(billed_as(provider, usage.response_model or request.model))
        content_type = str(item.get("response_type") or "")
        if attrs["clrk.usage.extracted"] == "false" and status < 400 and \
                not _JSON.match(content_type):
            attrs["clrk.usage.missing_reason"] = (
                f"Envoy reads usage from JSON answers; this one was {content_type!r}")
    span = str(item.get("span") or "")  # the id Envoy put in traceparent
    return {"attributes": attrs, **({"span_id": span} if len(span) == 16 else {})}
