"""Prices for estimates: the shipped on-demand table (`instance_prices.yaml`) under the config's overrides."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import yaml

from step_code.contract.config import Config

Usage = Literal["inference", "processing", "training"]
USAGES: tuple[Usage, ...] = ("inference", "processing", "training")
PRICE_TABLE_FILE = "instance_prices.yaml"


@dataclass(frozen=True)
class PriceTable:
    source: str
    as_of: str
    region: str
    instance_usd_per_hour: dict[Usage, dict[str, float]]
    bedrock_usd_per_1k_tokens: dict[str, dict[str, float]]


@cache
def price_table() -> PriceTable:
    raw = yaml.safe_load(resources.files("step_code.contract").joinpath(PRICE_TABLE_FILE).read_text("utf-8"))
    return PriceTable(
        source=str(raw["source"]),
        as_of=str(raw["as_of"]),
        region=str(raw["region"]),
        instance_usd_per_hour={usage: {k: float(v) for k, v in raw[usage].items()} for usage in USAGES},
        bedrock_usd_per_1k_tokens={
            model: {kind: float(price) for kind, price in prices.items()}
            for model, prices in raw["bedrock_usd_per_1k_tokens"].items()
        },
    )


PRICE_TABLE_AS_OF: str = price_table().as_of


def instance_usd_per_hour(instance_type: str, config: Config, usage: Usage = "inference") -> float | None:
    """USD per instance-hour: the config's override, else the table's price for that use, else None."""
    override = config.pricing.instance_usd_per_hour.get(instance_type)
    if override is not None:
        return override
    return price_table().instance_usd_per_hour[usage].get(instance_type)


def bedrock_usd_per_1k_tokens(model_id: str, config: Config) -> dict[str, float] | None:
    """{"input": USD, "output": USD} per 1,000 tokens: the config's override, else the table, else None."""
    override = config.pricing.bedrock_usd_per_1k_tokens.get(model_id)
    if override is not None:
        return {str(kind): price for kind, price in override.items()}
    prices = price_table().bedrock_usd_per_1k_tokens.get(model_id)
    return dict(prices) if prices is not None else None
