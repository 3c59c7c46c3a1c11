"""The prices file: a team's own rates (resellers, gateways, self-hosted models), in TOML or JSON."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from . import genai
from .rates import PerMillion, Rate, Tier, TieredRate

RATE_FIELDS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "input_audio_mtok",
    "output_audio_mtok",
)
PROVIDER_FIELDS = {"match", "currency", "usd_per_unit", "models", "prices_from", "provider"}


class PricesFileError(ValueError):
    """A prices file that cannot be used; `problems` lists each one with its location."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class FileProvider:
    """One `[[providers]]` entry."""

    match: str
    models: dict[str, Rate] = field(default_factory=dict)
    prices_from: str | None = None
    usd_per_unit: Decimal = Decimal(1)
    provider: str | None = None  # the gen_ai.provider.name of this host (a self-hosted vLLM, say)

    def matches(self, host: str, port: int, base_url: str) -> bool:
        """Whether this entry applies to a client whose base URL is `base_url`."""
        match = self.match
        if "://" in match:
            prefix = match.rstrip("/")
            return base_url == prefix or base_url.startswith(prefix + "/")
        named = _host_and_port(match)
        return named is not None and named[0] == host and named[1] in (None, port)


def _host_and_port(match: str) -> tuple[str, int | None] | None:
    """A `match` that is not a URL prefix, as (host, port or None): `host`, `host:port`, an IPv6 address
    (`::1`, `[::1]`, `[::1]:8000`); the host lower case, as a URL's hostname is. None when malformed."""
    if match.startswith("["):
        host, bracket, rest = match[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return host.lower(), int(rest[1:]) if rest else None
    if match.count(":") == 1:
        host, _, port = match.partition(":")
        return (host.lower(), int(port)) if host and port.isdigit() else None
    return match.lower(), None


def load(path: str | Path) -> list[FileProvider]:
    """Read and validate a prices file; raises PricesFileError listing every problem."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PricesFileError(path, [f"cannot read: {error.strerror or error}"]) from None
    is_json = path.lower().endswith(".json")
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise PricesFileError(path, [f"not valid {'JSON' if is_json else 'TOML'}: {error}"]) from None
    problems: list[str] = []
    providers = _providers(data, problems)
    if problems:
        raise PricesFileError(path, problems)
    return providers


def _providers(data: Any, problems: list[str]) -> list[FileProvider]:
    entries = data.get("providers") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        problems.append("providers: expected a non-empty list of [[providers]] tables")
        return []
    providers = []
    for index, entry in enumerate(entries):
        provider = _provider(entry, f"providers[{index}]", problems)
        if provider is not None:
            providers.append(provider)
    return providers


def _provider(entry: Any, where: str, problems: list[str]) -> FileProvider | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a table")
        return None
    before = len(problems)
    for unknown in sorted(set(entry) - PROVIDER_FIELDS):
        problems.append(f"{where}.{unknown}: unknown field")
    match = entry.get("match")
    if not isinstance(match, str) or not match.strip():
        problems.append(f"{where}.match: expected a host, host:port or URL prefix")
    elif "://" not in match and _host_and_port(match.strip()) is None:
        problems.append(f"{where}.match: expected a host, host:port or URL prefix, got {match!r}")
    currency = entry.get("currency", "USD")
    usd_per_unit = _decimal(entry.get("usd_per_unit", 1), f"{where}.usd_per_unit", problems)
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        problems.append(f"{where}.currency: expected an ISO 4217 code such as USD")
    elif currency.upper() != "USD" and "usd_per_unit" not in entry:
        problems.append(f"{where}.usd_per_unit: required when currency is {currency}")
    prices_from = entry.get("prices_from")
    if prices_from is not None and not (isinstance(prices_from, str) and genai.known_provider(prices_from)):
        problems.append(f"{where}.prices_from: expected a genai-prices provider id, got {prices_from!r}")
    provider = entry.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        problems.append(f"{where}.provider: expected a provider name such as vllm")
    models = _models(entry.get("models", {}), f"{where}.models", str(currency).upper(), problems)
    if not models and prices_from is None:
        problems.append(f"{where}: needs models or prices_from")
    if len(problems) > before:
        return None
    return FileProvider(
        match=match.strip(),
        models=models,
        prices_from=prices_from,
        usd_per_unit=usd_per_unit,
        provider=provider,
    )


def _models(models: Any, where: str, currency: str, problems: list[str]) -> dict[str, Rate]:
    if not isinstance(models, dict):
        problems.append(f"{where}: expected a table of models")
        return {}
    rates = {}
    for name, prices in models.items():
        rate = _rate(prices, f'{where}."{name}"', currency, problems)
        if rate is not None:
            rates[name] = rate
    return rates


def _rate(prices: Any, where: str, currency: str, problems: list[str]) -> Rate | None:
    if not isinstance(prices, dict):
        problems.append(f"{where}: expected a table of prices")
        return None
    for unknown in sorted(set(prices) - {*RATE_FIELDS, "requests_kcount"}):
        problems.append(f"{where}.{unknown}: unknown price field")
    if "input_mtok" not in prices and "output_mtok" not in prices:
        problems.append(f"{where}: needs input_mtok or output_mtok")
    values = {
        name: _per_million(prices[name], f"{where}.{name}", problems)
        for name in RATE_FIELDS
        if name in prices
    }
    requests = prices.get("requests_kcount")
    if requests is not None:
        values["requests_kcount"] = _decimal(requests, f"{where}.requests_kcount", problems)
    return Rate(**values, currency=currency)


def _per_million(value: Any, where: str, problems: list[str]) -> PerMillion:
    if not isinstance(value, dict):
        return _decimal(value, where, problems)
    tiers = value.get("tiers")
    if not isinstance(tiers, list):
        problems.append(f"{where}.tiers: expected a list of {{start, price}} tables")
        tiers = []
    parsed = []
    for index, tier in enumerate(tiers):
        start = tier.get("start") if isinstance(tier, dict) else None
        if type(start) is not int or start < 0:
            problems.append(f"{where}.tiers[{index}].start: expected a non-negative integer")
            continue
        parsed.append(Tier(start, _decimal(tier.get("price"), f"{where}.tiers[{index}].price", problems)))
    base = _decimal(value.get("base"), f"{where}.base", problems)
    return TieredRate(base=base, tiers=tuple(sorted(parsed, key=lambda tier: tier.start)))


def _decimal(value: Any, where: str, problems: list[str]) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append(f"{where}: expected a number, got {type(value).__name__}")
        return Decimal(0)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        problems.append(f"{where}: expected a non-negative number, got {value!r}")
        return Decimal(0)
    return number
