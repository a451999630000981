"""ModelPrice: the price of one provider's model, overriding clrk's shipped list prices.

A typed, cluster-scoped resource rather than a ConfigMap: each price is checked when it
is written (a decimal amount, a known provider), ``kubectl get modelprices`` lists what is
in force, RBAC can grant editing prices apart from everything else, and one object per
model means two people changing two prices never overwrite each other. Cluster-scoped,
because a price is the organization's contract with a provider, not a namespace's.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, WithJsonSchema

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.registry import register
from clrk.api.routes import Provider

_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,6})(\.[0-9]{1,9})?$")


def _check_amount(v: str) -> str:
    if not _AMOUNT.match(v):
        raise ValueError(f"{v!r} is not an amount of US dollars per million tokens: write a "
                         "decimal number such as \"3\" or \"0.075\" (at most 9 decimals)")
    return v


Amount = Annotated[str, AfterValidator(_check_amount),
                   WithJsonSchema({"type": "string", "pattern": _AMOUNT.pattern})]


class ModelPriceSpec(Model):
    """US dollars per million tokens of one model of one provider."""

    provider: Provider = Field(description="The provider whose calls this prices, as in "
                               "AIProviderRoute (anthropic, openai, google, azure-openai, "
                               "bedrock, custom). A price for anthropic also applies to Claude "
                               "on bedrock, and openai's to azure-openai, unless those have "
                               "their own.")
    model: str = Field(min_length=1, max_length=200, description="The model id. A dated or "
                       "versioned id of the same model (claude-sonnet-4-5-20250929, "
                       "gpt-4o-2024-08-06) takes this price unless it has its own.")
    input: Amount = Field(description="Input tokens, per million.")
    output: Amount = Field(description="Output tokens, per million.")
    cache_read: Amount | None = Field(default=None, description="Input tokens read from the "
                                      "provider's prompt cache, per million (default: the "
                                      "input price).")
    cache_write: Amount | None = Field(default=None, description="Input tokens written to "
                                       "the prompt cache (Anthropic's cache creation), per "
                                       "million (default: the input price).")
    reasoning: Amount | None = Field(default=None, description="Reasoning (thinking) tokens, "
                                     "per million (default: the output price).")


@register
class ModelPrice(Resource):
    """A model's price, used for every LLM call recorded after it is written."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="ModelPrice", plural="modelprices", short_names=("mp",), namespaced=False,
        has_status=False,
        printer_columns=(
            PrinterColumn("Provider", ".spec.provider"),
            PrinterColumn("Model", ".spec.model"),
            PrinterColumn("Input", ".spec.input"),
            PrinterColumn("Output", ".spec.output"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    spec: ModelPriceSpec = Field(description="The price.")
