"""An LLM call's cost from its usage: each provider family's billing (cache reads and
writes, reasoning tokens), dated model ids, unpriced models shown as such, ModelPrice
overrides, and the cost a recorded call gets from its attributes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from clrk.api.pricing import ModelPrice
from clrk.egress.providers import Usage
from clrk.telemetry import connections
from clrk.telemetry.pricing import PriceTable, billed_as, call_cost, price_of


def usd(provider: str, model: str, table: PriceTable | None = None, **usage: Any) -> str:
    found = call_cost(provider, model, Usage(**usage), *([table] if table else []))
    return found["clrk.cost.usd"]


def model_price(**spec: Any) -> dict[str, Any]:
    return ModelPrice.model_validate({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "ModelPrice",
        "metadata": {"name": "p"}, "spec": spec}).to_wire()


def test_anthropic_bills_cache_reads_and_writes_apart() -> None:
    # claude-haiku-4-5: $1 in, $5 out, $0.10 cache read, $1.25 cache write per million.
    got = usd("anthropic", "claude-haiku-4-5-20251001", input_tokens=1_000,
              output_tokens=2_000, cache_read_input_tokens=10_000,
              cache_creation_input_tokens=4_000)
    assert Decimal(got) == Decimal("0.001") + Decimal("0.010") + Decimal("0.001") + \
        Decimal("0.005")


def test_openai_cached_and_reasoning_tokens_are_inside_the_counts() -> None:
    # o4-mini: $1.10 in, $4.40 out, $0.275 cached. 10k prompt of which 8k cached; 3k
    # completion of which 2k reasoning (billed as output, not twice).
    got = usd("openai", "o4-mini-2025-04-16", input_tokens=10_000, output_tokens=3_000,
              cache_read_input_tokens=8_000, reasoning_output_tokens=2_000)
    assert Decimal(got) == Decimal("0.0022") + Decimal("0.0132") + Decimal("0.0022")
    assert usd("azure-openai", "gpt-4o-mini", input_tokens=1_000_000) == "0.15"


def test_google_thoughts_are_billed_as_output() -> None:
    # gemini-2.5-flash: $0.30 in, $2.50 out, $0.075 cached; thoughts not in the output.
    got = usd("google", "gemini-2.5-flash", input_tokens=2_000, output_tokens=1_000,
              cache_read_input_tokens=1_000, reasoning_output_tokens=3_000)
    assert Decimal(got) == Decimal("0.0003") + Decimal("0.000075") + Decimal("0.01")


def test_bedrock_ids_find_their_claude_price() -> None:
    assert price_of("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0") == \
        price_of("anthropic", "claude-sonnet-4-5")
    assert price_of("openai", "gpt-4.1-mini-2025-04-14") == price_of("openai", "gpt-4.1-mini")
    assert price_of("openai", "gpt-4.1-2025-04-14") == price_of("openai", "gpt-4.1")


def test_an_unknown_model_is_unpriced_not_free() -> None:
    attrs = call_cost("anthropic", "claude-x", Usage(input_tokens=5, output_tokens=5))
    assert attrs == {"clrk.cost.priced": "false",
                     "clrk.cost.unpriced_reason": "no price for anthropic model claude-x"}
    assert call_cost("custom", "llama", Usage(input_tokens=1))["clrk.cost.priced"] \
        == "false"
    assert call_cost("anthropic", "claude-haiku-4-5", Usage()) == {}  # no usage read


def test_a_model_price_overrides_the_list_price() -> None:
    table = PriceTable.from_objects([
        model_price(provider="anthropic", model="claude-haiku-4-5", input="2", output="8",
                    cacheRead="0.2"),
        model_price(provider="custom", model="llama-3", input="0.5", output="1",
                    reasoning="3"),
        model_price(provider="bedrock", model="claude-sonnet-4-5", input="4", output="20")])
    # Dated ids take the override; the cache-write rate defaults to the input price.
    assert Decimal(usd("anthropic", "claude-haiku-4-5-20251001", table, input_tokens=1_000,
                       output_tokens=1_000, cache_read_input_tokens=10_000,
                       cache_creation_input_tokens=1_000)) == \
        Decimal("0.002") + Decimal("0.008") + Decimal("0.002") + Decimal("0.002")
    # An anthropic override applies on bedrock too, unless bedrock has its own.
    assert price_of("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", table) == \
        price_of("anthropic", "claude-haiku-4-5", table)
    assert price_of("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", table) != \
        price_of("anthropic", "claude-sonnet-4-5", table)
    # A custom provider is priced once it has a price (billed the OpenAI way: reasoning
    # inside the output count, at its own rate).
    assert Decimal(usd("custom", "llama-3", table, input_tokens=1_000_000,
                       output_tokens=1_000_000, reasoning_output_tokens=500_000)) == \
        Decimal("0.5") + Decimal("0.5") + Decimal("1.5")
    assert price_of("anthropic", "claude-opus-4-5", table) == \
        price_of("anthropic", "claude-opus-4-5")  # the rest keeps its list price


def test_a_model_price_is_checked_when_written() -> None:
    for bad, field in ((dict(input="-1"), "input"), (dict(input="1e3"), "input"),
                       (dict(provider="acme"), "provider"), (dict(model=""), "model"),
                       (dict(cacheRead="0.1234567891"), "cacheRead")):
        spec = {"provider": "openai", "model": "gpt-x", "input": "1", "output": "2", **bad}
        with pytest.raises(ValidationError) as err:
            model_price(**spec)
        assert field in str(err.value)


def test_a_recorded_call_is_priced_from_its_attributes() -> None:
    """The gateway says who bills the call; the recorder prices it with the table in
    force. A translated call is billed by the Backend that answered it."""
    usage = Usage(input_tokens=1_000, output_tokens=500, cache_read_input_tokens=200)
    attrs = {**usage.attributes(200), "gen_ai.provider.name": "anthropic",
             **billed_as("openai", "gpt-4o-mini")}
    item = {"kind": "http", "start_time": "2026-12-03T10:00:00+00:00", "duration_ms": 5,
            "name": "POST api.anthropic.com/v1/messages", "attributes": attrs}
    spans, _ = connections.rows("default", "gw", [item])
    recorded = spans[0][11]
    # gpt-4o-mini: 800 uncached input at $0.15, 200 cached at $0.075, 500 out at $0.60.
    assert Decimal(recorded["clrk.cost.usd"]) == Decimal("0.00012") + Decimal("0.000015") \
        + Decimal("0.0003")
    table = PriceTable.from_objects([model_price(provider="openai", model="gpt-4o-mini",
                                                 input="1", output="1")])
    spans, _ = connections.rows("default", "gw", [item], table)
    assert Decimal(spans[0][11]["clrk.cost.usd"]) == Decimal("0.0015")
    unknown = {**item, "attributes": {**attrs, **billed_as("openai", "gpt-unknown")}}
    spans, _ = connections.rows("default", "gw", [unknown])
    assert spans[0][11]["clrk.cost.priced"] == "false"
    assert "clrk.cost.usd" not in spans[0][11]


def test_clrk_agents_traces_shows_tokens_and_cost() -> None:
    from clrk.cli.agent_logs import _call_line

    attributes: dict[str, str] = {
        "clrk.decision": "allowed", "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "24",
        **call_cost("anthropic", "claude-haiku-4-5",
                    Usage(input_tokens=12, output_tokens=24))}
    span = {"name": "POST api.anthropic.com/v1/messages", "status": "Ok", "durationMs": 812,
            "attributes": attributes}
    assert _call_line(span) == ("POST api.anthropic.com/v1/messages  allowed  812 ms  "
                                "claude-haiku-4-5  12 in / 24 out tokens  $0.000132")
    attributes.update(call_cost("anthropic", "claude-x", Usage(input_tokens=1)))
    assert _call_line(span).endswith("  unpriced")
