"""Which rate prices a call: the prices file, then genai-prices by base URL, then by model name alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from ..locks import fork_safe_lock
from ..money import MONEY
from . import genai
from .genai import RateAt
from .prices_file import FileProvider, address
from .rates import Usage, as_float, exact

PROVIDER = "provider"
PRICES_FILE = "prices-file"
GENAI_PRICES = "genai-prices"
MODEL_ONLY = "genai-prices:model-only"
MAX_CACHED = 4096


class Cost:
    """A priced call: exactly `units` of 10**`exponent` in the price source's `currency`.

    `usd` (a Decimal) and `amount` (a float, for telemetry) are in USD; `billed` and `billed_amount`
    in `currency`. The Decimals are made only when asked for: telemetry needs only the floats.
    """

    __slots__ = ("currency", "exponent", "provider", "source", "units", "usd_per_unit")

    def __init__(
        self,
        units: int,
        exponent: int,
        source: str,
        currency: str,
        provider: str,
        usd_per_unit: Decimal | None = None,  # None: the price is in USD
    ) -> None:
        self.units, self.exponent, self.source = units, exponent, source
        self.currency, self.provider, self.usd_per_unit = currency, provider, usd_per_unit

    @classmethod
    def stated(cls, usd: Decimal, source: str, provider: str) -> Cost:
        """A cost in USD as a provider states it (a finite, non-negative Decimal)."""
        exponent = min(usd.as_tuple().exponent, 0)
        return cls(int(usd.scaleb(-exponent, MONEY)), exponent, source, "USD", provider)

    @property
    def billed(self) -> Decimal:
        return exact(self.units, self.exponent)

    @property
    def usd(self) -> Decimal:
        billed = self.billed
        return billed if self.usd_per_unit is None else MONEY.multiply(billed, self.usd_per_unit)

    @property
    def amount(self) -> float:
        """`usd` as a float."""
        return as_float(self.units, self.exponent) if self.usd_per_unit is None else float(self.usd)

    @property
    def billed_amount(self) -> float:
        """`billed` as a float."""
        return as_float(self.units, self.exponent)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cost) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Cost(usd={self.usd!r}, source={self.source!r}, billed={self.billed!r}, "
            f"currency={self.currency!r}, provider={self.provider!r})"
        )

    def _key(self) -> tuple:
        return self.usd, self.source, self.billed, self.currency, self.provider


@dataclass(frozen=True, slots=True)
class _Quote:
    rate_at: RateAt
    source: str
    usd_per_unit: Decimal | None  # None: the rates are in USD
    provider: str


class Pricer:
    """Resolves each (base URL, model) once and caches it, so pricing a call is a dictionary hit."""

    def __init__(self, file_providers: Sequence[FileProvider] = ()) -> None:
        self._file_providers = sorted(file_providers, key=lambda entry: entry.specificity, reverse=True)
        self._quotes: dict[tuple[str, str | None, str | None], _Quote | None] = {}
        self._url_providers: dict[str, tuple[FileProvider | None, str | None]] = {}
        self._lock = fork_safe_lock()

    def preload(self) -> None:
        """Load what pricing a call needs and may not have loaded yet (genai-prices' data)."""
        genai.preload()

    def price(
        self,
        base_url: str,
        response_model: str | None,
        request_model: str | None,
        usage: Usage,
        when_ns: int,
        service_tier: str | None = None,
    ) -> Cost | None:
        """The cost of `usage`, or None when no source knows the model. `service_tier` is the tier that
        served the call, as the response states it: genai-prices prices some apart (OpenAI's `flex`,
        `priority`, ...); a prices file's rates are for every tier."""
        key = (base_url, response_model, request_model)
        try:
            quote = self._quotes[key]
        except KeyError:
            quote = self._resolve(base_url, response_model, request_model)
            with self._lock:
                if len(self._quotes) >= MAX_CACHED:
                    self._quotes.clear()  # hostile or churning model names must not grow memory forever
                self._quotes[key] = quote
        if quote is None:
            return None
        rate = quote.rate_at(when_ns, service_tier)
        return Cost(
            rate.units(usage), rate.exponent, quote.source, rate.currency, quote.provider, quote.usd_per_unit
        )

    def _resolve(self, base_url: str, *models: str | None) -> _Quote | None:
        candidates = [model for model in models if model]
        entry, url_provider = self._providers_for(base_url)
        if entry is not None:
            for model in candidates:
                if model in entry.models:
                    rate = entry.models[model]
                    usd_per_unit = None if entry.usd_per_unit == 1 else entry.usd_per_unit
                    rate_at = lambda _when_ns, _tier, rate=rate: rate  # noqa: E731
                    return _Quote(rate_at, PRICES_FILE, usd_per_unit, entry.match)
            if entry.prices_from is not None:
                quote = _genai_quote(entry.prices_from, candidates, GENAI_PRICES)
                if quote is not None:
                    return quote
        if url_provider is not None:
            quote = _genai_quote(url_provider, candidates, GENAI_PRICES)
            if quote is None and url_provider == "google":  # Vertex AI names Gemini `google/gemini-...`
                unprefixed = [model[7:] for model in candidates if model.startswith("google/")]
                quote = _genai_quote(url_provider, unprefixed, GENAI_PRICES)
            return quote
        return _genai_quote(None, candidates, MODEL_ONLY)

    def provider_name(self, base_url: str) -> str | None:
        """The provider name the prices file gives the host of `base_url`, if any."""
        entry = self._providers_for(base_url)[0]
        return entry.provider if entry is not None else None

    def _providers_for(self, base_url: str) -> tuple[FileProvider | None, str | None]:
        """The narrowest matching prices-file entry and the genai-prices provider for a base URL,
        worked out once per base URL."""
        found = self._url_providers.get(base_url)
        if found is None:
            found = (self._entry_for(base_url), genai.provider_for_url(_lower_host(base_url)))
            with self._lock:
                if len(self._url_providers) >= MAX_CACHED:
                    self._url_providers.clear()  # endless base URLs (a path per tenant, say): start over
                self._url_providers[base_url] = found
        return found

    def _entry_for(self, base_url: str) -> FileProvider | None:
        """The narrowest prices-file entry matching `base_url`; none for a malformed URL."""
        if not self._file_providers:
            return None
        try:
            base = address(base_url)
        except ValueError:
            return None  # a port out of range, an unclosed IPv6 bracket: no entry can name it
        return next((entry for entry in self._file_providers if entry.matches(base)), None)


def _genai_quote(provider_id: str | None, models: list[str], source: str) -> _Quote | None:
    for model in models:
        found = genai.find_rate(provider_id, model)
        if found is not None:
            return _Quote(found[0], source, None, found[1])
    return None


def _lower_host(base_url: str) -> str:
    """`base_url` with its scheme and host lower case, as genai-prices' URL patterns are written."""
    try:
        parts = urlsplit(base_url)
    except ValueError:
        return base_url
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment))
