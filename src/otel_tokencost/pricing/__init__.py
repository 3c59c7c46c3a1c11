"""Pricing: pure data and exact arithmetic, with no OpenTelemetry or openai import."""

from .pricer import GENAI_PRICES, MODEL_ONLY, PRICES_FILE, PROVIDER, Cost, Pricer
from .prices_file import FileProvider, PricesFileError, load
from .rates import Rate, Usage

__all__ = [
    "GENAI_PRICES",
    "MODEL_ONLY",
    "PRICES_FILE",
    "PROVIDER",
    "Cost",
    "FileProvider",
    "Pricer",
    "PricesFileError",
    "Rate",
    "Usage",
    "load",
]
