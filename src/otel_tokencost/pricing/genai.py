"""Rates from genai-prices' bundled data, imported on first use (or `preload`) and never updated over
the network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from ..money import MONEY
from .rates import PerMillion, Rate, Tier, TieredRate

RateAt = Callable[[int, "str | None"], Rate]
"""A model's rate at a request time given in nanoseconds since the epoch, for the service tier that served
the call as its response states it (None when it states none)."""

OPENAI, FLEX = "openai", "flex"  # the tier OpenAI bills at half its standard rates
NS_PER_DAY = 86_400 * 10**9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIER_RATES = 64  # a model's tier rates kept: a few tiers, one day each (tier prices start on a date)


def _snapshot() -> Any:
    # Imported here: genai-prices costs ~35 ms to import beside the openai SDK (more alone), and only a
    # first lookup (or `preload`) needs it.
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot()


def preload() -> None:
    """Import genai-prices and its data now (~35 ms) rather than in the first call priced, and have it
    compile its providers' URL patterns (~3 ms) by looking up a URL that none of them matches."""
    provider_for_url("https://preload.invalid/")


# Providers' own API hosts that genai-prices' URL patterns miss, and the provider whose prices apply:
# Together's documented host, Mistral's Codestral host, OpenAI's regional hosts (eu.api.openai.com).
MISSED_HOSTS = {"api.together.ai": "together", "codestral.mistral.ai": "mistral"}
MISSED_HOST_SUFFIXES = ((".api.openai.com", "openai"),)


def provider_for_url(base_url: str) -> str | None:
    """The genai-prices provider id whose API pattern matches `base_url` (scheme and host lower case),
    or which owns a host the patterns miss; None for any other URL."""
    try:
        return _snapshot().find_provider(None, None, base_url).id
    except LookupError:
        pass
    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return None
    provider = MISSED_HOSTS.get(host)
    if provider is None:
        provider = next((owner for suffix, owner in MISSED_HOST_SUFFIXES if host.endswith(suffix)), None)
    return provider


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
            model = model.lower()  # as genai-prices looks names up: some providers' patterns are lower case
            provider = snapshot.find_provider(model, None, None)
            model_info = provider.find_model(model, all_providers=snapshot.providers)
            if model_info is None:
                return None
        else:
            provider, model_info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    return _rate_at(model_info, provider), provider.id


def _rate_at(model_info: Any, provider: Any) -> RateAt:
    """A model's standard rate at a request time, unless a service tier priced apart served the call:
    genai-prices' rates for that tier where it has them in force, else, at OpenAI, flex at half the
    standard rates (as OpenAI bills it). A tier's rate is worked out once a day: its prices start on a
    date. A model the provider takes from another's list (Azure's from OpenAI's) has that one's
    standard rates only, as genai-prices prices it."""
    standard_at = _standard_rate_at(model_info)
    own = any(model_info is listed for listed in provider.models)
    tiers = _tier_variants(model_info) if own else {}
    halves_flex = provider.id == OPENAI
    if not tiers and not halves_flex:
        return lambda when_ns, _tier: standard_at(when_ns)
    tier_rates: dict[tuple[str, int, int], Rate] = {}

    def rate_at(when_ns: int, tier: str | None) -> Rate:
        standard = standard_at(when_ns)
        if tier not in tiers and (tier != FLEX or not halves_flex):
            return standard  # no tier named, `default`, or one priced as standard
        key = (tier, when_ns // NS_PER_DAY, id(standard))
        rate = tier_rates.get(key)
        if rate is None:
            moment = _moment(when_ns)
            variants = tiers.get(tier, ())
            if any(variant.constraint is None or variant.constraint.active(moment) for variant in variants):
                rate = _to_rate(model_info.get_prices(moment, {"service_tier": tier}))
            else:
                rate = _halved(standard) if tier == FLEX and halves_flex else standard
            if len(tier_rates) >= MAX_TIER_RATES:
                tier_rates.clear()
            tier_rates[key] = rate
        return rate

    return rate_at


def _tier_variants(model_info: Any) -> dict[str, list[Any]]:
    """The model's price variants that name a service tier alone and change a price, by tier (genai-prices
    before 0.2.3 has none)."""
    tiers: dict[str, list[Any]] = {}
    for variant in getattr(model_info, "price_variants", None) or ():
        when = variant.when
        if len(when) == 1 and "service_tier" in when and any(vars(variant.prices).values()):
            tiers.setdefault(when["service_tier"], []).append(variant)
    return tiers


def _halved(rate: Rate) -> Rate:
    """`rate` with every price at half, exactly."""
    return replace(
        rate,
        input_mtok=_half(rate.input_mtok),
        output_mtok=_half(rate.output_mtok),
        cache_read_mtok=_half(rate.cache_read_mtok),
        cache_write_mtok=_half(rate.cache_write_mtok),
        requests_kcount=_half(rate.requests_kcount),
        input_audio_mtok=_half(rate.input_audio_mtok),
        output_audio_mtok=_half(rate.output_audio_mtok),
        output_reasoning_mtok=_half(rate.output_reasoning_mtok),
    )


def _half(price: PerMillion) -> PerMillion:
    if price is None:
        return None
    if price.__class__ is TieredRate:
        halves = tuple(Tier(tier.start, MONEY.divide(tier.price, 2)) for tier in price.tiers)
        return TieredRate(MONEY.divide(price.base, 2), halves)
    return MONEY.divide(price, 2)


def _moment(when_ns: int) -> datetime:
    """The request time to the microsecond, as datetime keeps it: truncated, never rounded up past a price
    change."""
    return EPOCH + timedelta(microseconds=when_ns // 1_000)


def _standard_rate_at(model_info: Any) -> Callable[[int], Rate]:
    prices = model_info.prices
    if not isinstance(prices, list):
        rate = _to_rate(prices)
        return lambda _when_ns: rate
    converted: dict[int, Rate] = {}

    def rate_at(when_ns: int) -> Rate:
        model_price = model_info.get_prices(_moment(when_ns))
        rate = converted.get(id(model_price))
        if rate is None:
            rate = converted[id(model_price)] = _to_rate(model_price)
        return rate

    return rate_at


def _to_rate(model_price: Any) -> Rate:
    """A genai-prices ModelPrice as a Rate: its prices for the token kinds a chat usage tells apart
    (input, cached and cache-write input, output, reasoning, audio in and out), its fee per request and
    per web search (the Responses API's hosted tool counts them). Its other prices are for counts no chat
    usage gives (image, video and citation tokens, cache writes by TTL, other searches, audio hours,
    characters, pages): without those counts genai-prices, too, bills such tokens at the text rates and
    the rest not at all."""
    return Rate(
        input_mtok=_per_million(getattr(model_price, "input_mtok", None)),
        output_mtok=_per_million(getattr(model_price, "output_mtok", None)),
        cache_read_mtok=_per_million(getattr(model_price, "cache_read_mtok", None)),
        cache_write_mtok=_per_million(getattr(model_price, "cache_write_mtok", None)),
        requests_kcount=getattr(model_price, "requests_kcount", None),
        input_audio_mtok=_per_million(getattr(model_price, "input_audio_mtok", None)),
        output_audio_mtok=_per_million(getattr(model_price, "output_audio_mtok", None)),
        output_reasoning_mtok=_per_million(getattr(model_price, "output_reasoning_mtok", None)),
        web_searches_kcount=getattr(model_price, "web_searches_kcount", None),
    )


def _per_million(value: Any) -> PerMillion:
    if value is None or isinstance(value, Decimal):
        return value
    return TieredRate(base=value.base, tiers=tuple(Tier(tier.start, tier.price) for tier in value.tiers))
