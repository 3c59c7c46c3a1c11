"""Rates from genai-prices' bundled data, imported on first use (or `preload`) and never updated over
the network."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .rates import PerMillion, Rate, Tier, TieredRate

RateAt = Callable[[int], Rate]
"""A model's rate at a request time given in nanoseconds since the epoch."""


def _snapshot() -> Any:
    # Imported here: genai-prices costs ~35 ms to import beside the openai SDK (more alone), and only a
    # first lookup (or `preload`) needs it.
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot()


def preload() -> None:
    """Import genai-prices and its data now (~35 ms) rather than in the first call priced, and have it
    compile its providers' URL patterns (~3 ms) by looking up a URL that none of them matches."""
    provider_for_url("https://preload.invalid/")


def provider_for_url(base_url: str) -> str | None:
    """The genai-prices provider id whose API pattern matches `base_url`, if any."""
    try:
        return _snapshot().find_provider(None, None, base_url).id
    except LookupError:
        return None


def known_provider(provider_id: str) -> bool:
    try:
        _snapshot().find_provider(None, provider_id, None)
    except LookupError:
        return False
    return True


def find_rate(provider_id: str | None, model: str) -> tuple[RateAt, str] | None:
    """How to price `model` at `provider_id` (or at the provider genai-prices finds for the name)."""
    snapshot = _snapshot()
    try:
        if provider_id is None:
            provider = snapshot.find_provider(model, None, None)
            model_info = provider.find_model(model, all_providers=snapshot.providers)
            if model_info is None:
                return None
        else:
            provider, model_info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    return _rate_at(model_info), provider.id


def _rate_at(model_info: Any) -> RateAt:
    prices = model_info.prices
    if not isinstance(prices, list):
        rate = _to_rate(prices)
        return lambda _when_ns: rate
    converted: dict[int, Rate] = {}

    def rate_at(when_ns: int) -> Rate:
        model_price = model_info.get_prices(datetime.fromtimestamp(when_ns / 1e9, tz=UTC))
        rate = converted.get(id(model_price))
        if rate is None:
            rate = converted[id(model_price)] = _to_rate(model_price)
        return rate

    return rate_at


def _to_rate(model_price: Any) -> Rate:
    return Rate(
        input_mtok=_per_million(getattr(model_price, "input_mtok", None)),
        output_mtok=_per_million(getattr(model_price, "output_mtok", None)),
        cache_read_mtok=_per_million(getattr(model_price, "cache_read_mtok", None)),
        cache_write_mtok=_per_million(getattr(model_price, "cache_write_mtok", None)),
        requests_kcount=getattr(model_price, "requests_kcount", None),
        input_audio_mtok=_per_million(getattr(model_price, "input_audio_mtok", None)),
        output_audio_mtok=_per_million(getattr(model_price, "output_audio_mtok", None)),
    )


def _per_million(value: Any) -> PerMillion:
    if value is None or isinstance(value, Decimal):
        return value
    return TieredRate(base=value.base, tiers=tuple(Tier(tier.start, tier.price) for tier in value.tiers))
