"""The prices file: a team's own rates (resellers, gateways, self-hosted models), in TOML or JSON."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from . import genai
from .rates import PerMillion, Rate, Tier, TieredRate

RATE_FIELDS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "input_audio_mtok",
    "output_audio_mtok",
    "output_reasoning_mtok",
)
FEE_FIELDS = ("requests_kcount", "web_searches_kcount")  # per 1,000 requests, per 1,000 web searches
PROVIDER_FIELDS = {"match", "currency", "usd_per_unit", "models", "prices_from", "provider"}
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_PORT = 65535


class PricesFileError(ValueError):
    """A prices file that cannot be used; `problems` lists each one with its location."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class Address(NamedTuple):
    """What a `match` compares in a base URL: scheme and host lower case, the port (the scheme's default
    when the URL names none) and the path without its trailing slash (case-sensitive)."""

    scheme: str
    host: str
    port: int
    path: str


class HostMatch(NamedTuple):
    """A `match` naming a host, and a port or None for any."""

    host: str
    port: int | None


def address(url: str) -> Address:
    """The Address of a base URL; raises ValueError when it is malformed (a port out of range, an
    unclosed IPv6 bracket)."""
    parts = urlsplit(url)
    scheme = parts.scheme  # urlsplit gives scheme and hostname lower case
    return Address(
        scheme, parts.hostname or "", parts.port or DEFAULT_PORTS.get(scheme, 80), parts.path.rstrip("/")
    )


@dataclass(frozen=True, slots=True)
class FileProvider:
    """One `[[providers]]` entry."""

    match: str
    models: dict[str, Rate] = field(default_factory=dict)
    prices_from: str | None = None
    usd_per_unit: Decimal = Decimal(1)
    provider: str | None = None  # the gen_ai.provider.name of this host (a self-hosted vLLM, say)
    _target: Address | HostMatch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_target", parse_match(self.match))

    def matches(self, base: Address) -> bool:
        """Whether this entry applies to a client whose base URL has the Address `base`."""
        target = self._target
        if target.__class__ is HostMatch:
            return target.host == base.host and target.port in (None, base.port)
        path = target.path
        return base[:3] == target[:3] and (base.path == path or base.path.startswith(path + "/"))

    @property
    def specificity(self) -> tuple[int, int]:
        """How narrowly the entry matches: a URL prefix (the longer its path, the narrower), then
        host:port, then a host. Of the entries that match a URL, the narrowest wins."""
        target = self._target
        if target.__class__ is HostMatch:
            return (0 if target.port is None else 1, 0)
        return 2, len(target.path)


def parse_match(match: str) -> Address | HostMatch:
    """A `match`: a URL prefix, `host`, `host:port` or an IPv6 address (`::1`, `[::1]`, `[::1]:8000`),
    the scheme and host lower case, as a URL's are. Raises ValueError saying what is wrong."""
    if "://" in match:
        return _prefix(match)
    if "/" in match:
        raise ValueError("a URL prefix starts with http:// or https://")
    if match.startswith("["):
        host, bracket, rest = match[1:].partition("]")
        if not bracket or not host or (rest and rest[0] != ":"):
            raise ValueError("an IPv6 address is written [address] or [address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        return HostMatch(host.lower(), _port(rest[1:]) if rest else None)
    if match.count(":") == 1:
        host, _, port = match.partition(":")
        if not host:
            raise ValueError("no host before the port")
        return HostMatch(_host(host), _port(port))
    return HostMatch(_host(match), None)


# A host name as a URL can hold it: dot-separated labels of letters, digits, `-` and `_`.
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def _host(host: str) -> str:
    """A `match`'s host, lower case, as a URL's is. Raises ValueError for one no URL can have."""
    host = host.lower()
    if HOST_NAME.fullmatch(host):
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if "*" in host:
            raise ValueError("a host is matched whole, without wildcards: name each host") from None
        raise ValueError(f"{host!r} is not a host name or an IP address") from None
    return host


def _prefix(match: str) -> Address:
    """A URL-prefix `match` as an Address. Raises ValueError saying what is wrong (urlsplit's own
    errors among them: "Port out of range 0-65535", "Invalid IPv6 URL")."""
    parts = urlsplit(match)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("a URL prefix starts with http:// or https://")
    if parts.query or parts.fragment:
        raise ValueError("a URL prefix has no query or fragment")
    if parts.port == 0:
        raise ValueError(f"a port is a number from 1 to {MAX_PORT}")
    found = address(match)
    if not found.host:
        raise ValueError("a URL prefix names a host")
    return found


def _port(text: str) -> int:
    """A port number from 1 to 65535; raises ValueError otherwise."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_PORT):
        raise ValueError(f"a port is a number from 1 to {MAX_PORT}")
    return int(text)


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
    else:
        _check_match(match.strip(), f"{where}.match", problems)
    currency = entry.get("currency", "USD")
    reported = len(problems)
    usd_per_unit = _decimal(entry.get("usd_per_unit", 1), f"{where}.usd_per_unit", problems)
    a_rate = len(problems) == reported  # else reported once, as no rate at all
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        problems.append(f"{where}.currency: expected an ISO 4217 code such as USD")
    elif currency.upper() != "USD" and "usd_per_unit" not in entry:
        problems.append(f"{where}.usd_per_unit: required when currency is {currency}")
    elif currency.upper() == "USD" and a_rate and usd_per_unit != 1:
        problems.append(f"{where}.usd_per_unit: must be 1 (or left out) when currency is USD")
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


def _check_match(match: str, where: str, problems: list[str]) -> None:
    try:
        parse_match(match)
    except ValueError as error:
        problems.append(f"{where}: expected a host, host:port or URL prefix, got {match!r} ({error})")


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
    for unknown in sorted(set(prices) - {*RATE_FIELDS, *FEE_FIELDS}):
        problems.append(f"{where}.{unknown}: unknown price field")
    if "input_mtok" not in prices and "output_mtok" not in prices:
        problems.append(f"{where}: needs input_mtok or output_mtok")
    values = {
        name: _per_million(prices[name], f"{where}.{name}", problems)
        for name in RATE_FIELDS
        if name in prices
    }
    for name in FEE_FIELDS:
        if prices.get(name) is not None:
            values[name] = _decimal(prices[name], f"{where}.{name}", problems)
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
