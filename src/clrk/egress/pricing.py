"""What an LLM call cost, from its usage and the provider's list prices.

Each recorded LLM call carries its cost (``clrk.cost.usd``) computed when it is recorded,
or ``clrk.cost.priced=false`` and why: a model missing from the table is unpriced, never
free. Prices are US dollars per million tokens, per provider and model, with the cache
and reasoning rates apart; the shipped table holds list prices (LIST_PRICES_AS_OF).

Providers count tokens differently, and the cost follows each one's billing:

- Anthropic (and Claude on Bedrock): ``input_tokens`` excludes cache reads and writes,
  which are billed at their own rates; thinking is part of ``output_tokens``.
- OpenAI and Azure OpenAI: ``prompt_tokens`` includes ``cached_tokens`` (billed at the
  cached rate); ``completion_tokens`` includes reasoning tokens (billed as output).
- Google: ``promptTokenCount`` includes ``cachedContentTokenCount``;
  ``candidatesTokenCount`` excludes ``thoughtsTokenCount``, billed as output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clrk.egress.providers import Usage

LIST_PRICES_AS_OF = "2025-11-01"
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens. ``cache_read``/``cache_write`` None: billed as
    input; ``reasoning`` None: billed as output."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None


def _p(inp: str, out: str, cache_read: str | None = None, cache_write: str | None = None
       ) -> Price:
    return Price(Decimal(inp), Decimal(out), Decimal(cache_read) if cache_read else None,
                 Decimal(cache_write) if cache_write else None)


# Provider family -> model -> price (a dated or versioned model id finds its family's
# entry: "claude-haiku-4-5-20251001" and "gpt-4o-mini-2024-07-18" do).
LIST_PRICES: dict[str, dict[str, Price]] = {
    "anthropic": {
        "claude-opus-4-5": _p("5", "25", "0.50", "6.25"),
        "claude-opus-4-1": _p("15", "75", "1.50", "18.75"),
        "claude-opus-4": _p("15", "75", "1.50", "18.75"),
        "claude-sonnet-4-5": _p("3", "15", "0.30", "3.75"),
        "claude-sonnet-4": _p("3", "15", "0.30", "3.75"),
        "claude-3-7-sonnet": _p("3", "15", "0.30", "3.75"),
        "claude-haiku-4-5": _p("1", "5", "0.10", "1.25"),
        "claude-3-5-haiku": _p("0.80", "4", "0.08", "1"),
    },
    "openai": {
        "gpt-5": _p("1.25", "10", "0.125"),
        "gpt-5-mini": _p("0.25", "2", "0.025"),
        "gpt-5-nano": _p("0.05", "0.40", "0.005"),
        "gpt-4.1": _p("2", "8", "0.50"),
        "gpt-4.1-mini": _p("0.40", "1.60", "0.10"),
        "gpt-4.1-nano": _p("0.10", "0.40", "0.025"),
        "gpt-4o": _p("2.50", "10", "1.25"),
        "gpt-4o-mini": _p("0.15", "0.60", "0.075"),
        "o3": _p("2", "8", "0.50"),
        "o4-mini": _p("1.10", "4.40", "0.275"),
    },
    "google": {
        "gemini-2.5-pro": _p("1.25", "10", "0.31"),
        "gemini-2.5-flash": _p("0.30", "2.50", "0.075"),
        "gemini-2.5-flash-lite": _p("0.10", "0.40", "0.025"),
        "gemini-2.0-flash": _p("0.10", "0.40", "0.025"),
    },
}
# Which family's table and billing a provider of a route uses.
FAMILY = {"anthropic": "anthropic", "bedrock": "anthropic", "openai": "openai",
          "azure-openai": "openai", "google": "google"}
_BEDROCK_ID = re.compile(r"^(?:[a-z]{2}\.)?anthropic\.(?P<model>.+?)(?:-v\d+(?::\d+)?)?$")
_DATE = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


def _model_key(family: str, provider: str, model: str) -> str:
    model = model.strip().lower().removeprefix("models/")
    if provider == "bedrock" and (m := _BEDROCK_ID.match(model)):
        model = m.group("model")
    return _DATE.sub("", model)


def price_of(provider: str, model: str | None,
             table: dict[str, dict[str, Price]] | None = None) -> Price | None:
    """The model's price: its own entry, else the longest entry it extends with a
    ``-suffix`` (a snapshot or variant of that model); None when it has none."""
    family = FAMILY.get(provider)
    if family is None or not model:
        return None
    prices = (table or LIST_PRICES).get(family) or {}
    key = _model_key(family, provider, model)
    if key in prices:
        return prices[key]
    matches = [name for name in prices if key.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


def cost(provider: str, price: Price, usage: Usage) -> Decimal:
    """US dollars for the call, following the provider family's billing (module doc)."""
    family = FAMILY.get(provider, "openai")
    inp, out = usage.input_tokens or 0, usage.output_tokens or 0
    read = usage.cache_read_input_tokens or 0
    write = usage.cache_creation_input_tokens or 0
    reasoning = usage.reasoning_output_tokens or 0
    if family != "anthropic":
        inp = max(0, inp - read)  # the prompt count included the cached tokens
        write = 0  # no separate cache-write count outside Anthropic's
    if family == "google":
        out += reasoning  # thoughts are billed as output, and not in the output count
    elif price.reasoning is not None:
        out = max(0, out - reasoning)  # the output count included them
    total = (inp * price.input + out * price.output
             + read * (price.cache_read if price.cache_read is not None else price.input)
             + write * (price.cache_write if price.cache_write is not None else price.input))
    if price.reasoning is not None and family != "google":
        total += reasoning * price.reasoning
    return total / MILLION


def cost_attributes(provider: str, model: str | None, usage: Usage,
                    table: dict[str, dict[str, Price]] | None = None) -> dict[str, str]:
    """``clrk.cost.usd`` (a decimal string), or ``clrk.cost.priced=false`` and why."""
    if not usage.known:
        return {}
    price = price_of(provider, model, table)
    if price is None:
        return {"clrk.cost.priced": "false",
                "clrk.cost.unpriced_reason": f"no price for {provider} model {model or '?'}"}
    amount = cost(provider, price, usage).quantize(Decimal("0.000000001"))
    return {"clrk.cost.priced": "true", "clrk.cost.usd": f"{amount.normalize():f}"}
