"""What an LLM call cost, from its usage and the price table in force.

Each LLM call gets its cost (``clrk.cost.usd``) when the API server records it, or
``clrk.cost.priced=false`` and why: a model missing from the table is unpriced, never
free. The gateway only says which provider and model bill the call
(``clrk.cost.provider``, ``clrk.cost.model``: a translated call is billed by the Backend
that answered it) next to the usage it read. Prices are US dollars per million tokens,
per provider and model, with the cache and reasoning rates apart; the shipped table holds
list prices (LIST_PRICES_AS_OF), and ModelPrice objects (:mod:`clrk.api.pricing`)
override them, a provider's own entry before its family's.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

LIST_PRICES_AS_OF = "2025-11-01"
MILLION = Decimal(1_000_000)
BILLED_PROVIDER = "clrk.cost.provider"
BILLED_MODEL = "clrk.cost.model"


_USAGE_ATTRIBUTES = {"input_tokens": "gen_ai.usage.input_tokens",
                     "output_tokens": "gen_ai.usage.output_tokens",
                     "cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
                     "cache_creation_input_tokens": "gen_ai.usage.cache_creation.input_tokens",
                     "reasoning_output_tokens": "gen_ai.usage.reasoning.output_tokens"}


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


@dataclass
class Tokens:
    """A call's token counts as the provider reported them (a gateway's ``Usage`` adds
    the model and response id), or read back from a recorded call's usage attributes."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None

    @property
    def known(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, str]) -> Tokens:
        return cls(**{field: _count(attrs.get(key))
                      for field, key in _USAGE_ATTRIBUTES.items()})


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


def _model_key(provider: str, model: str) -> str:
    model = model.strip().lower().removeprefix("models/")
    if provider == "bedrock" and (m := _BEDROCK_ID.match(model)):
        model = m.group("model")
    return _DATE.sub("", model)


def _lookup(prices: Mapping[str, Price], key: str) -> Price | None:
    """The model's own entry, else the longest entry it extends with a ``-suffix`` (a
    snapshot or variant of that model)."""
    if key in prices:
        return prices[key]
    matches = [name for name in prices if key.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


class PriceTable:
    """The list prices with the user's ModelPrice overrides on top."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Price]] | None = None) -> None:
        self.overrides = {provider: dict(models)
                          for provider, models in (overrides or {}).items()}

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> PriceTable:
        """From stored ModelPrice objects (already validated when written)."""
        overrides: dict[str, dict[str, Price]] = {}
        for obj in objects:
            spec = obj["spec"]
            provider = str(spec["provider"])
            key = _model_key(provider, str(spec["model"]))
            overrides.setdefault(provider, {})[key] = Price(
                Decimal(spec["input"]), Decimal(spec["output"]),
                *(Decimal(spec[k]) if spec.get(k) is not None else None
                  for k in ("cacheRead", "cacheWrite", "reasoning")))
        return cls(overrides)

    def price_of(self, provider: str, model: str | None) -> Price | None:
        """The provider's own override, its family's override, then the list price."""
        if not model:
            return None
        family = FAMILY.get(provider)
        key = _model_key(provider, model)
        for prices in (self.overrides.get(provider),
                       self.overrides.get(family) if family else None,
                       LIST_PRICES.get(family) if family else None):
            found = _lookup(prices or {}, key)
            if found is not None:
                return found
        return None


LIST = PriceTable()


def price_of(provider: str, model: str | None, table: PriceTable = LIST) -> Price | None:
    return table.price_of(provider, model)


def cost(provider: str, price: Price, usage: Tokens) -> Decimal:
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


def billed_as(provider: str, model: str | None) -> dict[str, str]:
    """What a gateway records of a call for its pricing: who bills it, for which model."""
    return {BILLED_PROVIDER: provider, **({BILLED_MODEL: model} if model else {})}


def cost_attributes(attrs: Mapping[str, str], table: PriceTable = LIST) -> dict[str, str]:
    """The cost attributes of a recorded call (its ``billed_as`` and usage attributes);
    nothing for a span that is no priced call or whose usage was not read."""
    provider = attrs.get(BILLED_PROVIDER)
    if not provider:
        return {}
    return call_cost(provider, attrs.get(BILLED_MODEL), Tokens.from_attributes(attrs), table)


def call_cost(provider: str, model: str | None, usage: Tokens,
              table: PriceTable = LIST) -> dict[str, str]:
    """``clrk.cost.usd`` (a decimal string), or ``clrk.cost.priced=false`` and why."""
    if not usage.known:
        return {}
    price = table.price_of(provider, model)
    if price is None:
        return {"clrk.cost.priced": "false",
                "clrk.cost.unpriced_reason": f"no price for {provider} model {model or '?'}"}
    amount = cost(provider, price, usage).quantize(Decimal("0.000000001"))
    return {"clrk.cost.priced": "true", "clrk.cost.usd": f"{amount.normalize():f}"}
