"""Token usage, per-model rates and the arithmetic that turns one into a cost."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

MTOK = Decimal(1_000_000)
KCOUNT = Decimal(1_000)


class Usage(NamedTuple):
    """Tokens one call used; cache and reasoning counts are subsets of input and output.

    A NamedTuple rather than a frozen dataclass: one is built per call, and it is twice as fast to make.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


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


def _per_million(rate: PerMillion, input_tokens: int) -> Decimal | None:
    if rate is None or isinstance(rate, Decimal):
        return rate
    return rate.at(input_tokens)


@dataclass(frozen=True, slots=True)
class Rate:
    """The prices of one model, per million tokens in `currency` (plus an optional per-request fee)."""

    input_mtok: PerMillion = None
    output_mtok: PerMillion = None
    cache_read_mtok: PerMillion = None
    cache_write_mtok: PerMillion = None
    requests_kcount: Decimal | None = None
    currency: str = "USD"

    def cost(self, usage: Usage) -> Decimal:
        """The cost of `usage`: cache reads and writes at their own rates when known, else as input."""
        total_input = usage.input_tokens
        input_rate = _per_million(self.input_mtok, total_input)
        fresh_input = total_input
        cost = Decimal(0)
        cache_read_rate = _per_million(self.cache_read_mtok, total_input)
        if cache_read_rate is not None and usage.cache_read_tokens:
            cost += cache_read_rate * usage.cache_read_tokens
            fresh_input -= usage.cache_read_tokens
        cache_write_rate = _per_million(self.cache_write_mtok, total_input)
        if cache_write_rate is not None and usage.cache_write_tokens:
            cost += cache_write_rate * usage.cache_write_tokens
            fresh_input -= usage.cache_write_tokens
        if input_rate is not None:
            cost += input_rate * fresh_input
        output_rate = _per_million(self.output_mtok, total_input)
        if output_rate is not None:
            cost += output_rate * usage.output_tokens
        cost /= MTOK
        if self.requests_kcount is not None:
            cost += self.requests_kcount / KCOUNT
        return cost
