"""The CloudEvents envelope of the TaskAgent contract."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

from clrk.worker.agents import envelope

NOW = dt.datetime(2026, 5, 19, 3, 22, 50, tzinfo=dt.UTC)


def test_json_body_goes_to_data() -> None:
    e = envelope.build("default", "word-count", "a1b2", b'{"text": "hello world from clrk"}',
                       "application/json", "http", NOW)
    assert e == {"specversion": "1.0", "id": "a1b2", "source": "clrk://default/word-count",
                 "type": "dev.apoxy.clrk.taskagent.invoke", "subject": "http",
                 "time": "2026-05-19T03:22:50Z", "datacontenttype": "application/json",
                 "data": {"text": "hello world from clrk"}}
    assert json.loads(envelope.encode(e)) == e


def test_subject_omitted_without_trigger_and_other_bodies_base64() -> None:
    e = envelope.build("ns", "a", "x", b"\x00\x01binary", "application/octet-stream", None)
    assert "subject" not in e
    assert base64.b64decode(e["data_base64"]) == b"\x00\x01binary"
    assert "data" not in e
    bad_json = envelope.build("ns", "a", "x", b"{not json", "application/json", None)
    assert base64.b64decode(bad_json["data_base64"]) == b"{not json"
    vendor = envelope.build("ns", "a", "x", b"[1]", "application/vnd.x+json; charset=utf-8",
                            None)
    assert vendor["data"] == [1]


def test_execution_id_fallbacks() -> None:
    assert envelope.execution_id({"X-Clrk-Execution-ID": "e1", "x-request-id": "r1"}) == "e1"
    assert envelope.execution_id({"X-Request-Id": "r1"}) == "r1"
    uuid.UUID(envelope.execution_id({}))


def test_cron_envelope() -> None:
    e = envelope.for_cron("ns", "cron-bot", None)
    assert e["subject"] == "cron" and e["data"] == {}
    assert envelope.for_cron("ns", "cron-bot", {"k": [1]})["data"] == {"k": [1]}
