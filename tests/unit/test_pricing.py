"""An LLM call's cost from its usage: each provider family's billing (cache reads and
writes, reasoning tokens), dated model ids, and unpriced models shown as such."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clrk.egress.pricing import cost_attributes, price_of
from clrk.egress.providers import Usage


def usd(provider: str, model: str, **usage: Any) -> str:
    return cost_attributes(provider, model, Usage(**usage))["clrk.cost.usd"]


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
    attrs = cost_attributes("anthropic", "claude-x", Usage(input_tokens=5, output_tokens=5))
    assert attrs == {"clrk.cost.priced": "false",
                     "clrk.cost.unpriced_reason": "no price for anthropic model claude-x"}
    assert cost_attributes("custom", "llama", Usage(input_tokens=1))["clrk.cost.priced"] \
        == "false"
    assert cost_attributes("anthropic", "claude-haiku-4-5", Usage()) == {}  # no usage read


def test_clrk_agents_traces_shows_tokens_and_cost() -> None:
    from clrk.cli.agent_logs import _call_line

    attributes: dict[str, str] = {
        "clrk.decision": "allowed", "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "24",
        **cost_attributes("anthropic", "claude-haiku-4-5",
                          Usage(input_tokens=12, output_tokens=24))}
    span = {"name": "POST api.anthropic.com/v1/messages", "status": "Ok", "durationMs": 812,
            "attributes": attributes}
    assert _call_line(span) == ("POST api.anthropic.com/v1/messages  allowed  812 ms  "
                                "claude-haiku-4-5  12 in / 24 out tokens  $0.000132")
    attributes.update(cost_attributes("anthropic", "claude-x", Usage(input_tokens=1)))
    assert _call_line(span).endswith("  unpriced")
