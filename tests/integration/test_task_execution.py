"""A TaskAgent execution end to end in a real sandbox: envelope in, stdout out, outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clrk.api.agents import TaskAgent
from clrk.worker.agents import envelope
from clrk.worker.agents.task import Outcome, execute
from clrk.worker.images.registry import RegistryClient
from clrk.worker.images.store import ImageStore
from clrk.worker.sandbox.runner import Runtime
from tests.images import Registry, build, busybox_recipe


@pytest.fixture
async def env(tmp_path: Path, registry: Registry) -> AsyncIterator[tuple[Runtime, ImageStore]]:
    registry.push("test/agent", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    rt = Runtime(tmp_path / "state")
    try:
        yield rt, ImageStore(tmp_path / "images", RegistryClient(insecure={registry.host}))
    finally:
        await rt.drain()
        await rt.sweep()


def agent(registry: Registry, script: str, **spec: Any) -> TaskAgent:
    return TaskAgent.model_validate({
        "metadata": {"name": "echo", "namespace": "default"},
        "spec": {"template": {"spec": {"image": f"{registry.host}/test/agent:1",
                                       "args": [script]}}, **spec}})


async def run(env: tuple[Runtime, ImageStore], a: TaskAgent,
              body: bytes = b'{"text": "hello world from clrk"}') -> tuple[Outcome, str]:
    event = envelope.build("default", "echo", "exec-1", body, "application/json", "http")
    out: list[bytes] = []
    outcome = await execute(env[0], env[1], a, a.spec.template, event, out.append,
                            lambda _b: None)
    return outcome, b"".join(out).decode()


async def test_envelope_on_stdin_and_stdout_back(env: tuple[Runtime, ImageStore],
                                                 registry: Registry) -> None:
    outcome, out = await run(env, agent(registry, "cat"))
    assert outcome == Outcome("Succeeded", 200, 0, "")
    event = json.loads(out)
    assert event["id"] == "exec-1" and event["data"] == {"text": "hello world from clrk"}
    assert event["source"] == "clrk://default/echo" and event["subject"] == "http"


async def test_failure_timeout_and_bad_image(env: tuple[Runtime, ImageStore],
                                             registry: Registry) -> None:
    outcome, _ = await run(env, agent(registry, "exit 7"))
    assert (outcome.phase, outcome.http_status, outcome.headers) == (
        "Failed", 500, {"X-Clrk-Exit-Code": "7"})
    outcome, _ = await run(env, agent(registry, "sleep 30", timeout="1s"))
    assert (outcome.phase, outcome.http_status) == ("Timeout", 504)
    missing = agent(registry, "true")
    missing.spec.template.spec.image = f"{registry.host}/test/nothing:1"
    outcome, _ = await run(env, missing)
    assert outcome.phase == "Failed" and "not found" in outcome.reason


async def test_metadata_mode_needs_networking(env: tuple[Runtime, ImageStore],
                                             registry: Registry) -> None:
    # (Metadata delivery itself is shown end to end in tests/e2e/test_invoke.py.)
    outcome, _ = await run(env, agent(registry, "cat", delivery={"mode": "Metadata"}))
    assert outcome.phase == "Failed" and "networking" in outcome.reason


async def test_spec_word_count_agent(env: tuple[Runtime, ImageStore],
                                     registry: Registry) -> None:
    from tests.images import word_count_image

    registry.push("test/word-count", "0.1", word_count_image())
    a = TaskAgent.model_validate({
        "metadata": {"name": "word-count", "namespace": "default"},
        "spec": {"timeout": "60s", "template": {"spec": {
            "image": f"{registry.host}/test/word-count:0.1",
            "env": [{"name": "GREETING", "value": "hi"}]}}}})
    event = envelope.build("default", "word-count", "a1b2c3d4", b'{"text":"hello world from '
                           b'clrk"}', "application/json", "http")
    out: list[bytes] = []
    err: list[bytes] = []
    outcome = await execute(env[0], env[1], a, a.spec.template, event, out.append, err.append)
    assert outcome.phase == "Succeeded", b"".join(err)
    assert json.loads(b"".join(out)) == {"word_count": 4, "envelope_id": "a1b2c3d4"}


async def test_pids_limit_fails_the_execution(env: tuple[Runtime, ImageStore],
                                              registry: Registry) -> None:
    """A template's resources.pids reaches the sandbox: a fan-out past a low limit fails
    the execution with the PidsLimit reason in the agent's units."""
    fan_out = "i=0; while [ $i -lt 64 ]; do sleep 1000 & i=$((i+1)); done; echo spawned"
    a = TaskAgent.model_validate({
        "metadata": {"name": "echo", "namespace": "default"},
        "spec": {"timeout": "60s", "template": {"spec": {
            "image": f"{registry.host}/test/agent:1", "args": [fan_out],
            "resources": {"pids": 8}}}}})
    outcome, out = await run(env, a)
    assert (outcome.phase, outcome.http_status) == ("Failed", 500) and "spawned" not in out
    assert outcome.reason.startswith("PidsLimit: the agent reached its limit of 8 "), outcome
