"""Token usage, per-model rates and the arithmetic that turns one into a cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from ..money import MONEY


class Usage(NamedTuple):
    """Tokens one call used; cache, audio and reasoning counts are subsets of input and output (audio
    input is the part not read from the cache). And the web searches its hosted tool made (Responses).

    A NamedTuple rather than a frozen dataclass: one is built per call, and it is twice as fast to make.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    web_searches: int = 0


@dataclass(frozen=True, slots=True)
class Tier:
    """A rate that applies to every token once the call's input exceeds `start` tokens."""

    start: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class TieredRate:
    """A per-million rate that steps up with the call's input size (genai-prices' cliff model)."""

    base: Decimal
    tiers: tuple[Tier, ...]

    def at(self, input_tokens: int) -> Decimal:
        for tier in reversed(self.tiers):
            if input_tokens > tier.start:
                return tier.price
        return self.base


PerMillion = Decimal | TieredRate | None
Units = int | tuple[int, tuple[tuple[int, int], ...]] | None  # a rate in integer units; tiered: base, tiers


@dataclass(frozen=True, slots=True)
class Rate:
    """The prices of one model, per million tokens in `currency` (plus optional fees per request and per
    web search).
    Audio and reasoning tokens have rates of their own where the model has them; without them they are
    billed as text input and output.

    The arithmetic is done on integers: each price is kept as a whole number of 10**-scale units per
    million tokens, so a call's cost is an exact whole number of 10**`exponent` units, and no Decimal
    is made unless one is asked for.
    """

    input_mtok: PerMillion = None
    output_mtok: PerMillion = None
    cache_read_mtok: PerMillion = None
    cache_write_mtok: PerMillion = None
    requests_kcount: Decimal | None = None
    currency: str = "USD"
    input_audio_mtok: PerMillion = None
    output_audio_mtok: PerMillion = None
    output_reasoning_mtok: PerMillion = None
    web_searches_kcount: Decimal | None = None
    _units: tuple[Units, ...] = field(init=False, repr=False, compare=False)
    exponent: int = field(init=False, repr=False, compare=False)  # of one unit of a whole call's cost
    _request_units: int = field(init=False, repr=False, compare=False)  # the per-request fee, in units
    _search_units: int = field(init=False, repr=False, compare=False)  # the fee per web search, in units
    _tiered: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rates = (
            self.input_mtok,
            self.output_mtok,
            self.cache_read_mtok,
            self.cache_write_mtok,
            self.input_audio_mtok,
            self.output_audio_mtok,
            self.output_reasoning_mtok,
        )
        scale = max((_decimals(price) for rate in rates for price in _prices(rate)), default=0)
        fees = (self.requests_kcount, self.web_searches_kcount)  # per 1,000, in the same units
        scale = max([scale, *(_decimals(fee) - 3 for fee in fees if fee is not None)])
        set_field = object.__setattr__
        set_field(self, "_units", tuple(_units(rate, scale) for rate in rates))
        set_field(self, "exponent", -(scale + 6))
        request_fee, search_fee = (0 if fee is None else int(fee.scaleb(scale + 3, MONEY)) for fee in fees)
        set_field(self, "_request_units", request_fee)
        set_field(self, "_search_units", search_fee)
        set_field(self, "_tiered", any(rate.__class__ is TieredRate for rate in rates))

    def units(self, usage: Usage) -> int:
        """The cost of `usage` in units of 10**`exponent`: cache reads and writes, audio and reasoning at
        their own rates when known, else as text input and output (as genai-prices' calc_price does)."""
        (
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            reasoning,
            input_audio,
            output_audio,
            searches,
        ) = usage
        units = self._units
        if self._tiered:  # the rates in force for this call's input size
            units = tuple(_units_at(rate, input_tokens) for rate in units)
        (
            input_rate,
            output_rate,
            cache_read_rate,
            cache_write_rate,
            audio_in_rate,
            audio_out_rate,
            reasoning_rate,
        ) = units
        text_input, text_output = input_tokens, output_tokens
        total = 0
        if cache_read_rate is not None and cache_read:
            total += cache_read_rate * cache_read
            text_input -= cache_read
        if cache_write_rate is not None and cache_write:
            total += cache_write_rate * cache_write
            text_input -= cache_write
        if audio_in_rate is not None and input_audio:
            total += audio_in_rate * input_audio
            text_input -= input_audio
        if audio_out_rate is not None and output_audio:
            total += audio_out_rate * output_audio
            text_output -= output_audio
        if reasoning_rate is not None and reasoning:
            reasoning = min(reasoning, text_output)  # never more than the output left to bill
            total += reasoning_rate * reasoning
            text_output -= reasoning
        if input_rate is not None:
            total += input_rate * text_input
        if output_rate is not None:
            total += output_rate * text_output
        if searches:
            total += self._search_units * searches
        return total + self._request_units


def exact(units: int, exponent: int) -> Decimal:
    """`units` * 10**`exponent` as a Decimal, without trailing zeros: 0.0000318, not 0.00003180."""
    if not units:
        return Decimal(0)
    while exponent < 0 and not units % 10:
        units //= 10
        exponent += 1
    return Decimal(units).scaleb(exponent, MONEY)


def as_float(units: int, exponent: int) -> float:
    """`units` * 10**`exponent` as the nearest float, as float(exact(units, exponent)) but cheaper."""
    return units / 10**-exponent if exponent < 0 else float(units * 10**exponent)


def _prices(rate: PerMillion) -> tuple[Decimal, ...]:
    if rate is None:
        return ()
    if rate.__class__ is TieredRate:
        return (rate.base, *(tier.price for tier in rate.tiers))
    return (rate,)


def _decimals(price: Decimal) -> int:
    exponent = price.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _units(rate: PerMillion, scale: int) -> Units:
    if rate is None:
        return None
    if rate.__class__ is TieredRate:
        tiers = tuple((tier.start, int(tier.price.scaleb(scale, MONEY))) for tier in reversed(rate.tiers))
        return int(rate.base.scaleb(scale, MONEY)), tiers
    return int(rate.scaleb(scale, MONEY))


def _units_at(units: Units, input_tokens: int) -> int | None:
    if units.__class__ is not tuple:
        return units
    base, tiers = units
    for start, tier_units in tiers:  # highest first
        if input_tokens > start:
            return tier_units
    return base
